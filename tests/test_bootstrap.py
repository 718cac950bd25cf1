"""The warm start (--init bootstrap) and the cheap peer it is built on, on the fake backend with a hidden concept."""

import random

import pytest

from icm_lite.bootstrap import balanced, one_pass, peer
from icm_lite.consistency import Consistency
from icm_lite.fake import FakeBackend
from icm_lite.scoring import Scorer, predictability
from icm_lite.search import COLD_T0, WARM_T0, Search, SearchConfig
from icm_lite.tasks import Example

from conftest import pairs


def search(examples, fb, **kw):
    return Search(examples, Scorer(fb, examples), "asymmetry", SearchConfig(seed=kw.pop("seed", 0), **kw))


def agreement(labels, hidden):
    return sum(y == h for y, h in zip(labels, hidden)) / len(hidden)


def test_balanced_labels_are_half_true():
    for n in (1, 2, 7, 40):
        got = balanced(n, random.Random(n))
        assert len(got) == n and sum(got) == n // 2


def test_a_pass_is_the_held_out_decoding_of_each_group():
    examples, hidden = pairs(10)
    fb = FakeBackend(hidden, noise=0.0)
    sc = Scorer(fb, examples)
    cons = Consistency(examples, "asymmetry")
    labels = balanced(20, random.Random(1))
    p = one_pass(sc, cons, labels, loo=True)
    assert p.held_out == sc.held_out(labels) and p.loo == sc.loo(labels)
    assert p.labels == [cons.decode(p.held_out)[i] for i in range(20)]
    assert cons.count(p.labels) == 0


def test_the_peer_settles_on_the_concept_or_its_flip():
    examples, hidden = pairs(20, seed=3)
    for seed in range(4):
        got = peer(Scorer(FakeBackend(hidden, seed=seed), examples), Consistency(examples, "asymmetry"),
                   random.Random(seed))
        assert got.converged and got.changed[-1] == 0 and got.passes <= 4
        assert max(agreement(got.labels, hidden), 1 - agreement(got.labels, hidden)) == 1.0


def test_warm_start_labels_every_example_at_a_fraction_of_the_cold_tokens():
    examples, hidden = pairs(20, seed=1)
    warm_fb, cold_fb = FakeBackend(hidden, seed=1), FakeBackend(hidden, seed=1)
    warm = search(examples, warm_fb)
    events = list(warm.events())
    assert [e.kind for e in events[:2]][0] in ("pass", "seed")
    seed = next(e for e in events if e.kind == "seed")
    assert seed.passes >= 1 and seed.changed == 0 and seed.n_labeled == 40 and seed.flipped is False
    assert agreement(warm.state.labels, hidden) == 1.0 and warm.state.warm
    assert events[-1].stop == "patience" and warm.temperature() <= WARM_T0
    cold = search(examples, cold_fb, init="seeds")
    cold.run()
    assert agreement(cold.state.labels, hidden) == 1.0
    assert warm_fb.tokens_evaluated * 5 < cold_fb.tokens_evaluated


def test_a_settled_warm_start_proposes_nothing_more():
    """After the passes settle, the annealing's predictions are the passes' own rule: every step is a free skip,
    also with a model that copies the last label it read (in the grouped layout a member's leave-one-out context
    ends with its mate: those predictions would propose the mate's label for most members)."""
    examples, hidden = pairs(12, seed=2)
    fb = FakeBackend(hidden, seed=2, recency=4.0)
    s = search(examples, fb)
    events = list(s.events())
    after_seed = events[[e.kind for e in events].index("seed") + 1:]
    assert {e.kind for e in after_seed} == {"skip", "done"}
    assert events[-1].tokens == next(e for e in events if e.kind == "seed").tokens


def test_the_global_flip_is_kept_when_it_scores_higher(monkeypatch):
    """Passes that settle on the flipped labeling (both are consistent) hand over the labeling with the higher U."""
    examples, hidden = pairs(15, seed=4)
    s = search(examples, FakeBackend(hidden, seed=4))
    monkeypatch.setattr(s, "_zero_shot_start", lambda: [not h for h in hidden])  # a start on the wrong polarity
    seed = next(e for e in s.events() if e.kind == "seed")
    assert seed.flipped is True and seed.changed == 0
    assert agreement(s.state.labels, hidden) == 1.0  # the concept: the fake's zero-shot prior makes it score higher


