"""The scoring plan: exact leave-one-out contexts, same order for compared labelings, token counts."""

import math
import random

import pytest

from icm_lite.fake import FakeBackend
from icm_lite.plan import (LAYOUTS, TAIL, build, canonical_layout, contexts, grouped, layout, plan_tokens, shuffled,
                           tree_layout)
from icm_lite.scoring import Scorer, predictability
from icm_lite.tasks import Example


def _labels(n):
    return [(i % 3 == 0) for i in range(n)]


def _ids(seq):
    return [i for i, _ in seq]


@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 33])
def test_every_context_holds_all_other_labeled_examples_once(n, kind):
    labels = _labels(n)
    if n > 3:
        labels[2] = None  # unlabeled: in no context, not read
    ctx = contexts(build(layout(kind, range(n)), [labels]))
    assert set(ctx) == {(0, i) for i in range(n) if labels[i] is not None}
    for (_, i), seq in ctx.items():
        *others, query = seq
        assert query == (i, None)
        assert sorted(others) == [(j, y) for j, y in enumerate(labels) if j != i and y is not None]


def test_canonical_layout_is_file_order():
    labels = _labels(9)
    for (_, i), seq in contexts(build(canonical_layout(range(9)), [labels])).items():
        assert _ids(seq[:-1]) == [j for j in range(9) if j != i]


