"""Fine-tune-ready JSONL from a finished (or interrupted) run: ICM labels -> train/valid/test files.

`load_run` reads the run directory (saved.SavedRun: config.json as a RunConfig, the data file it names checked by
sha256, RUN_DIR/labels.jsonl). `export_run` turns the labeled examples into one
of five record shapes (docs/export.md shows which trainer and model kind reads each):

  task        text                 prompt-completion / messages        kto (two records per item)      preference
  claim       PROMPT + " True"     PROMPT -> " True"/" False"           label word: true, other: false  chosen = ICM word, rejected = other
  comparison  (refused)            question -> preferred response       preferred: true, other: false   chosen/rejected responses

A comparison pair (the two orders "A>B" and "B>A") gives one preference; a pair labeled both True or both
False says nothing and is left out. Unlabeled examples are left out, and so are labels the model predicted
after the search (labels.jsonl `"source": "prediction"`) unless `include_predicted`. Whole consistency
groups go to one split, chosen by a seeded shuffle; KTO records are shuffled inside a split too (TRL reads
them in file order and pairs neighbours for its KL term). ICM metadata (ids, scores, groups, run config)
goes to a sidecar icm_metadata.json, never into the records. Gold labels are loaded with the dataset but
never read here. `check_export` loads the written files with Hugging Face `datasets` (optional) and says
what TRL will see; it trains nothing and loads no model.

Example: export_run(load_run("runs/demo"), "ft/", "prompt-completion") -> {"records": {"train": 24, "valid": 4}, ...}
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

import orjson

from .errors import DataError, UserError
from .rundir import write_atomic
from .saved import SavedRun
from .tasks import Task, units

FORMATS = ("text", "prompt-completion", "messages", "kto", "preference")
SPLITS = ("train", "valid", "test")
METADATA = "icm_metadata.json"
CARD = "README.md"  # the dataset card (the Hugging Face Hub shows it)


LabeledRun = SavedRun  # what export, eval and review read: saved.py


def load_run(run_dir: str | Path, data: str | Path | None = None) -> SavedRun:
    """The run's dataset (re-read and sha256-checked) with its labels. `data` overrides a moved file."""
    return SavedRun.load(run_dir, data)


def used_labels(run: LabeledRun, include_predicted: bool) -> tuple[bool | None, ...]:
    """The labels an export trains on: searched and pinned ones; predicted ones count as unlabeled unless
    include_predicted.

    Example: labels (True, False, None), sources ("search", "prediction", "search") -> (True, None, None)
    """
    return tuple(y if include_predicted or s in ("search", "pinned") else None for y, s in zip(run.labels, run.sources))


# --- items: what one unit of training signal is, before it gets a record shape ----------------------
@dataclass(frozen=True)
class Item:
    prompt: str
    chosen: str
    rejected: str
    sep: str  # between prompt and a completion in the plain-text formats (" " before a label word)
    examples: tuple[int, ...]  # dataset indices behind the item


def _claim_items(run: LabeledRun, labels: tuple, unit: list[int]) -> list[Item]:
    yes, no = run.dataset.task.label_words
    return [Item(run.dataset.examples[i].prompt, yes if labels[i] else no, no if labels[i] else yes, " ", (i,))
            for i in unit if labels[i] is not None]


def _prompt_field(task: Task) -> str:
    """The record field that holds a comparison's prompt (the human turn)."""
    if "question" in task.fields:
        return "question"
    rest = [f for f in task.fields if f not in ("choice", "choice_2")]
    if len(rest) != 1:
        raise DataError(f"task {task.name!r}: cannot tell which template field is the prompt of a comparison "
                        f"(fields: {', '.join(task.fields)}); name it 'question'")
    return rest[0]


def _pair_item(run: LabeledRun, labels: tuple, unit: list[int], records: list[dict], field: str) -> Item | None:
    """One preference from a pair's ICM labels (A = the "A>B" record); None if the labels say nothing."""
    a, b = sorted(unit, key=lambda i: run.dataset.examples[i].key != "A>B")
    ya, yb = labels[a], labels[b]
    a_better = ya if ya is not None else (None if yb is None else not yb)
    if a_better is None or (ya is not None and yb is not None and ya == yb):
        return None  # unlabeled, or both orders claimed (or denied): no preference
    ra = records[a]
    win, lose = (ra["choice"], ra["choice_2"]) if a_better else (ra["choice_2"], ra["choice"])
    used = tuple(i for i in (a, b) if labels[i] is not None)
    return Item(str(ra[field]), str(win), str(lose), "", used)


