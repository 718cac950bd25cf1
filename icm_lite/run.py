"""A labeling job: a RunConfig and a backend -> a run directory. The glue between the pure parts.

`start(config, out)` checks the run directory, loads the data and the model, cuts the batches and writes
config.json; `resume(run_dir)` reopens one exactly where it stopped. Both return a `Job`; `Job.run()` labels the
batches and returns the summary (written once, to summary.json). A backend can be injected (tests, benchmarks,
Ray workers); otherwise the llama.cpp backend is opened from the config's model options.

Batches: the first batch is labeled first; its most confident labels become the carried demonstrations of every
later batch (batches.py), so batches 2..B depend on batch 1 only and may run in any order or in parallel
(`executor`: local by default, a Ray cluster with distributed.py) with the same labels. A batch's search runs as a
stream of events (search.Search.events); after each one the job saves state.json (fsynced at seed, accept and
done; labels.jsonl whenever labels change) and appends it to events.jsonl. The search is deterministic given its
snapshot, so iterations lost to a kill are redone identically. When a batch's search ends, the examples it left
unlabeled get the model's prediction with the batch's labels as demonstrations (`source: "prediction"` in
labels.jsonl; searched labels are `"search"`).

After every event the caller gets a `Progress` (the event plus run-level numbers) to render. Gold labels enter
only here, as `Progress.gold` and in `evaluate()`, for display and reports: the searches and scorers are built
from `dataset.examples` alone.

Example: job = start(RunConfig(data="d.jsonl", task=Task.builtin("claim")), "runs/x"); job.run()
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Collection, Sequence

from .backend import STATS, Backend
from .batches import BatchView, choose_carried, choose_core, plan_batches, units
from .config import RunConfig
from .consistency import Consistency
from .data import Dataset, absolute, file_sha256, load_dataset
from .errors import DataError, RunError
from .options import Batching, ModelOptions, core_size
from .rundir import RunDir
from .saved import check_data, load_config
from .plan import Node
from .scoring import Scorer, predict_after
from .search import Event, Search, SearchConfig, budget

STATE_VERSION = 3
REST_CHUNK = 64  # examples of the rest predicted per plan (whole groups); the state is saved after each


def open_backend(model_path, opts: ModelOptions) -> Backend:
    """The one door to a backend, for the command line, eval and Ray workers alike: llama.cpp for a .gguf file, the
    prompt-hashing fake for `--model fake` (models.FAKE)."""
    from .models import FAKE

    if str(model_path) == FAKE:
        from .fake import PromptFake

        return PromptFake(opts.n_ctx)
    from .llama import LlamaBackend  # heavy import only when a model is really needed

    return LlamaBackend(str(model_path), opts)


def _lengths(dataset: Dataset, backend: Backend) -> tuple[list[int], list[int]]:
    """Tokens of every example as a demonstration (its longer label) and as a query."""
    n = len(dataset.examples)
    demo = [max(backend.length((i, True)), backend.length((i, False))) for i in range(n)]
    return demo, [backend.length((i, None)) for i in range(n)]


def plan_for(dataset: Dataset, backend: Backend, n_ctx: int, batch_size: int | None = None,
             carry: int = 8) -> tuple[list[list[int]], int]:
    """Batches that fit n_ctx with this backend's tokens (see batches.plan_batches) and the carried count."""
    demo, query = _lengths(dataset, backend)
    return plan_batches(dataset.examples, demo, query, n_ctx, backend.prefix_length, batch_size, carry)


def pin_indices(dataset: Dataset, pins: Sequence[tuple[str, bool]] | None) -> dict[int, bool]:
    """--pin's (id, label) pairs by dataset index; an id the data does not have is a RunError."""
    where = {ex.id: i for i, ex in enumerate(dataset.examples)}
    unknown = [ex_id for ex_id, _ in (pins or ()) if ex_id not in where]
    if unknown:
        raise RunError(f"--pin names {len(unknown)} id(s) that are not in {dataset.source}: "
                       f"{', '.join(map(repr, unknown[:5]))}")
    return {where[ex_id]: y for ex_id, y in (pins or ())}