def test_canonical_layout_keeps_groups_contiguous():
    groups = [str(i // 4) for i in range(24)]  # six groups of four
    ctx = contexts(build(layout("canonical", range(24)), [[True] * 24]))
    for seq in ctx.values():
        seen, last = [], None
        for i, _ in seq[:-1]:
            if groups[i] != last:
                assert groups[i] not in seen, f"group {groups[i]} split in {seq}"
                seen.append(groups[i])
                last = groups[i]


def test_the_tree_layout_is_a_seeded_shuffle():
    """The sibling right before each query follows no pattern of the file: not the pair-mate, not the same slot."""
    n = 40
    group = [i // 2 for i in range(n)]  # pairs, first member at even positions
    ctx = contexts(build(layout("tree", range(n), seed=3), [[True] * n]))
    last = {i: seq[-2][0] for (_, i), seq in ctx.items()}
    assert sum(group[last[i]] == group[i] for i in range(n)) <= 4  # the pair-mate is rarely the last demo
    assert 8 <= sum(last[i] % 2 == i % 2 for i in range(n)) <= 32  # nor is the same position in a pair
    assert shuffled(range(n), 3) == shuffled(range(n), 3) != shuffled(range(n), 4)


@pytest.mark.parametrize("kind", LAYOUTS)
def test_a_changed_example_sits_at_its_own_place_not_last(kind):
    """Labelings that differ on a few examples are scored with every other example where it always is: the
    context of a query under D^ is its context under D with the changed examples inserted, and a changed
    example is not put next to the query (the recency the old "changed examples last" plan had)."""
    n = 32
    base = [i % 5 != 0 for i in range(n)]
    base[7] = base[20] = None
    added = list(base)
    added[7] = True  # a proposal: label an unlabeled example
    flipped = list(added)
    flipped[11] = not flipped[11]  # and a ConsistencyFix changes another
    lay = layout(kind, range(n))
    both = contexts(build(lay, [base, added, flipped]))
    alone = contexts(build(lay, [base]))
    last = 0
    for (k, i), seq in both.items():
        if k == 0:
            assert seq == alone[(0, i)]  # scoring D beside other labelings does not change D's contexts
            continue
        assert [j for j in _ids(seq) if j != 7] == _ids(alone[(0, i)]) if i != 7 else True
        last += _ids(seq)[-2] in (7, 11)
    assert last <= 4, f"a changed example came right before the query in {last} contexts"
    # and the examples that did not change keep their labels and places under every labeling
    for (k, i), seq in both.items():
        if k and i != 7:
            assert [it for it in seq if it[0] not in (7, 11)] == [it for it in alone[(0, i)] if it[0] != 11]


def test_labelings_share_their_common_prefix_in_one_pass():
    n = 16
    base = [True, False] * 8
    other = list(base)
    other[15] = not other[15]
    fb1, fb2 = FakeBackend([True] * n), FakeBackend([True] * n)
    lay = tree_layout(range(n))
    fb1.run(build(lay, [base, other]))
    fb2.run(build(lay, [base]))
    one = fb2.tokens_evaluated
    fb2.run(build(lay, [other]))
    assert fb1.tokens_evaluated < fb2.tokens_evaluated  # together: less than two separate passes
    assert one < fb1.tokens_evaluated


def test_a_prediction_reads_an_unlabeled_example_after_all_labeled_ones():
    labels = [True, None, False, True]
    ctx = contexts(build(tree_layout(range(4)), [labels], [1 << 1]))
    assert list(ctx) == [(0, 1)]
    assert sorted(ctx[(0, 1)][:-1]) == [(0, True), (2, False), (3, True)]


def test_fake_backend_counts_match_the_plan():
    n, L = 32, 40
    fb = FakeBackend([True] * n, [L] * n)
    ex = [Example(str(i), "p") for i in range(n)]
    sc = Scorer(fb, ex)
    labels = _labels(n)
    root = sc.plan([labels])
    expected = plan_tokens(root, fb.length)
    sc.loo(labels)
    assert fb.tokens_evaluated <= expected
    assert fb.reads == n


def _loo_tokens(n, L=40, extra=3, tail=TAIL):
    """Tokens one U(D) costs on the counting fake: n examples, L prompt tokens, label word + separator."""
    fb = FakeBackend([True] * n, [L] * n, demo_extra=extra)
    Scorer(fb, [Example(str(i), "p") for i in range(n)], tail=tail).loo(_labels(n))
    return fb.tokens_evaluated


@pytest.mark.parametrize("tail", [0, 1, 2, 4])
@pytest.mark.parametrize("n", [12, 20, 24, 40, 48, 80, 96, 100, 128, 200])
def test_leave_one_out_costs_at_most_1_15_n_L_log2_n_plus_the_tail(n, tail):
    L = 40 + 3  # a demonstration: prompt + label word + separator
    got = _loo_tokens(n, tail=tail)
    assert got <= 1.15 * n * L * (math.ceil(math.log2(n)) + tail)
    assert got < n * ((n - 1) * L + 40)  # below the naive n²·L (every context from scratch)
    if 4 * tail <= n:  # and below the authors' trie, n²·L/2, unless the tail is over a quarter of the batch (4 of 12)
        assert got < n * ((n - 1) * L + 40) / 2


@pytest.mark.parametrize("tail", [0, 1])
@pytest.mark.parametrize("n", [16, 32, 64, 256])
def test_leave_one_out_at_powers_of_two_is_exactly_n_L_log2_n_plus_the_tail_and_queries(n, tail):
    # Halving exactly: every demonstration outside the tail is decoded once per level, the tail example
    # once per context but its own, and every query once at its leaf. The n·L_q query term is why
    # 1.15·n·L·log2(n) cannot hold at n = 16, 32, 64 for any plan that reads each query once after all the
    # others: 1 + L_q / (L·log2 n) = 1.23, 1.19, 1.16 here.
    Lq, L = 40, 43
    assert _loo_tokens(n, tail=tail) == (n - tail) * L * int(math.log2(n)) + tail * (n - 1) * L + n * Lq


@pytest.mark.parametrize("tail", [1, 2, 4])
def test_every_context_ends_with_the_same_tail_examples(tail):
    n = 20
    labels = _labels(n)
    root = layout("tree", range(n), seed=5, tail=tail)
    ends = {}
    for (_, i), seq in contexts(build(root, [labels])).items():
        assert sorted(j for j, _ in seq[:-1]) == [j for j in range(n) if j != i]  # every other example, once
        ends[i] = [j for j, _ in seq[-1 - tail:-1]]
    anchors = shuffled(range(n), 5)[n - tail:]
    for i, end in ends.items():
        if i not in anchors:
            assert end == anchors  # the same last demonstrations for every query
    assert layout("tree", range(n), seed=5, tail=0).edges != root.edges


def test_a_label_copied_from_the_last_demonstration_favours_sibling_agreement_only_without_a_tail():
    """A model that copies the most recent label (the fake's recency) rewards labelings in which each query's
    last demonstration agrees with it. Without a tail that is the query's tree sibling, and a labeling with
    every sibling pair agreeing scores above the concept; with the tail every query copies the same example,
    which favours no balanced labeling."""
    n = 32
    hidden = [i % 2 == 0 for i in range(n)]
    examples = [Example(str(i), "p") for i in range(n)]
    leaves = shuffled(range(n), 0)
    paired = [None] * n
    for k in range(0, n, 2):  # sibling pairs agree, half the pairs True: balanced
        paired[leaves[k]] = paired[leaves[k + 1]] = k % 4 == 0
    gaps = {}
    for tail in (0, 1):
        fb = FakeBackend(hidden, follow=1.0, noise=0.2, recency=3.0)
        sc = Scorer(fb, examples, "tree", 0, tail)
        u = {name: predictability(sc.loo(lab), lab) for name, lab in (("hidden", hidden), ("paired", paired))}
        gaps[tail] = u["paired"] - u["hidden"]
    assert gaps[0] > 0.5  # without a tail the search would prefer the sibling pattern to the concept
    assert gaps[1] < -0.5  # with it, the concept wins


def _pairs(n):
    return [[i, i + 1] for i in range(0, n - 1, 2)] + ([[n - 1]] if n % 2 else [])


@pytest.mark.parametrize("tail", [0, 3])
@pytest.mark.parametrize("units", [_pairs(21), [[0, 1, 2, 3, 4], [5, 6], [7], [8, 9, 10, 11], [12, 13, 14]]])
def test_the_grouped_tree_keeps_a_group_together_before_its_queries(units, tail):
    """Every context holds all other labeled examples once, and the members of a group share every
    demonstration that is not one of them: a group is one subtree, its members its leaves."""
    n = sum(map(len, units))
    labels = _labels(n)
    root = layout("grouped", range(n), seed=2, tail=tail, units=units)
    ctx = contexts(build(root, [labels]))
    group = {i: g for g, u in enumerate(units) for i in u}
    ends = [i for u in grouped(units, 2) for i in u][n - tail:] if tail else []  # the tail, the same for all
    for (_, i), seq in ctx.items():
        assert sorted(seq[:-1]) == [(j, y) for j, y in enumerate(labels) if j != i]
    for u in units:
        if len(u) > 1:
            outside = {tuple(x for x in ctx[(0, i)][:-1] if group[x[0]] != group[i] and x[0] not in ends) for i in u}
            assert len(outside) == 1, f"group {u} members see different demonstrations around them"


def test_the_grouped_tree_of_single_examples_is_the_tree():
    """Both kinds are built by one function; with groups of one it must give the plain divide and conquer over
    the seeded shuffle, its last `tail` examples ending every context."""
    for n in (1, 2, 5, 16, 33):
        leaves = shuffled(range(n), 4)
        tail = leaves[n - min(2, n - 1):]
        plain = tree_layout(leaves, tail)
        assert layout("grouped", range(n), seed=4, tail=2) == plain
        assert layout("tree", range(n), seed=4, tail=2) == plain
        assert layout("grouped", range(n), seed=4, tail=2, units=[[i] for i in range(n)]) == plain


def test_in_the_grouped_tree_a_copied_label_cannot_favour_one_pair_labeling_over_another():
    """A model that copies recent labels (the fake's recency) rewards labelings by where their labels sit. In
    the grouped tree the two members of a pair read the same demonstrations, then each other; a pair labeled
    one True, one False (asymmetry) then gains the same from any demonstrations, so with the concept's signal
    removed (follow 0) every consistent labeling scores the same recency term: P with recency = P without - r.
    In the scattered tree the term differs between labelings (the sibling-agreement reward)."""
    n = 24
    hidden = [i % 2 == 0 for i in range(n)]
    examples = [Example(str(i), "p", group=str(i // 2), key=str(i % 2)) for i in range(n)]
    rng = random.Random(0)
    labelings = []
    for _ in range(6):
        lab = [None] * n
        for g in range(n // 2):
            t = rng.random() < 0.5
            lab[2 * g], lab[2 * g + 1] = t, not t
        labelings.append(lab)
    gaps = {}
    for kind in ("grouped", "tree"):
        u = []
        for lab in labelings:
            p = {}
            for r in (0.0, 2.0):
                fb = FakeBackend(hidden, follow=0.0, noise=0.3, recency=r)
                p[r] = predictability(Scorer(fb, examples, kind, 1).loo(lab), lab)
            u.append(p[2.0] - p[0.0])
        gaps[kind] = u
    assert gaps["grouped"] == pytest.approx([-2.0] * len(labelings))
    assert max(gaps["tree"]) - min(gaps["tree"]) > 0.5


def _pairs(n):
    return [Example(str(i), "p", group=str(i // 2), key=str(i % 2)) for i in range(n)]


@pytest.mark.parametrize("kind", LAYOUTS)
def test_held_out_without_groups_is_leave_one_out(kind):
    n = 13
    labels = _labels(n)
    labels[4] = None
    examples = [Example(str(i), "p") for i in range(n)]
    fb = FakeBackend([i % 2 == 0 for i in range(n)], recency=1.0)
    sc = Scorer(fb, examples, kind, 3)
    assert sc.held_out(labels) == sc.loo(labels)


@pytest.mark.parametrize("kind", LAYOUTS)
def test_held_out_shows_no_member_of_the_querys_own_group(kind):
    """The held-out protocol: a pair's mate is never a demonstration of its member, so a model that copies (or
    answers against) the last label it read cannot read the answer off the mate. Flipping every mate's label
    leaves every held-out score as it was; leave-one-out, which shows the mate, moves."""
    n = 20
    hidden = [i % 2 == 0 for i in range(n)]
    gold = list(hidden)
    fb = FakeBackend(hidden, recency=2.0)
    sc = Scorer(fb, _pairs(n), kind, 1)
    before = sc.held_out(gold)
    for q, last in fb.last:
        assert last is None or last[0] // 2 != q // 2
    for i in range(0, n, 2):  # flip one member of every pair: each query's mate changes label, nothing else does
        flipped = list(gold)
        flipped[i] = not flipped[i]
        assert sc.held_out(flipped, [i + 1])[i + 1] == pytest.approx(before[i + 1])
    assert set(before) == set(range(n))
    flipped = [not y if i % 2 == 0 else y for i, y in enumerate(gold)]
    assert sc.loo(flipped)[1] != pytest.approx(sc.loo(gold)[1])


def test_held_out_costs_about_one_leave_one_out_in_the_grouped_layout():
    n = 32
    labels = [i % 2 == 0 for i in range(n)]
    counts = {}
    for name in ("loo", "held_out"):
        fb = FakeBackend(labels)
        getattr(Scorer(fb, _pairs(n), "grouped", 0), name)(labels)
        counts[name] = fb.stats()["tokens_evaluated"]
    assert counts["held_out"] <= counts["loo"]  # no mate is pushed