def _items(run: LabeledRun, labels: tuple) -> tuple[list[list[Item]], int]:
    """Items per consistency group, and the number of labeled pairs that give no preference."""
    groups = units(run.dataset.examples)
    if run.dataset.task.key != "pair":
        return [_claim_items(run, labels, unit) for unit in groups], 0
    from .data import read_records

    records = [r for _, r in read_records(run.dataset.source)]
    field = _prompt_field(run.dataset.task)
    items, no_preference = [], 0
    for unit in groups:
        it = _pair_item(run, labels, unit, records, field)
        no_preference += it is None and any(labels[i] is not None for i in unit)
        items.append([it] if it else [])
    return items, no_preference


# --- record shapes ---------------------------------------------------------------------------------
def records_for(item: Item, fmt: str, openai_dpo: bool = False) -> list[dict]:
    """Example: records_for(Item("Q", "True", "False", " ", (0,)), "prompt-completion")
             -> [{"prompt": "Q", "completion": " True"}]"""
    if fmt == "text":
        return [{"text": item.prompt + item.sep + item.chosen}]
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


def _check_options(task: Task, fmt: str, openai_dpo: bool) -> None:
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if openai_dpo and fmt != "preference":
        raise UserError("--openai-dpo is a shape of preference pairs: use it with --format preference")
    if fmt == "text" and task.key == "pair":
        raise UserError("--format text is prompt + label word, for claim tasks; export a comparison task "
                        "as preference, kto, messages or prompt-completion")


def _prepare_out(out: Path, force: bool) -> list[str]:
    """Create `out`; the names of an earlier export's files in it (refused without force)."""
    names = [f"{s}.jsonl" for s in SPLITS] + [METADATA, CARD]
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a directory")
    present = [n for n in names if (out / n).exists()]
    if present and not force:
        raise UserError(f"{out} already holds {', '.join(present)}; use --force to replace them")
    out.mkdir(parents=True, exist_ok=True)
    return present


def _render(run: LabeledRun, labels: tuple, kept: list[list[Item]], splits: list[str], fmt: str,
            openai_dpo: bool) -> tuple[dict[str, list[bytes]], dict[str, list[dict]]]:
    """JSONL lines per split (dataset order) and, for each line, the ICM examples behind it."""
    lines: dict[str, list[bytes]] = {s: [] for s in SPLITS}
    meta: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for unit_items, split in zip(kept, splits):
        for it in unit_items:
            info = {"group": run.dataset.examples[it.examples[0]].group,
                    "examples": [{"id": run.dataset.examples[i].id, "label": labels[i], "score": run.scores[i],
                                  "source": run.sources[i]} for i in it.examples]}
            for rec in records_for(it, fmt, openai_dpo):
                lines[split].append(orjson.dumps(rec))
                meta[split].append(info | ({"label": rec["label"]} if fmt == "kto" else {}))
    return lines, meta


def shuffle_split(lines: list, meta: list, seed: int, split: str) -> tuple[list, list]:
    """Lines and their metadata in one seeded order (the same for every run with this seed and split).

    Example: shuffle_split([b"a", b"b", b"c"], [1, 2, 3], 0, "train") -> ([b"b", b"a", b"c"], [2, 1, 3])
    """
    order = list(range(len(lines)))
    random.Random(f"{seed}:{split}:order").shuffle(order)
    return [lines[k] for k in order], [meta[k] for k in order]


