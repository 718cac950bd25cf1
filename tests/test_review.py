"""`icm-lite review`: a run's labels ranked by how sure the model is, flagged ones first; a CSV for a person."""

import csv

import orjson
from click.testing import CliRunner

from icm_lite.cli import main
from icm_lite.data import Dataset
from icm_lite.export import LabeledRun
from icm_lite.review import doubtful, late_changes
from icm_lite.tasks import Example, Task

from conftest import one_error

TASK = Task(name="pairs", template="Review: {review}", relation="asymmetry", key="field:slot",
            label_words=("Yes", "No"))


def run(labels, scores, sources=None):
    examples = tuple(Example(f"r{i}", f"review {i}", str(i // 2), "ab"[i % 2]) for i in range(len(labels)))
    return LabeledRun(None, {}, None, Dataset(examples, None, TASK, "mem"), tuple(labels), tuple(scores),
                      tuple(sources or ["search"] * len(labels)))


def test_margin_is_the_log_odds_towards_the_label_and_the_least_sure_come_first():
    r = run([True, False, True, False, None, None], [2.0, -0.5, -0.3, 1.0, None, None])
    rows = doubtful(r, [])
    assert [(x.id, x.margin) for x in rows] == [("r3", -1.0), ("r2", -0.3), ("r1", 0.5), ("r0", 2.0)]
    assert doubtful(r, [], worst=2) == rows[:2]


def test_broken_constraints_and_late_changes_are_flagged_first():
    r = run([True, True, True, False], [3.0, 3.0, 0.1, -0.2])  # pair 0 breaks "exactly one Yes"
    events = [{"kind": "accept", "example": 3, "old": True, "new": False, "iteration": 90, "batch": 0},
              {"kind": "accept", "example": 2, "old": None, "new": True, "iteration": 5, "batch": 0},
              {"kind": "done", "iteration": 100, "batch": 0}]
    assert late_changes(events) == {3}
    rows = doubtful(r, events)
    assert [(x.id, x.flags) for x in rows] == [("r3", ("changed late",)), ("r0", ("broke a constraint",)),
                                              ("r1", ("broke a constraint",)), ("r2", ())]


def test_review_command_prints_and_writes_a_csv_with_a_correction_column(tmp_path):
    from test_export import make_run

    rows = [({"id": f"c{i}", "question": f"What is {i}?", "choice": f"It is {i}."}, i % 2 == 0) for i in range(8)]
    run_dir = make_run(tmp_path, rows, Task.builtin("claim"))
    scored = [{"id": f"c{i}", "label": i % 2 == 0, "score": (i - 3.5) * (1 if i % 2 == 0 else -1) / 2, "source": "search"}
              for i in range(8)]
    (run_dir / "labels.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in scored))
    res = CliRunner().invoke(main, ["review", str(run_dir), "--worst", "3", "--out", str(tmp_path / "review.csv")])
    assert res.exit_code == 0, res.output
    assert "least sure of" in res.output and "3 rows in" in res.output
    rows = list(csv.DictReader(open(tmp_path / "review.csv", encoding="utf-8")))
    assert len(rows) == 3 and list(rows[0]) == ["id", "label", "margin", "source", "flags", "text", "correction"]
    assert all(r["correction"] == "" for r in rows)
    labels = {orjson.loads(line)["id"]: orjson.loads(line) for line in (run_dir / "labels.jsonl").read_bytes().splitlines()}
    margins = [float(r["margin"]) for r in rows]
    assert margins == sorted(margins) and all(r["id"] in labels for r in rows)


def test_review_of_a_directory_that_is_no_run_is_one_line(tmp_path):
    assert "is not a run directory" in one_error(CliRunner().invoke(main, ["review", str(tmp_path)]), 2)
