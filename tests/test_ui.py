"""The live experience: plain lines (a stable format), the Rich dashboard, and the dashboard in a real terminal.

The UI is driven from fake-backend jobs (no llama.cpp), like the label command drives it; the terminal tests
run it inside tmux (a real terminal emulator) and read the screen back. One test runs the real `icm-lite label`
in tmux with SmolLM2 to check the command picks the dashboard when stderr is a terminal.
"""

import io
import json
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from icm_lite.data import Dataset
from icm_lite.fake import FakeBackend
from icm_lite.run import plan_for
from icm_lite.rundir import RunDir
from icm_lite.search import SearchConfig
from icm_lite.tasks import Task
from icm_lite.ui import Dashboard, PlainUI, make_ui, plain_line

from conftest import hidden_concept, job_for

ICM = Path(sys.executable).with_name("icm-lite")


class StatsFake(FakeBackend):
    """The fake backend with the llama backend's speed counters, so the dashboard has numbers to show."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.tokens_reused = self.naive_tokens = 0
        self.decode_seconds = 0.0

    def push(self, items, read):
        before = self.tokens_evaluated
        super().push(items, read)
        self.decode_seconds += (self.tokens_evaluated - before) / 5000
        if read:
            self.naive_tokens += sum(self.length(it) for it in self._cache[: self._n])


def job(tmp_path, gold=True, iterations=6, shuffle_gold=None, backend=FakeBackend):
    examples, hidden = hidden_concept(24, seed=4, groups=6)
    g = list(hidden)
    if shuffle_gold is not None:
        random.Random(shuffle_gold).shuffle(g)
    ds = Dataset(tuple(examples), tuple(g) if gold else None, Task.builtin("claim"), "mem")
    fb = backend(hidden, seed=4)
    batches, k = plan_for(ds, fb, 600, None, 4)
    name = f"run{len(list(tmp_path.iterdir()))}"
    return job_for(ds, fb, SearchConfig(iterations=iterations, init_k=4, seed=5, init="seeds"), RunDir.create(tmp_path / name), batches, k)


EXPECTED = """\
[0/6] seed   T=10.000 U=-3.429 P=-0.114 I=0 labeled=4 true=2 tokens=504 batch=1/3
[1/6] accept ex=6 dU=+10.527 T=4.191 U=7.098 P=0.237 I=0 labeled=5 true=2 tokens=1475 batch=1/3
[2/6] accept ex=7 dU=+6.835 T=3.128 U=13.933 P=0.464 I=0 labeled=6 true=2 tokens=2658 batch=1/3
[3/6] accept ex=4 dU=-2.610 T=2.651 U=11.323 P=0.377 I=0 labeled=7 true=2 tokens=4096 batch=1/3
[4/6] accept ex=5 dU=+1.499 T=2.370 U=12.822 P=0.427 I=0 labeled=8 true=3 tokens=5789 batch=1/3
[5/6] accept ex=2 dU=+6.787 T=2.182 U=19.609 P=0.654 I=0 labeled=8 true=4 tokens=7141 batch=1/3
[6/6] skip   ex=6 T=2.182 U=19.609 P=0.654 I=0 labeled=8 true=4 tokens=7141 batch=1/3
[6/6] done   T=2.182 U=19.609 P=0.654 I=0 labeled=8 true=4 tokens=7141 batch=1/3
[0/6] seed   T=10.000 U=46.214 P=1.540 I=0 labeled=4 true=2 tokens=7977 batch=2/3
[1/6] skip   ex=11 T=10.000 U=46.214 P=1.540 I=0 labeled=4 true=2 tokens=7977 batch=2/3
[2/6] accept ex=15 dU=+14.211 T=4.191 U=60.425 P=2.014 I=0 labeled=5 true=2 tokens=8948 batch=2/3
[3/6] accept ex=14 dU=+3.306 T=3.128 U=63.731 P=2.124 I=0 labeled=6 true=3 tokens=10131 batch=2/3
[4/6] reject ex=13 dU=-2.691 T=3.128 U=63.731 P=2.124 I=0 labeled=6 true=3 tokens=11569 batch=2/3
[5/6] reject ex=13 dU=-2.691 T=3.128 U=63.731 P=2.124 I=0 labeled=6 true=3 tokens=11569 batch=2/3
[6/6] reject ex=13 dU=-2.691 T=3.128 U=63.731 P=2.124 I=0 labeled=6 true=3 tokens=11569 batch=2/3
[6/6] done   T=3.128 U=63.731 P=2.124 I=0 labeled=6 true=3 tokens=11569 batch=2/3
[0/6] seed   T=10.000 U=28.551 P=0.952 I=0 labeled=4 true=2 tokens=12571 batch=3/3
[1/6] skip   ex=22 T=10.000 U=28.551 P=0.952 I=0 labeled=4 true=2 tokens=12571 batch=3/3
[2/6] accept ex=16 dU=+12.734 T=4.191 U=41.285 P=1.376 I=0 labeled=5 true=2 tokens=13542 batch=3/3
[3/6] accept ex=19 dU=-1.051 T=3.128 U=40.234 P=1.341 I=0 labeled=6 true=3 tokens=14725 batch=3/3
[4/6] accept ex=18 dU=+8.300 T=2.651 U=48.534 P=1.618 I=0 labeled=7 true=3 tokens=16163 batch=3/3
[5/6] skip   ex=20 T=2.651 U=48.534 P=1.618 I=0 labeled=7 true=3 tokens=16163 batch=3/3
[6/6] accept ex=17 dU=+5.250 T=2.370 U=53.783 P=1.793 I=0 labeled=8 true=3 tokens=17856 batch=3/3
[6/6] done   T=2.370 U=53.783 P=1.793 I=0 labeled=8 true=3 tokens=17856 batch=3/3
"""

# The documented format (ui.py): fields in this order, ex= and dU= only on proposals.
LINE = re.compile(r"\[(\d+)/(\d+)\] (seed  |skip  |accept|reject|done  )( ex=\d+)?( dU=[+-]\d+\.\d{3})? "
                  r"T=\d+\.\d{3} U=-?\d+\.\d{3} P=-?\d+\.\d{3} I=\d+ labeled=\d+ true=\d+ tokens=\d+ batch=(\d+)/(\d+)")


def test_plain_lines_are_stable_line_by_line(tmp_path):
    out = io.StringIO()
    job(tmp_path).run(PlainUI(out).update)
    lines = out.getvalue().splitlines()
    assert lines == EXPECTED.splitlines()  # same seed, same lines: the format and the run are deterministic
    for line in lines:
        m = LINE.fullmatch(line)
        assert m, line
        kind = m.group(3).strip()
        assert (m.group(4) is not None) == (kind in ("skip", "accept", "reject"))
        assert (m.group(5) is not None) == (kind in ("accept", "reject"))


def test_gold_is_shown_but_never_reaches_the_search(tmp_path):
    """Shuffled gold labels change only the evaluation-only agreement, not one line of the search trace."""
    runs = []
    for shuffle in (None, 1, 2):
        seen = []
        j = job(tmp_path, shuffle_gold=shuffle)
        j.run(seen.append)
        runs.append(([plain_line(p) for p in seen], [p.gold for p in seen]))
    assert runs[0][0] == runs[1][0] == runs[2][0]
    assert runs[0][1] != runs[1][1]
    seen = []
    job(tmp_path, gold=False).run(seen.append)
    assert [plain_line(p) for p in seen] == runs[0][0] and all(p.gold is None for p in seen)


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_make_ui_picks_the_dashboard_only_for_a_terminal(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    assert isinstance(make_ui(stream=io.StringIO()), PlainUI)
    assert isinstance(make_ui(stream=Tty()), Dashboard)
    assert isinstance(make_ui(plain=True, stream=Tty()), PlainUI)
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(make_ui(stream=Tty()), PlainUI)


def render(dash: Dashboard, width: int = 150) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    console.print(dash)
    return console.export_text()


def test_dashboard_shows_every_field(tmp_path):
    dash = Dashboard("icm-lite label · fake")
    assert "starting" in render(dash)
    j = job(tmp_path, iterations=10, backend=StatsFake)
    j.run(dash.update)
    text = render(dash)
    for field in ("progress", "30/30 iterations", "100%", "ETA", "elapsed", "batch", "3/3 · 8 examples",
                  "4 carried demonstrations", "temperature", "U(D)", "= α·P", "− I 0", "inconsistencies",
                  "accepted", "proposals", "skips", "labeled", "24/24 overall", "True /", "False", "tokens/s",
                  "prefix reuse", "building every context from scratch", "gold", "agreement",
                  "evaluation only", "recent", "accept", "dU"):
        assert field in text, (field, text)
    last = dash.last
    assert f"{last.labeled}/{last.examples} overall · {last.true} True / {last.labeled - last.true} False" in text
    reuse = 1 - last.stats["tokens_evaluated"] / last.stats["naive_tokens"]
    assert f"prefix reuse {reuse:.0%}" in text
    assert f"{last.gold[0]:.1%} agreement on {last.gold[1]} labeled" in text
    no_gold = Dashboard()
    job(tmp_path, gold=False).run(no_gold.update)
    assert "evaluation only" not in render(no_gold)


# --- a real terminal: tmux ---------------------------------------------------------------------------------

DRIVER = """\
import sys, time
from icm_lite.data import Dataset
from icm_lite.fake import FakeBackend
from icm_lite.config import RunConfig
from icm_lite.run import Job, plan_for
from icm_lite.rundir import RunDir
from icm_lite.search import SearchConfig
from icm_lite.tasks import Example, Task
from icm_lite.ui import make_ui

