"""Reading datasets: records from a file as users have it -> `Dataset`.

Formats, by the path: `.json` (an array of objects) or JSONL (one object per line, any other suffix); `.csv` and
`.tsv` (a header row, then one record per row; every value is text: an empty cell is a missing value, and the
label column may say true/false, yes/no or 1/0); `.parquet` (needs pyarrow: the `parquet` extra); a folder
written by Hugging Face `datasets`' `save_to_disk`, or `hf:NAME[@SPLIT]` for a dataset in the local Hugging Face
cache (both need the `hf` extra; nothing is downloaded). The task says which columns fill the template, give the
id, the group, the consistency key and the gold label (`Task.mapped` renames them, `--field`).

The gold labels (the task's `label` field, when present) are split off into `Dataset.gold` at load time.
Search and scoring only ever receive `Dataset.examples`; gold is for evaluation (agreement, accuracy).
Every problem is a `DataError` naming the file, the line (CSV: the line the row starts on; Parquet and Hugging
Face: the row), and the field.

Example: load_dataset("examples/reviews.jsonl", Task.resolve("examples/reviews.task.json"))
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson

from .errors import DataError, show
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
    """Hex sha256 of a file (data files in config.json, model files in the cache); of a folder (a saved Hugging
    Face dataset), of its files' relative paths and contents in sorted order; of `hf:NAME`, of the cached files."""
    if str(path).startswith(HF):
        return _hub_fingerprint(str(path))
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def absolute(spec: str | Path) -> str:
    """A data argument as config.json keeps it: an absolute path, or `hf:NAME[@SPLIT]` as it is."""
    return str(spec) if str(spec).startswith(HF) else str(Path(spec).resolve())


def present(spec: str | Path) -> bool:
    """Whether a data argument names something to read (a cached `hf:` dataset is checked when it is read)."""
    return str(spec).startswith(HF) or Path(spec).exists()


def resolve_data(path: str | Path, run_dir: Path | None = None) -> Path:
    """A run's data file: the path config.json saved (absolute since config version 2), or, for a relative path
    that does not exist from here, the same path under the run directory or one of its parents."""
    p = Path(path)
    if p.is_absolute() or p.exists() or run_dir is None or str(path).startswith(HF):
        return p
    for base in (run_dir, *run_dir.resolve().parents):
        if (base / p).is_file():
            return base / p
    return p


HF = "hf:"  # a data argument naming a dataset in the Hugging Face cache
TEXT_FORMATS = (".csv", ".tsv")  # every value is a string


def read_records(path: str | Path) -> list[tuple[str, dict]]:
    """Records of a data file in any supported format (module docstring), each with a location string for
    error messages."""
    if str(path).startswith(HF):
        return _read_hub(str(path))
    p = Path(path)
    if p.is_dir():
        return _read_saved(p)
    suffix = p.suffix.lower()
    if suffix in TEXT_FORMATS:
        return _read_csv(p, "\t" if suffix == ".tsv" else ",")
    if suffix == ".parquet":
        return _read_parquet(p)
    return _read_json(p)


