"""A labeling job: dataset + model + search config -> a run directory. The glue between the pure parts.

`LabelJob` checks that the whole dataset fits one context (never truncates), drives the search, saves
state and labels atomically after every accepted change, appends every event to the log, and finally
writes the summary. Gold labels enter only `evaluate()`, which compares finished labels with them;
the search and the scorer are built from `dataset.examples` alone.

Example: LabelJob(dataset, backend, SearchConfig(), RunDir.create("runs/x")).run()
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from .errors import DataError
from .data import Dataset
from .rundir import RunDir
from .scoring import Scorer
from .search import Event, Search, SearchConfig


@dataclass(frozen=True)
class ModelOptions:
    n_ctx: int = 8192
    n_gpu_layers: int = 0
    n_threads: int | None = None
    n_batch: int = 512
    flash_attn: bool = False


def open_backend(model_path, opts: ModelOptions, seed: int = 0):
    from .backend import LlamaBackend  # heavy import only when a model is really needed

    return LlamaBackend(str(model_path), n_ctx=opts.n_ctx, n_gpu_layers=opts.n_gpu_layers, n_threads=opts.n_threads,
                        n_batch=opts.n_batch, flash_attn=opts.flash_attn, seed=seed)


def check_fits(dataset: Dataset, backend) -> int:
    """Tokens of the largest context the search can build (all examples labeled + one query)."""
    n_ctx = backend.n_ctx
    worst = 0
    for i, ex in enumerate(dataset.examples):
        single = backend.context_length([(i, True)])
        if single > n_ctx:
            raise DataError(f"example {ex.id!r} alone takes {single} tokens, more than n_ctx={n_ctx}; raise --n-ctx or shorten it")
        worst += max(backend.length((i, True)), backend.length((i, False)))
    worst += len(backend.prefix) + max(backend.length((i, None)) for i in range(len(dataset.examples)))
    if worst > n_ctx:
        raise DataError(f"{dataset.source}: all {len(dataset)} examples in one context need up to {worst} tokens, "
                        f"more than n_ctx={n_ctx}; raise --n-ctx or label fewer examples")
    return worst


def agreement(labels: Sequence[bool | None], gold: Sequence[bool | None] | None) -> tuple[float, int] | None:
    """Fraction of labeled examples (with a gold label) whose ICM label equals gold. Evaluation only."""
    if gold is None:
        return None
    pairs = [(y, g) for y, g in zip(labels, gold) if y is not None and g is not None]
    if not pairs:
        return None
    return sum(y == g for y, g in pairs) / len(pairs), len(pairs)


def zero_shot(scorer: Scorer, n: int) -> list[bool]:
    """Each example's prediction with no demonstrations at all."""
    empty = [None] * n
    return [scorer.predict(i, empty) > 0 for i in range(n)]


class LabelJob:
    def __init__(self, dataset: Dataset, backend, config: SearchConfig, run_dir: RunDir):
        self.dataset = dataset
        self.backend = backend
        self.config = config
        self.run_dir = run_dir
        self.scorer = Scorer(backend, dataset.examples)
        self.search = Search(dataset.examples, self.scorer, dataset.task.relation, config)
        self.ids = [ex.id for ex in dataset.examples]

    def _save(self) -> None:
        st = self.search.state
        self.run_dir.save_state(self.search.snapshot())
        self.run_dir.write_labels(self.ids, st.labels, st.scores)

    def run(self, on_event: Callable[[Event], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> dict:
        t0 = time.perf_counter()

        def handle(ev: Event) -> None:
            self.run_dir.append_event(ev.to_dict())
            if ev.kind in ("seed", "accept", "done"):
                self._save()
            if on_event:
                on_event(ev)

        try:
            state = self.search.run(handle, should_stop)
        finally:
            self.run_dir.close()
        labels = state.labels
        labeled = [y for y in labels if y is not None]
        summary = {
            "examples": len(labels), "labeled": len(labeled), "true": sum(labeled),
            "false": len(labeled) - sum(labeled), "U": state.U, "P": state.P, "inconsistencies": state.I,
            "iterations": state.iteration, "accepted": state.n_accepted,
            "finished": state.iteration >= self.config.iterations,
            "tokens_evaluated": self.backend.tokens_evaluated, "seconds": round(time.perf_counter() - t0, 2),
        }
        self.run_dir.write_json("summary.json", summary)
        return summary

    def evaluate(self) -> dict:
        """Agreement with gold and the zero-shot baseline (evaluation only; needs gold labels)."""
        gold = self.dataset.gold
        out = {}
        agr = agreement(self.search.state.labels, gold)
        if agr is not None:
            out["agreement"], out["agreement_n"] = agr
            zs = zero_shot(self.scorer, len(self.dataset))
            out["zero_shot_accuracy"], out["zero_shot_n"] = agreement(zs, gold)
        return out


def config_record(dataset: Dataset, data_sha256: str, model_name: str, model_path: str, opts: ModelOptions,
                  config: SearchConfig) -> dict:
    from . import __version__

    return {"icm_lite": __version__, "data": dataset.source, "data_sha256": data_sha256,
            "task": dataset.task.to_dict(), "model": model_name, "model_path": model_path,
            "model_options": asdict(opts), "search": asdict(config)}
