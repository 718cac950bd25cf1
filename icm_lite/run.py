"""A labeling job: dataset + model + search config -> a run directory. The glue between the pure parts.

`LabelJob` labels the batches of `batches.plan_batches` one after the other (one search per batch, each new
batch with carried demonstrations of the earlier ones), saves the state after every event (fsynced at seed,
accept and done; labels.jsonl whenever labels change), appends every event to the log, and writes the summary.
`LabelJob.resume` restores a run directory's state so that the run continues exactly where it stopped: the
search is deterministic given its snapshot (labels, scores, iteration, n_accepted, RNG state), so iterations
lost to a kill are redone identically.

After every event the caller gets a `Progress` (the event plus run-level numbers) to render. Gold labels enter
only here, as `Progress.gold` and in `evaluate()`, for display and reports: the search and the scorer are built
from `dataset.examples` alone.

Example: LabelJob(dataset, backend, SearchConfig(), RunDir.create("runs/x")).run()
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

from .batches import BatchView, choose_carried, plan_batches
from .data import Dataset
from .errors import RunError
from .rundir import RunDir
from .scoring import Scorer
from .search import Event, Search, SearchConfig

STATE_VERSION = 1
_STATS = ("tokens_evaluated", "tokens_reused", "naive_tokens", "decode_seconds")


@dataclass(frozen=True)
class ModelOptions:
    n_ctx: int = 8192
    n_gpu_layers: int = 0
    n_threads: int | None = None
    n_batch: int = 512
    flash_attn: bool = False


def open_backend(model_path, opts: ModelOptions):
    from .backend import LlamaBackend  # heavy import only when a model is really needed

    return LlamaBackend(str(model_path), n_ctx=opts.n_ctx, n_gpu_layers=opts.n_gpu_layers, n_threads=opts.n_threads,
                        n_batch=opts.n_batch, flash_attn=opts.flash_attn)


def plan_for(dataset: Dataset, backend, n_ctx: int, batch_size: int | None = None, carry: int = 8) -> tuple[list[list[int]], int]:
    """Batches that fit n_ctx with this backend's tokens (see batches.plan_batches) and the carried count."""
    n = len(dataset.examples)
    demo = [max(backend.length((i, True)), backend.length((i, False))) for i in range(n)]
    query = [backend.length((i, None)) for i in range(n)]
    return plan_batches(dataset.examples, demo, query, n_ctx, len(getattr(backend, "prefix", ())), batch_size, carry)


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


def batch_seed(seed: int, batch: int) -> int:
    """Batch 0 uses the run's seed (a one-batch run is the plain search); later batches their own stream."""
    return seed + batch * 1_000_003


@dataclass
class Progress:
    """One search event with what the run knows around it; what a UI renders. Gold is evaluation only."""

    event: Event  # as the search emitted it (its example index is local to the batch)
    example: int | None  # the proposed example's index in the dataset
    example_id: str | None
    batch: int  # 0-based
    n_batches: int
    batch_examples: int
    carried: int  # fixed demonstrations at the start of this batch's contexts
    iterations_done: int  # over all batches
    iterations_total: int
    examples: int
    labeled: int  # over the whole dataset
    true: int
    alpha: float
    stats: dict = field(default_factory=dict)  # backend counters, summed over resumes
    gold: tuple[float, int] | None = None  # agreement with gold labels: evaluation only, never seen by the search


