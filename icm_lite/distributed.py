"""Batches 2..B on a Ray cluster: one actor per worker, each holding its own copy of the model.

`RayExecutor` plugs into `run.Job.run(executor=...)`. The job labels the first batch here; the executor then hands
every pending batch, whole, to a Ray actor (`Worker`) that loaded the model once (a registry name or .gguf path
resolved on its own node, with the run's ModelOptions), prepared the dataset's examples once, and runs the batch's
search exactly as the job would (`run.batch_search`, `run.fill`, `run.batch_row`). Later batches depend on the
first one only (carried demonstrations), and a batch's search is deterministic given its inputs, so the labels do
not depend on how many workers there are or which one ran which batch.

  - The driver is the only writer of the run directory: a finished batch comes back whole and is saved by
    `Job.record_batch`; events.jsonl holds each batch's events together, batches in the order they finished.
  - A worker that dies mid-batch (killed, out of memory, node lost) is replaced by a new actor and its batch is
    redone from the start, identically; a batch interrupted on MAX_ATTEMPTS workers in a row stops the run.
  - Before its first batch every worker scores a fixed canary context; its log-odds must equal this process's
    (tolerance 0 on CPU; CANARY_TOLERANCE_GPU nats when --n-gpu-layers is not 0), else the run stops with one line.
  - Workers stream a few of their events while they search (at most 1 / STREAM_SECONDS), so the UI shows progress;
    every event reaches events.jsonl with the finished batch.

It has no scheduler of its own (a free worker takes the next batch in order; Ray places the actors and `ray.wait`
says which one moved), never splits a batch, and keeps no partial batch: one that was running when the driver
stopped is redone on resume. Only this module imports ray, lazily.

Example: job.run(on_event, executor=RayExecutor(workers=2)) -> batches 2..B on a local 2-worker Ray cluster
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from .backend import Backend
from .data import Dataset
from .errors import IcmError, InternalError, ModelError, RunError, UserError
from .errors import one_line as errors_one_line
from .options import ModelOptions, opt
from .plan import Node, trie
from .run import batch_row, batch_search, fill
from .search import Event, SearchConfig

RAY_MISSING = "--workers needs Ray: pip install 'icm-lite[ray]'"
CANARY_TOLERANCE_GPU = 0.05  # nats; GPU kernels change with batch size, and workers may be other GPU models
MAX_ATTEMPTS = 3  # a batch is tried on this many workers before the run stops; a worker started this many times
STREAM_SECONDS = 0.1


@dataclass(frozen=True)
class RayOptions:
    """Where batches run. None of these change the labels (resume may change them)."""

    workers: int | None = opt(None, "Label batches 2..B in parallel on this many Ray workers, each with its own copy "
                                    "of the model (batch 1 is labeled here first). Without --ray-address: a local "
                                    "Ray cluster. Same labels as without it.", min=1, resumable=False)
    ray_address: str | None = opt(None, "Join the Ray cluster at this address (e.g. auto, 10.0.0.1:6379) instead of "
                                        "starting one; --workers alone joins RAY_ADDRESS when it is set. Without "
                                        "--workers: one worker per node, or per GPU with --n-gpu-layers.",
                                  resumable=False)
    canary_tolerance: float | None = opt(None, "Largest difference in log-odds (nats) between a worker's and this "
                                               "process's score of the canary context. Default: 0 (exact) on CPU, "
                                               f"{CANARY_TOLERANCE_GPU} with --n-gpu-layers.", min=0.0,
                                         resumable=False)


def need_ray():
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


def one_line(e: BaseException) -> str:
    return errors_one_line(e, typed=True)


@dataclass(frozen=True)
class ModelSpec:
    """How a worker opens the run's model: a registry name (found in the node's own cache) or a .gguf path.

    Example: ModelSpec("smollm2", ModelOptions(n_threads=1))() -> a LlamaBackend
    """

    model: str
    options: ModelOptions

    def __call__(self) -> Backend:
        from .models import resolve_model
        from .run import open_backend

        return open_backend(resolve_model(self.model).path, self.options)


def model_spec(config) -> ModelSpec:
    """The run's model as workers open it: by registry name when it has one, else by path, with the run's model
    options. Without --n-threads each worker's backend follows the free cores of its node (llama.py), which counts
    the other workers on a shared machine as busy: a fixed share would spin beside any other load."""
    from .models import registry

    name = config.model_name if config.model_name in registry()["models"] else config.model_path
    return ModelSpec(name, config.model_options)


def canary_plan(job) -> Node:
    """A fixed context: the carried demonstrations, then the first example of the first and of the last batch as
    queries. It fits n_ctx (batches reserve room for the carried demonstrations and any query)."""
    demos = tuple(job.carried or ())
    queries = dict.fromkeys([job.batches[0][0], job.batches[-1][0]])
    return trie([(demos + ((q, None),), q) for q in queries])


def _check_reachable(address: str) -> None:
    """Fail in one line at once when a HOST:PORT address does not answer (ray.init retries for minutes)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # auto, ray://..., or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as e:
        raise UserError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}; is `ray start --head` "
                        "running there?") from None


