"""--pin: labels a person knows are fixed demonstrations: never proposed, never changed, counted in U, and kept
apart from the agreement with gold in every report."""

import json
import random

import orjson
import pytest
from click.testing import CliRunner

from icm_lite.cli import main
from icm_lite.consistency import Consistency
from icm_lite.data import read_pins
from icm_lite.errors import DataError
from icm_lite.fake import FakeBackend
from icm_lite.scoring import Scorer, predictability
from icm_lite.search import Search, SearchConfig

from conftest import one_error, pairs


@pytest.mark.parametrize("init", ["bootstrap", "seeds"])
def test_a_pinned_label_never_changes_and_is_never_proposed(init):
    examples, hidden = pairs(12, seed=1)
    pinned = {0: not hidden[0], 7: hidden[7]}  # one of them wrong on purpose: the search must keep it anyway
    fb = FakeBackend(hidden, seed=1)
    s = Search(examples, Scorer(fb, examples), "asymmetry", SearchConfig(seed=1, init=init, iterations=200),
               pinned=pinned)
    for ev in s.events():
        assert ev.example not in pinned
        if ev.kind != "pass":
            assert all(s.state.labels[i] == y for i, y in pinned.items())
    assert s.state.labels[1] == hidden[0]  # the wrong pin's mate follows the constraint around it
    labels = s.state.labels
    assert s.state.U == pytest.approx(30 * predictability(Scorer(FakeBackend(hidden, seed=1), examples).loo(labels), labels)
                                      - Consistency(examples, "asymmetry").count(labels))  # pins count in U


def test_pins_from_a_review_csv_take_the_correction_where_filled(tmp_path):
    p = tmp_path / "review.csv"
    p.write_text("id,label,margin,source,flags,text,correction\na,Yes,-0.3,search,,t,No\nb,No,0.1,search,,t,\n"
                 "c,yes,0.2,search,,t,true\n", encoding="utf-8")
    assert read_pins(p, ("Yes", "No")) == {"a": False, "b": False, "c": True}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "label": "maybe"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: pinned label must be Yes/No, true/false or 1/0, not 'maybe'"):
        read_pins(bad, ("Yes", "No"))


def _data(tmp_path, n_pairs=10):
    rows = []
    rng = random.Random(3)
    for k in range(n_pairs):
        first = rng.random() < 0.5
        for slot, h in (("a", first), ("b", not first)):
            rows.append({"id": f"p{k}{slot}", "review": f"pair {k} {slot} {'good' if h else 'bad'}", "slot": slot,
                         "consistency_id": k, "label": h})
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    task = tmp_path / "t.json"
    task.write_text(json.dumps({"name": "t", "template": "Review: {review}\nAnswer:", "relation": "asymmetry",
                                "key": "field:slot", "label_words": ["Yes", "No"]}))
    return data, task, rows


