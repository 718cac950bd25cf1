"""Batches on Ray workers (distributed.py): the same labels as the plain path, whatever happens to the workers.

One local Ray cluster (2 CPUs) serves the whole module. Workers run the fake backend, built from a picklable
factory; the classes below that misbehave on purpose travel to the workers by value. The model-marked test does the
same with SmolLM2 on two llama.cpp workers.
"""

import functools
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from icm_lite.cli import main
from icm_lite.data import Dataset
from icm_lite.distributed import RayExecutor
from icm_lite.errors import ModelError
from icm_lite.fake import FakeBackend
from icm_lite.run import plan_for
from icm_lite.rundir import RunDir
from icm_lite.search import SearchConfig
from icm_lite.tasks import Task

from conftest import hidden_concept, job_for, one_error

EXAMPLES, HIDDEN = hidden_concept(48, seed=2, groups=12)
DATASET = Dataset(tuple(EXAMPLES), tuple(HIDDEN), Task.builtin("claim"), "mem")
FAKE = functools.partial(FakeBackend, HIDDEN, seed=2)  # what every worker runs unless a test says otherwise


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test's backends, for the workers
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def _no_fsync(monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)


def make_job(path: Path, resume: bool = False):
    fb = FAKE()
    batches, k = plan_for(DATASET, fb, 750, None, 4)
    rd = RunDir.open(path, lock=True) if resume else RunDir.create(path)
    if not resume:
        rd.write_json("config.json", {})
    job = job_for(DATASET, fb, SearchConfig(iterations=20, seed=3, patience=0), rd, batches, k)
    if resume:
        job.restore()
    return job


def by_batch(path: Path) -> dict[int, list[dict]]:
    """Each batch's events without token counts (a worker's cache starts cold): the log's order of batches
    follows which worker finished first, the events inside a batch do not."""
    out: dict[int, list[dict]] = {}
    for e in RunDir(path).events():
        out.setdefault(e["batch"], []).append({k: v for k, v in e.items() if k != "tokens"})
    return out