class Worker:
    """A Ray actor (ray.remote(Worker)): one backend, loaded and prepared once, that labels one batch per call."""

    def __init__(self, factory: Callable[[], Backend], dataset: Dataset, search: SearchConfig):
        self.dataset, self.search, self.backend, self.error = dataset, search, None, None
        try:
            self.backend = factory()
            self.backend.prepare(dataset.examples, dataset.task.label_words)
        except Exception as e:  # reported by ready(): a worker that cannot load the model is refused, not retried
            self.error = one_line(e)

    def ready(self, canary: Node) -> dict:
        import ray

        info = {"pid": os.getpid(), "node": ray.util.get_node_ip_address(), "error": self.error, "canary": None}
        if self.error is None:
            try:
                info["canary"] = self.backend.run(canary)
            except Exception as e:
                info["error"] = one_line(e)
        return info

    def label(self, b: int, index: Sequence[int], carried: Sequence, pinned: dict | None = None):
        """Yields {"event": ...} now and then while searching, and {"result": ...} (Job.record_batch's) at the end."""
        self.backend.reset_stats()
        search = batch_search(self.dataset, self.backend, self.search, index, b, carried, pinned)
        events, last = [], 0.0
        for ev in search.events():
            record = ev.to_dict()
            events.append(record)
            if ev.kind != "done" and time.monotonic() - last >= STREAM_SECONDS:
                last = time.monotonic()
                yield {"event": record}
        st = search.state
        yield {"result": {"events": events, "labels": list(st.labels), "scores": dict(st.scores),
                          "predicted": {k: list(v) for k, v in fill(search).items()},
                          "row": batch_row(search, b, len(index), len(carried)), "stats": self.backend.stats()}}


