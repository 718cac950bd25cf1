"""The labels to doubt first: a run's labels ranked by how sure the model is of each, for a person to check.

The margin of a label is its log-odds towards itself, from labels.jsonl: s if the label is True, -s if False,
where s = log P(True-word) - log P(False-word) of the example with the run's other labels in context (searched
labels: every other labeled example of its batch, leave-one-out; predicted ones: the labels they were predicted
from). A negative margin means the model, reading the run's own labels, would answer the other way: the label
stands because of a constraint or the rest of the labeling. Labels are also flagged when they break a constraint
of their group, or when the search last changed them late (in the last quarter of their batch's iterations).
Rows come most doubtful first: flagged ones, then by margin. No model is loaded; gold labels are never read.

Example: doubtful(load_run("runs/demo"), RunDir("runs/demo").events(), worst=10)[0] -> Row(id=..., margin=-0.4, ...)
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .consistency import Consistency
from .errors import RunError
from .export import LabeledRun

LATE = 0.75  # a change after this share of its batch's iterations is "late"


@dataclass(frozen=True)
class Row:
    index: int
    id: str
    label: bool
    margin: float | None  # None when labels.jsonl has no score for it
    source: str
    flags: tuple[str, ...]  # "broke a constraint", "changed late"
    text: str


def late_changes(events: list[dict]) -> set[int]:
    """Examples whose last accepted change came in the last quarter of their batch's iterations."""
    last: dict[int, tuple[int, int]] = {}
    ends: dict[int, int] = {}
    for e in events:
        b = e.get("batch", 0)
        ends[b] = max(ends.get(b, 0), e.get("iteration", 0))
        if e.get("kind") == "accept" and e.get("example") is not None and e.get("old") != e.get("new"):
            last[e["example"]] = (b, e.get("iteration", 0))
    return {i for i, (b, it) in last.items() if ends[b] and it > LATE * ends[b]}


def doubtful(run: LabeledRun, events: list[dict], worst: int | None = None) -> list[Row]:
    """The labeled examples, most doubtful first (flagged, then smallest margin); at most `worst` of them."""
    labels = list(run.labels)
    broken = {i for pair in Consistency(run.dataset.examples, run.dataset.task.relation).inconsistent(labels)
              for i in pair}
    late = late_changes(events)
    rows = []
    for i, (ex, y, s, src) in enumerate(zip(run.dataset.examples, labels, run.scores, run.sources)):
        if y is None:
            continue
        flags = tuple(f for f, hit in (("broke a constraint", i in broken), ("changed late", i in late)) if hit)
        margin = None if s is None else (s if y else -s)
        rows.append(Row(i, ex.id, y, margin, src or "search", flags, ex.prompt))
    if not rows:
        raise RunError(f"{run.path}: no labels to review yet")
    rows.sort(key=lambda r: (not r.flags, r.margin if r.margin is not None else float("inf"), r.index))
    return rows[:worst] if worst else rows


def write_csv(rows: list[Row], path: str | Path, label_words: tuple[str, str]) -> None:
    """The rows for a person: id, label (as the label word), margin, source, flags, text, and an empty correction
    column to fill with a label word (or true/false) where the label is wrong."""
    try:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["id", "label", "margin", "source", "flags", "text", "correction"])
            for r in rows:
                w.writerow([r.id, label_words[0] if r.label else label_words[1],
                            "" if r.margin is None else f"{r.margin:.3f}", r.source, "; ".join(r.flags), r.text, ""])
    except OSError as e:
        raise RunError(f"cannot write {path}: {e.strerror or e}") from None


def table(rows: list[Row], label_words: tuple[str, str], total: int):
    """A Rich table of the rows (the CLI prints it)."""
    from rich.table import Table

    t = Table(title=f"the {len(rows)} least sure of {total} labels (margin: log-odds towards the label; < 0: the "
                    "model would answer the other way)", title_justify="left")
    for col, just in (("id", "left"), ("label", "left"), ("margin", "right"), ("source", "left"), ("flags", "left"),
                      ("text", "left")):
        t.add_column(col, justify=just, overflow="fold" if col == "text" else "ellipsis")
    for r in rows:
        text = " ".join(r.text.split())
        t.add_row(r.id, label_words[0] if r.label else label_words[1], "—" if r.margin is None else f"{r.margin:+.2f}",
                  r.source, ", ".join(r.flags), text if len(text) <= 160 else text[:159] + "…")
    return t
