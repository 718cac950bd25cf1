"""Resumable runs: a run killed anywhere and resumed ends exactly like a run that was never interrupted.

The fake-backend tests kill a multi-batch job at every event, on both sides of the state save, and compare the
resumed run's event log and labels with an uninterrupted run's. The acceptance test does it for real: the
`icm-lite` command with SmolLM2 (bit-exact log-odds under KV-cache reuse), killed with SIGKILL twice, once in
each batch, then resumed with --resume.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from icm_lite.cli import main
from icm_lite.data import Dataset
from icm_lite.fake import FakeBackend
from icm_lite.config import RunConfig
from icm_lite.options import Batching, ModelOptions
from icm_lite.run import Job, file_sha256, plan_for
from icm_lite.rundir import RunDir
from icm_lite.search import SearchConfig
from icm_lite.tasks import Task

from conftest import hidden_concept, job_for

ICM = Path(sys.executable).with_name("icm-lite")


@pytest.fixture(autouse=True)
def _no_fsync(monkeypatch):
    """fsync only matters for power loss, not for these in-process kills; skipping it keeps the tests fast."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even `except Exception`."""


def make_job(path: Path, resume: bool = False) -> "Job":
    examples, hidden = hidden_concept(36, seed=2, groups=9)
    ds = Dataset(tuple(examples), tuple(hidden), Task.builtin("claim"), "mem")
    fb = FakeBackend(hidden, seed=2)
    batches, k = plan_for(ds, fb, 750, None, 4)
    rd = RunDir.open(path) if resume else RunDir.create(path)
    if not resume:
        rd.write_json("config.json", {})
    job = job_for(ds, fb, SearchConfig(iterations=12, seed=3, init="seeds"), rd, batches, k)
    if resume:
        job.restore()
    return job


