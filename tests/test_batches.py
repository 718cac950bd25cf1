"""Batches: data larger than one context is split into batches that fit n_ctx, groups whole, labels carried.

Unit tests plan batches from token lengths alone and run whole jobs on the fake backend; the acceptance test
labels a dataset 4x larger than the context with the real SmolLM2 model and checks no context ever exceeded it.
"""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icm_lite.batches import BatchView, choose_carried, plan_batches, units
from icm_lite.data import Dataset, build_dataset
from icm_lite.errors import DataError
from icm_lite.fake import FakeBackend
from icm_lite.plan import build, contexts, tree_layout
from icm_lite.run import agreement, plan_for
from icm_lite.rundir import RunDir
from icm_lite.scoring import Scorer
from icm_lite.search import Search, SearchConfig
from icm_lite.tasks import Example, Task

from conftest import hidden_concept, job_for


def grouped(sizes, lone_every=0):
    """Examples in groups of the given sizes, members interleaved in the file; a lone example now and then."""
    members = [(g, k) for g, n in enumerate(sizes) for k in range(n)]
    random.Random(len(sizes)).shuffle(members)
    out = []
    for j, (g, k) in enumerate(members):
        out.append(Example(f"e{j}", "p", str(g), None))
        if lone_every and j % lone_every == 0:
            out.append(Example(f"lone{j}", "p", None, None))
    return out


def fits(batch, demo, query, prefix, carried_tokens, n_ctx):
    """The largest context a batch's search can build: carried + every other demo + one query."""
    worst = max(sum(demo[j] for j in batch if j != i) + query[i] for i in batch)
    return prefix + carried_tokens + worst <= n_ctx


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=40), lone=st.integers(0, 5),
       n_ctx=st.integers(60, 600), batch_size=st.one_of(st.none(), st.integers(1, 30)), carry=st.integers(0, 10),
       seed=st.integers(0, 1000))
def test_batches_keep_every_group_whole_and_fit(sizes, lone, n_ctx, batch_size, carry, seed):
    examples = grouped(sizes, lone)
    rng = random.Random(seed)
    query = [rng.randint(3, 13) for _ in examples]
    demo = [q + 2 for q in query]
    try:
        batches, k = plan_batches(examples, demo, query, n_ctx, 1, batch_size, carry)
    except DataError as e:  # refused only when a group alone cannot fit
        assert any(1 + sum(demo[i] for i in u) + max(query[i] for i in u) > n_ctx for u in units(examples)), e
        return
    assert sorted(i for b in batches for i in b) == list(range(len(examples)))  # each example exactly once
    assert all(b == sorted(b) for b in batches)  # file order inside a batch
    batch_of = {i: n for n, b in enumerate(batches) for i in b}
    for u in units(examples):
        assert len({batch_of[i] for i in u}) == 1  # a consistency group is never split
    reserve = sum(sorted(demo, reverse=True)[:k]) if len(batches) > 1 else 0
    assert k <= carry and (len(batches) > 1 or k == 0)
    for b in batches:
        assert fits(b, demo, query, 1, reserve, n_ctx)
        if batch_size and len(b) > batch_size:
            assert len([u for u in units(examples) if batch_of[u[0]] == batch_of[b[0]]]) == 1  # only one big group
    if len(batches) == 1:
        assert batches == [list(range(len(examples)))]


def test_batches_are_balanced_and_minimal():
    examples = [Example(f"e{i}", "p") for i in range(600)]
    batches, k = plan_batches(examples, [10] * 600, [10] * 600, 100_000, 1, batch_size=256, carry=8)
    assert [len(b) for b in batches] == [200, 200, 200]
    assert k == 8
    batches, _ = plan_batches(examples, [10] * 600, [10] * 600, 2651, 1, carry=8)  # room for 256 demos after 8 carried
    assert len(batches) == 3 and max(len(b) for b in batches) - min(len(b) for b in batches) <= 1


