"""Fine-tune-ready JSONL from a finished (or interrupted) run: ICM labels -> train/valid/test files.

`load_run` re-reads the dataset a run was made from (config.json names the file and its sha256; a changed
file is refused) and pairs it with RUN_DIR/labels.jsonl. `export_run` turns the labeled examples into one
of four record shapes (docs/export.md shows how each trainer reads them):

  task        messages / prompt-completion     kto (two records per item)      preference
  claim       PROMPT -> " True"/" False"        label word: true, other: false  chosen = ICM word, rejected = other
  comparison  question -> preferred response    preferred: true, other: false   chosen/rejected responses

A comparison pair (the two orders "A>B" and "B>A") gives one preference; a pair labeled both True or both
False says nothing and is left out. Unlabeled examples are left out. Whole consistency groups go to one
split, chosen by a seeded shuffle. ICM metadata (ids, scores, groups, run config) goes to a sidecar
icm_metadata.json, never into the records. Gold labels are loaded with the dataset but never read here.

Example: export_run(load_run("runs/demo"), "ft/", "messages") -> {"train": 52, "valid": 6, ...}
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import orjson

from .data import Dataset, load_dataset
from .errors import DataError, RunError, UserError
from .rundir import RunDir, write_atomic
from .tasks import Task

FORMATS = ("messages", "prompt-completion", "kto", "preference")
SPLITS = ("train", "valid", "test")
METADATA = "icm_metadata.json"


@dataclass(frozen=True)
class LabeledRun:
    path: Path
    config: dict
    summary: dict | None  # None when the run was interrupted before writing summary.json
    dataset: Dataset  # dataset.gold is for evaluation only
    labels: tuple[bool | None, ...]  # ICM labels, aligned with dataset.examples
    scores: tuple[float | None, ...]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_run(run_dir: str | Path, data: str | Path | None = None) -> LabeledRun:
    """The run's dataset (re-read and sha256-checked) with its ICM labels. `data` overrides a moved file."""
    rd = RunDir.open(run_dir)
    config = rd.read_json("config.json")
    for key in ("data", "data_sha256", "task"):
        if key not in config:
            raise RunError(f"{rd.path / 'config.json'} has no {key!r}; was it written by `icm-lite label`?")
    path = Path(data) if data is not None else Path(config["data"])
    if not path.is_file():
        raise DataError(f"the run's data file {path} is missing; pass its new location with --data")
    if file_sha256(path) != config["data_sha256"]:
        raise DataError(f"{path} is not the file the run labeled (sha256 differs from config.json); "
                        "pass the original file with --data")
    spec = dict(config["task"])
    spec["label_words"] = tuple(spec.get("label_words", ("True", "False")))
    try:
        task = Task(**spec)
    except TypeError as e:
        raise RunError(f"{rd.path / 'config.json'}: task record not understood ({e}); was it written by a newer icm-lite?") from None
    dataset = load_dataset(path, task)
    labels, scores = _read_labels(rd.path / "labels.jsonl", dataset)
    summary = rd.read_json("summary.json") if (rd.path / "summary.json").exists() else None
    return LabeledRun(rd.path, config, summary, dataset, labels, scores)


def _read_labels(path: Path, dataset: Dataset) -> tuple[tuple, tuple]:
    if not path.exists():
        raise RunError(f"{path} is missing: the run has not labeled anything yet")
    rows = {}
    for n, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            r = orjson.loads(line)
            rows[str(r["id"])] = (r["label"], r.get("score"))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise RunError(f"{path}:{n} is damaged (expected {{\"id\", \"label\", \"score\"}})") from None
    ids = [ex.id for ex in dataset.examples]
    missing = [i for i in ids if i not in rows]
    if missing or len(rows) != len(ids):
        raise RunError(f"{path} does not match the data file ({len(rows)} labels for {len(ids)} examples; "
                       f"first missing id: {missing[0] if missing else 'none'})")
    return tuple(rows[i][0] for i in ids), tuple(rows[i][1] for i in ids)


