"""Evaluation: label accuracy and the many-shot test protocol on a fake backend, then once on a real model."""

import hashlib
import random

import orjson
import pytest
from click.testing import CliRunner

from icm_lite.data import Dataset
from icm_lite.errors import DataError
from icm_lite.evaluate import accuracy, balanced_random, evaluate, trajectory
from icm_lite.export import LabeledRun
from icm_lite.fake import FakeBackend
from icm_lite.plan import contexts
from icm_lite.scoring import Scorer
from icm_lite.tasks import Example, Task

from conftest import hidden_concept

CLAIM = Task.builtin("claim")


def fake(hidden, n_ctx=10**6, **kw):
    return FakeBackend(hidden, seed=3, n_ctx=n_ctx, **kw)


class Recording(FakeBackend):
    """The fake backend, keeping every context it was asked to score (one dict per plan)."""

    def __init__(self, inner):
        self.__dict__.update(inner.__dict__)
        self.calls = []

    def run(self, root):
        self.calls.append(contexts(root))
        return super().run(root)


def make(n_train=24, n_test=16, labels="concept", seed=1, unlabeled=4):
    examples, hidden = hidden_concept(n_train + n_test, seed=seed)
    train, test = examples[:n_train], [Example(f"t{i}", f"test prompt {i}") for i in range(n_test)]
    h_train, h_test = hidden[:n_train], hidden[n_train:]
    ys = {"concept": list(h_train), "flipped": [not h for h in h_train]}[labels]
    for i in range(unlabeled):
        ys[i] = None
    run = LabeledRun(path=None, config={}, summary=None, dataset=Dataset(tuple(train), tuple(h_train), CLAIM, "train"),
                     labels=tuple(ys), scores=tuple(None for _ in ys))
    return run, Dataset(tuple(test), tuple(h_test), CLAIM, "test"), hidden


def by_name(result):
    return {c["name"]: c for c in result["conditions"]}


def test_accuracy_counts_log_odds_above_zero_as_true():
    assert accuracy({0: 1.2, 1: -0.3, 2: 0.0, 3: 5.0}, [True, True, False, None]) == \
        {"accuracy": 2 / 3, "n": 3, "predicted_true": 1 / 3}
    assert accuracy({}, [True])["accuracy"] is None


def test_random_labels_are_balanced_and_seeded():
    ys = balanced_random(9, 4)
    assert sum(ys) == 4 and ys == balanced_random(9, 4)
    assert any(balanced_random(9, s) != ys for s in range(5, 10))


def test_test_protocol_matches_scorer_predict_per_query():
    run, test, hidden = make()
    backend = fake(hidden)
    res = evaluate(run, backend, test, seed=0)
    assert res["protocol"] == "test" and res["queries"] == 16 and res["labeled"] == 20
    # the same numbers through the Scorer contract, one query at a time
    examples = list(run.dataset.examples) + list(test.examples)
    scorer = Scorer(fake(hidden), examples)
    labels = list(run.labels) + [None] * 16
    want = accuracy({24 + j: scorer.predict(24 + j, labels) for j in range(16)}, [None] * 24 + list(test.gold))
    got = by_name(res)["icm"]
    assert (got["accuracy"], got["n"], got["predicted_true"]) == (want["accuracy"], want["n"], want["predicted_true"])
    zero = accuracy({24 + j: scorer.predict(24 + j, [None] * 40) for j in range(16)}, [None] * 24 + list(test.gold))
    assert by_name(res)["zero-shot"]["accuracy"] == zero["accuracy"]
    assert [c["demos"] for c in res["conditions"]] == [20, 20, 20, 0]


def test_concept_labels_beat_random_and_flipped_labels_lose():
    run, test, hidden = make()
    good = evaluate(run, fake(hidden), test, seed=0)
    run, test, hidden = make(labels="flipped")
    bad = evaluate(run, fake(hidden), test, seed=0)
    assert good["label_accuracy"] == 1.0 and bad["label_accuracy"] == 0.0 and good["label_accuracy_n"] == 20
    g, b = by_name(good), by_name(bad)
    assert g["icm"]["accuracy"] == g["gold"]["accuracy"] >= 0.9
    assert g["icm"]["accuracy"] > g["random"]["accuracy"]
    assert b["icm"]["accuracy"] <= 0.25 and b["gold"]["accuracy"] == g["gold"]["accuracy"]