def export_run(run: LabeledRun, out: str | Path, fmt: str, *, openai_dpo: bool = False, include_predicted: bool = False,
               valid_fraction: float = 0.1, test_fraction: float = 0.0, seed: int = 0, force: bool = False) -> dict:
    """Write DIR/{train,valid,test}.jsonl (empty splits are not written) and DIR/icm_metadata.json."""
    task = run.dataset.task
    _check_options(task, fmt, openai_dpo)
    labels = used_labels(run, include_predicted)
    items, no_preference = _items(run, labels)
    left_out = {"unlabeled": sum(y is None for y in run.labels),
                "predicted": sum(y is not None and z is None for y, z in zip(run.labels, labels))}
    if task.key == "pair":
        left_out["pairs_without_preference"] = no_preference
    kept = [u for u in items if u]
    if not kept:
        hint = f" ({left_out['predicted']} predicted labels are left out without --include-predicted)" if left_out["predicted"] else ""
        raise DataError(f"{run.path} has no labeled examples to export{hint}")
    per_item = 2 if fmt == "kto" else 1
    splits = split_units([len(u) * per_item for u in kept], valid_fraction, test_fraction, seed)
    out = Path(out)
    present = _prepare_out(out, force)
    lines, meta = _render(run, labels, kept, splits, fmt, openai_dpo)
    if fmt == "kto":  # TRL's KTOTrainer reads in file order and pairs neighbours for its KL term: mix examples
        for s in SPLITS:
            lines[s], meta[s] = shuffle_split(lines[s], meta[s], seed, s)
    for n in present:
        (out / n).unlink()  # --force: no stale split from an earlier export may survive
    counts = {}
    for s in SPLITS:
        if lines[s]:
            write_atomic(out / f"{s}.jsonl", b"\n".join(lines[s]) + b"\n")
            counts[s] = len(lines[s])
    sidecar = {
        "format": "openai-dpo" if openai_dpo else fmt, "task": task.name, "kind": "comparison" if task.key == "pair" else "claim",
        "run": str(run.path), "records": counts, "left_out": left_out, "include_predicted": include_predicted,
        "split": {"seed": seed, "valid_fraction": valid_fraction, "test_fraction": test_fraction,
                  "by": "consistency group", "order": "shuffled by seed" if fmt == "kto" else "data file"},
        "lines": {s: meta[s] for s in SPLITS if meta[s]},  # lines[s][k] describes line k + 1 of s.jsonl
        "config": run.config.to_json(), "summary": run.summary,
    }
    write_atomic(out / METADATA, orjson.dumps(sidecar, option=orjson.OPT_INDENT_2))
    write_atomic(out / CARD, dataset_card(run, sidecar).encode("utf-8"))
    return {"out": str(out), "format": sidecar["format"], "records": counts, "left_out": left_out}


def dataset_card(run: LabeledRun, sidecar: dict) -> str:
    """README.md for the export folder, as the Hugging Face Hub reads a dataset card: its splits in the YAML header,
    then where the labels come from (model, settings, how many searched, predicted and pinned, balance), agreement
    with gold when the run measured it, and the source data's license to fill in."""
    cfg, summary = run.config, run.summary or {}
    search, batching = dataclasses.asdict(cfg.search), dataclasses.asdict(cfg.batching)
    files = "".join(f"  - split: {HF_SPLITS[s]}\n    path: {s}.jsonl\n" for s in sidecar["records"])
    sources = [src for y, src in zip(run.labels, run.sources) if y is not None]
    ys = [y for y in run.labels if y is not None]
    settings = ", ".join(f"{k} {search[k]}" for k in ("init", "alpha", "t0", "order", "objective", "seed") if k in search)
    if "core" in batching:
        settings += f", core {batching['core']}"
    gold = (f"{summary['agreement']:.1%} of {summary['agreement_n']} searched labels (evaluation only: the search "
            "never read them)" if summary.get("agreement") is not None else "not measured (the data has no gold labels)")
    rows = [("model", f"{cfg.model_name or cfg.model or '?'} (a pre-trained model; raw prompts, no chat template)"),
            ("settings", settings or "?"), ("format", sidecar["format"]),
            ("records", ", ".join(f"{s}.jsonl {n}" for s, n in sidecar["records"].items())),
            ("labels", f"{sources.count('search')} searched, {sources.count('prediction')} predicted from them, "
                       f"{sources.count('pinned')} pinned by a person; {sum(ys)} True / {len(ys) - sum(ys)} False"),
            ("left out", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sidecar["left_out"].items())),
            ("agreement with gold", gold)]
    table = "".join(f"| {k} | {v} |\n" for k, v in rows)
    return (f"---\nlicense: other\ntags:\n- icm\n- unsupervised-labels\nconfigs:\n- config_name: default\n"
            f"  data_files:\n{files}---\n\n# {run.dataset.task.name}: labels by icm_lite\n\n"
            "Labels found without supervision by Internal Coherence Maximization (Wen et al. 2025, \"Unsupervised "
            "Elicitation of Language Models\") with icm_lite: the labels that a pre-trained model finds most mutually "
            "predictable and logically consistent. Where icm_lite differs from the authors' code, and why: "
            "icm_lite's docs/faithfulness.md.\n\n| | |\n|---|---|\n" + table +
            f"\nThe records hold text from `{Path(str(cfg.data)).name}`: its license applies to this "
            "dataset. Set `license:` above to it before you publish.\n")


