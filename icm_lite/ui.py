"""What `icm-lite label` shows on stderr while it runs: a live Rich dashboard, or one plain line per event.

The UI only renders `run.Progress` records (one per search event); nothing it computes flows back into the
run. `make_ui` picks the dashboard when stderr is a terminal and plain lines otherwise (or with --plain).

Dashboard fields: progress over all batches with elapsed time and ETA; the batch (with its carried
demonstrations); temperature; U(D) = alpha*P - I with both terms; inconsistencies; acceptance rate of proposals
(overall and the last 20); labeled count and True/False balance; model tokens/s and prefix reuse
(1 - tokens evaluated / tokens a from-scratch build of every context would cost); agreement with gold when the
data has gold labels, marked evaluation only (computed by the run layer, never given to the search); and the
last accepted/rejected proposals.

Plain lines: a stable format for logs and scripts, one per event, fields separated by one space:

    [ITER/ITERS] KIND   ex=EX dU=+D.DDD T=T.TTT U=U.UUU P=P.PPP I=N labeled=N true=N tokens=N batch=B/NB

  ITER/ITERS  the search's iteration in the current batch / iterations per batch
  KIND        pass | seed | skip | accept | reject | done | predict, left-aligned in 6 characters
  ex=, dU=    only when the event has them: the proposed example (0-based line/record index in the data
              file) and dU of the proposal (3 decimals, signed)
  passes=, changed=, flipped=yes
              --init bootstrap, on pass and seed events: passes done, labels the last one changed, and
              (seed) that the global flip of the passes' labeling scored higher and was kept
  predicted=N/M  predict events (--core): examples of the rest predicted so far / in all
  T, U, P     temperature, U(D), P(D) of the current batch (3 decimals); I = inconsistent pairs
  labeled, true   labeled and True examples in the current batch
  tokens      tokens the model has evaluated in this process
  batch       current batch, 1-based, of all batches
Example: [12/200] accept ex=31 dU=+0.412 T=2.187 U=4.120 P=0.137 I=0 labeled=14 true=7 tokens=18231 batch=1/1

This module never reads gold labels itself, and it prints nothing on stdout.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from typing import TextIO

from .run import Progress


def plain_line(p: Progress) -> str:
    ev = p.event
    per_batch = p.batch_iterations
    parts = [f"[{ev.iteration}/{per_batch}]", f"{ev.kind:<6}"]
    if p.example is not None:
        parts.append(f"ex={p.example}")
    if ev.delta is not None:
        parts.append(f"dU={ev.delta:+.3f}")
    if ev.passes is not None:
        parts += [f"passes={ev.passes}", f"changed={ev.changed}"] + (["flipped=yes"] if ev.flipped else [])
    if ev.predicted is not None:
        parts.append(f"predicted={ev.predicted}/{p.rest}")
    parts += [f"T={ev.temperature:.3f}", f"U={ev.U:.3f}", f"P={ev.P:.3f}", f"I={ev.I}",
              f"labeled={ev.n_labeled}", f"true={ev.n_true}", f"tokens={ev.tokens}", f"batch={p.batch + 1}/{p.n_batches}"]
    return " ".join(parts)


class PlainUI:
    """One line per event on `stream`."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, p: Progress) -> None:
        self.stream.write(plain_line(p) + "\n")
        self.stream.flush()


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "--:--"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _start_line(ev) -> str | None:
    """The warm start's state (--init bootstrap) after a pass or seed event; None for other events."""
    if ev.passes is None:
        return None
    if ev.kind == "pass":
        return f"bootstrap pass {ev.passes}: {ev.changed} labels changed (held-out prediction + consistent decoding)"
    if ev.changed:
        return (f"bootstrap: {ev.passes} passes did not settle ({ev.changed} labels still changing): "
                "the authors' cold start took over (seeds, T0 as --init seeds)")
    kept = "its global flip scored higher and was kept" if ev.flipped else "kept (it scored above its global flip)"
    return f"bootstrap: settled after {ev.passes} passes; {kept}"


def _lab(y) -> str:
    return "·" if y is None else ("T" if y else "F")


