"""Run directories under stress: in the way, read-only, a full disk, and a run stopped by SIGTERM or Ctrl-C.

The promise under test: a failure is one line on stderr and a non-zero exit, and what was saved before
it (state.json, labels.jsonl) is still whole. Signals need a real process: the `icm-lite` command
with `--model fake` (fake.PromptFake) in place of a model; no test here needs a model file.
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from icm_lite import rundir
from icm_lite.cli import main
from icm_lite.errors import RunError
from icm_lite.rundir import RunDir, write_atomic
from conftest import one_error

@pytest.fixture(scope="session")
def smollm2_path():
    """Nothing here needs a real model: `--model fake`, the run machinery on the fake backend, chosen the way a user
    chooses a model. So these tests need no model file (pytest -m "not model")."""
    return "fake"


ICM = Path(sys.executable).with_name("icm-lite")
FAKE_CLI = ["-m", "icm_lite.cli"]  # the icm-lite command in a process of its own (signals)
QUESTIONS = ["Is the sky blue?", "Is fire cold?", "Do fish swim?", "Is ice hot?", "Do birds fly?"]


def claims(path: Path, n: int = 10, gold: bool = False) -> Path:
    rows = [{"id": f"c{i}", "question": QUESTIONS[i % 5], "choice": ["Yes.", "No."][i // 5 % 2],
             "consistency_id": i % 5, **({"label": i % 3 == 0} if gold else {})} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path




def label(data, out, *extra, model):
    return CliRunner().invoke(main, ["label", str(data), "--model", str(model), "--out", str(out), "--n-ctx", "512",
                                     *map(str, extra)])


# --- a run directory in the way --------------------------------------------------------------------


def test_create_refuses_an_existing_run_dir(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "state.json").write_text("{}")
    with pytest.raises(RunError, match=f"run directory {tmp_path / 'run'} already exists.*--force"):
        RunDir.create(tmp_path / "run")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="exists and is not a directory"):
        RunDir.create(tmp_path / "file", force=True)
    (tmp_path / "empty").mkdir()
    assert RunDir.create(tmp_path / "empty").path == tmp_path / "empty"  # an empty dir is not in the way


def test_label_checks_the_run_dir_before_loading_the_model(tmp_path):
    data, out = claims(tmp_path / "d.jsonl", 6), tmp_path / "run"
    out.mkdir()
    (out / "state.json").write_text("{}")
    # the model path does not exist: an error about the run directory proves it came first
    msg = one_error(label(data, out, model=tmp_path / "missing.gguf"), 2)
    assert f"run directory {out} already exists" in msg


def test_label_refuses_then_force_overwrites(tmp_path, smollm2_path):
    data, out = claims(tmp_path / "d.jsonl", 6), tmp_path / "run"
    out.mkdir()
    (out / "state.json").write_text('{"mine": true}')
    (out / "notes.txt").write_text("keep me")
    fast = ("--iterations", 0, "--init-k", 2, "--fix-rounds", 0, "--n-threads", 1)
    msg = one_error(label(data, out, *fast, model=smollm2_path), 2)
    assert f"run directory {out} already exists" in msg and "--force" in msg
    assert (out / "state.json").read_text() == '{"mine": true}'  # refused: nothing touched

    res = label(data, out, *fast, "--force", model=smollm2_path)
    assert res.exit_code == 0, res.output
    assert json.loads((out / "state.json").read_text())["iteration"] == 0
    assert len((out / "labels.jsonl").read_text().splitlines()) == 6
    assert (out / "notes.txt").read_text() == "keep me"  # --force replaces run files only


# --- read-only directories -------------------------------------------------------------------------


def _read_only_cmd(directory: Path, code: str) -> list[str] | None:
    """A command running `code` while `directory` is read-only, even for root (a private ro bind mount)."""
    if os.geteuid() != 0:
        return None  # chmod is enough, see below
    if not shutil.which("unshare"):
        return None
    d = str(directory)
    script = f"mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec {sys.executable} -c \"$0\""
    return ["unshare", "-rm", "sh", "-c", script, code]


def test_write_atomic_into_a_read_only_dir_keeps_the_old_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_atomic(run / "state.json", b'{"iteration": 7}')
    code = ("from pathlib import Path; from icm_lite.rundir import write_atomic; from icm_lite.errors import RunError\n"
            "try:\n"
            f"    write_atomic(Path({str(run / 'state.json')!r}), b'{{\"iteration\": 8}}')\n"
            "except RunError as e:\n"
            "    print(e)\n")
    cmd = _read_only_cmd(run, code)
    if cmd is None and os.geteuid() == 0:
        pytest.skip("root without unshare: cannot make a directory read-only")
    try:
        if cmd is None:
            run.chmod(0o555)
            cmd = [sys.executable, "-c", code]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if "unshare" in cmd[0] and res.returncode != 0 and "Traceback" not in res.stderr:
            pytest.skip(f"no private mounts here: {res.stderr.strip()}")
    finally:
        run.chmod(0o755)
    assert f"cannot write {run / 'state.json'}" in res.stdout and "the previous version is intact" in res.stdout, res
    assert ("Read-only file system" in res.stdout) or ("Permission denied" in res.stdout)
    assert json.loads((run / "state.json").read_text()) == {"iteration": 7}
    assert sorted(p.name for p in run.iterdir()) == ["state.json"]


def test_write_atomic_when_the_dir_refuses_writes(tmp_path, monkeypatch):
    """The same without mounts: opening the temp file fails with EROFS."""
    target = tmp_path / "labels.jsonl"
    target.write_bytes(b"old\n")

    def refuse(path, *a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(rundir, "open", refuse, raising=False)
    with pytest.raises(RunError, match=rf"cannot write {target}: Read-only file system; the previous version is intact"):
        write_atomic(target, b"new\n")
    assert target.read_bytes() == b"old\n"


def test_create_in_a_read_only_parent(tmp_path, monkeypatch):
    def refuse(self, *a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(RunError, match=f"cannot write to run directory {tmp_path / 'run'}: Read-only file system"):
        RunDir.create(tmp_path / "run")


# --- a full disk -------------------------------------------------------------------------------------

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")


@needs_dev_full
def test_full_disk_write_atomic_keeps_the_old_file(tmp_path):
    """The temp file is a link to /dev/full: the kernel answers ENOSPC exactly as on a full disk."""
    target = tmp_path / "state.json"
    target.write_bytes(b'{"iteration": 3}')
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.symlink_to("/dev/full")
    with pytest.raises(RunError, match=rf"cannot write {target}: No space left on device; the previous version is intact"):
        write_atomic(target, b'{"iteration": 4}' * 1000)
    assert target.read_bytes() == b'{"iteration": 3}'
    assert not os.path.lexists(tmp)  # no debris left


@needs_dev_full
def test_full_disk_on_the_event_log(tmp_path):
    (tmp_path / "events.jsonl").symlink_to("/dev/full")
    rd = RunDir(tmp_path)
    with pytest.raises(RunError, match="cannot append to .*events.jsonl: No space left on device"):
        rd.append_event({"kind": "seed"})
    rd.close()  # nothing left to flush: no bare OSError after the RunError
    rd.close()


def test_full_disk_at_rename(tmp_path, monkeypatch):
    target = tmp_path / "labels.jsonl"
    target.write_bytes(b"old\n")

    def enospc(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rundir.os, "replace", enospc)
    with pytest.raises(RunError, match="No space left on device; the previous version is intact"):
        write_atomic(target, b"new\n")
    monkeypatch.undo()
    assert target.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.jsonl"]


def test_disk_fills_up_during_a_run(tmp_path, smollm2_path, monkeypatch):
    """Every state.json write after the first (the seed) fails: one error line, exit 2, the seed state kept."""
    real_replace = os.replace
    saves = []

    def replace(src, dst):
        if str(dst).endswith("state.json"):
            saves.append(dst)
            if len(saves) > 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(rundir.os, "replace", replace)
    out = tmp_path / "run"
    msg = one_error(label(claims(tmp_path / "d.jsonl", 6), out, "--iterations", 2, "--init", "seeds", "--init-k", 2,
                          "--fix-rounds", 0,
                          "--n-threads", 1, model=smollm2_path), 2)
    monkeypatch.undo()
    assert f"cannot write {out / 'state.json'}: No space left on device; the previous version is intact" in msg
    state = json.loads((out / "state.json").read_text())  # the seed's save, whole
    assert state["iteration"] == 0 and len(state["labels"]) == 6 and sum(y is not None for y in state["labels"]) == 2
    assert not list(out.glob(".*.tmp"))


# --- stopping a run: SIGTERM and Ctrl-C ------------------------------------------------------------------


class Running:
    """`icm-lite label` as a child process; stderr collected by a thread so the pipe never fills."""

    N = 6

    GOLD = False

    def __init__(self, tmp_path: Path, model: Path, iterations: int = 100_000):
        self.out = tmp_path / "run"
        data = claims(tmp_path / "d.jsonl", self.N, self.GOLD)
        # small and single-threaded: each step stays short even on a busy machine
        self.proc = subprocess.Popen(  # the icm-lite command with the fake backend (--model fake)
            [sys.executable, *FAKE_CLI, "label", str(data), "--model", str(model), "--out", str(self.out), "--n-ctx", "512",
             "--init", "seeds", "--init-k", "2", "--fix-rounds", "0", "--n-threads", "1", "--iterations", str(iterations)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "ICM_LITE_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self.reader.start()

    def wait_for_events(self, n: int = 1, timeout: float = 120) -> None:
        """Until the event log holds n events (the first is the seed), i.e. event lines are on stderr."""
        log = self.out / "events.jsonl"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"exited early ({self.proc.returncode}): {''.join(self.lines)}")
            if log.exists() and len(log.read_bytes().splitlines()) >= n:
                return
            time.sleep(0.05)
        self.proc.kill()
        pytest.fail("no events in time")

    def finish(self, timeout: float = 120) -> tuple[int, list[str]]:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail("did not stop after the signal")
        self.reader.join(10)
        return code, [line.rstrip("\n") for line in self.lines]

    def check_saved(self) -> dict:
        """state.json, labels.jsonl and the event log are whole and agree with each other."""
        state = json.loads((self.out / "state.json").read_text())
        labels = [json.loads(line) for line in (self.out / "labels.jsonl").read_text().splitlines()]
        assert [r["id"] for r in labels] == [f"c{i}" for i in range(self.N)]
        assert [r["label"] for r in labels] == state["labels"]
        events = [json.loads(line) for line in (self.out / "events.jsonl").read_text().splitlines()]
        assert events[-1]["kind"] != "done" and events[-1]["iteration"] == state["iteration"]  # stopped, not done
        assert not list(self.out.glob(".*.tmp"))
        return state


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_cleanly_after_saving(tmp_path, smollm2_path, sig, code):
    run = Running(tmp_path, smollm2_path)
    run.wait_for_events()
    run.proc.send_signal(sig)
    rc, lines = run.finish()
    assert rc == code, lines
    assert not any("Traceback" in line for line in lines)
    state = run.check_saved()
    assert lines[-1].startswith(f"error: stopped by {sig.name} after iteration {state['iteration']}/100000; "
                                f"the last accepted state is saved in {run.out}"), lines[-1]
    assert f"continue with: icm-lite label --resume {run.out}" in lines[-1]
    summary = json.loads((run.out / "summary.json").read_text())
    assert summary["finished"] is False and summary["iterations"] == state["iteration"]


class RunningLonger(Running):
    N, GOLD = 40, True


def test_a_run_stopped_by_sigterm_exports_and_evaluates(tmp_path, smollm2_path):
    """A run stopped before every example is labeled: export leaves the unlabeled ones out, eval counts them."""
    run = RunningLonger(tmp_path, smollm2_path)
    run.wait_for_events()
    run.proc.send_signal(signal.SIGTERM)
    rc, lines = run.finish()
    assert rc == 143, lines
    state = run.check_saved()
    unlabeled = sum(y is None for y in state["labels"])
    assert unlabeled > 0
    ex = subprocess.run([sys.executable, *FAKE_CLI, "export", str(run.out), "--format", "prompt-completion",
                         "--valid-fraction", "0", "--out", str(tmp_path / "ft")], capture_output=True, text=True)
    assert ex.returncode == 0, ex.stderr
    assert f"unlabeled {unlabeled}" in ex.stdout
    records = [line for f in (tmp_path / "ft").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(records) == RunningLonger.N - unlabeled
    ev = subprocess.run([sys.executable, *FAKE_CLI, "eval", str(run.out), "--json"], capture_output=True,
                        text=True, env={**os.environ, "ICM_LITE_CACHE": str(tmp_path / "cache")})
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["labeled"] == RunningLonger.N - unlabeled


def test_second_ctrl_c_stops_at_once_and_keeps_the_saved_state(tmp_path, smollm2_path):
    run = Running(tmp_path, smollm2_path)
    run.wait_for_events()
    run.proc.send_signal(signal.SIGINT)
    time.sleep(0.2)  # let the first one be handled (it asks for a stop); the second interrupts the step
    run.proc.send_signal(signal.SIGINT)
    rc, lines = run.finish()
    assert rc == 130, lines
    assert lines[-1].startswith("error: stopped by SIGINT") and str(run.out) in lines[-1]
    state = json.loads((run.out / "state.json").read_text())  # whole, whichever way the stop went
    assert len(state["labels"]) == Running.N
    assert not any("Traceback" in line for line in lines)


# --- resuming a run whose data or options changed -------------------------------------------------------


@pytest.fixture(scope="module")
def _one_finished_run(tmp_path_factory, smollm2_path):
    base = tmp_path_factory.mktemp("finished")
    data, out = claims(base / "d.jsonl", 6), base / "run"
    res = label(data, out, "--iterations", 1, "--init-k", 2, "--fix-rounds", 0, "--n-threads", 1, "--seed", 3,
                model=smollm2_path)
    assert res.exit_code == 0, res.output
    return data, out


@pytest.fixture
def finished_run(_one_finished_run, tmp_path):
    """A private copy of one finished run and of its data (passed as DATA, as for a data file that moved)."""
    data, out = tmp_path / "d.jsonl", tmp_path / "run"
    shutil.copy(_one_finished_run[0], data)
    shutil.copytree(_one_finished_run[1], out)
    return data, out, (out / "state.json").read_bytes()


def resume(*args):
    return CliRunner().invoke(main, ["label", *map(str, args)])


def test_resume_refuses_changed_data(finished_run):
    data, out, state = finished_run
    data.write_text(data.read_text().replace("Is fire cold?", "Is fire hot?"))
    msg = one_error(resume(data, "--resume", out), 2)
    assert f"cannot resume {out}: {data} is not the file the run labeled" in msg and "sha256" in msg
    assert (out / "state.json").read_bytes() == state


def test_resume_refuses_missing_data(finished_run):
    data, out, state = finished_run
    data.unlink()
    msg = one_error(resume(data, "--resume", out), 2)
    assert f"cannot resume {out}: its data file {data} is missing" in msg
    assert (out / "state.json").read_bytes() == state


@pytest.mark.parametrize("option,value,says", [("--seed", 4, "--seed 4 (saved: 3)"),
                                               ("--objective", "paper", "--objective paper (saved: code)"),
                                               ("--n-ctx", 1024, "--n-ctx 1024 (saved: 512)")])
def test_resume_refuses_changed_options(finished_run, option, value, says):
    data, out, state = finished_run
    msg = one_error(resume(data, "--resume", out, option, value), 2)
    assert f"cannot resume {out}:" in msg and says in msg
    assert (out / "state.json").read_bytes() == state


def test_resume_of_something_that_is_not_a_run(tmp_path):
    (tmp_path / "notarun").mkdir()
    msg = one_error(resume("--resume", tmp_path / "notarun"), 2)
    assert f"{tmp_path / 'notarun'}" in msg and "not a run directory" in msg
