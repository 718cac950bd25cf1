"""The run configuration: everything a labeling run depends on, in one record that is config.json.

`RunConfig` holds the data file (absolute path and sha256), the task, the model (as asked and as resolved), and
the options of three sections, each a dataclass whose fields are the command-line options (options.py):
`model_options` (ModelOptions), `search` (SearchConfig) and `batching` (Batching). When a run starts it also
records the batches it cut (and, with a core, the examples it predicts instead of searching). `to_json`/`from_json` are exact inverses; `conflicts` says which options given to
`--resume` differ from the saved ones, by option name, for every option in every section.

This module does no I/O and loads nothing; run.py reads and writes config.json.

Example: RunConfig.from_json(cfg.to_json()) == cfg
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import RunError
from .options import Batching, ModelOptions
from .search import SearchConfig
from .tasks import Task

VERSION = 2
SECTIONS = {"model_options": ModelOptions, "search": SearchConfig, "batching": Batching}


def option_section(name: str) -> str | None:
    """Which section declares the option `name` (None: not a section option)."""
    for section, cls in SECTIONS.items():
        if any(f.name == name for f in dataclasses.fields(cls)):
            return section
    return None


@dataclass(frozen=True)
class RunConfig:
    data: str  # absolute path of the data file
    task: Task
    model: str | None = None  # as asked: a registry name, a .gguf path, or None for the default model
    model_options: ModelOptions = field(default_factory=ModelOptions)
    search: SearchConfig = field(default_factory=SearchConfig)
    batching: Batching = field(default_factory=Batching)
    # recorded when the run starts
    data_sha256: str | None = None
    model_name: str | None = None  # the registry name (or file name) the model resolved to
    model_path: str | None = None
    batches: tuple[tuple[int, ...], ...] | None = None
    carried: int | None = None  # carried demonstrations the batches leave room for
    rest: tuple[int, ...] | None = None  # examples predicted from the searched core (--core), not searched
    pins: tuple[tuple[str, bool], ...] | None = None  # (id, label) a person gave (--pin): fixed, never searched

    def option(self, name: str) -> Any:
        section = option_section(name)
        if section is None:
            raise KeyError(name)
        return getattr(getattr(self, section), name)

    def with_options(self, **values) -> "RunConfig":
        """A copy with options replaced by name, whatever section declares them."""
        by_section: dict[str, dict] = {}
        for name, value in values.items():
            section = option_section(name)
            if section is None:
                raise KeyError(name)
            by_section.setdefault(section, {})[name] = value
        return replace(self, **{s: replace(getattr(self, s), **v) for s, v in by_section.items()})

    def conflicts(self, given: dict[str, Any]) -> list[str]:
        """Options given to --resume that differ from the saved ones and would change the labels, as
        "--name VALUE (saved: X)". Non-resumable options (e.g. --n-threads) may change freely.

        Example: cfg.conflicts({"alpha": 50.0}) -> ["--alpha 50.0 (saved: 30.0)"]
        """
        out = []
        for name, value in given.items():
            section = option_section(name)
            f = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name)
            saved = self.option(name)
            if not f.metadata.get("resumable", True) or _same(value, saved):
                continue
            out.append(f"--{name.replace('_', '-')} {value} (saved: {saved})")
        return out

    def to_json(self) -> dict:
        from . import __version__

        return {"icm_lite": __version__, "config_version": VERSION, "data": self.data, "data_sha256": self.data_sha256,
                "task": self.task.to_dict(), "model": self.model_name, "model_asked": self.model,
                "model_path": self.model_path,
                **{s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS},
                "batches": [list(b) for b in self.batches] if self.batches is not None else None,
                "carried": self.carried, "rest": list(self.rest) if self.rest is not None else None,
                "pins": [list(p) for p in self.pins] if self.pins is not None else None}

    @classmethod
    def from_json(cls, raw: dict, where: str = "config.json") -> "RunConfig":
        if not isinstance(raw, dict) or raw.get("config_version") != VERSION:
            got = raw.get("config_version", 1) if isinstance(raw, dict) else None
            raise RunError(f"{where} is from another icm-lite version (config version {got}, this one reads {VERSION}); "
                           "start a new run")
        try:
            sections = {s: c(**raw[s]) for s, c in SECTIONS.items()}
            batches = raw.get("batches")
            return cls(data=raw["data"], task=Task.from_dict(raw["task"]), model=raw.get("model_asked"), **sections,
                       data_sha256=raw.get("data_sha256"), model_name=raw.get("model"), model_path=raw.get("model_path"),
                       batches=None if batches is None else tuple(tuple(int(i) for i in b) for b in batches),
                       carried=raw.get("carried"),
                       rest=None if raw.get("rest") is None else tuple(int(i) for i in raw["rest"]),
                       pins=None if raw.get("pins") is None else tuple((str(i), bool(y)) for i, y in raw["pins"]))
        except (KeyError, TypeError, ValueError) as e:
            raise RunError(f"{where} is damaged or from another version ({type(e).__name__}: {e})") from None


def _same(a, b) -> bool:
    if a == b:
        return True
    numbers = (int, float)
    return (isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool)
            and float(a) == float(b))
