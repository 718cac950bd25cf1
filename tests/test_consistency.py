"""I(D) and the fix options, per relation type."""

import pytest

from icm_lite.consistency import Consistency
from icm_lite.tasks import Example


def ex(group, key):
    return Example(f"{group}-{key}", "p", group, key)


def test_contradiction_different_keys_not_both_true():
    c = Consistency([ex("g", "12"), ex("g", "15")], "contradiction")
    assert c.count([True, True]) == 1
    assert c.count([True, False]) == 0 and c.count([False, False]) == 0
    assert c.options(0, 1) == [(True, False), (False, True), (False, False)]


def test_asymmetry_exactly_one_true():
    c = Consistency([ex("p", "A>B"), ex("p", "B>A")], "asymmetry")
    assert c.count([True, True]) == 1 and c.count([False, False]) == 1
    assert c.count([True, False]) == 0 and c.count([False, True]) == 0
    assert c.options(0, 1) == [(True, False), (False, True)]


def test_implication_same_key_same_label():
    c = Consistency([ex("g", "7"), ex("g", "7"), ex("g", "9")], "contradiction")
    assert c.kind(0, 1) == "implication"
    assert c.count([True, False, None]) == 1
    assert c.count([True, True, True]) == 2  # 0-2 and 1-2 contradict
    assert c.options(0, 1) == [(True, True), (False, False)]


def test_unlabeled_groupless_and_keyless_examples_never_conflict():
    examples = [ex("g", "1"), ex("g", "2"), Example("a", "p", None, "1"), Example("b", "p", "g", None)]
    c = Consistency(examples, "contradiction")
    assert c.count([True, None, True, True]) == 0
    assert c.inconsistent([True, True, True, True]) == [(0, 1)]


def test_relation_none_keeps_only_implications():
    c = Consistency([ex("g", "1"), ex("g", "2"), ex("g", "1")], "none")
    assert c.count([True, True, False]) == 1  # only the equal-key pair (0, 2)


def test_decode_picks_the_consistent_labeling_with_the_highest_signed_sum():
    pair = Consistency([ex("p", "a"), ex("p", "b")], "asymmetry")
    assert pair.decode({0: 0.3, 1: 1.2}) == {0: False, 1: True}
    assert pair.decode({0: -0.3, 1: -1.2}) == {0: True, 1: False}  # exactly one True, the likelier one
    c = Consistency([ex("g", "12"), ex("g", "15"), ex("g", "12"), ex("g", "9")], "contradiction")
    assert c.decode({0: 0.5, 1: 2.0, 2: 0.5, 3: -1.0}) == {0: False, 1: True, 2: False, 3: False}
    assert c.decode({0: 1.5, 1: 2.0, 2: 1.5, 3: -1.0}) == {0: True, 1: False, 2: True, 3: False}  # equal keys add up
    assert c.decode({0: -1.0, 1: -2.0, 2: -0.5, 3: -1.0}) == dict.fromkeys(range(4), False)  # none True is consistent


def test_decode_is_consistent_and_optimal_by_brute_force():
    import itertools
    import random

    rng = random.Random(0)
    for relation in ("none", "contradiction", "asymmetry"):
        for _ in range(60):
            n = rng.randint(1, 6)
            exs = [ex(rng.choice("gh"), rng.choice("xyz")) for _ in range(n)]
            c = Consistency(exs, relation)
            scores = {i: rng.gauss(0, 1) for i in range(n)}
            got = c.decode(scores)
            labels = [got[i] for i in range(n)]

            def value(lab):
                return (-c.count(lab), sum(s if lab[i] else -s for i, s in scores.items()))

            best = max(value(list(lab)) for lab in itertools.product((True, False), repeat=n))
            assert value(labels) == pytest.approx(best)


def test_decode_leaves_ungrouped_and_unscored_examples_alone():
    c = Consistency([ex("g", "a"), ex("g", "b"), Example("solo", "p", None, None)], "asymmetry")
    assert c.decode({2: -0.1}) == {2: False}
    assert c.decode({0: 0.2, 2: 0.1}) == {0: True, 2: True}  # a lone scored member of a group: its own sign


def test_decode_keeps_fixed_labels_and_decodes_the_rest_of_the_group_around_them():
    pair = Consistency([ex("p", "a"), ex("p", "b"), Example("solo", "p", None, None)], "asymmetry")
    assert pair.decode({0: 2.0, 1: -1.0, 2: 1.0}, fixed={0: False, 2: False}) == {0: False, 1: True, 2: False}
    c = Consistency([ex("g", "12"), ex("g", "15"), ex("g", "12")], "contradiction")
    assert c.decode({0: 3.0, 1: 0.5, 2: 3.0}, fixed={1: True}) == {0: False, 1: True, 2: False}