def test_gold_reaches_the_model_only_in_the_gold_condition():
    run, test, hidden = make()
    rec = []
    for s in range(3):
        gold = list(run.dataset.gold)
        random.Random(s).shuffle(gold)
        shuffled = LabeledRun(None, {}, None, Dataset(run.dataset.examples, tuple(gold), CLAIM, "train"), run.labels, run.scores)
        backend = Recording(fake(hidden))
        evaluate(shuffled, backend, test, seed=0)
        rec.append(backend.calls)
    assert all(len(calls) == 5 for calls in rec)
    for k in (0, 2, 3):  # icm, random, zero-shot
        assert rec[0][k] == rec[1][k] == rec[2][k]
    assert rec[0][1] != rec[1][1]  # the gold row does use gold
    assert rec[0][4] != rec[1][4]  # and so does U of the gold labels (the fifth pass)


def test_without_a_test_file_each_example_is_predicted_from_the_other_groups():
    run, _, hidden = make(n_test=0)
    backend = fake(hidden)
    res = evaluate(run, backend)
    assert res["protocol"] == "held-out groups" and res["test"] is None and res["queries"] == 24
    assert "other consistency groups" in res["notes"][0]
    scorer = Scorer(fake(hidden), run.dataset.examples)
    labels = list(run.labels)
    want = {i: scorer.predict(i, labels) for i in range(24)}  # no groups: each from all the other labeled examples
    assert by_name(res)["icm"]["accuracy"] == accuracy(want, run.dataset.gold)["accuracy"]
    assert all(c["n"] == 24 for c in res["conditions"])


def test_a_querys_own_group_is_never_among_its_demonstrations():
    """In-sample, a pair's mate labeled in context gives its answer away (copy it, or answer against it); the
    paper's test questions never have their other answers among the demonstrations, so neither do these."""
    examples, hidden = hidden_concept(24, seed=2, groups=12)
    ys = list(hidden)
    run = LabeledRun(path=None, config={}, summary=None, dataset=Dataset(tuple(examples), tuple(hidden), CLAIM, "train"),
                     labels=tuple(ys), scores=tuple(None for _ in ys))
    backend = Recording(fake(hidden, recency=2.0))
    evaluate(run, backend)
    group = {i: ex.group for i, ex in enumerate(examples)}
    seen = 0
    for calls in backend.calls[:3]:  # icm, gold, random
        for (_, q), ctx in calls.items():
            shown = {i for i, y in ctx[:-1]}
            assert all(group[i] != group[q] for i in shown), (q, shown)
            assert len(shown) == 22  # every labeled example of the other groups
            seen += 1
    assert seen == 3 * 24


def test_contexts_that_do_not_fit_are_an_error():
    run, test, hidden = make()
    with pytest.raises(DataError, match="n_ctx=500"):
        evaluate(run, fake(hidden, n_ctx=500), test)


def test_fewer_demos_when_all_do_not_fit():
    run, test, hidden = make(n_train=40, n_test=8, unlabeled=0)
    with pytest.raises(DataError, match="--demos"):
        evaluate(run, fake(hidden, n_ctx=1000), test)
    backend = Recording(fake(hidden, n_ctx=1000))
    res = evaluate(run, backend, test, demos=20)
    assert res["demos_shown"] == 20 and res["largest_context"] <= 1000 and any("20 of the 40" in n for n in res["notes"])
    assert [c["demos"] for c in res["conditions"]] == [20, 20, 20, 0]
    demo_sets = [{i for i, _ in next(iter(calls.values()))[:-1]} for calls in backend.calls[:3]]
    assert demo_sets[0] == demo_sets[1] == demo_sets[2] and len(demo_sets[0]) == 20  # the same examples in every row
    assert res["label_accuracy_n"] == 40  # label accuracy still covers every labeled example


def test_gold_is_required_where_it_is_the_reference():
    run, test, hidden = make()
    no_gold = Dataset(test.examples, None, CLAIM, "test.jsonl")
    with pytest.raises(DataError, match="test file test.jsonl has no gold"):
        evaluate(run, fake(hidden), no_gold)
    blind = LabeledRun(None, {}, None, Dataset(run.dataset.examples, None, CLAIM, "train.jsonl"), run.labels, run.scores)
    with pytest.raises(DataError, match="--test"):
        evaluate(blind, fake(hidden))
    res = evaluate(blind, fake(hidden), test)  # a test file alone still measures icm / random / zero-shot
    assert by_name(res)["gold"]["skipped"] and by_name(res)["icm"]["accuracy"] is not None


def test_overlap_between_train_and_test_is_reported():
    run, test, hidden = make()
    leaked = Dataset((run.dataset.examples[5],) + test.examples[1:], test.gold, CLAIM, "test")
    res = evaluate(run, fake(hidden), leaked)
    assert res["overlap"] == 1 and any("not held out" in n for n in res["notes"])