# --- the optional check: what `datasets.load_dataset("json", ...)` and TRL make of an export -------------
# TRL's dataset types (docs: "Dataset formats and types"), by the exact set of columns, and who reads them
TRL_TYPES = {
    frozenset({"text"}): ("language modeling", "SFTTrainer: loss on every token"),
    frozenset({"messages"}): ("conversational language modeling",
                              "SFTTrainer: chat template, loss on the whole chat unless assistant_only_loss"),
    frozenset({"prompt", "completion"}): ("prompt-completion", "SFTTrainer: loss on the completion only"),
    frozenset({"prompt", "completion", "label"}): ("unpaired preference", "KTOTrainer"),
    frozenset({"prompt", "chosen", "rejected"}): ("preference", "DPOTrainer, RewardTrainer"),
    frozenset({"input", "preferred_output", "non_preferred_output"}): ("none (OpenAI DPO shape)", "hosted DPO, not TRL"),
}
HF_SPLITS = {"train": "train", "valid": "validation", "test": "test"}  # file stem -> the README's split name


def need_datasets():
    """The `datasets` module, or a one-line error that says how to get it."""
    try:
        import datasets
    except ImportError:
        raise UserError("--check needs Hugging Face `datasets`: pip install 'icm-lite[check]'") from None
    return datasets


def _type_name(feature) -> str:
    """A datasets feature as a short type: string, bool, list<{content: string, role: string}>."""
    if isinstance(feature, dict):
        return "{" + ", ".join(f"{k}: {_type_name(v)}" for k, v in feature.items()) + "}"
    if hasattr(feature, "dtype") and not hasattr(feature, "feature"):
        return str(feature.dtype)
    if hasattr(feature, "feature"):
        return f"list<{_type_name(feature.feature)}>"
    return type(feature).__name__


def check_export(out: str | Path) -> list[dict]:
    """Load every split of an export as the README does and describe what TRL will see, per file.

    Raises DataError when `datasets` reads other columns than the export's format promises.
    Example: check_export("ft/") -> [{"file": "ft/train.jsonl", "split": "train", "rows": 24,
             "columns": {"prompt": "string", "completion": "string"}, "trl": "prompt-completion", ...}]
    """
    import tempfile

    datasets = need_datasets()
    out = Path(out)
    files = {HF_SPLITS[s]: str(out / f"{s}.jsonl") for s in SPLITS if (out / f"{s}.jsonl").exists()}
    if not files:
        raise UserError(f"{out} holds no train/valid/test.jsonl to check")
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as cache:  # leave nothing in the user's datasets cache
        loaded = datasets.load_dataset("json", data_files=files, cache_dir=cache)
        return [_describe(files[name], name, ds) for name, ds in loaded.items()]


def _describe(path: str, split: str, ds) -> dict:
    columns = {c: _type_name(f) for c, f in ds.features.items()}
    kind, reader = TRL_TYPES.get(frozenset(columns), (None, None))
    if kind is None:
        raise DataError(f"{path}: datasets reads columns {', '.join(columns)}, which is no export format")
    if "label" in columns and columns["label"] != "bool":
        raise DataError(f"{path}: column label is {columns['label']}, KTO needs bool")
    return {"file": path, "split": split, "rows": ds.num_rows, "columns": columns, "trl": kind,
            "reader": reader, "first": ds[0]}


def check_lines(files: list[dict]) -> list[str]:
    """check_export's answer as lines for a terminal; long strings keep their start and their end.

    Example: "check: ft/train.jsonl -> split 'train', 24 rows; columns prompt: string, completion: string;
              TRL type: prompt-completion (SFTTrainer: loss on the completion only)" then its first row
    """
    out = []
    for f in files:
        columns = ", ".join(f"{c}: {t}" for c, t in f["columns"].items())
        out.append(f"check: {f['file']} -> split {f['split']!r}, {f['rows']} rows; columns {columns}; "
                   f"TRL type: {f['trl']} ({f['reader']})")
        out.append("  first row: " + ", ".join(f"{c}={_short(v)}" for c, v in f["first"].items()))
    return out


def _short(value, keep: int = 24) -> str:
    """repr() with long strings cut in the middle, so a completion's leading space and a prompt's end show.

    Example: _short("Review: My kids adored it ... Answer:", 8) -> "'Review: … Answer:'"
    """
    if isinstance(value, str):
        return repr(value if len(value) <= 2 * keep + 1 else value[:keep] + "…" + value[-keep:])
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_short(v, keep)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v, keep) for v in value) + "]"
    return repr(value)