def plan_core(dataset: Dataset, backend: Backend, n_ctx: int, batching: Batching,
              pinned: Collection[int] = ()) -> tuple[list[list[int]], int, list[int]]:
    """What a run searches and what it predicts: (batches, carried, rest). With --core auto or N, a data set that does
    not fit one context (or is larger than N or --batch-size) is one searched core (batches.choose_core; the pinned
    examples' groups first) and a rest predicted from it; otherwise it is the batches of plan_for and no rest
    (--core all: always)."""
    n = len(dataset.examples)
    batches, carried = plan_for(dataset, backend, n_ctx, batching.batch_size, batching.carry)
    size = core_size(batching.core)
    limit = min(x for x in (size, batching.batch_size, n) if x)
    if size == 0 or (len(batches) == 1 and limit >= n):
        return batches, carried, []
    demo, query = _lengths(dataset, backend)
    core = choose_core(dataset.examples, demo, query, n_ctx, backend.prefix_length, limit, first=pinned)
    chosen = set(core)
    return [core], 0, [i for i in range(n) if i not in chosen]


def agreement(labels: Sequence[bool | None], gold: Sequence[bool | None] | None,
              pinned: Collection[int] = ()) -> tuple[float, int] | None:
    """Fraction of labeled examples (with a gold label) whose ICM label equals gold, pinned ones left out (a person
    gave them). Evaluation only."""
    if gold is None:
        return None
    pairs = [(y, g) for i, (y, g) in enumerate(zip(labels, gold)) if y is not None and g is not None and i not in pinned]
    if not pairs:
        return None
    return sum(y == g for y, g in pairs) / len(pairs), len(pairs)


def batch_seed(seed: int, batch: int) -> int:
    """Batch 0 uses the run's seed (a one-batch run is the plain search); later batches their own stream."""
    return seed + batch * 1_000_003


def batch_scorer(dataset: Dataset, backend: Backend, config: SearchConfig, index: Sequence[int], batch: int,
                 carried: Sequence = ()) -> tuple[list, Scorer]:
    """One batch's examples and scorer: local indices 0..m-1, carried demonstrations first, the batch's layout
    (its seed and the run's --order and --tail). The one way a batch is scored: its search, and eval's U gap."""
    examples = [dataset.examples[i] for i in index]
    view = backend
    if carried or list(index) != list(range(len(dataset.examples))):
        view = BatchView(backend, index, carried)
    return examples, Scorer(view, examples, config.order, batch_seed(config.seed, batch), config.tail)


def batch_search(dataset: Dataset, backend: Backend, config: SearchConfig, index: Sequence[int], batch: int,
                 carried: Sequence = (), pinned: dict[int, bool] | None = None) -> Search:
    """The search of one batch (the same on the driver and on a worker): local indices, carried demos first.
    pinned: labels a person fixed (--pin), by dataset index."""
    examples, scorer = batch_scorer(dataset, backend, config, index, batch, carried)
    local = {k: pinned[i] for k, i in enumerate(index) if i in pinned} if pinned else None
    return Search(examples, scorer, dataset.task.relation, replace(config, seed=batch_seed(config.seed, batch)),
                  ranked_seeds=bool(carried), pinned=local)


def fill(search: Search) -> dict[int, tuple[bool, float]]:
    """Predictions for the examples a finished search left unlabeled, with all its labels as demonstrations."""
    st = search.state
    rest = [i for i, y in enumerate(st.labels) if y is None]
    if not rest or all(y is None for y in st.labels):
        return {}
    scores = search.scorer.predict_many(rest, st.labels)
    return {i: (scores[i] > 0, scores[i]) for i in rest}


def batch_row(search: Search, batch: int, size: int, carried: int) -> dict:
    st = search.state
    return {"batch": batch, "examples": size, "carried": carried, "U": st.U, "P": st.P, "inconsistencies": st.I,
            "iterations": st.iteration, "accepted": st.n_accepted, "labeled": sum(y is not None for y in st.labels),
            "stop": st.stopped or "iterations"}


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
    batch_iterations: int = 0  # this batch's iteration budget
    predicted: int = 0  # examples of the rest (--core) predicted so far
    rest: int = 0  # examples of the rest in all