# --- items: what one unit of training signal is, before it gets a record shape ----------------------
@dataclass(frozen=True)
class Item:
    prompt: str
    chosen: str
    rejected: str
    sep: str  # between prompt and a completion in the plain-text formats (" " before a label word)
    examples: tuple[int, ...]  # dataset indices behind the item


def _units(dataset: Dataset) -> list[list[int]]:
    """Consistency groups (ungrouped examples alone), in order of first appearance."""
    units: dict = {}
    for i, ex in enumerate(dataset.examples):
        units.setdefault(ex.group if ex.group is not None else ("solo", i), []).append(i)
    return list(units.values())


def _claim_items(run: LabeledRun, unit: list[int]) -> list[Item]:
    yes, no = run.dataset.task.label_words
    return [Item(run.dataset.examples[i].prompt, yes if run.labels[i] else no, no if run.labels[i] else yes, " ", (i,))
            for i in unit if run.labels[i] is not None]


def _prompt_field(task: Task) -> str:
    """The record field that holds a comparison's prompt (the human turn)."""
    if "question" in task.fields:
        return "question"
    rest = [f for f in task.fields if f not in ("choice", "choice_2")]
    if len(rest) != 1:
        raise DataError(f"task {task.name!r}: cannot tell which template field is the prompt of a comparison "
                        f"(fields: {', '.join(task.fields)}); name it 'question'")
    return rest[0]


def _pair_item(run: LabeledRun, unit: list[int], records: list[dict], field: str) -> Item | None:
    """One preference from a pair's ICM labels (A = the "A>B" record); None if the labels say nothing."""
    a, b = sorted(unit, key=lambda i: run.dataset.examples[i].key != "A>B")
    ya, yb = run.labels[a], run.labels[b]
    a_better = ya if ya is not None else (None if yb is None else not yb)
    if a_better is None or (ya is not None and yb is not None and ya == yb):
        return None  # unlabeled, or both orders claimed (or denied): no preference
    ra = records[a]
    win, lose = (ra["choice"], ra["choice_2"]) if a_better else (ra["choice_2"], ra["choice"])
    used = tuple(i for i in (a, b) if run.labels[i] is not None)
    return Item(str(ra[field]), str(win), str(lose), "", used)


