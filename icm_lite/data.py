"""Reading datasets: JSON arrays or JSONL files of records -> `Dataset`.

The gold labels (the task's `label` field, when present) are split off into `Dataset.gold` at load time.
Search and scoring only ever receive `Dataset.examples`; gold is for evaluation (agreement, accuracy).
Every problem is a `DataError` naming the file, the line or record, and the field.

Example: load_dataset("examples/reviews.jsonl", Task.resolve("examples/reviews.task.json"))
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson

from .errors import DataError
from .tasks import Example, Task


@dataclass(frozen=True)
class Dataset:
    examples: tuple[Example, ...]
    gold: tuple[bool | None, ...] | None  # evaluation only; None when no record has a label
    task: Task
    source: str

    def __len__(self) -> int:
        return len(self.examples)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file (data files in config.json, model files in the cache)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_data(path: str | Path, run_dir: Path | None = None) -> Path:
    """A run's data file: the path config.json saved (absolute since config version 2), or, for a relative path
    that does not exist from here, the same path under the run directory or one of its parents."""
    p = Path(path)
    if p.is_absolute() or p.exists() or run_dir is None:
        return p
    for base in (run_dir, *run_dir.resolve().parents):
        if (base / p).is_file():
            return base / p
    return p


def read_records(path: str | Path) -> list[tuple[str, dict]]:
    """Records of a .json array or a .jsonl file, each with a location string for error messages."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"data file {p} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"data file {p} is a directory") from None
    except OSError as e:
        raise DataError(f"cannot read data file {p}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{p}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                        "save the file as UTF-8") from None
    text = text.removeprefix("\ufeff")
    stripped = text.lstrip(" \t\r\n")
    if not stripped:
        raise DataError(f"{p}: the dataset is empty")
    if stripped[0] == "[":
        try:
            items = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise DataError(f"{p}:{e.lineno}: malformed JSON ({e.msg}, column {e.colno})") from None
        records = [(f"{p}: record {i + 1}", r) for i, r in enumerate(items)]
    else:
        records = []
        # split on \n only: str.splitlines() also breaks at U+2028 etc., which JSON strings may contain
        for n, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                records.append((f"{p}:{n}", orjson.loads(line)))
            except orjson.JSONDecodeError as e:
                hint = "; a .jsonl file holds one JSON object per line" if "end of data" in e.msg else ""
                raise DataError(f"{p}:{n}: malformed JSON line ({e.msg}, column {e.colno}){hint}") from None
    if not records:
        raise DataError(f"{p}: the dataset is empty")
    for where, r in records:
        if not isinstance(r, dict):
            raise DataError(f"{where}: expected a JSON object, got {_kind(r)}")
    return records


def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "true/false", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _show(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _gold(value, where: str, field: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise DataError(f"{where}: label field {field!r} must be true/false or 1/0 (or null), not {_show(value)}")


def _scalar(value, where: str, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"{where}: field {field!r} must be a string or number, not {_show(value)}")
    return str(value)


def build_dataset(records: list[tuple[str, dict]], task: Task, source: str = "<records>") -> Dataset:
    if not records:
        raise DataError(f"{source}: the dataset is empty")
    examples: list[Example] = []
    gold: list[bool | None] = []
    seen: dict[str, str] = {}
    for i, (where, r) in enumerate(records):
        ex_id = _scalar(r[task.id_field], where, task.id_field) if task.id_field in r else str(i + 1)
        if ex_id in seen:
            raise DataError(f"{where}: duplicate id {ex_id!r} (first at {seen[ex_id]}); ids must be unique")
        seen[ex_id] = where
        group = None
        if task.group_field and task.group_field in r and r[task.group_field] is not None:
            group = _scalar(r[task.group_field], where, task.group_field)
        key = None
        if task.key and task.key.startswith("field:"):
            kf = task.key[len("field:"):]
            if kf not in r:
                raise DataError(f"{where} has no field {kf!r} (task {task.name!r} takes its consistency key from it)")
            key = _scalar(r[kf], where, kf).strip()
        prompt = task.render(r, where)
        examples.append(Example(ex_id, prompt, group, key))
        gold.append(_gold(r.get(task.label_field), where, task.label_field))
    if task.key == "pair":
        examples = _pair_keys(examples, [r for _, r in records], [w for w, _ in records], task)
    has_gold = any(g is not None for g in gold)
    return Dataset(tuple(examples), tuple(gold) if has_gold else None, task, source)


def _pair_keys(examples: list[Example], records: list[dict], wheres: list[str], task: Task) -> list[Example]:
    """Comparison twins: the first record of a group asserts "A>B", its side-swapped twin "B>A"."""
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        if ex.group is None:
            raise DataError(f"{wheres[i]}: comparison records need a {task.group_field!r} pairing the two orders")
        groups.setdefault(ex.group, []).append(i)
    out = list(examples)
    for g, idx in groups.items():
        if len(idx) != 2:
            ids = ", ".join(repr(examples[i].id) for i in idx[:5]) + (", …" if len(idx) > 5 else "")
            raise DataError(f"{wheres[idx[0]]}: comparison group {g!r} has {len(idx)} record(s) (ids {ids}); "
                            "each group must be exactly one pair: (A, B) and its swap (B, A)")
        a, b = (records[i] for i in idx)
        if not (a.get("choice") == b.get("choice_2") and a.get("choice_2") == b.get("choice")):
            raise DataError(f"{wheres[idx[1]]}: comparison group {g!r}: this record must swap choice and choice_2 "
                            f"of {wheres[idx[0]]}")
        out[idx[0]] = Example(examples[idx[0]].id, examples[idx[0]].prompt, g, "A>B")
        out[idx[1]] = Example(examples[idx[1]].id, examples[idx[1]].prompt, g, "B>A")
    return out


def load_dataset(path: str | Path, task: Task) -> Dataset:
    return build_dataset(read_records(path), task, str(path))