class Job:
    def __init__(self, config: RunConfig, dataset: Dataset, backend: Backend, run_dir: RunDir):
        n = len(dataset.examples)
        self.config = config
        self.dataset = dataset
        self.backend = backend
        self.run_dir = run_dir
        self.batches = [list(b) for b in (config.batches or [range(n)])]
        self.rest = list(config.rest or ())  # predicted from the core (batch 0) once it is searched
        self.pinned = pin_indices(dataset, config.pins)  # --pin, by dataset index
        if sorted([i for b in self.batches for i in b] + self.rest) != list(range(n)):
            raise RunError("the batches and the rest do not cover every example exactly once")
        self.carry = config.carried if config.carried is not None else config.batching.carry
        self.ids = [ex.id for ex in dataset.examples]
        self.labels: list[bool | None] = [None] * n  # searched labels, dataset-wide
        self.scores: dict[int, float] = {}
        self.predicted: dict[int, tuple[bool, float]] = {}  # filled after a batch's search
        self.results: dict[int, dict] = {}  # batch -> its row, for finished batches
        self.carried: list[tuple[int, bool]] | None = None  # from the first batch, once it is finished
        self.current: tuple[int, Search] | None = None  # the batch being searched here
        self._stats_base = dict.fromkeys(STATS, 0)
        self._seconds_base = 0.0
        self._t0: float | None = None

    @property
    def done(self) -> bool:
        return len(self.results) == len(self.batches) and not self.rest_todo()

    def rest_todo(self) -> list[int]:
        return [i for i in self.rest if i not in self.predicted and i not in self.pinned]

    def pending(self) -> list[int]:
        return [b for b in range(len(self.batches)) if b not in self.results]

    def carried_for(self, b: int) -> list[tuple[int, bool]]:
        return [] if b == 0 else list(self.carried or [])

    def iterations_done(self) -> int:
        cur = self.current[1].state.iteration if self.current and self.current[0] not in self.results else 0
        return sum(r["iterations"] for r in self.results.values()) + cur

    def iterations_max(self) -> int:
        """The iteration budget of every batch together (each may end earlier with --patience)."""
        return sum(budget(self.config.search, len(b)) for b in self.batches)

    def stats(self) -> dict:
        now = self.backend.stats()
        return {k: self._stats_base[k] + now.get(k, 0) for k in STATS}

    def seconds(self) -> float:
        return self._seconds_base + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    # --- saving and resuming ------------------------------------------------------------------------
    def _state(self) -> dict:
        cur = None
        if self.current is not None and self.current[0] not in self.results:
            cur = {"batch": self.current[0], "search": self.current[1].snapshot()}
        return {"version": STATE_VERSION, "labels": self.labels, "scores": {str(k): v for k, v in self.scores.items()},
                "predicted": {str(k): list(v) for k, v in self.predicted.items()},
                "results": {str(b): r for b, r in self.results.items()},
                "carried": None if self.carried is None else [list(c) for c in self.carried], "current": cur,
                "iteration": self.iterations_done(), "done": self.done, "events_bytes": self.run_dir.events_size(),
                "stats": self.stats(), "seconds": self.seconds()}

    def save(self, sync: bool = True, labels: bool = True) -> None:
        self.run_dir.save_state(self._state(), sync=sync)
        if labels or not (self.run_dir.path / "labels.jsonl").exists():  # a stopped run always has one
            self.run_dir.write_labels(self.ids, self.labels, self.scores, self.predicted, self.pinned)

    def restore(self) -> None:
        """Continue from the run directory's state.json (the job must be built from the saved config)."""
        f = self.run_dir.path / "state.json"
        if not f.exists():  # stopped before the first event was saved: start over, with an empty log
            self.run_dir.truncate_events(0)
            return
        st = self.run_dir.read_json("state.json")
        try:
            if st.get("version") != STATE_VERSION:
                raise RunError(f"{f} has state version {st.get('version')!r}; this icm-lite reads version {STATE_VERSION}")
            if len(st["labels"]) != len(self.labels):
                raise RunError(f"{f} does not match the data ({len(st['labels'])} labels for {len(self.labels)} examples)")
            self.labels = list(st["labels"])
            self.scores = {int(k): v for k, v in st["scores"].items()}
            self.predicted = {int(k): (bool(v[0]), float(v[1])) for k, v in st["predicted"].items()}
            self.results = {int(b): r for b, r in st["results"].items()}
            self.carried = None if st["carried"] is None else [(int(i), bool(y)) for i, y in st["carried"]]
            cur = st["current"]
            if cur is not None:
                b = int(cur["batch"])
                search = batch_search(self.dataset, self.backend, self.config.search, self.batches[b], b,
                                      self.carried_for(b), self.pinned)
                search.restore(cur["search"])
                self.current = (b, search)
            self._stats_base = {k: st["stats"].get(k, 0) for k in STATS}
            self._seconds_base = st.get("seconds", 0.0)
            events_bytes = st["events_bytes"]
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise RunError(f"{f} is damaged or from another version ({type(e).__name__}: {e})") from None
        self.run_dir.truncate_events(events_bytes)
        self.run_dir.write_labels(self.ids, self.labels, self.scores, self.predicted, self.pinned)  # a kill may have come between

    # --- recording what a batch did -------------------------------------------------------------------
    def _event_record(self, b: int, ev: Event) -> dict:
        record = ev.to_dict()
        record["batch"] = b
        if ev.example is not None:
            record["example"] = self.batches[b][ev.example]
            record["id"] = self.ids[record["example"]]
        return record

    def _merge(self, b: int, labels: Sequence, scores: dict[int, float]) -> None:
        idx = self.batches[b]
        for k, y in enumerate(labels):
            self.labels[idx[k]] = y
            self.scores.pop(idx[k], None)
        for k, s in scores.items():
            self.scores[idx[k]] = s

    def _finish(self, b: int, row: dict, predicted: dict[int, tuple[bool, float]]) -> None:
        idx = self.batches[b]
        for k, v in predicted.items():
            self.predicted[idx[k]] = v
        self.results[b] = row
        if b == 0:
            self.carried = choose_carried([y if i in set(idx) else None for i, y in enumerate(self.labels)],
                                          self.scores, self.carry) if len(self.batches) > 1 else []

    def record_batch(self, b: int, result: dict) -> None:
        """Take a whole batch labeled elsewhere (a Ray worker): its events, labels and predictions, one save."""
        for ev in result["events"]:
            record = dict(ev, batch=b)
            if ev.get("example") is not None:
                record["example"] = self.batches[b][ev["example"]]
                record["id"] = self.ids[record["example"]]
            self.run_dir.append_event(record)
        self._merge(b, result["labels"], {int(k): v for k, v in result["scores"].items()})
        self._finish(b, result["row"], {int(k): tuple(v) for k, v in result["predicted"].items()})
        for k in STATS:
            self._stats_base[k] += result["stats"].get(k, 0)
        self.save(sync=True, labels=True)

    # --- running ----------------------------------------------------------------------------------------
    def progress(self, b: int, ev: Event) -> Progress:
        """The event of batch b with what the run knows around it (what a UI renders)."""
        idx = self.batches[b]
        g = None if ev.example is None else idx[ev.example]
        labeled = [y for y in self.labels if y is not None]
        c = self.config.search
        return Progress(event=ev, example=g, example_id=None if g is None else self.ids[g], batch=b,
                        n_batches=len(self.batches), batch_examples=len(idx), carried=len(self.carried_for(b)),
                        iterations_done=self.iterations_done(), iterations_total=self.iterations_max(),
                        examples=len(self.labels), labeled=len(labeled), true=sum(labeled), alpha=c.alpha,
                        stats=self.stats(), gold=agreement(self.labels, self.dataset.gold, self.pinned),
                        batch_iterations=budget(c, len(idx)), predicted=len(self.rest) - len(self.rest_todo()),
                        rest=len(self.rest))

    def run_batch(self, b: int, on_event: Callable[[Progress], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> bool:
        """Search batch b here, saving after every event. True when the batch finished, False when stopped."""
        if self.current is None or self.current[0] != b:
            self.current = (b, batch_search(self.dataset, self.backend, self.config.search, self.batches[b], b,
                                            self.carried_for(b), self.pinned))
        search = self.current[1]
        for ev in search.events(should_stop):
            if search.state.started:  # the bootstrap passes' labels are tentative until their seed event
                self._merge(b, search.state.labels, search.state.scores)
            self.run_dir.append_event(self._event_record(b, ev))
            progress = self.progress(b, ev) if on_event else None
            if ev.kind == "done":  # finished and saved together with this event: a kill redoes both or neither
                self._finish(b, batch_row(search, b, len(self.batches[b]), len(self.carried_for(b))), fill(search))
            self.save(sync=ev.kind not in ("skip", "reject"), labels=ev.kind in ("seed", "accept", "done"))
            if on_event:
                on_event(progress)
            if ev.kind == "done":
                return True
        return False

    def run(self, on_event: Callable[[Progress], None] | None = None, should_stop: Callable[[], bool] | None = None,
            executor=None) -> dict:
        """Label every pending batch (the first one here, the rest with `executor`, default here too) until done or
        `should_stop()`; returns the summary, also written to summary.json."""
        self._t0 = time.perf_counter()
        try:
            for b in self.pending():
                partial = self.current is not None and self.current[0] == b  # a resumed batch ends where it began
                if b > 0 and executor is not None and not partial:
                    executor.run(self, self.pending(), on_event, should_stop)
                    break
                if not self.run_batch(b, on_event, should_stop):
                    break
            if not self.pending():
                self.predict_rest(on_event, should_stop)
        finally:
            self.run_dir.close()
        summary = self.summary()
        if self.done:
            summary.update(self.evaluate())
        self.run_dir.write_json("summary.json", summary)
        return summary

    def predict_rest(self, on_event: Callable[[Progress], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> bool:
        """Label the rest (--core) by prediction: every example after all of the core's searched labels, in canonical
        order (groups together, file order): one fixed prefix, evaluated once, then each query (llama.py decodes many
        queries after a prefix in one call). Each group is decoded consistently (Consistency.decode). Chunks of
        REST_CHUNK examples, saved after each: a stopped run resumes at the next chunk. True when all are done."""
        todo = self.rest_todo()
        if not todo:
            return True
        core = set(self.batches[0])
        for i in self.rest:
            if i in self.pinned:
                self.labels[i] = self.pinned[i]  # a person's label: shown to the rest like the core's
        demos = [(i, self.labels[i]) for u in units(self.dataset.examples) for i in u
                 if (i in core or i in self.pinned) and self.labels[i] is not None]
        cons = Consistency(self.dataset.examples, self.dataset.task.relation)
        last = self.results[0]
        for chunk in _chunks(self.dataset.examples, todo, REST_CHUNK):
            if should_stop is not None and should_stop():
                return False
            scores = predict_after(self.backend, demos, chunk)
            decoded = cons.decode(scores)
            for i in chunk:
                self.predicted[i] = (decoded[i], scores[i])
            labeled = [y for y in self.labels if y is not None]
            ev = Event("predict", last["iterations"], 0.0, last["U"], last["P"], last["inconsistencies"],
                       len(labeled), sum(labeled), tokens=self.backend.tokens_evaluated,
                       predicted=len(self.rest) - len(self.rest_todo()))
            self.run_dir.append_event(self._event_record(0, ev))
            self.save(sync=True, labels=True)
            if on_event:
                on_event(self.progress(0, ev))
        return True

    def summary(self) -> dict:
        rows = [self.results[b] for b in sorted(self.results)]
        if self.current is not None and self.current[0] not in self.results:
            b, s = self.current
            rows.append(batch_row(s, b, len(self.batches[b]), len(self.carried_for(b))))
        labeled = [y for i, y in enumerate(self.labels) if y is not None and i not in self.pinned]
        mean = (lambda key: sum(r[key] for r in rows) / len(rows)) if rows else (lambda key: 0.0)
        stats = self.stats()
        out = {
            "examples": len(self.labels), "labeled": len(labeled), "true": sum(labeled),
            "false": len(labeled) - sum(labeled), "predicted": len(self.predicted),
            "U": mean("U"), "P": mean("P"), "inconsistencies": sum(r["inconsistencies"] for r in rows),
            "iterations": self.iterations_done(), "iterations_max": self.iterations_max(),
            "accepted": sum(r["accepted"] for r in rows), "finished": self.done, "batches": len(self.batches),
            "stop": sorted({r["stop"] for r in rows if r["batch"] in self.results}),
            "tokens_evaluated": stats["tokens_evaluated"], "seconds": round(self.seconds(), 2),
        }
        if len(self.batches) > 1:
            out["per_batch"] = rows
        if self.rest:
            out["core"], out["rest"] = len(self.batches[0]), len(self.rest)
        if self.pinned:
            out["pinned"] = len(self.pinned)
        return out

    def evaluate(self) -> dict:
        """Agreement with gold and the zero-shot baseline on the searched examples (evaluation only; needs gold)."""
        gold = self.dataset.gold
        agr = agreement(self.labels, gold, self.pinned)
        if agr is None:
            return {}
        out = {"agreement": agr[0], "agreement_n": agr[1]}
        filled = list(self.labels)
        for i, (y, _) in self.predicted.items():
            filled[i] = y
        if self.predicted:
            out["agreement_with_predicted"], out["agreement_with_predicted_n"] = agreement(filled, gold, self.pinned)
            only = agreement([filled[i] if i in self.predicted else None for i in range(len(filled))], gold)
            if only is not None:
                out["agreement_predicted"], out["agreement_predicted_n"] = only
        searched = [i for b in self.batches for i in b if i not in self.pinned]  # the core's, not the rest's
        zs = self.backend.run(Node((), [Node(((i, None),), [], (i,)) for i in searched]))
        out["zero_shot_accuracy"], out["zero_shot_n"] = agreement(
            [zs[i] > 0 if i in zs else None for i in range(len(self.dataset))], gold)
        return out


# --- starting and resuming ------------------------------------------------------------------------------
def start(config: RunConfig, out: str | Path, *, force: bool = False, backend: Backend | None = None,
          announce: Callable[[str], None] = lambda s: None) -> Job:
    """A new run: check the run directory, load data and model, cut batches, write config.json."""
    from .models import resolve_model

    RunDir.check_new(out, force)  # before the model loads, not after
    data = absolute(config.data)
    dataset = load_dataset(data, config.task)
    pinned = pin_indices(dataset, config.pins)
    ref = resolve_model(config.model)
    config = replace(config, data=str(data), data_sha256=file_sha256(data), model_name=ref.name, model_path=str(ref.path))
    if backend is None:
        announce(f"loading {ref.name} ({ref.path})")
        backend = open_backend(ref.path, config.model_options)
    backend.prepare(dataset.examples, config.task.label_words)
    batches, carried, rest = plan_core(dataset, backend, config.model_options.n_ctx, config.batching, pinned)
    config = replace(config, batches=tuple(tuple(b) for b in batches), carried=carried, rest=tuple(rest))
    run_dir = RunDir.create(out, force=force)
    run_dir.write_json("config.json", config.to_json())
    return Job(config, dataset, backend, run_dir)


def resume(path: str | Path, given: dict | None = None, *, data: str | Path | None = None,
           backend: Backend | None = None, announce: Callable[[str], None] = lambda s: None) -> Job:
    """Reopen a run directory where it stopped. given: options from the command line (by name), which must equal
    the saved ones; data: the data file's new place if it moved (its sha256 must match)."""
    from .models import resolve_model

    run_dir = RunDir.open(path, lock=True)
    try:
        config = load_config(run_dir)
        given = dict(given or {})
        diffs = config.conflicts({k: v for k, v in given.items() if k not in ("task", "model")})
        if "task" in given and given["task"].to_dict() != config.task.to_dict():
            diffs.append(f"--task {given['task'].name} (saved: {config.task.name})")
        if "model" in given and str(resolve_model(given["model"]).path) != config.model_path:
            diffs.append(f"--model {given['model']} (saved: {config.model_name})")
        if diffs:
            raise RunError(f"cannot resume {path}: {', '.join(diffs)}; leave out what differs to use the saved values")
        config = config.with_options(**{k: v for k, v in given.items() if k not in ("task", "model")})
        try:
            src = check_data(config, run_dir.path, data, moved="pass DATA if it moved",
                             changed="restore it or start a new run")
        except DataError as e:
            raise RunError(f"cannot resume {path}: {e}") from None
        dataset = load_dataset(src, config.task)
        if backend is None:
            ref = resolve_model(config.model_path)
            announce(f"loading {config.model_name} ({ref.path})")
            backend = open_backend(ref.path, config.model_options)
        backend.prepare(dataset.examples, config.task.label_words)
        job = Job(config, dataset, backend, run_dir)
        job.restore()
        return job
    except BaseException:
        run_dir.close()
        raise


class StopSignals:
    """Ctrl-C and SIGTERM ask the job to stop after the current step (`should_stop`); a second Ctrl-C stops at once.
    Every accepted state is on disk either way. `signum` is the first signal received (None if none)."""

    def __init__(self):
        self.received: list[int] = []
        self._previous: dict = {}

    @property
    def signum(self) -> int | None:
        return self.received[0] if self.received else None

    def should_stop(self) -> bool:
        return bool(self.received)

    def _handle(self, signum, frame):
        if self.received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received.append(signum)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        for s, h in self._previous.items():
            if h is not None:
                signal.signal(s, h)
        if exc_type is KeyboardInterrupt:
            self.received.append(signal.SIGINT)
            return True
        return False



def _chunks(examples, todo: Sequence[int], size: int) -> list[list[int]]:
    """`todo` in chunks of about `size` examples, whole consistency groups per chunk, in file order."""
    wanted = set(todo)
    out: list[list[int]] = [[]]
    for u in units(examples):
        members = [i for i in u if i in wanted]
        if not members:
            continue
        if out[-1] and len(out[-1]) + len(members) > size:
            out.append([])
        out[-1].extend(members)
    return [c for c in out if c]