hidden = [i % 3 == 0 for i in range(40)]
examples = tuple(Example(f"ex{i}", "p", str(i // 4)) for i in range(40))
ds = Dataset(examples, tuple(hidden), Task.builtin("claim"), "mem")
fb = FakeBackend(hidden)
batches, k = plan_for(ds, fb, 700, None, 6)
job = Job(RunConfig(data="mem", task=ds.task, search=SearchConfig(iterations=25, seed=1, init="seeds"), batches=batches, carried=k),
          ds, fb, RunDir.create(sys.argv[1]))
ui = make_ui()

def slow(p):
    ui.update(p)
    time.sleep(0.06)

with ui:
    summary = job.run(slow)
print("FINISHED", summary["labeled"], flush=True)
time.sleep(60)
"""


class Tmux:
    """A private tmux server (its own socket), one window of a fixed size."""

    def __init__(self, tmp_path: Path, command: str, width: int = 150, height: int = 40):
        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed (apt-get install -y tmux)")
        self.sock = f"icm-test-{tmp_path.name}-{time.monotonic_ns()}"
        self.tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), command)

    def tmux(self, *args) -> str:
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True, check=True).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t", "-S", "-300")  # with what scrolled off

    def wait_for(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if re.search(pattern, text):
                return text
            time.sleep(0.1)
        pytest.fail(f"{pattern!r} not on screen within {timeout} s:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True)


def progress_of(screen: str) -> int:
    return int(re.search(r"(\d+)/\d+ iterations", screen).group(1))


def test_dashboard_in_a_real_terminal_shows_and_updates_its_fields(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    term = Tmux(tmp_path, f"{sys.executable} {script} {tmp_path / 'run'}")
    try:
        first = term.wait_for(r"recent\s+accept", 60)
        for field in ("progress", "iterations", "ETA", "batch", "temperature", "U(D)", "α·P", "inconsistencies",
                      "accepted", "labeled", "True /", "model", "tokens evaluated", "gold",
                      "evaluation only", "recent"):
            assert field in first, (field, first)
        time.sleep(1.0)
        second = term.screen()
        assert progress_of(second) > progress_of(first)  # the same screen, redrawn with new numbers
        assert second.count("progress") == 1  # redrawn in place, not scrolled
        final = term.wait_for(r"FINISHED \d+", 120)
        assert re.search(r"(\d+)/\1 iterations\s+100%", final), final
        assert "FINISHED 40" in final  # the dashboard closed cleanly and the program went on
    finally:
        term.close()


@pytest.mark.model
def test_label_command_in_a_terminal_dashboard_ctrl_c_and_resume(tmp_path, smollm2_path):
    """The real command picks the dashboard on a terminal; Ctrl-C stops it cleanly after saving; --resume
    continues under the dashboard to the end."""
    rows = [{"id": f"n{i}", "question": f"Is {a} even?", "choice": f"{a} is {w}.", "label": (a % 2 == 0) == (w == "even")}
            for i, (a, w) in enumerate([(7, "odd"), (12, "odd"), (9, "even"), (30, "even"), (15, "odd"), (4, "even")])]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    script = tmp_path / "session.sh"
    script.write_text(  # the shell ignores Ctrl-C itself (a trap, reset for its children) and goes on
        f"trap 'true' INT\n"
        f"{ICM} label {data} --model {smollm2_path} --out {run} --n-ctx 512 --iterations 6 --init seeds --init-k 2 --n-threads 1\n"
        f"echo EXIT=$?\n"
        f"{ICM} label --resume {run}\n"
        f"echo EXIT2=$?\n"
        f"sleep 120\n")
    term = Tmux(tmp_path, f"bash {script}")
    try:
        live = term.wait_for(r"[1-9]/6 iterations", 300)  # the dashboard, after at least one step
        for field in ("progress", "ETA", "temperature", "U(D)", "α·P", "inconsistencies", "accepted", "labeled",
                      "tokens/s", "prefix reuse", "evaluation only", "recent"):
            assert field in live, (field, live)
        assert "[1/6]" not in live  # no plain lines on a terminal
        term.tmux("send-keys", "-t", "t", "C-c")
        stopped = term.wait_for(r"EXIT=\d+", 300)
        assert "EXIT=130" in stopped and "error: stopped by SIGINT after iteration" in stopped, stopped
        assert "Traceback" not in stopped
        assert stopped.split("EXIT=")[0].count("╭") == 1  # the echoed ^C left no stale copy of the panel
        state = json.loads((run / "state.json").read_text())
        assert 1 <= state["iteration"] < 6 and not state["done"]
        final = term.wait_for(r"EXIT2=\d+", 300)
        assert "EXIT2=0" in final and "labels: " in final, final
        assert json.loads((run / "summary.json").read_text())["iterations"] == 6
    finally:
        term.close()