def test_passes_that_do_not_settle_fall_back_to_the_cold_start(monkeypatch):
    examples, hidden = pairs(10, seed=5)
    s = search(examples, FakeBackend(hidden, seed=5), passes=1, iterations=30)
    monkeypatch.setattr(s, "_zero_shot_start", lambda: balanced(20, random.Random(9)))  # the first pass changes labels
    events = list(s.events())
    seed = next(e for e in events if e.kind == "seed")
    assert seed.passes == 1 and seed.changed > 0  # the fall-back, named on the seed event
    assert seed.n_labeled == 8 and not s.state.warm  # the authors' 8 seed labels
    assert seed.temperature == COLD_T0 and events[-1].iteration == 30 and events[-1].stop == "iterations"


def test_a_pass_event_reports_the_u_of_the_labeling_it_scored(monkeypatch):
    """During the passes the state's U is not known; each pass event carries U, P, I and the True count of the
    labeling that pass scored, the same U a separate leave-one-out pass gives."""
    examples, hidden = pairs(10, seed=5)
    fb = FakeBackend(hidden, seed=5, noise=1.0)
    s = search(examples, fb, passes=3, iterations=5)
    start = balanced(20, random.Random(9))
    monkeypatch.setattr(s, "_zero_shot_start", lambda: list(start))
    scored = [list(start)]
    seen = []
    for ev in s.events():
        if ev.kind != "pass":
            break
        seen.append(ev)
        scored.append(list(s.state.labels))  # the next pass scores the labels this one left
    assert seen, "the first pass from balanced random labels changes labels"
    alone = Scorer(FakeBackend(hidden, seed=5, noise=1.0), examples)
    for ev, labels in zip(seen, scored):
        loo = alone.loo(labels)
        p = predictability(loo, labels)
        assert ev.U == pytest.approx(30.0 * p - Consistency(examples, "asymmetry").count(labels))
        assert ev.P == pytest.approx(p) and ev.n_true == sum(labels)


def test_the_fall_back_makes_the_cold_searchs_decisions():
    """After passes that do not settle, the batch is the `--init seeds` search with the same seed, step for step:
    the same seed labels, proposals, U and acceptances (the passes draw nothing from the search's random stream)."""
    examples, hidden = pairs(12, seed=8)

    def trace(init):
        s = search(examples, FakeBackend(hidden, seed=8, noise=1.5), init=init, passes=1, iterations=60, seed=3)
        if init == "bootstrap":
            s._zero_shot_start = lambda: balanced(24, random.Random(4))  # the first pass changes labels
        events = list(s.events())
        start = next(k for k, e in enumerate(events) if e.kind == "seed")
        assert init == "seeds" or events[start].changed > 0
        return [(e.kind, e.example, e.new, round(e.U, 9), e.n_labeled) for e in events[start:]], s.state.labels

    assert trace("bootstrap") == trace("seeds")


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_a_warm_search_resumes_identically_from_any_event(cut):
    examples, hidden = pairs(16, seed=6)

    def make():
        return search(examples, FakeBackend(hidden, seed=6, noise=1.5), seed=6)

    whole = make()
    reference = [(e.kind, e.iteration, e.example, e.U) for e in whole.events()]
    a = make()
    it = a.events()
    first = [next(it) for _ in range(cut)]
    b = make()
    b.restore(a.snapshot())
    rest = [(e.kind, e.iteration, e.example, e.U) for e in b.events()]
    assert [(e.kind, e.iteration, e.example, e.U) for e in first] + rest == reference
    assert b.state.labels == whole.state.labels


def test_the_zero_shot_start_is_balanced_without_constraints():
    examples = [Example(f"x{i}", f"p{i}") for i in range(11)]
    hidden = [i % 3 == 0 for i in range(11)]
    s = Search(examples, Scorer(FakeBackend(hidden), examples), "none", SearchConfig())
    start = s._zero_shot_start()
    assert sum(start) == 5  # above the median: half of the examples, whatever the model's bias