class LabelJob:
    def __init__(self, dataset: Dataset, backend, config: SearchConfig, run_dir: RunDir,
                 batches: Sequence[Sequence[int]] | None = None, carry: int = 8):
        n = len(dataset.examples)
        self.dataset = dataset
        self.backend = backend
        self.config = config
        self.run_dir = run_dir
        self.batches = [list(b) for b in batches] if batches is not None else [list(range(n))]
        if sorted(i for b in self.batches for i in b) != list(range(n)):
            raise RunError("the batches do not cover every example exactly once")
        self.carry = carry
        self.scorer = Scorer(backend, dataset.examples)  # whole dataset, no demos: evaluate()'s zero-shot baseline
        self.ids = [ex.id for ex in dataset.examples]
        self.labels: list[bool | None] = [None] * n
        self.scores: dict[int, float] = {}
        self.results: list[dict] = []  # one per finished batch
        self.done = False
        self._stats_base = {k: 0 for k in _STATS}
        self._seconds_base = 0.0
        self._start(0, [])

    # --- batches -------------------------------------------------------------------------------------
    def _start(self, b: int, carried: list) -> None:
        self.batch, self.carried = b, [(int(i), bool(y)) for i, y in carried]
        idx = self.batches[b]
        view = self.backend
        if self.carried or idx != list(range(len(self.dataset.examples))):
            view = BatchView(self.backend, idx, self.carried)
        examples = [self.dataset.examples[i] for i in idx]
        self.search = Search(examples, Scorer(view, examples), self.dataset.task.relation,
                             replace(self.config, seed=batch_seed(self.config.seed, b)), ranked_seeds=bool(self.carried))

    def _merge(self) -> None:
        """Copy the current batch's labels and scores into the dataset-wide ones."""
        idx, st = self.batches[self.batch], self.search.state
        for k, y in enumerate(st.labels):
            self.labels[idx[k]] = y
            self.scores.pop(idx[k], None)
        for k, s in st.scores.items():
            self.scores[idx[k]] = s

    def _batch_row(self) -> dict:
        """The current batch's numbers, as `results` and the summary's per_batch list hold them."""
        st = self.search.state
        return {"batch": self.batch, "examples": len(self.batches[self.batch]), "carried": len(self.carried),
                "U": st.U, "P": st.P, "inconsistencies": st.I, "iterations": st.iteration, "accepted": st.n_accepted}

    def _finish_batch(self) -> None:
        self.results.append(self._batch_row())
        if self.batch + 1 < len(self.batches):
            self._start(self.batch + 1, choose_carried(self.labels, self.scores, self.carry))
        else:
            self.done = True

    def iterations_done(self) -> int:
        return sum(r["iterations"] for r in self.results) + (0 if self.done else self.search.state.iteration)

    def stats(self) -> dict:
        return {k: self._stats_base[k] + getattr(self.backend, k, 0) for k in _STATS}

    # --- saving and resuming ----------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"version": STATE_VERSION, "labels": self.labels, "scores": {str(k): v for k, v in self.scores.items()},
                "iteration": self.iterations_done(), "batch": self.batch, "done": self.done,
                "carried": [list(c) for c in self.carried], "results": self.results, "search": self.search.snapshot(),
                "events_bytes": self.run_dir.events_size(), "stats": self.stats(),
                "seconds": self._seconds_base + (time.perf_counter() - self._t0 if hasattr(self, "_t0") else 0.0)}

    def _save(self, sync: bool, labels: bool) -> None:
        self.run_dir.save_state(self._state(), sync=sync)
        if labels:
            self.run_dir.write_labels(self.ids, self.labels, self.scores)

    def resume(self) -> None:
        """Continue from the run directory's state.json (the job must be built like the saved run)."""
        f = self.run_dir.path / "state.json"
        if not f.exists():  # stopped before the first event was saved: start over, with an empty log
            self.run_dir.truncate_events(0)
            return
        st = self.run_dir.read_json("state.json")
        try:
            if st.get("version") != STATE_VERSION:
                raise RunError(f"{f} has state version {st.get('version')!r}; this icm-lite reads version {STATE_VERSION}")
            if len(st["labels"]) != len(self.labels) or not 0 <= st["batch"] < len(self.batches):
                raise RunError(f"{f} does not match the data ({len(st['labels'])} labels, batch {st['batch']}) ")
            self._start(st["batch"], st["carried"])
            self.search.restore(st["search"])
            self.labels = list(st["labels"])
            self.scores = {int(k): v for k, v in st["scores"].items()}
            self.results = list(st["results"])
            self.done = bool(st["done"])
            self._stats_base = {k: st["stats"].get(k, 0) for k in _STATS}
            self._seconds_base = st.get("seconds", 0.0)
            events_bytes = st["events_bytes"]
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise RunError(f"{f} is damaged or from another version ({type(e).__name__}: {e})") from None
        self.run_dir.truncate_events(events_bytes)
        self.run_dir.write_labels(self.ids, self.labels, self.scores)  # a kill may have come between state and labels

    # --- running ----------------------------------------------------------------------------------------
    def _progress(self, ev: Event) -> Progress:
        idx = self.batches[self.batch]
        g = None if ev.example is None else idx[ev.example]
        labeled = [y for y in self.labels if y is not None]
        return Progress(ev, g, None if g is None else self.ids[g], self.batch, len(self.batches), len(idx),
                        len(self.carried), self.iterations_done(), self.config.iterations * len(self.batches),
                        len(self.labels), len(labeled), sum(labeled), self.config.alpha, self.stats(),
                        agreement(self.labels, self.dataset.gold))

    def run(self, on_event: Callable[[Progress], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> dict:
        """Label batch after batch until done or `should_stop()`; returns the summary (also in summary.json)."""
        self._t0 = time.perf_counter()

        def handle(ev: Event) -> None:
            self._merge()
            idx = self.batches[self.batch]
            record = ev.to_dict()
            record["batch"] = self.batch
            if ev.example is not None:
                record["example"] = idx[ev.example]
                record["id"] = self.ids[idx[ev.example]]
            self.run_dir.append_event(record)
            progress = self._progress(ev) if on_event else None
            if ev.kind == "done" and self.search.state.iteration >= self.config.iterations:
                self._finish_batch()  # saved together with this event: a kill redoes both or neither
            self._save(sync=ev.kind != "skip" and ev.kind != "reject", labels=ev.kind in ("seed", "accept", "done"))
            if on_event:
                on_event(progress)

        try:
            while not self.done:
                before = self.batch
                self.search.run(handle, should_stop)
                if not self.done and self.batch == before:
                    break  # stopped before the batch was finished
        finally:
            self.run_dir.close()
        summary = self.summary()
        self.run_dir.write_json("summary.json", summary)
        return summary

    def summary(self) -> dict:
        rows = list(self.results)
        if not self.done and any(y is not None for y in self.search.state.labels):
            rows.append(self._batch_row())
        labeled = [y for y in self.labels if y is not None]
        mean = (lambda key: sum(r[key] for r in rows) / len(rows)) if rows else (lambda key: 0.0)
        stats = self.stats()
        out = {
            "examples": len(self.labels), "labeled": len(labeled), "true": sum(labeled),
            "false": len(labeled) - sum(labeled), "U": mean("U"), "P": mean("P"),
            "inconsistencies": sum(r["inconsistencies"] for r in rows), "iterations": self.iterations_done(),
            "iterations_total": self.config.iterations * len(self.batches),
            "accepted": sum(r["accepted"] for r in rows), "finished": self.done, "batches": len(self.batches),
            "tokens_evaluated": stats["tokens_evaluated"],
            "seconds": round(self._seconds_base + time.perf_counter() - getattr(self, "_t0", time.perf_counter()), 2),
        }
        if len(self.batches) > 1:
            out["per_batch"] = rows
        return out

    def evaluate(self) -> dict:
        """Agreement with gold and the zero-shot baseline (evaluation only; needs gold labels)."""
        gold = self.dataset.gold
        out = {}
        agr = agreement(self.labels, gold)
        if agr is not None:
            out["agreement"], out["agreement_n"] = agr
            zs = zero_shot(self.scorer, len(self.dataset))
            out["zero_shot_accuracy"], out["zero_shot_n"] = agreement(zs, gold)
        return out


def config_record(dataset: Dataset, data_sha256: str, model_name: str, model_path: str, opts: ModelOptions,
                  config: SearchConfig, batches: Sequence[Sequence[int]] | None = None, batch_size: int | None = None,
                  carry: int = 8, carried: int | None = None) -> dict:
    """What was run. carry: carried demonstrations asked for; carried: how many the batches leave room for."""
    from . import __version__

    return {"icm_lite": __version__, "data": dataset.source, "data_sha256": data_sha256,
            "task": dataset.task.to_dict(), "model": model_name, "model_path": model_path,
            "model_options": asdict(opts), "search": asdict(config), "batch_size": batch_size, "carry": carry,
            "carried": carry if carried is None else carried,
            "batches": [list(b) for b in batches] if batches is not None else [list(range(len(dataset)))]}


# Options of `icm-lite label` and where config.json keeps them: a resumed run takes them from there.
RESUMABLE = {
    "task": ("task",), "model": ("model_path",), "n_ctx": ("model_options", "n_ctx"),
    "n_gpu_layers": ("model_options", "n_gpu_layers"), "n_threads": ("model_options", "n_threads"),
    "n_batch": ("model_options", "n_batch"), "flash_attn": ("model_options", "flash_attn"),
    "iterations": ("search", "iterations"), "alpha": ("search", "alpha"), "t0": ("search", "t0"),
    "t_min": ("search", "t_min"), "schedule": ("search", "schedule"), "init_k": ("search", "init_k"),
    "fix_rounds": ("search", "fix_rounds"), "objective": ("search", "objective"), "seed": ("search", "seed"),
    "batch_size": ("batch_size",), "carry": ("carry",),
}


def saved_option(config: dict, name: str):
    node = config
    for key in RESUMABLE[name]:
        node = node[key]
    return node


def resume_conflicts(config: dict, given: dict) -> list[str]:
    """What the explicitly given options change compared with the saved config, as "--name VALUE (saved: X)".

    given: {option name: value as the saved config holds it}; options not given are not compared.
    Example: resume_conflicts(cfg, {"alpha": 50.0}) -> ["--alpha 50.0 (saved: 30.0)"]
    """
    out = []
    for name, value in given.items():
        try:
            saved = saved_option(config, name)
        except (KeyError, TypeError):
            saved = None
        if value != saved and not (isinstance(value, (int, float)) and isinstance(saved, (int, float))
                                   and not isinstance(value, bool) and float(value) == float(saved)):
            shown = value.get("name", value) if isinstance(value, dict) else value
            was = saved.get("name", saved) if isinstance(saved, dict) else saved
            out.append(f"--{name.replace('_', '-')} {shown} (saved: {was})")
    return out