def test_pinned_labels_are_written_as_such_and_left_out_of_the_agreement(tmp_path):
    data, task, rows = _data(tmp_path)
    pins = tmp_path / "pins.csv"
    pins.write_text(f"id,label\n{rows[0]['id']},{'No' if rows[0]['label'] else 'Yes'}\n", encoding="utf-8")  # wrong
    res = CliRunner().invoke(main, ["label", str(data), "--task", str(task), "--out", str(tmp_path / "run"),
                                    "--model", "fake", "--pin", str(pins), "--plain", "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    out = [orjson.loads(line) for line in (tmp_path / "run" / "labels.jsonl").read_bytes().splitlines()]
    assert out[0]["source"] == "pinned" and out[0]["label"] == (not rows[0]["label"])
    assert s["pinned"] == 1 and s["labeled"] == len(rows) - 1 and s["agreement_n"] == len(rows) - 1
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["pins"] == [[rows[0]["id"], not rows[0]["label"]]]
    res = CliRunner().invoke(main, ["export", str(tmp_path / "run"), "--format", "prompt-completion",
                                    "--valid-fraction", "0", "--out", str(tmp_path / "ft")])
    assert res.exit_code == 0 and "predicted 0" in res.output
    assert len((tmp_path / "ft" / "train.jsonl").read_text().splitlines()) == len(rows)  # pinned ones are trained on


def test_pin_errors_are_one_line(tmp_path):
    data, task, rows = _data(tmp_path)
    pins = tmp_path / "pins.csv"
    pins.write_text("id,label\nnobody,Yes\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["label", str(data), "--task", str(task), "--out", str(tmp_path / "run"),
                                    "--model", "fake", "--pin", str(pins)])
    assert "--pin names 1 id(s) that are not in" in one_error(res, 2) and "'nobody'" in res.stderr
    res = CliRunner().invoke(main, ["label", "--resume", str(tmp_path / "run"), "--pin", str(pins)])
    assert "--pin starts a new run" in one_error(res, 2)


def test_pinning_the_least_sure_tenth_with_its_right_labels_raises_agreement_on_the_rest():
    """A weak concept (noisy fake), the warm default: pin the tenth of the labels the model is least sure of to
    their true labels, search again; agreement on the other nine tenths, over 6 seeds."""
    from icm_lite.data import Dataset
    from icm_lite.export import LabeledRun
    from icm_lite.review import doubtful
    from icm_lite.tasks import Task

    task = Task(name="t", template="{x}", relation="asymmetry", key="field:slot")
    before, after = [], []
    for seed in range(6):
        examples, hidden = pairs(20, seed=seed)

        def run(pinned=None):
            fb = FakeBackend(hidden, seed=seed, noise=2.0, follow=1.0, prior=0.3)
            s = Search(examples, Scorer(fb, examples), "asymmetry", SearchConfig(seed=seed), pinned=pinned)
            return s.run(), fb

        st, fb = run()
        scores = Scorer(FakeBackend(hidden, seed=seed, noise=2.0, follow=1.0, prior=0.3), examples).loo(st.labels)
        labeled = LabeledRun(None, {}, None, Dataset(tuple(examples), None, task, "mem"), tuple(st.labels),
                             tuple(scores.get(i) for i in range(len(examples))))
        worst = [r.index for r in doubtful(labeled, [])][: len(examples) // 10]
        rest = [i for i in range(len(examples)) if i not in worst]
        before.append(sum(st.labels[i] == hidden[i] for i in rest) / len(rest))
        st2, _ = run({i: hidden[i] for i in worst})
        after.append(sum(st2.labels[i] == hidden[i] for i in rest) / len(rest))
    assert sum(after) / 6 >= sum(before) / 6, (before, after)
    print("agreement on the rest, before / after pinning the least sure tenth:", before, after)


def test_pins_outside_the_core_join_it_and_the_rest_still_fits_one_context(tmp_path):
    """A file larger than one context: its core fills the context. Pinned examples are demonstrations of the rest,
    so their groups go into the core first (instead of onto the rest's prefix, past n_ctx), and a review CSV of the
    predicted rest pins as the README shows."""
    data, task = "benchmarks/data/meals.jsonl", "benchmarks/data/meals.task.json"
    args = ["label", data, "--task", task, "--model", "fake", "--n-ctx", "2048", "--plain", "--json"]
    res = CliRunner().invoke(main, args + ["--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    ids = [json.loads(line)["id"] for line in open(data)]
    pinned = [ids[i] for i in json.loads((tmp_path / "a" / "config.json").read_text())["rest"]][::7][:12]
    pins = tmp_path / "pins.csv"
    pins.write_text("id,label\n" + "".join(f"{i},Yes\n" for i in pinned), encoding="utf-8")
    res = CliRunner().invoke(main, args + ["--out", str(tmp_path / "b"), "--pin", str(pins)])
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert set(pinned) <= {ids[i] for i in config["batches"][0]} and len(pinned) == 12 and config["rest"]
    out = {r["id"]: r for r in map(orjson.loads, (tmp_path / "b" / "labels.jsonl").read_bytes().splitlines())}
    assert all(out[i]["source"] == "pinned" and out[i]["label"] is True for i in pinned)