def test_trajectory_walks_back_from_the_final_labels():
    run, _, _ = make(n_train=4, n_test=0, unlabeled=0)  # final labels = gold (hidden)
    g = run.dataset.gold
    ev = lambda kind, it, **kw: {"kind": kind, "iteration": it, "U": float(it), "n_labeled": 4, **kw}
    events = [ev("seed", 0), ev("accept", 1, example=0, old=not g[0], new=g[0], fixes=0), ev("reject", 2),
              ev("accept", 3, example=1, old=not g[1], new=g[1], fixes=0), ev("done", 3)]
    rows = trajectory(run, events)
    assert [r["agreement"] for r in rows] == [0.5, 0.75, 0.75, 1.0, 1.0]
    events[1]["fixes"] = 2  # labels before an accept with fixes are unknown: never guessed
    events[3]["fixes"] = 1
    assert [r["agreement"] for r in trajectory(run, events)] == [None, None, None, 1.0, 1.0]
    # a later batch: its seed labels unlogged examples, so nothing before it is known
    events = [ev("seed", 0), ev("accept", 1, example=0, old=not g[0], new=g[0], fixes=0), ev("done", 1),
              ev("seed", 0, batch=1), ev("accept", 1, example=1, old=not g[1], new=g[1], fixes=0, batch=1), ev("done", 1, batch=1)]
    rows = trajectory(run, events)
    assert [r["agreement"] for r in rows] == [None, None, None, 0.75, 1.0, 1.0]
    assert [r["step"] for r in rows] == [0, 1, 1, 1, 2, 2] and [r["batch"] for r in rows] == [0, 0, 0, 1, 1, 1]


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from icm_lite.evaluate import plot_run

    run, _, _ = make(n_train=4, n_test=0, unlabeled=0)
    run = LabeledRun(tmp_path, {}, None, run.dataset, run.labels, run.scores)
    (tmp_path / "events.jsonl").write_bytes(b"".join(orjson.dumps(
        {"kind": k, "iteration": i, "U": float(i), "n_labeled": 4, "fixes": 0, "example": 0, "old": run.labels[0]}) + b"\n"
        for i, k in enumerate(["seed", "accept", "done"])))
    got = plot_run(run, tmp_path / "p.png")
    assert got["agreement_points"] == 3 and (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


# --- one real model --------------------------------------------------------------------------------------

FACTS = [("What color is the sky on a clear day?", "The sky is blue.", True),
         ("What color is the sky on a clear day?", "The sky is green.", False),
         ("How many legs does a dog have?", "A dog has four legs.", True),
         ("How many legs does a dog have?", "A dog has seven legs.", False),
         ("What is the capital of France?", "The capital of France is Paris.", True),
         ("What is the capital of France?", "The capital of France is Berlin.", False),
         ("What is 2 + 2?", "2 + 2 is 4.", True),
         ("What is 2 + 2?", "2 + 2 is 5.", False)]
TEST = [("What do bees make?", "Bees make honey.", True), ("What do bees make?", "Bees make steel.", False),
        ("Where does the sun rise?", "The sun rises in the east.", True), ("Where does the sun rise?", "The sun rises in the north.", False)]


def _write(path, rows):
    path.write_bytes(b"".join(orjson.dumps({"id": f"{path.stem}{i}", "question": q, "choice": c, "label": y}) + b"\n"
                              for i, (q, c, y) in enumerate(rows)))


def make_run_dir(tmp_path, model_path="/nowhere/model.gguf"):
    data, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    _write(data, FACTS)
    _write(test, TEST)
    run = tmp_path / "run"
    run.mkdir()
    # one thread: on a loaded machine llama.cpp's spinning threads make two ~8x slower than one
    from icm_lite.config import RunConfig
    from icm_lite.options import ModelOptions

    config = RunConfig(data=str(data), task=CLAIM, model="smollm2", model_options=ModelOptions(n_ctx=1024, n_threads=1),
                       data_sha256=hashlib.sha256(data.read_bytes()).hexdigest(), model_name="smollm2",
                       model_path=str(model_path)).to_json()
    (run / "config.json").write_bytes(orjson.dumps(config))
    icm = [y if i != 7 else None for i, (_, _, y) in enumerate(FACTS)]  # pretend ICM got 7 of 8, all right
    (run / "labels.jsonl").write_bytes(b"".join(orjson.dumps({"id": f"train{i}", "label": y, "score": None}) + b"\n"
                                                for i, y in enumerate(icm)))
    return run, test


def test_cli_eval_prints_a_table_or_json(tmp_path, monkeypatch):
    import types

    import icm_lite.evaluate as ev
    from icm_lite.cli import main

    run, test = make_run_dir(tmp_path)
    hidden = [y for _, _, y in FACTS] + [y for _, _, y in TEST]
    monkeypatch.setattr(ev, "open_eval_backend", lambda *a, **k: (types.SimpleNamespace(name="fake"), fake(hidden)))
    res = CliRunner().invoke(main, ["eval", str(run)])
    assert res.exit_code == 0, res.output
    for text in ("other consistency groups", "ICM labels", "gold labels", "random labels", "no demonstrations", "label accuracy vs gold: 100.0% of 7"):
        assert text in " ".join(res.output.split()), text
    res = CliRunner().invoke(main, ["eval", str(run), "--test", str(test), "--json"])
    assert res.exit_code == 0, res.output
    out = orjson.loads(res.stdout)
    assert out["model"] == "fake" and out["protocol"] == "test" and out["queries"] == 4
    res = CliRunner().invoke(main, ["eval", str(run), "--test", str(tmp_path / "nope.jsonl")])
    assert res.exit_code == 2 and "does not exist" in res.output


@pytest.mark.model
def test_cli_eval_on_a_real_model(tmp_path, smollm2_path):
    from icm_lite.cli import main

    run, test = make_run_dir(tmp_path, smollm2_path)
    res = CliRunner().invoke(main, ["eval", str(run), "--test", str(test), "--model", "smollm2", "--json"])
    assert res.exit_code == 0, res.output
    out = orjson.loads(res.stdout)
    assert out["model"] == "smollm2" and out["protocol"] == "test" and out["queries"] == 4
    assert out["label_accuracy"] == 1.0 and out["label_accuracy_n"] == 7
    rows = {c["name"]: c for c in out["conditions"]}
    assert list(rows) == ["icm", "gold", "random", "zero-shot"]
    assert all(c["n"] == 4 and 0 <= c["accuracy"] <= 1 for c in rows.values())
    # the ICM labels here equal gold, so the two rows must agree exactly (same contexts, same model)
    assert {k: v for k, v in rows["icm"].items() if k not in ("name", "description")} == \
        {k: v for k, v in rows["gold"].items() if k not in ("name", "description")}
    assert out["tokens_evaluated"] > 0

    res = CliRunner().invoke(main, ["eval", str(run), "--model", "smollm2", "--n-ctx", "64", "--test", str(test)])
    assert res.exit_code == 2 and "n_ctx" in res.output


def test_u_gap_says_which_gap_it_is():
    """U of the ICM labels vs U of gold, on the same examples: gold higher = the search stopped short; ICM higher =
    the model prefers other labels; and U of the ICM labels is the U the search itself reports."""
    from icm_lite.evaluate import u_gap

    run, _, hidden = make(unlabeled=0)
    assert u_gap(run, fake(hidden))["gap"] == "equal"  # the ICM labels are the gold ones
    half = list(run.labels)
    for i in range(0, 24, 4):
        half[i] = not half[i]  # a search that ended with 6 of 24 wrong
    short = LabeledRun(None, {}, None, run.dataset, tuple(half), run.scores)
    got = u_gap(short, fake(hidden))
    assert got["gap"] == "search stopped short" and got["gold_same"] > got["icm"] + 0.1
    # a model whose concept is the flip of gold: the flipped labels are what it finds most coherent
    flipped = LabeledRun(None, {}, None, run.dataset, tuple(not h for h in run.dataset.gold), run.scores)
    anti = fake([not h for h in hidden])
    got = u_gap(flipped, anti)
    assert got["gap"] == "model prefers other labels" and got["icm"] > got["gold_same"] + 0.1


@pytest.mark.parametrize("tail", [0, 4])
def test_u_of_the_icm_labels_is_what_the_search_reported(tmp_path, tail):
    """In the run's own layout (--tail included): a recency-sensitive fake scores other layouts differently."""
    from icm_lite.evaluate import u_gap
    from icm_lite.rundir import RunDir
    from icm_lite.search import SearchConfig

    from conftest import job_for

    examples, hidden = hidden_concept(20, seed=4)
    ds = Dataset(tuple(examples), tuple(hidden), CLAIM, "mem")
    job = job_for(ds, fake(hidden, recency=0.5), SearchConfig(iterations=30, seed=1, alpha=5.0, tail=tail),
                  RunDir.create(tmp_path / "r"))
    summary = job.run()
    searched = tuple(job.labels)
    run = LabeledRun(tmp_path / "r", {"search": {"alpha": 5.0, "seed": 1, "tail": tail}}, summary, ds,
                     tuple(y if y is not None else job.predicted.get(i, (None,))[0] for i, y in enumerate(searched)),
                     tuple(None for _ in searched),
                     tuple("search" if y is not None else "prediction" for y in searched))
    assert u_gap(run, fake(hidden, recency=0.5))["icm"] == pytest.approx(summary["U"], abs=1e-9)
