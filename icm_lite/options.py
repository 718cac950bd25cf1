"""Options, declared once: each is a dataclass field that carries its default, help text and constraints.

`opt(default, help, ...)` makes such a field. `ModelOptions` (how llama.cpp runs the model) and `Batching` (how
data larger than one context is cut) live here; `search.SearchConfig` declares the search's options the same
way. The command line is generated from these fields (cli.py turns each into a click option named after it),
config.json stores them by name, and resume compares them by name: adding an option is one field.

This module imports neither click nor llama_cpp; it only describes options.

Example: [f.name for f in cli_fields(ModelOptions)] -> ["n_ctx", "n_gpu_layers", "n_threads", ...]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import UserError

KV_TYPES = ("f16", "f32", "q8_0")


def opt(default: Any, help: str, *, min: int | float | None = None, choices: tuple | None = None,
        flag: bool = False, cli: bool = True, resumable: bool = True):
    """A dataclass field that is also a command-line option.

    min/choices: constraints the CLI enforces; flag: a boolean --x/--no-x switch; cli=False keeps the field
    off the command line; resumable=False lets `--resume` take a new value (it does not change the labels).
    """
    meta = {"help": help, "min": min, "choices": choices, "flag": flag, "cli": cli, "resumable": resumable}
    return field(default=default, metadata=meta)


def cli_fields(cls) -> list[dataclasses.Field]:
    """The fields of an options dataclass that are command-line options, in declaration order."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli")]


def from_dict(cls, values: dict):
    """An options dataclass from a dict by field name (unknown keys are a TypeError, missing ones defaults)."""
    return cls(**values)


@dataclass(frozen=True)
class ModelOptions:
    """How llama.cpp loads and runs the model (backend.py reads them; nothing else does)."""

    n_ctx: int = opt(8192, "Context size in tokens; data that does not fit one context is labeled in batches that do.",
                     min=64)
    n_gpu_layers: int = opt(0, "Layers to offload to the GPU (-1 = all; needs a CUDA/Metal build).")
    n_threads: int | None = opt(None, "CPU threads for llama.cpp. Default: the physical cores minus those busy with "
                                      "other processes when the model loads, at least 1 (llama.cpp's threads "
                                      "spin-wait: one busy core stalls every decode).", min=1, resumable=False)
    n_batch: int = opt(512, "Tokens per llama.cpp decode call.", min=8)
    flash_attn: bool = opt(False, "Flash attention (faster on GPU; moves scores by ~0.1 nats).", flag=True)
    kv_type: str = opt("f16", "KV-cache type: f16, f32 (twice the memory) or q8_0 (half; for 8B models on small GPUs; "
                              "moves scores).", choices=KV_TYPES)
    fan: int = opt(1, "Queries decoded together, as sequences of one llama_decode, when many follow one prefix (the "
                      "rest of a run predicted after its core). 1 = one at a time, bit-identical to a from-scratch "
                      "decode. More (e.g. 16, for GPUs: benchmarks/gpu_check.sh measures it) moves log-odds, by up to "
                      "0.6 nats measured, and was no faster on 2 CPU cores (0.98x, benchmarks/README.md).",
                   min=1, resumable=False)


@dataclass(frozen=True)
class Batching:
    """What is searched and what is predicted (--core), and how --core all cuts data into batches (batches.py)."""

    batch_size: int | None = opt(None, "At most this many examples per searched batch (the core too). Default: as "
                                       "many as fit --n-ctx. With --core all, data that does not fit one context is "
                                       "labeled batch after batch; batches are balanced and never split a consistency "
                                       "group.", min=1)
    carry: int = opt(8, "With --core all: labeled examples of the first batch placed first in every context of each "
                        "later batch, as fixed demonstrations (they keep True meaning the same thing across batches).",
                     min=0)
    core: str = opt("auto", "Search a core of this many examples (whole consistency groups drawn evenly across the "
                            "file), then label every other example by prediction with all the core's labels in "
                            "context. auto = as many as fit one context (all of them when the data fits one, the "
                            "same run as before); all = search every example, batch after batch.")

    def __post_init__(self) -> None:
        core_size(self.core)


def core_size(core: str) -> int | None:
    """--core as a number of examples: None for auto (what fits one context); 0 for all (no core: batch by batch).

    Example: core_size("auto") -> None; core_size("all") -> 0; core_size("200") -> 200
    """
    if core == "auto":
        return None
    if core == "all":
        return 0
    if not core.isdigit() or int(core) < 1:
        raise UserError(f"--core must be auto, all or a number of examples, not {core!r}")
    return int(core)