class Dashboard:
    """A Rich Live panel on stderr, redrawn 4 times a second (elapsed and ETA move between events too)."""

    def __init__(self, title: str = "icm-lite label", stream: TextIO | None = None, recent: int = 6):
        self.title = title
        self.stream = stream or sys.stderr
        self.last: Progress | None = None
        self.recent: deque = deque(maxlen=recent)
        self.window: deque = deque(maxlen=20)  # last proposals: True = accepted
        self.accepted = self.rejected = self.skipped = 0
        self.t_start = time.monotonic()
        self.done_start: int | None = None
        self.start: str | None = None  # the warm start's outcome in this batch (--init bootstrap)
        self._lock = threading.Lock()
        self._live = None

    def __enter__(self):
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.stream, force_terminal=True)
        self._live = Live(self, console=console, refresh_per_second=4, transient=False,
                          redirect_stdout=False, redirect_stderr=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def update(self, p: Progress) -> None:
        ev = p.event
        with self._lock:
            if self.done_start is None:
                self.done_start = p.iterations_done - (1 if ev.kind in ("skip", "accept", "reject") else 0)
                self.t_start = time.monotonic()
            if ev.kind == "skip":
                self.skipped += 1
            elif ev.kind in ("accept", "reject"):
                ok = ev.kind == "accept"
                self.accepted += ok
                self.rejected += not ok
                self.window.append(ok)
                self.recent.append(p)
            self.last = p
            line = _start_line(ev)
            if line is not None or ev.kind == "seed":  # a cold seed event clears an earlier batch's line
                self.start = line

    # --- rendering ---------------------------------------------------------------------------------------
    def __rich_console__(self, console, options):
        # 3 columns short of the edge: a "^C" the terminal echoes after the panel must not wrap to a new line
        # (the next redraw would then start one line low and leave a stale border behind)
        yield self.panel(max(20, options.max_width - 3))

    def panel(self, width: int | None = None):
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            p, recent = self.last, list(self.recent)
            acc, rej, skip, window = self.accepted, self.rejected, self.skipped, list(self.window)
            start = self.start
            t_start, done_start = self.t_start, self.done_start
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan", no_wrap=True)
        grid.add_column()
        if p is None:
            grid.add_row("status", "starting: seeding the first batch…")
            return Panel(grid, title=self.title, border_style="cyan", width=width)
        ev = p.event
        elapsed = time.monotonic() - t_start
        done, total = p.iterations_done, p.iterations_total
        rate = (done - (done_start or 0)) / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else None
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=max(total, 1), completed=done, width=30),
                    Text(f"{done}/{total} iterations  {done / max(total, 1):.0%}  "
                         f"elapsed {_duration(elapsed)}  ETA {_duration(eta if done < total else 0)}"))
        grid.add_row("progress", bar)
        carried = f" · {p.carried} carried demonstrations from earlier batches (fixed)" if p.carried else ""
        grid.add_row("batch", f"{p.batch + 1}/{p.n_batches} · {p.batch_examples} examples · "
                              f"iteration {ev.iteration}/{p.batch_iterations}{carried}")
        if start:
            grid.add_row("start", start)
        if p.rest:
            grid.add_row("predicted", f"{p.predicted}/{p.rest} examples outside the searched core, from its labels")
        grid.add_row("temperature", f"{ev.temperature:.3f}")
        grid.add_row("U(D)", f"{ev.U:.3f} = α·P {p.alpha * ev.P:.3f} − I {ev.I}   (α = {p.alpha:g}, P = {ev.P:.4f})")
        grid.add_row("inconsistencies", str(ev.I))
        proposals = acc + rej
        rate_txt = f"{acc / proposals:.0%} of {proposals} proposals" if proposals else "no proposals yet"
        if window:
            rate_txt += f" (last {len(window)}: {sum(window) / len(window):.0%})"
        grid.add_row("accepted", f"{rate_txt} · {skip} skips (prediction = current label)")
        balance = f"{p.true} True / {p.labeled - p.true} False" + (f" ({p.true / p.labeled:.0%} True)" if p.labeled else "")
        grid.add_row("labeled", f"{ev.n_labeled}/{p.batch_examples} in batch · {p.labeled}/{p.examples} overall · {balance}")
        grid.add_row("model", _model_line(p.stats))
        if p.gold is not None:
            grid.add_row("gold", Text(f"{p.gold[0]:.1%} agreement on {p.gold[1]} labeled  "
                                      "[evaluation only: the search never sees gold labels]", style="yellow"))
        grid.add_row("recent", _recent(recent))
        return Panel(grid, title=self.title, subtitle=f"last event: {ev.kind}", border_style="cyan", width=width)


def _model_line(st: dict) -> str:
    tok, secs, naive = st.get("tokens_evaluated", 0), st.get("decode_seconds", 0.0), st.get("naive_tokens", 0)
    speed = f"{tok / secs:,.0f} tokens/s" if secs else "-- tokens/s"
    reuse = (f"prefix reuse {1 - tok / naive:.0%} ({tok:,} tokens evaluated vs {naive:,} building every context from scratch)"
             if naive else f"{tok:,} tokens evaluated")
    return f"{speed} · {reuse}"


def _recent(recent: list):
    """The last proposals, newest first: kind, iteration, example, old -> new label, dU, fixes."""
    from rich.text import Text

    lines = []
    for r in reversed(recent):
        e = r.event
        fixes = f"  +{e.fixes} fix{'es' if e.fixes != 1 else ''}" if e.fixes else ""
        style = "green" if e.kind == "accept" else "red"
        lines.append(Text.assemble((f"{e.kind:<6}", style), f"  #{e.iteration:<5} ex {r.example} ({r.example_id})  "
                                   f"{_lab(e.old)}→{_lab(e.new)}  dU {e.delta:+.3f}{fixes}"))
    return Text("\n").join(lines) if lines else "none yet"


def make_ui(plain: bool = False, title: str = "icm-lite label", stream: TextIO | None = None):
    """The dashboard when `stream` (default stderr) is a terminal and plain lines are not asked for."""
    import os

    stream = stream or sys.stderr
    if plain or not stream.isatty() or os.environ.get("TERM") == "dumb":
        return PlainUI(stream)
    return Dashboard(title, stream)