# --- record shapes ---------------------------------------------------------------------------------
def records_for(item: Item, fmt: str, openai_dpo: bool = False) -> list[dict]:
    """Example: records_for(Item("Q", "True", "False", " ", (0,)), "prompt-completion")
             -> [{"prompt": "Q", "completion": " True"}]"""
    if fmt == "messages":
        return [{"messages": [{"role": "user", "content": item.prompt}, {"role": "assistant", "content": item.chosen}]}]
    if fmt == "prompt-completion":
        return [{"prompt": item.prompt, "completion": item.sep + item.chosen}]
    if fmt == "kto":
        return [{"prompt": item.prompt, "completion": item.sep + item.chosen, "label": True},
                {"prompt": item.prompt, "completion": item.sep + item.rejected, "label": False}]
    if fmt == "preference" and openai_dpo:
        return [{"input": {"messages": [{"role": "user", "content": item.prompt}]},
                 "preferred_output": [{"role": "assistant", "content": item.chosen}],
                 "non_preferred_output": [{"role": "assistant", "content": item.rejected}]}]
    if fmt == "preference":
        return [{"prompt": item.prompt, "chosen": item.sep + item.chosen, "rejected": item.sep + item.rejected}]
    raise UserError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def split_units(sizes: list[int], valid_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """A split name per unit: a seeded shuffle fills test, then valid (by record count), the rest is train.

    Example: split_units([1] * 10, 0.2, 0.0, 0) -> eight "train" and two "valid", in a seeded order
    """
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise UserError("--valid-fraction and --test-fraction must be in [0, 1) and sum to less than 1")
    total = sum(sizes)
    want = {s: (max(1, round(f * total)) if f > 0 else 0) for s, f in (("test", test_fraction), ("valid", valid_fraction))}
    order = list(range(len(sizes)))
    random.Random(seed).shuffle(order)
    got = {"test": 0, "valid": 0, "train": 0}
    out = ["train"] * len(sizes)
    for u in order:
        s = "test" if got["test"] < want["test"] else "valid" if got["valid"] < want["valid"] else "train"
        out[u] = s
        got[s] += sizes[u]
    if got["train"] == 0 or any(want[s] and not got[s] for s in want):
        raise DataError(f"{len(sizes)} labeled item group(s) are too few to fill train"
                        f"{', valid' if want['valid'] else ''}{', test' if want['test'] else ''}; "
                        "lower --valid-fraction / --test-fraction or label more examples")
    return out


def export_run(run: LabeledRun, out: str | Path, fmt: str, *, openai_dpo: bool = False, valid_fraction: float = 0.1,
               test_fraction: float = 0.0, seed: int = 0, force: bool = False) -> dict:
    """Write DIR/{train,valid,test}.jsonl (empty splits are not written) and DIR/icm_metadata.json."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if openai_dpo and fmt != "preference":
        raise UserError("--openai-dpo is a shape of preference pairs: use it with --format preference")
    task = run.dataset.task
    comparison = task.key == "pair"
    units = _units(run.dataset)
    items: list[list[Item]] = []
    no_preference = 0
    if comparison:
        from .data import read_records

        records = [r for _, r in read_records(run.dataset.source)]
        field = _prompt_field(task)
        for unit in units:
            it = _pair_item(run, unit, records, field)
            if it is None and any(run.labels[i] is not None for i in unit):
                no_preference += 1
            items.append([it] if it else [])
    else:
        items = [_claim_items(run, unit) for unit in units]
    kept = [u for u in items if u]
    if not kept:
        raise DataError(f"{run.path} has no labeled examples to export")
    per_item = 2 if fmt == "kto" else 1
    splits = split_units([len(u) * per_item for u in kept], valid_fraction, test_fraction, seed)

    out = Path(out)
    names = [f"{s}.jsonl" for s in SPLITS] + [METADATA]
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a directory")
    present = [n for n in names if (out / n).exists()]
    if present and not force:
        raise UserError(f"{out} already holds {', '.join(present)}; use --force to replace them")
    out.mkdir(parents=True, exist_ok=True)

    lines: dict[str, list[bytes]] = {s: [] for s in SPLITS}
    meta: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for unit_items, split in zip(kept, splits):  # dataset order inside each split
        for it in unit_items:
            info = {"group": run.dataset.examples[it.examples[0]].group,
                    "examples": [{"id": run.dataset.examples[i].id, "label": run.labels[i], "score": run.scores[i]}
                                 for i in it.examples]}
            for rec in records_for(it, fmt, openai_dpo):
                lines[split].append(orjson.dumps(rec))
                meta[split].append(info | ({"label": rec["label"]} if fmt == "kto" else {}))
    for n in present:
        (out / n).unlink()  # --force: no stale split from an earlier export may survive
    counts = {}
    for s in SPLITS:
        if lines[s]:
            write_atomic(out / f"{s}.jsonl", b"\n".join(lines[s]) + b"\n")
            counts[s] = len(lines[s])
    n_labeled = sum(y is not None for y in run.labels)
    left_out = {"unlabeled": len(run.labels) - n_labeled}
    if comparison:
        left_out["pairs_without_preference"] = no_preference
    sidecar = {
        "format": "openai-dpo" if openai_dpo else fmt, "task": task.name, "kind": "comparison" if comparison else "claim",
        "run": str(run.path), "records": counts, "left_out": left_out,
        "split": {"seed": seed, "valid_fraction": valid_fraction, "test_fraction": test_fraction,
                  "by": "consistency group"},
        "lines": {s: meta[s] for s in SPLITS if meta[s]},  # lines[s][k] describes line k + 1 of s.jsonl
        "config": run.config, "summary": run.summary,
    }
    write_atomic(out / METADATA, orjson.dumps(sidecar, option=orjson.OPT_INDENT_2))
    return {"out": str(out), "format": sidecar["format"], "records": counts, "left_out": left_out}