class _Pool:
    """One RayExecutor._run: the actors (slot k -> actor), what each is waiting for, the queue of batches, and the
    retries. A worker that dies is replaced and its batch goes back to the front of the queue."""

    def __init__(self, executor: "RayExecutor", ray, job, pending: list[int], actors: dict, new_actor, canary: Node):
        self.executor, self.ray, self.job, self.actors, self.new_actor, self.canary = (
            executor, ray, job, actors, new_actor, canary)
        self.waiting: dict[Any, tuple[str, int, int | None]] = {}  # ref or generator -> (kind, slot, batch)
        self.starts: dict[int, int] = {}
        self.attempts = dict.fromkeys(pending, 0)
        self.moved = dict.fromkeys(pending, 0)  # iterations of running batches seen so far
        self.queue = deque(pending)

    def busy(self) -> bool:
        """Batches left to hand out or running (workers still starting do not count)."""
        return bool(self.queue) or any(kind == "batch" for kind, _, _ in self.waiting.values())

    def start(self, k: int) -> None:
        self.starts[k] = self.starts.get(k, 0) + 1
        if self.starts[k] > MAX_ATTEMPTS:
            raise ModelError(f"a Ray worker died while loading the model {MAX_ATTEMPTS} times in a row; "
                             f"see the Ray logs of its node (finished batches are saved in {self.job.run_dir.path})")
        self.actors[k] = self.new_actor()
        self.waiting[self.actors[k].ready.remote(self.canary)] = ("ready", k, None)

    def give(self, k: int) -> None:
        """The next batch to worker k, or the worker back when none is left."""
        if not self.queue:
            self.ray.kill(self.actors.pop(k))
            return
        b = self.queue.popleft()
        self.executor.dispatched.append(b)
        job = self.job
        gen = self.actors[k].label.options(num_returns="streaming").remote(b, job.batches[b], job.carried_for(b),
                                                                           job.pinned)
        self.waiting[gen] = ("batch", k, b)

    def lost(self, k: int, b: int | None, why: str) -> None:
        """Worker k died (running batch b): replace it; the batch goes back to the front of the queue."""
        self.ray.kill(self.actors.pop(k))
        if b is not None:
            self.moved[b] = 0
            self.attempts[b] += 1
            if self.attempts[b] >= MAX_ATTEMPTS:
                raise RunError(f"batch {b + 1} was interrupted on {MAX_ATTEMPTS} Ray workers in a row (last: {why}); "
                               f"the finished batches are saved: continue with --resume {self.job.run_dir.path}")
            self.queue.appendleft(b)
        self.executor.replaced += 1
        self.executor.announce(f"a Ray worker died ({why}); starting another" +
                               (f" and redoing batch {b + 1}" if b is not None else ""))
        self.start(k)

    def progress(self, b: int, record: dict):
        p = self.job.progress(b, Event(**record))
        return replace(p, iterations_done=self.job.iterations_done() + sum(self.moved.values()))

    def receive(self, w, on_event, check) -> None:
        """What `w` produced: a ready worker (checked, then given a batch), a batch's event, or its result."""
        kind, k, b = self.waiting.pop(w)
        item = self._get(w, kind, k, b)
        if item is None:
            return
        if kind == "ready":
            check(k, item)
            self.starts[k] = 0
            self.give(k)
        elif "event" in item:
            self.moved[b] = item["event"]["iteration"]
            self.waiting[w] = (kind, k, b)
            if on_event:
                on_event(self.progress(b, item["event"]))
        else:
            self.moved.pop(b)
            self.job.record_batch(b, item["result"])
            if on_event:
                on_event(self.progress(b, item["result"]["events"][-1]))
            self.give(k)

    def _get(self, w, kind: str, k: int, b: int | None):
        """The next item of `w`; None when its worker died (then it is replaced). Errors that another worker would
        meet too end the run."""
        from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

        try:
            return self.ray.get(w if kind == "ready" else next(w))
        except (RayActorError, WorkerCrashedError) as e:
            if getattr(e, "actor_init_failed", False):  # e.g. icm_lite missing there: another try won't do
                detail = [line.strip() for line in str(e).splitlines() if line.strip()][-1]
                raise ModelError(f"a Ray worker could not start: {detail}") from None
            self.lost(k, b, one_line(e).split(". ")[0])
            return None
        except RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, IcmError):
                raise cause from None
            what = "starting" if b is None else f"batch {b + 1}"
            raise InternalError(f"a Ray worker failed ({what}): {one_line(cause or e)}") from None
        except StopIteration:
            raise InternalError(f"a Ray worker ended batch {b + 1} without a result") from None