def log(path: Path) -> list[dict]:
    """The event log without token counts (a resumed process starts with a cold cache: other counts)."""
    return [{k: v for k, v in e.items() if k != "tokens"} for e in RunDir(path).events()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "run"
    job = make_job(path)
    summary = job.run()
    assert len(job.batches) == 3 and summary["finished"]
    return {"labels": job.labels, "events": log(path), "summary": summary}


def _kill_at(job, method: str, n: int) -> None:
    real = getattr(job.run_dir, method)
    calls = []

    def dying(*a, **kw):
        calls.append(1)
        if len(calls) == n:
            raise Killed
        return real(*a, **kw)

    setattr(job.run_dir, method, dying)


@pytest.mark.parametrize("where", ["before_save", "after_save"])
def test_killed_at_any_event_resumes_to_the_uninterrupted_run(tmp_path, reference, where):
    """before_save: the event is in the log but its state is not saved (the log is cut back and the step redone);
    after_save: the state is saved and the next step is in flight (it is redone with the restored RNG)."""
    n = len(reference["events"])
    for cut in range(0, n):  # cut 0: killed before the first state was saved (the run starts over)
        path = tmp_path / f"{where}{cut}"
        job = make_job(path)
        _kill_at(job, "save_state" if where == "before_save" else "append_event", cut + 1)
        with pytest.raises(Killed):
            job.run()
        before = log(path)
        resumed = make_job(path, resume=True)
        summary = resumed.run()
        after = log(path)
        assert after == reference["events"], cut
        assert after[: len(before)] == before  # nothing logged before the kill was lost or changed
        assert resumed.labels == reference["labels"]
        assert summary["iterations"] == reference["summary"]["iterations"] == 36
        state = json.loads((path / "state.json").read_text())
        assert state["done"] and state["labels"] == reference["labels"]


def test_stopped_then_resumed_ends_like_the_uninterrupted_run(tmp_path, reference):
    path = tmp_path / "run"
    calls = []
    job = make_job(path)
    summary = job.run(should_stop=lambda: calls.append(1) or len(calls) > 17)  # stops inside batch 2
    assert not summary["finished"] and summary["iterations"] == 17
    assert log(path)[-1]["kind"] != "done"  # a stopped search is not done: it logs no done event
    resumed = make_job(path, resume=True)
    assert resumed.run()["finished"]
    assert log(path) == reference["events"]
    assert resumed.labels == reference["labels"]


def test_resuming_a_finished_run_changes_nothing(tmp_path, reference):
    path = tmp_path / "run"
    make_job(path).run()
    events = (path / "events.jsonl").read_bytes()
    summary = make_job(path, resume=True).run()
    assert summary["finished"] and summary["iterations"] == 36
    assert (path / "events.jsonl").read_bytes() == events


def test_state_is_saved_at_every_event_and_labels_when_they_change(tmp_path):
    job = make_job(tmp_path / "run")
    saves, syncs = [], []
    real = job.run_dir.save_state
    job.run_dir.save_state = lambda snap, sync=True: saves.append(snap["events_bytes"]) or syncs.append(sync) or real(snap, sync)
    job.run()
    events = RunDir(tmp_path / "run").events()
    assert len(saves) == len(events)
    sizes = [len(line) + 1 for line in (tmp_path / "run" / "events.jsonl").read_bytes().splitlines()]
    assert saves == [sum(sizes[: i + 1]) for i in range(len(sizes))]  # each state knows the log up to its event
    assert syncs == [e["kind"] not in ("skip", "reject") for e in events]  # fsync where labels may change


def _config(**kw) -> RunConfig:
    return RunConfig(data="/d.jsonl", task=Task.builtin("claim"), model_options=ModelOptions(n_ctx=512),
                     search=SearchConfig(alpha=30.0, seed=0), batching=Batching(carry=8), data_sha256="ab" * 32,
                     model_name="smollm2", model_path="/m.gguf", batches=((0,),), carried=8, **kw)


def test_resume_conflicts_name_what_differs():
    cfg = _config()
    assert cfg.conflicts({"alpha": 30, "seed": 0, "n_ctx": 512, "carry": 8}) == []
    assert cfg.conflicts({"alpha": 50.0, "n_ctx": 1024, "batch_size": 4}) == [
        "--alpha 50.0 (saved: 30.0)", "--n-ctx 1024 (saved: 512)", "--batch-size 4 (saved: None)"]
    assert cfg.conflicts({"n_threads": 2}) == []  # how many threads changes speed, not labels


def test_every_option_round_trips_through_config_json():
    import dataclasses

    from icm_lite.config import SECTIONS

    cfg = _config()
    assert RunConfig.from_json(cfg.to_json()) == cfg
    changed = {}
    for cls in SECTIONS.values():
        for f in dataclasses.fields(cls):
            v = f.default
            changed[f.name] = (f.metadata["choices"][-1] if f.metadata.get("choices") else not v if isinstance(v, bool)
                               else "5" if isinstance(v, str) else 3 if v is None or isinstance(v, int) else v + 0.5)
    other = cfg.with_options(**changed)
    assert RunConfig.from_json(other.to_json()) == other
    assert {c.split(" ")[0] for c in cfg.conflicts(changed)} == {
        "--" + f.name.replace("_", "-") for cls in SECTIONS.values() for f in dataclasses.fields(cls)
        if f.metadata.get("resumable", True)}


def _saved_run(tmp_path) -> tuple[Path, Path]:
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "question": "Q?", "choice": "A."}\n')
    run = tmp_path / "run"
    rd = RunDir.create(run)
    cfg = RunConfig(data=str(data.resolve()), task=Task.builtin("claim"), model_options=ModelOptions(n_ctx=512),
                    data_sha256=file_sha256(data), model_name="smollm2", model_path="/nonexistent/model.gguf",
                    batches=((0,),), carried=8)
    rd.write_json("config.json", cfg.to_json())
    rd.close()
    return data, run


