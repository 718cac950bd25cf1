"""llama.cpp threads: the default (physical cores minus the cores other processes keep busy) and its re-check.

The README says: icm_lite runs llama.cpp with the physical cores that other processes leave free, at least one,
checked when the model loads and again between plans; --n-threads fixes the count. Thread counts change speed,
not log-odds (test_model_exact.py checks the scores for 1 and 2 threads)."""

import pytest

from icm_lite import llama


@pytest.mark.parametrize("cores,busy,want", [(2, 0.0, 2), (2, 0.2, 2), (2, 1.0, 1), (2, 1.9, 1), (2, 3.0, 1),
                                             (8, 0.0, 8), (8, 2.6, 5), (1, 0.0, 1)])
def test_default_threads_are_the_free_physical_cores(monkeypatch, cores, busy, want):
    monkeypatch.setattr(llama, "physical_cores", lambda: cores)
    monkeypatch.setattr(llama, "busy_cores", lambda seconds=0.2: busy)
    assert llama.default_threads() == want


def test_busy_cores_sees_a_spinning_neighbour():
    import multiprocessing
    import time

    from tests_helpers import spin  # noqa: F401  (a module-level function, picklable for spawn)

    p = multiprocessing.Process(target=spin, daemon=True)
    p.start()
    try:
        time.sleep(0.3)
        assert llama.busy_cores(0.5) >= 0.7
    finally:
        p.terminate()
        p.join()


def test_physical_cores_is_at_least_one_and_at_most_the_logical_count():
    import os

    assert 1 <= llama.physical_cores() <= (os.cpu_count() or 1)


@pytest.mark.model
def test_the_backend_follows_free_cores_between_plans(smollm2_path, monkeypatch):
    from icm_lite.options import ModelOptions
    from icm_lite.scoring import Scorer
    from icm_lite.tasks import Example

    monkeypatch.setattr(llama, "physical_cores", lambda: 2)
    monkeypatch.setattr(llama, "busy_cores", lambda seconds=0.2: 0.0)
    b = llama.LlamaBackend(str(smollm2_path), ModelOptions(n_ctx=512))
    assert b.n_threads == 2 and b.auto_threads
    examples = [Example(str(i), f"Question: Is {i} even?\nClaim: yes\nI think this claim is") for i in range(6)]
    b.prepare(examples, ("True", "False"))
    labels = [i % 2 == 0 for i in range(6)]
    first = Scorer(b, examples).loo(labels)
    monkeypatch.setattr(b, "RECHECK_SECONDS", 0.0)
    monkeypatch.setattr(llama, "busy_cores", lambda seconds=0.2: 1.0)  # a neighbour starts
    b.clear()
    again = Scorer(b, examples).loo(labels)
    assert b.n_threads == 1 and again == first  # fewer threads, the same log-odds
    fixed = llama.LlamaBackend(str(smollm2_path), ModelOptions(n_ctx=512, n_threads=2))
    assert fixed.n_threads == 2 and not fixed.auto_threads