class RayExecutor:
    """Runs a job's pending batches on Ray actors (see the module docstring).

    backend: a picklable callable that builds a worker's backend (tests: functools.partial(FakeBackend, ...));
    default the run's llama.cpp model (ModelSpec). `replaced` counts workers that died and were replaced;
    `dispatched` lists the batches handed out, in order (retries included).
    """

    def __init__(self, workers: int | None = None, address: str | None = None, *,
                 backend: Callable[[], Backend] | None = None, tolerance: float | None = None,
                 announce: Callable[[str], None] = lambda s: None):
        self.workers, self.address, self.factory = workers, address, backend
        self.tolerance, self.announce = tolerance, announce
        self.replaced = 0
        self.dispatched: list[int] = []

    @classmethod
    def from_options(cls, opts: RayOptions, announce: Callable[[str], None] = lambda s: None) -> "RayExecutor | None":
        """None when neither --workers nor --ray-address was given; a UserError at once when Ray is missing or the
        cluster's address does not answer."""
        if opts.workers is None and opts.ray_address is None:
            return None
        need_ray()
        address = opts.ray_address or os.environ.get("RAY_ADDRESS") or None
        if address:
            _check_reachable(address)  # a typo found now, not after batch 1
        return cls(opts.workers, address, tolerance=opts.canary_tolerance, announce=announce)

    # --- the cluster ------------------------------------------------------------------------------------
    def _connect(self, ray) -> bool:
        """Start a local cluster or join one (nothing when this process is connected already); True if started."""
        if ray.is_initialized():
            return False
        quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        try:
            if self.address:
                ray.init(address=self.address, **quiet)
            else:
                ray.init(address="local", num_cpus=self.workers or 1, **quiet)
        except (ConnectionError, ValueError) as e:
            raise UserError(f"cannot join the Ray cluster at {self.address}: {one_line(e)}") from None
        return True

    def _sizes(self, ray, gpu: bool, pending: int) -> tuple[int, float, float]:
        """(workers, CPUs per worker, GPUs per worker) for this cluster."""
        res = ray.cluster_resources()
        if self.workers is None:  # joined a cluster without --workers
            nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
            self.workers = int(res.get("GPU", 0)) if gpu else nodes
        n = max(1, min(self.workers, pending))
        gpus = 0.0
        if gpu and res.get("GPU", 0) > 0:
            gpus = 1.0 if self.address else min(1.0, res["GPU"] / n)  # a local machine's GPUs are shared
        cpus = 1.0
        if gpus > res.get("GPU", 0) or cpus > res.get("CPU", 0):
            raise UserError(f"the Ray cluster has {res.get('CPU', 0):g} CPUs and {res.get('GPU', 0):g} GPUs; a worker "
                            f"needs {cpus:g} CPU and {gpus:g} GPU")
        return n, cpus, gpus

    # --- running the batches ----------------------------------------------------------------------------
    def run(self, job, pending: Sequence[int], on_event: Callable | None = None,
            should_stop: Callable[[], bool] | None = None) -> None:
        ray = need_ray()
        gpu = job.config.model_options.n_gpu_layers != 0
        started = self._connect(ray)
        actors: dict[int, Any] = {}
        try:
            self._run(ray, job, list(pending), on_event, should_stop or (lambda: False), gpu, actors)
        finally:
            for a in actors.values():
                ray.kill(a)
            if started:
                ray.shutdown()

    def _run(self, ray, job, pending, on_event, should_stop, gpu, actors) -> None:
        n, cpus, gpus = self._sizes(ray, gpu, len(pending))
        factory = self.factory
        if factory is None:  # threads: the run's --n-threads, else each worker follows its node's free cores
            factory = model_spec(job.config)
        tolerance = self.tolerance if self.tolerance is not None else CANARY_TOLERANCE_GPU if gpu else 0.0
        canary = canary_plan(job)
        expected = job.backend.run(canary)
        dataset = ray.put(Dataset(job.dataset.examples, None, job.dataset.task, job.dataset.source))  # no gold
        actor_cls = ray.remote(Worker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=0, max_task_retries=0,
                                               scheduling_strategy="SPREAD")
        where = self.address or "a local Ray cluster"
        self.announce(f"{len(pending)} more batches on {n} Ray workers ({where}); each loads the model first")
        pool = _Pool(self, ray, job, pending, actors, lambda: actor_cls.remote(factory, dataset, job.config.search),
                     canary)
        for k in range(n):
            pool.start(k)
        while pool.busy():
            if should_stop():
                return
            ready, _ = ray.wait(list(pool.waiting), num_returns=1, timeout=0.2)
            for w in ready:
                pool.receive(w, on_event, lambda k, info: self._check(k, info, expected, tolerance, job))

    def _check(self, k: int, info: dict, expected: dict, tolerance: float, job) -> None:
        who = f"Ray worker {k + 1} (node {info['node']}, pid {info['pid']})"
        if info["error"]:
            raise ModelError(f"{who} cannot label: {info['error']}")
        got = info["canary"]
        diff = max(abs(got[key] - s) for key, s in expected.items()) if got.keys() == expected.keys() else float("inf")
        if diff > tolerance:
            raise ModelError(f"{who} scores the canary context {diff:.3g} nats away from this process (tolerance "
                             f"{tolerance:g}): every node needs the same model file and llama.cpp build; the finished "
                             f"batches are saved in {job.run_dir.path}")