def read_text(p: Path, what: str = "data file") -> str:
    """A UTF-8 text file (a BOM dropped), or a DataError naming the file (as `what`), and the line of a bad byte.
    The one way icm_lite reads the text files users give it: data files, task files."""
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} {p} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{what} {p} is a directory") from None
    except OSError as e:
        raise DataError(f"cannot read {what} {p}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        named = "" if what == "data file" else f"{what} "
        raise DataError(f"{named}{p}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                        "save the file as UTF-8") from None
    return text.removeprefix("\ufeff")


def _read_json(p: Path) -> list[tuple[str, dict]]:
    text = read_text(p)
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


def _read_csv(p: Path, delimiter: str) -> list[tuple[str, dict]]:
    """Rows of a CSV/TSV file with a header, as records of strings; an empty cell is a missing value (None)."""
    import csv
    import io

    text = read_text(p)
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise DataError(f"{p}:{line}: a NUL byte; is this a text file?")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records: list[tuple[str, dict]] = []
    header: list[str] | None = None
    start = 1
    try:
        for row in reader:
            where = f"{p}:{start}"
            start = reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [h.strip() for h in row]
                dup = next((h for h in header if header.count(h) > 1), None)
                if dup is not None or "" in header:
                    what = f"column {dup!r} appears twice" if dup is not None else "a column has no name"
                    raise DataError(f"{where}: the header row is not usable: {what}")
                continue
            if len(row) != len(header):
                raise DataError(f"{where}: {len(row)} cells, but the header has {len(header)} columns")
            records.append((where, {h: (v if v != "" else None) for h, v in zip(header, row)}))
    except csv.Error as e:
        raise DataError(f"{p}:{reader.line_num}: malformed {'TSV' if delimiter == chr(9) else 'CSV'} ({e})") from None
    if not records:
        raise DataError(f"{p}: the dataset is empty" + (" (a header and no rows)" if header else ""))
    return records


def _rows(source: str, rows: list, columns: list[str]) -> list[tuple[str, dict]]:
    if not rows:
        raise DataError(f"{source}: the dataset is empty")
    return [(f"{source}: row {i + 1}", {c: _plain(r[c]) for c in columns}) for i, r in enumerate(rows)]


def _plain(value):
    """A Parquet/Arrow value as a JSON value (integers that are booleans stay integers, as in JSON)."""
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _read_parquet(p: Path) -> list[tuple[str, dict]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{p}: reading Parquet needs pyarrow: pip install 'icm-lite[parquet]'") from None
    if not p.is_file():
        read_text(p)  # the same error as the other formats for a missing file or a folder
    try:
        table = pq.read_table(p)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
        raise DataError(f"{p}: not a readable Parquet file ({type(e).__name__}: {_first_line(e)})") from None
    return _rows(str(p), table.to_pylist(), table.column_names)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _datasets():
    try:
        import datasets
    except ImportError:
        raise DataError("reading a Hugging Face dataset needs the datasets package: pip install 'icm-lite[hf]'") from None
    return datasets


def _read_saved(p: Path) -> list[tuple[str, dict]]:
    """A folder written by `Dataset.save_to_disk` (a DatasetDict: its "train" split, or its only one)."""
    if not (p / "dataset_info.json").exists() and not (p / "dataset_dict.json").exists():
        raise DataError(f"data file {p} is a directory (a folder of data must be a Hugging Face dataset saved with "
                        "save_to_disk)")
    datasets = _datasets()
    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:
        raise DataError(f"{p}: not a readable Hugging Face dataset folder ({_first_line(e)})") from None
    return _hf_rows(str(p), ds, None)


def _hf_rows(source: str, ds, split: str | None) -> list[tuple[str, dict]]:
    if hasattr(ds, "keys"):  # a DatasetDict
        names = list(ds.keys())
        split = split or ("train" if "train" in names else names[0] if len(names) == 1 else None)
        if split not in names:
            raise DataError(f"{source} has splits {', '.join(names)}: name one ({source}@SPLIT for hf:)")
        ds = ds[split]
    return _rows(source, ds.to_list(), list(ds.column_names))


def _hub_name(spec: str) -> tuple[str, str | None]:
    name, _, split = spec[len(HF):].partition("@")
    if not name:
        raise DataError(f"{spec!r}: write hf:NAME or hf:NAME@SPLIT")
    return name, split or None


def _read_hub(spec: str) -> list[tuple[str, dict]]:
    """A dataset from the local Hugging Face cache only (hub.forced_offline: nothing is fetched or retried)."""
    from .hub import forced_offline

    datasets = _datasets()
    name, split = _hub_name(spec)
    try:
        with forced_offline(datasets.config):
            ds = datasets.load_dataset(name, split=split)
    except Exception as e:
        raise DataError(f"{spec}: not in the local Hugging Face cache, or not readable ({_first_line(e)}); "
                        "download it where the Hub is reachable, or save it with save_to_disk and pass the folder") from None
    return _hf_rows(spec, ds, split)


def _hub_fingerprint(spec: str) -> str:
    """What identifies a cached Hugging Face dataset: its cache files' sha256 (the resume check compares it)."""
    from .hub import forced_offline

    datasets = _datasets()
    name, split = _hub_name(spec)
    with forced_offline(datasets.config):
        ds = datasets.load_dataset(name, split=split)
    parts = ds.values() if hasattr(ds, "values") else [ds]
    h = hashlib.sha256()
    for d in parts:
        for f in sorted(c["filename"] for c in d.cache_files):
            h.update(file_sha256(f).encode())
    return h.hexdigest()


def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "true/false", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


_TEXT_GOLD = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _gold(value, where: str, field: str, text: bool = False) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if text and isinstance(value, str) and value.strip().lower() in _TEXT_GOLD:
        return _TEXT_GOLD[value.strip().lower()]
    words = "true/false, yes/no or 1/0 (or empty)" if text else "true/false or 1/0 (or null)"
    raise DataError(f"{where}: label field {field!r} must be {words}, not {show(value)}")


def _scalar(value, where: str, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"{where}: field {field!r} must be a string or number, not {show(value)}")
    return str(value)


def build_dataset(records: list[tuple[str, dict]], task: Task, source: str = "<records>",
                  text: bool = False) -> Dataset:
    """text: every value is a string (CSV/TSV): the label column may say true/false, yes/no or 1/0."""
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
        gold.append(_gold(r.get(task.label_field), where, task.label_field, text))
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
    return build_dataset(read_records(path), task, str(path), Path(str(path)).suffix.lower() in TEXT_FORMATS)


def read_pins(path: str | Path, label_words: tuple[str, str]) -> dict[str, bool]:
    """Labels a person gives (--pin): a file in any data format with an `id` and a `label` column (a label word, or
    true/false, yes/no, 1/0). A `correction` column (the CSV `icm-lite review --out` writes) wins where filled:
    the person read every row, so a row without a correction confirms its label.

    Example: read_pins("review.csv", ("Yes", "No")) -> {"pair07b": True, ...}
    """
    words = {label_words[0].lower(): True, label_words[1].lower(): False, **_TEXT_GOLD}
    pins: dict[str, bool] = {}
    for where, r in read_records(path):
        if "id" not in r or r["id"] is None:
            raise DataError(f"{where}: a pin needs an 'id'")
        value = r.get("correction") if r.get("correction") not in (None, "") else r.get("label")
        if isinstance(value, bool):
            y = value
        elif isinstance(value, int) and value in (0, 1):
            y = bool(value)
        elif isinstance(value, str) and value.strip().lower() in words:
            y = words[value.strip().lower()]
        else:
            raise DataError(f"{where}: pinned label must be {label_words[0]}/{label_words[1]}, true/false or 1/0, "
                            f"not {show(value)}")
        ex_id = _scalar(r["id"], where, "id")
        if ex_id in pins and pins[ex_id] != y:
            raise DataError(f"{where}: id {ex_id!r} is pinned twice, to different labels")
        pins[ex_id] = y
    return pins