def outcome(job) -> dict:
    return {"labels": job.labels, "scores": job.scores, "predicted": job.predicted,
            "rows": {b: r for b, r in job.results.items()}, "events": by_batch(job.run_dir.path)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    job = make_job(tmp_path_factory.mktemp("plain") / "run")
    assert job.run()["finished"] and len(job.batches) == 4
    return outcome(job)


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_give_the_labels_of_the_plain_path(tmp_path, cluster, reference, workers):
    job = make_job(tmp_path / "run")
    seen = []
    ex = RayExecutor(workers, backend=FAKE)
    summary = job.run(on_event=seen.append, executor=ex)
    assert summary["finished"] and summary["iterations"] == 80
    assert outcome(job) == reference
    assert sorted(ex.dispatched) == [1, 2, 3] and ex.replaced == 0
    remote = [p for p in seen if p.batch > 0]
    assert {p.batch for p in remote if p.event.kind == "done"} == {1, 2, 3}  # a Progress per finished batch at least
    assert remote[-1].iterations_done == 80 and remote[-1].labeled == sum(y is not None for y in reference["labels"])


def test_a_worker_ray_cannot_place_does_not_hold_up_the_run(tmp_path, cluster, reference):
    job = make_job(tmp_path / "run")  # 3 workers of 1 CPU each on a 2-CPU cluster: the third never starts
    assert job.run(executor=RayExecutor(3, backend=FAKE))["finished"]
    assert outcome(job) == reference


class DiesOnce(FakeBackend):
    """Kills its own process (SIGKILL) at its 40th read, once per test: the first worker to get there wins the
    marker file; its replacement, and every other worker, find the marker and live."""

    def __init__(self, marker: str, *a, **kw):
        super().__init__(*a, **kw)
        self.marker = marker

    def read(self) -> float:
        if self.reads == 40:
            try:
                open(self.marker, "x").close()
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().read()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_killed_mid_batch_is_replaced_and_nothing_is_lost(tmp_path, cluster, reference, workers):
    marker = tmp_path / "died"
    job = make_job(tmp_path / "run")
    ex = RayExecutor(workers, backend=functools.partial(DiesOnce, str(marker), HIDDEN, seed=2))
    assert job.run(executor=ex)["finished"]
    assert marker.exists() and ex.replaced == 1
    assert len(ex.dispatched) == 4 and sorted(set(ex.dispatched)) == [1, 2, 3]  # one batch was handed out twice
    assert outcome(job) == reference  # its half-done first try left nothing behind


class Killed(BaseException):
    """Stands for SIGKILL of the driver."""


def test_a_resumed_run_never_redoes_a_finished_batch(tmp_path, cluster, reference):
    """The driver dies while it writes the second remote batch's events: the first remote batch stays done, the one
    being written is redone, the rest run."""
    path = tmp_path / "run"
    job = make_job(path)
    appended = []
    real = job.run_dir.append_event

    def dying(record):
        if record["batch"] > 0 and appended.count(record["batch"]) == 3 and len(set(appended) - {0}) == 2:
            raise Killed
        appended.append(record["batch"])
        real(record)

    job.run_dir.append_event = dying
    with pytest.raises(Killed):
        job.run(executor=RayExecutor(2, backend=FAKE))
    done_before = {b for b in RunDir(path).read_json("state.json")["results"]}
    assert len(done_before) == 2 and "0" in done_before  # batch 1 and one remote batch
    resumed = make_job(path, resume=True)
    ex = RayExecutor(2, backend=FAKE)
    assert resumed.run(executor=ex)["finished"]
    assert sorted(ex.dispatched) == sorted(set(range(4)) - {int(b) for b in done_before})
    assert outcome(resumed) == reference  # no batch's events twice, none missing


class Shifted(FakeBackend):
    """Every log-odds 1e-6 nats off: another build's rounding."""

    def read(self) -> float:
        return super().read() + 1e-6


@pytest.mark.parametrize("factory, message", [
    (functools.partial(FakeBackend, HIDDEN, seed=5), "scores the canary context"),
    (functools.partial(Shifted, HIDDEN, seed=2), "scores the canary context 1e-06 nats away from this process "
                                                 "(tolerance 0)"),
    (functools.partial(FakeBackend, HIDDEN[:-1], seed=2), "cannot label: the fake backend knows 47 examples, not 48"),
])
def test_a_worker_that_does_not_match_the_driver_is_refused(tmp_path, cluster, factory, message):
    job = make_job(tmp_path / "run")
    with pytest.raises(ModelError) as e:
        job.run(executor=RayExecutor(2, backend=factory))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("Ray worker ") and message in msg, msg
    assert RunDir(tmp_path / "run").read_json("state.json")["results"].keys() == {"0"}  # batch 1 is kept


def test_a_canary_tolerance_admits_small_differences(tmp_path, cluster):
    job = make_job(tmp_path / "run")
    assert job.run(executor=RayExecutor(1, backend=functools.partial(Shifted, HIDDEN, seed=2),
                                        tolerance=1e-5))["finished"]


# --- through the command line ---------------------------------------------------------------------------------------


@pytest.fixture
def fake_cli(tmp_path):
    """Data for `icm-lite label --model fake`: the driver and every worker open the fake backend the way they open a
    model (run.open_backend)."""
    data = tmp_path / "claims.jsonl"
    rows = [{"id": e.id, "question": f"Q{i}?", "choice": e.prompt, "consistency_id": e.group}
            for i, e in enumerate(EXAMPLES)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


OPTS = ["--model", "fake", "--n-ctx", "480", "--core", "all", "--carry", "4", "--iterations", "20", "--seed", "3",
        "--plain", "--json"]


def test_cli_workers_give_the_plain_labels(tmp_path, cluster, fake_cli):
    out = {}
    for name, extra in (("plain", []), ("w2", ["--workers", "2"])):
        res = CliRunner().invoke(main, ["label", str(fake_cli), "--out", str(tmp_path / name), *OPTS, *extra])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["batches"] == 4
        out[name] = (tmp_path / name / "labels.jsonl").read_bytes()
    assert out["w2"] == out["plain"]
    assert "3 more batches on 2 Ray workers (a local Ray cluster)" in res.stderr
    res = CliRunner().invoke(main, ["label", "--resume", str(tmp_path / "w2"), "--workers", "1", "--json"])
    assert res.exit_code == 0 and "is already finished" in res.stderr  # Ray options may differ on resume
    assert (tmp_path / "w2" / "labels.jsonl").read_bytes() == out["plain"]


def test_cli_without_ray_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    res = CliRunner().invoke(main, ["label", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "run"),
                                    "--workers", "2"])
    assert one_error(res, 2) == "error: --workers needs Ray: pip install 'icm-lite[ray]'"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("how", [["--ray-address", "127.0.0.1:1"], ["--workers", "2"]])
def test_cli_an_unreachable_cluster_is_one_line_before_the_model_loads(tmp_path, monkeypatch, how):
    """--ray-address, or RAY_ADDRESS with --workers alone (as under `ray job submit`)."""
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    res = CliRunner().invoke(main, ["label", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "run"), *how])
    assert one_error(res, 2) == ("error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused; is `ray "
                                 "start --head` running there?")


# --- acceptance: SmolLM2 on two llama.cpp workers ---------------------------------------------------------------------


@pytest.mark.model
def test_two_llama_workers_give_the_plain_labels(tmp_path, cluster, smollm2_path):
    rows = [{"id": f"n{i}", "question": f"Is {a} even?", "choice": f"{a} is {'even' if i % 3 else 'odd'}.",
             "label": (a % 2 == 0) == bool(i % 3)} for i, a in enumerate([7, 12, 9, 30, 15, 44, 21, 8, 13, 26, 5, 18,
                                                                         33, 40, 3, 16])]
    data = tmp_path / "numbers.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    opts = ["--model", str(smollm2_path), "--n-ctx", "160", "--core", "all", "--init", "seeds", "--carry", "2",
            "--iterations", "4", "--init-k", "4", "--n-threads", "1", "--seed", "0", "--plain", "--json"]
    out = {}
    for name, extra in (("plain", []), ("w2", ["--workers", "2"])):
        res = CliRunner().invoke(main, ["label", str(data), "--out", str(tmp_path / name), *opts, *extra])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["batches"] >= 3
        out[name] = (tmp_path / name / "labels.jsonl").read_bytes()
    assert out["w2"] == out["plain"]
    assert by_batch(tmp_path / "w2") == by_batch(tmp_path / "plain")