def _one_error(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def test_resume_refuses_changed_options_in_one_line(tmp_path):
    data, run = _saved_run(tmp_path)
    res = CliRunner().invoke(main, ["label", "--resume", str(run), "--alpha", "50", "--n-ctx", "1024", "--seed", "0"])
    assert _one_error(res) == (f"error: cannot resume {run}: --alpha 50.0 (saved: 30.0), --n-ctx 1024 (saved: 512); "
                               "leave out what differs to use the saved values")


def test_resume_refuses_a_changed_data_file(tmp_path):
    data, run = _saved_run(tmp_path)
    data.write_text('{"id": "a", "question": "Q?", "choice": "B."}\n')
    msg = _one_error(CliRunner().invoke(main, ["label", "--resume", str(run)]))
    assert msg.startswith(f"error: cannot resume {run}: {data} is not the file the run labeled (sha256 ")
    assert msg.endswith("restore it or start a new run")
    other = tmp_path / "other.jsonl"
    other.write_text('{"id": "a", "question": "Q?", "choice": "A."}\n')  # same bytes elsewhere: accepted
    res = CliRunner().invoke(main, ["label", str(other), "--resume", str(run)])
    assert "is not the file" not in res.stderr


def test_resume_usage_errors(tmp_path):
    data, run = _saved_run(tmp_path)
    msg = _one_error(CliRunner().invoke(main, ["label", "--resume", str(run), "--out", str(tmp_path / "x")]))
    assert msg == "error: --resume continues RUN_DIR in place: leave out --out and --force"
    msg = _one_error(CliRunner().invoke(main, ["label", "--resume", str(tmp_path)]))
    assert "is not a run directory" in msg
    res = CliRunner().invoke(main, ["label", "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "missing argument DATA (or --resume RUN_DIR)" in res.output


# --- acceptance: SIGKILL the real command twice, resume, compare with an uninterrupted run -----------


def _claims(path: Path) -> Path:
    rows = []
    for i, (a, word) in enumerate([(7, "odd"), (12, "odd"), (9, "even"), (30, "even"), (15, "odd"), (44, "odd"),
                                   (21, "even"), (8, "even"), (13, "odd"), (26, "odd"), (5, "even"), (18, "even")]):
        rows.append({"id": f"n{i}", "question": f"Is {a} even?", "choice": f"{a} is {word}.",
                     "label": (a % 2 == 0) == (word == "even")})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _env(tmp_path):
    return {**os.environ, "ICM_LITE_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}


def _kill_when(cmd, log: Path, event: dict, env, timeout=600) -> list[dict]:
    """Start cmd, SIGKILL it once `event` is in the log; return the log as it was at the kill."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if log.exists():
                lines = log.read_bytes().splitlines()
                if any(json.loads(line).items() >= event.items() for line in lines if line.endswith(b"}")):
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(30)
                    return [json.loads(line) for line in lines if line.endswith(b"}")]
            if proc.poll() is not None:
                pytest.fail(f"exited ({proc.returncode}) before {event}: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        pytest.fail(f"no {event} within {timeout} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.model
def test_sigkill_twice_then_resume_matches_an_uninterrupted_run(tmp_path, smollm2_path):
    data = _claims(tmp_path / "numbers.jsonl")
    opts = ["--model", str(smollm2_path), "--n-ctx", "256", "--core", "all", "--init", "seeds", "--carry", "2",
            "--iterations", "4", "--init-k", "4", "--n-threads", "1", "--seed", "0"]
    env = _env(tmp_path)
    t0 = time.monotonic()
    ref = subprocess.run([str(ICM), "label", str(data), "--out", str(tmp_path / "ref"), *opts, "--json"],
                         capture_output=True, text=True, env=env, timeout=900)
    assert ref.returncode == 0, ref.stderr
    ref_summary = json.loads(ref.stdout)  # --json: stdout is the summary and nothing else
    ref_events = log(tmp_path / "ref")
    assert ref_summary["batches"] == 2 and ref_summary["finished"]
    first_accept = {b: next(e for e in ref_events if e["batch"] == b and e["kind"] == "accept") for b in (0, 1)}
    t_ref = time.monotonic() - t0

    run = tmp_path / "run"
    killed = []
    at = first_accept[0]
    killed.append(_kill_when([str(ICM), "label", str(data), "--out", str(run), *opts], run / "events.jsonl",
                             {"batch": 0, "iteration": at["iteration"], "kind": "accept"}, env))
    at = first_accept[1]
    killed.append(_kill_when([str(ICM), "label", "--resume", str(run)], run / "events.jsonl",
                             {"batch": 1, "iteration": at["iteration"], "kind": "accept"}, env))
    res = subprocess.run([str(ICM), "label", "--resume", str(run), "--json"], capture_output=True, text=True, env=env,
                         timeout=900)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    events = log(run)
    assert events == ref_events  # same steps, same order, same numbers: the search continued exactly
    for before in killed:  # every accepted change logged before a kill is still there, unchanged
        accepted = [{k: v for k, v in e.items() if k != "tokens"} for e in before if e["kind"] == "accept"]
        assert accepted and all(e in events for e in accepted)
    assert summary["iterations"] == ref_summary["iterations"] == 8
    labels = [json.loads(line) for line in (run / "labels.jsonl").read_text().splitlines()]
    ref_labels = [json.loads(line) for line in (tmp_path / "ref" / "labels.jsonl").read_text().splitlines()]
    assert labels == ref_labels
    print(f"\nuninterrupted {t_ref:.0f} s; killed twice and resumed {time.monotonic() - t0 - t_ref:.0f} s")
