"""--core: a searched core of whole groups spread over the file, the rest predicted from it (run.py, batches.py)."""

import os
import random

import orjson
import pytest
from click.testing import CliRunner

from icm_lite.batches import choose_core, spread
from icm_lite.cli import main
from icm_lite.config import RunConfig
from icm_lite.consistency import Consistency
from icm_lite.data import Dataset
from icm_lite.fake import FakeBackend
from icm_lite.options import Batching, core_size
from icm_lite.run import Job, plan_core, plan_for
from icm_lite.rundir import RunDir
from icm_lite.search import SearchConfig
from icm_lite.tasks import Task

from conftest import one_error, pairs

TASK = Task(name="pairs", template="Review: {review}", relation="asymmetry", key="field:slot")


@pytest.fixture(autouse=True)
def _no_fsync(monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)


def dataset(n_pairs: int, seed: int = 0):
    examples, hidden = pairs(n_pairs, seed)
    rng = random.Random(seed)
    lengths = [rng.randint(15, 40) for _ in examples]
    return Dataset(tuple(examples), tuple(hidden), TASK, "mem"), hidden, lengths


def job(path, n_pairs=60, n_ctx=1200, core="auto", seed=0, resume=False):
    ds, hidden, lengths = dataset(n_pairs, seed)
    fb = FakeBackend(hidden, lengths, seed=seed, n_ctx=n_ctx)
    batches, carried, rest = plan_core(ds, fb, n_ctx, Batching(core=core))
    config = RunConfig(data="mem", task=TASK, search=SearchConfig(seed=seed), batching=Batching(core=core),
                       batches=tuple(tuple(b) for b in batches), carried=carried, rest=tuple(rest))
    rd = RunDir.open(path) if resume else RunDir.create(path)
    if not resume:
        rd.write_json("config.json", {})
    j = Job(config, ds, fb, rd)
    if resume:
        j.restore()
    return j, hidden, fb


def test_spread_orders_every_prefix_evenly():
    assert spread(8) == [0, 4, 2, 6, 1, 5, 3, 7]
    for m in (1, 5, 13, 100):
        assert sorted(spread(m)) == list(range(m))
        half = spread(m)[: (m + 1) // 2]
        assert max(half) >= m * 0.75 - 1 and min(half) == 0  # the first half reaches the end of the file too


def test_core_keeps_groups_whole_spread_and_fits_one_context():
    ds, hidden, lengths = dataset(60)
    demo = [n + 3 for n in lengths]
    core = choose_core(ds.examples, demo, lengths, n_ctx=1200, prefix=1)
    chosen = set(core)
    assert all((2 * k in chosen) == (2 * k + 1 in chosen) for k in range(60))  # whole pairs
    assert 1 + sum(demo[i] for i in core) + max(lengths) <= 1200 < 1 + sum(demo) + max(lengths)
    assert min(core) < 12 and max(core) > 108  # from the start of the file to its end
    assert len(choose_core(ds.examples, demo, lengths, n_ctx=1200, prefix=1, limit=10)) == 10


def test_core_option_values():
    assert core_size("auto") is None and core_size("all") == 0 and core_size("12") == 12
    for bad in ("0", "-3", "many", ""):
        with pytest.raises(Exception, match="--core must be auto, all or a number"):
            Batching(core=bad)


def test_plan_core_is_the_old_plan_when_the_data_fits_or_with_core_all():
    ds, hidden, lengths = dataset(60)
    fb = FakeBackend(hidden, lengths)
    assert plan_core(ds, fb, 100_000, Batching()) == ([list(range(120))], 0, [])
    batches, carried = plan_for(ds, fb, 1200, None, 8)
    assert plan_core(ds, fb, 1200, Batching(core="all")) == (batches, carried, [])
    small = plan_core(ds, fb, 100_000, Batching(core="20"))
    assert len(small[0]) == 1 and len(small[0][0]) == 20 and len(small[2]) == 100


def test_the_rest_is_predicted_from_the_core_consistently_and_marked(tmp_path):
    j, hidden, fb = job(tmp_path / "run")
    summary = j.run()
    core, rest = j.batches[0], j.rest
    assert summary["finished"] and summary["core"] == len(core) and summary["rest"] == len(rest) > 30
    rows = [orjson.loads(line) for line in (tmp_path / "run" / "labels.jsonl").read_bytes().splitlines()]
    assert {r["source"] for i, r in enumerate(rows) if i in set(core)} == {"search"}
    assert {r["source"] for i, r in enumerate(rows) if i in set(rest)} == {"prediction"}
    assert all(isinstance(r["label"], bool) and isinstance(r["score"], float) for r in rows)
    labels = [r["label"] for r in rows]
    assert Consistency(j.dataset.examples, "asymmetry").count(labels) == 0  # every predicted pair one True, one False
    rest_agreement = sum(labels[i] == hidden[i] for i in rest) / len(rest)
    assert summary["agreement_predicted"] == pytest.approx(rest_agreement) and rest_agreement >= 0.95
    assert [e["kind"] for e in RunDir(tmp_path / "run").events()][-1] == "predict"


def test_the_core_prefix_is_evaluated_once(tmp_path):
    j, hidden, fb = job(tmp_path / "run")
    assert j.run_batch(0)
    before = fb.tokens_evaluated
    assert j.predict_rest()
    spent = fb.tokens_evaluated - before
    prefix = sum(fb.length((i, j.labels[i])) for i in j.batches[0])
    queries = sum(fb.length((i, None)) for i in j.rest)
    assert queries <= spent <= prefix + queries  # each further example costs its own tokens


@pytest.mark.parametrize("cut", range(1, 8))
def test_a_run_stopped_while_predicting_resumes_to_the_same_labels(tmp_path, cut, monkeypatch):
    from icm_lite import run

    monkeypatch.setattr(run, "REST_CHUNK", 8)  # several chunks, each saved
    ref, _, _ = job(tmp_path / "ref")
    ref.run()
    expected = (tmp_path / "ref" / "labels.jsonl").read_bytes()
    j, _, _ = job(tmp_path / "run")
    events = []
    summary = j.run(on_event=events.append, should_stop=lambda: sum(p.event.kind == "predict" for p in events) >= cut)
    assert not summary["finished"] and 0 < len(j.predicted) < len(j.rest)
    resumed, _, _ = job(tmp_path / "run", resume=True)
    assert resumed.run()["finished"]
    assert (tmp_path / "run" / "labels.jsonl").read_bytes() == expected


def test_a_bad_core_value_is_one_line(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "question": "q", "choice": "c"}\n')
    res = CliRunner().invoke(main, ["label", str(data), "--model", "fake", "--out", str(tmp_path / "run"), "--core", "lots"])
    assert "--core must be auto, all or a number of examples, not 'lots'" in one_error(res, 2)
