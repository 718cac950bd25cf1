"""I(D) and the fix options, per relation type."""

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
