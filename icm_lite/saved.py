"""A run directory read back, in one place: its RunConfig, its data (checked), its labels, state and summary.

`SavedRun.load(run_dir, data=None)` is what export, eval and review read; `resume` (run.py) reads the same config
and data through `load_config` and `load_data`. config.json becomes a `RunConfig` (config.py, which refuses another
version's file); the data file is the one config.json names (or `data`, if it moved), and its sha256 must match
(`check_data`: one check, one message); labels.jsonl gives each example's label, log-odds and source ("search",
"prediction", "pinned", or null: not labeled yet). state.json and summary.json are read when present (a stopped run
may have no summary). Nothing here writes, loads a model, or reads gold labels beyond loading them with the data.

Example: run = SavedRun.load("runs/demo"); run.config.search.alpha, run.labels[:3], run.carried
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .config import SECTIONS, RunConfig
from .data import Dataset, file_sha256, load_dataset, present, resolve_data
from .errors import DataError, RunError
from .plan import Item
from .rundir import RunDir

SOURCES = ("search", "prediction", "pinned")  # labels.jsonl "source": searched / predicted / given by a person


@dataclass(frozen=True)
class SavedRun:
    path: Path | None
    config: RunConfig | dict  # a dict of option sections is taken as one (runs built in memory, tests)
    summary: dict | None  # None when the run was stopped before writing summary.json
    dataset: Dataset  # dataset.gold is for evaluation only
    labels: tuple[bool | None, ...]  # the run's labels (searched, predicted or pinned), aligned with the examples
    scores: tuple[float | None, ...]
    sources: tuple[str | None, ...] = ()  # () means all "search"
    state: dict | None = field(default=None, compare=False)  # state.json, when there is one

    def __post_init__(self):
        if not self.sources:
            object.__setattr__(self, "sources", ("search",) * len(self.labels))
        if isinstance(self.config, dict):
            sections = {s: cls(**self.config[s]) for s, cls in SECTIONS.items() if s in self.config}
            object.__setattr__(self, "config", RunConfig(data=self.dataset.source, task=self.dataset.task, **sections))

    @classmethod
    def load(cls, run_dir: str | Path, data: str | Path | None = None) -> "SavedRun":
        rd = RunDir.open(run_dir)
        config = load_config(rd)
        dataset = load_dataset(check_data(config, rd.path, data), config.task)
        labels, scores, sources = read_labels(rd.path / "labels.jsonl", dataset)
        state = rd.read_json("state.json") if (rd.path / "state.json").exists() else None
        summary = rd.read_json("summary.json") if (rd.path / "summary.json").exists() else None
        return cls(rd.path, config, summary, dataset, labels, scores, sources, state)

    @property
    def batches(self) -> list[list[int]]:
        """The searched batches as the run cut them (one batch of everything for a run built in memory)."""
        return [list(b) for b in self.config.batches] if self.config.batches else [list(range(len(self.dataset)))]

    @property
    def carried(self) -> list[Item]:
        """The first batch's labels every later batch started its contexts with (state.json)."""
        return [(int(i), bool(y)) for i, y in ((self.state or {}).get("carried") or [])]


def load_config(rd: RunDir) -> RunConfig:
    return RunConfig.from_json(rd.read_json("config.json"), str(rd.path / "config.json"))


def check_data(config: RunConfig, run_dir: Path, data: str | Path | None = None, *,
               moved: str = "pass its new place with --data", changed: str = "pass the original file with --data") -> Path:
    """The run's data file (config.json's, or `data` if it moved), refused when missing or not the same file.
    moved / changed: what the caller's user can do about either (its option's name)."""
    path = Path(data) if data is not None else resolve_data(config.data, run_dir)
    if not present(path):
        raise DataError(f"its data file {path} is missing; {moved}")
    got = file_sha256(path)
    if got != config.data_sha256:
        raise DataError(f"{path} is not the file the run labeled (sha256 {got[:12]}…, saved "
                        f"{(config.data_sha256 or '?')[:12]}…); {changed}")
    return path


def read_labels(path: Path, dataset: Dataset) -> tuple[tuple, tuple, tuple]:
    """Labels, scores and sources aligned with the dataset; a row without "source" was labeled by the search, a
    row whose label and source are null was not labeled yet (a stopped run)."""
    if not path.exists():
        raise RunError(f"{path} is missing: the run has not labeled anything yet")
    rows = {}
    for n, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            r = orjson.loads(line)
            rows[str(r["id"])] = (r["label"], r.get("score"), r.get("source", "search"))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise RunError(f"{path}:{n} is damaged (expected {{\"id\", \"label\", \"score\"}})") from None
        label, _, source = rows[str(r["id"])]
        if source not in SOURCES and not (source is None and label is None):
            raise RunError(f"{path}:{n}: unknown source {r['source']!r} (expected 'search', 'prediction' or 'pinned')")
    ids = [ex.id for ex in dataset.examples]
    missing = [i for i in ids if i not in rows]
    if missing or len(rows) != len(ids):
        raise RunError(f"{path} does not match the data file ({len(rows)} labels for {len(ids)} examples; "
                       f"first missing id: {missing[0] if missing else 'none'})")
    return tuple(zip(*(rows[i] for i in ids))) if ids else ((), (), ())