def test_one_context_is_one_batch_without_carry():
    examples = [Example(f"e{i}", "p", str(i // 3)) for i in range(30)]
    assert plan_batches(examples, [10] * 30, [12] * 30, 400, 1) == ([list(range(30))], 0)


def test_a_group_larger_than_the_context_is_a_clear_error():
    examples = [Example(f"e{i}", "p", "big" if i < 20 else None) for i in range(25)]
    with pytest.raises(DataError, match=r"consistency group 'big' \(20 examples\) needs 213 tokens in one context, "
                                        r"more than n_ctx=200; a group is never split across batches: raise --n-ctx"):
        plan_batches(examples, [10] * 25, [12] * 25, 200, 1)
    lone = [Example("long-one", "p"), Example("b", "p")]
    with pytest.raises(DataError, match=r"example 'long-one' alone takes 313 tokens with a query, more than n_ctx=200"):
        plan_batches(lone, [300, 10], [12, 12], 200, 1)


def test_carried_demonstrations_shrink_to_fit_the_largest_group():
    examples = [Example(f"e{i}", "p", str(i // 5)) for i in range(40)]  # groups of 5 x 10 tokens
    batches, k = plan_batches(examples, [10] * 40, [10] * 40, 100, 0, carry=8)
    assert k == 4 and all(len(b) == 5 for b in batches)  # 90 tokens of room: 50 for a group, 40 for 4 carried


def test_choose_carried_is_balanced_and_confident():
    labels = [True, True, True, False, False, None, False]
    scores = {0: 0.5, 1: 3.0, 2: 1.0, 3: -2.0, 4: -0.1, 6: -1.0}
    assert choose_carried(labels, scores, 4) == [(1, True), (2, True), (3, False), (6, False)]
    assert choose_carried([True, True, True, False], {0: 1.0, 1: 2.0, 2: 3.0, 3: -1.0}, 4) == \
        [(0, True), (1, True), (2, True), (3, False)]  # one False only: True fills the rest
    assert choose_carried([None, None], {}, 4) == []


def test_batch_view_maps_indices_and_puts_carried_demos_first():
    examples, hidden = hidden_concept(20)
    fb = FakeBackend(hidden)
    idx = [3, 7, 11, 15]
    carried = [(0, hidden[0]), (1, hidden[1])]
    view = BatchView(fb, idx, carried)
    local = [examples[i] for i in idx]
    labels = [True, False, None, True]
    got = Scorer(view, local).loo(labels)
    # the same contexts built by hand in dataset indices
    full = [None] * 20
    for k, y in enumerate(labels):
        full[idx[k]] = y
    plan = build(tree_layout(idx), [full])
    for key, seq in contexts(view.plan(build(tree_layout(range(4)), [labels]))).items():
        assert seq[:2] == tuple(carried)
    want = FakeBackend(hidden).run(type(plan)(tuple(carried), plan.children))
    assert {idx[k]: s for k, s in got.items()} == {i: s for (_, i), s in want.items()}
    assert view.tokens_evaluated == fb.tokens_evaluated > 0


class Recording(FakeBackend):
    """The fake backend, recording every context it is asked to score."""

    searching = 0

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.seen = []

    def run(self, root):
        self.seen.extend(contexts(root).values())
        self.searching = len(self.seen) if any(len(c) > 1 for c in contexts(root).values()) else self.searching
        return super().run(root)


def _job(tmp_path, n=60, groups=15, n_ctx=900, seed=1, carry=8, iterations=40, seeds="groups"):
    examples, hidden = hidden_concept(n, seed=seed, groups=groups)
    ds = Dataset(tuple(examples), tuple(hidden), Task.builtin("claim"), "mem")
    fb = Recording(hidden, seed=seed)
    batches, k = plan_for(ds, fb, n_ctx, None, carry)
    job = job_for(ds, fb, SearchConfig(iterations=iterations, seed=seed, seeds=seeds, init="seeds"), RunDir.create(tmp_path / f"run{seed}"), batches, k)
    return job, fb, hidden


def test_a_job_labels_every_batch_with_carried_demos_within_n_ctx(tmp_path):
    job, fb, hidden = _job(tmp_path)
    assert len(job.batches) == 5 and all(len(b) == 12 for b in job.batches)
    summary = job.run()
    fb.seen = fb.seen[: fb.searching]  # what the searches scored (the zero-shot report comes after)
    assert summary["finished"] and summary["batches"] == 5 and summary["labeled"] + summary["predicted"] == 60
    assert summary["labeled"] >= 50
    longest = max(sum(fb.length(it) for it in seq) for seq in fb.seen)
    assert longest <= 900  # no context ever needed more than n_ctx (the real backend refuses; never truncates)
    carried = {r["batch"]: r["carried"] for r in summary["per_batch"]}
    assert carried == {0: 0, 1: 8, 2: 8, 3: 8, 4: 8}
    batch_of = {i: b for b, idx in enumerate(job.batches) for i in idx}
    for seq in fb.seen:  # every context of batch b > 0 starts with its carried demos, from the first batch
        b = batch_of[seq[-1][0]]
        head = seq[: carried[b]]
        assert all(batch_of[i] == 0 < b and y is not None for i, y in head)
        assert all(batch_of[i] == b for i, _ in seq[carried[b]:])


def _polarities(tmp_path, carry, seeds=range(4)):
    # seed examples anywhere: with whole-group seeds, 8 of a 12-example batch are seeds, and in seed 3 the last
    # batch's hidden labels are all False, so its polarity is then decided by drift, not by the carried demos
    out = []
    for seed in seeds:
        job, _, hidden = _job(tmp_path / f"c{carry}", seed=seed, carry=carry, iterations=100, seeds="examples")
        job.run()
        per = [agreement([job.labels[i] for i in b], [hidden[i] for i in b])[0] for b in job.batches]
        out.append("same" if all(a >= 0.8 for a in per) or all(a <= 0.2 for a in per) else per)
    return out


def test_carried_labels_keep_one_polarity_across_batches(tmp_path):
    """Independent batches may each settle on either polarity (equally coherent); carried demos align them."""
    assert _polarities(tmp_path, carry=8) == ["same"] * 4
    assert any(p != "same" for p in _polarities(tmp_path, carry=0))  # without them some run mixes polarities


def test_ranked_seeds_follow_the_fixed_demonstrations():
    """A later batch's seeds: still half True, half False, ranked by prediction with the carried demos in context."""
    examples, hidden = hidden_concept(40, seed=3)
    idx = list(range(20, 40))
    for flip in (False, True):
        carried = [(i, hidden[i] != flip) for i in range(8)]
        view = BatchView(FakeBackend(hidden, noise=0.0, prior=0.0), idx, carried)
        local = [examples[i] for i in idx]
        s = Search(local, Scorer(view, local), "none", SearchConfig(init_k=8, fix_rounds=0, seed=1), ranked_seeds=True)
        s.start()
        seeds = [(k, y) for k, y in enumerate(s.state.labels) if y is not None]
        assert len(seeds) == 8 and sum(y for _, y in seeds) == 4
        agree = sum(y == (hidden[idx[k]] != flip) for k, y in seeds)
        assert agree >= 7, (flip, agree)  # the seeds take the carried polarity, flipped or not


# --- acceptance: the real model, a dataset 4x larger than its context ---------------------------------


@pytest.mark.model
def test_real_model_labels_data_four_times_its_context_in_batches(tmp_path, smollm2_path):
    from icm_lite.llama import LlamaBackend
    from icm_lite.options import ModelOptions

    rng = random.Random(0)
    records = []
    for g in range(90):  # 180 short claims, in consistency groups of two
        a = rng.randrange(2, 60)
        for word in ("even", "odd"):
            records.append((f"r{len(records)}", {"id": f"n{len(records)}", "choice": f"{a} is {word}.",
                                                 "consistency_id": g, "label": (a % 2 == 0) == (word == "even")}))
    ds = build_dataset(records, Task("numbers", "Claim: {choice}\nThis claim is"), "numbers")
    n_ctx = 512
    backend = LlamaBackend(str(smollm2_path), ModelOptions(n_ctx=n_ctx, n_threads=1))
    backend.prepare(ds.examples, ("True", "False"))
    all_demos = sum(max(backend.length((i, True)), backend.length((i, False))) for i in range(len(ds)))
    assert all_demos >= 4 * n_ctx  # the whole labeled set would need 4 contexts or more
    batches, k = plan_for(ds, backend, n_ctx, None, 8)
    assert len(batches) >= 5 and k == 8
    for g in range(90):
        assert len({n for n, b in enumerate(batches) for i in b if ds.examples[i].group == str(g)}) == 1
    longest = []
    run = backend.run
    backend.run = lambda root: longest.append(max(backend.prefix_length + sum(backend.length(it) for it in seq) for seq in contexts(root).values())) or run(root)
    job = job_for(ds, backend, SearchConfig(iterations=1, init="seeds", init_k=2, seed=0), RunDir.create(tmp_path / "run"),
                  batches, k)
    summary = job.run()
    assert summary["finished"] and summary["batches"] == len(batches)
    assert max(longest) <= n_ctx  # every context fit: nothing was truncated (the backend refuses, never cuts)
    labeled_per_batch = [sum(job.labels[i] is not None for i in b) for b in batches]
    assert all(n >= 2 for n in labeled_per_batch)  # every batch was seeded and searched
    carried = [r["carried"] for r in summary["per_batch"]]
    assert carried == [0] + [min(8, labeled_per_batch[0])] * (len(batches) - 1)  # from the first batch only
