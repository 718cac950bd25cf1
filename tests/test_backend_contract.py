"""The Backend contract (backend.py), checked the same way against every implementation.

The fake backend and a BatchView over it run in every test run; the llama.cpp backend (SmolLM2, bit-exact under
KV-cache reuse) runs with the model-marked tests. A new backend passes these or it is not a backend.
"""

import pytest

from icm_lite.backend import STATS, Backend
from icm_lite.batches import BatchView
from icm_lite.data import load_dataset
from icm_lite.errors import UserError
from icm_lite.fake import FakeBackend
from icm_lite.plan import Node, contexts, plan_tokens, trie
from icm_lite.scoring import Scorer
from icm_lite.tasks import Task

N = 8


def _examples():
    return load_dataset("examples/truthfulqa_sample.jsonl", Task.builtin("claim")).examples[:N]


def _fake(n_ctx):
    b = FakeBackend([i % 2 == 0 for i in range(N)], [30 + 3 * i for i in range(N)], n_ctx=n_ctx)
    b.prepare(_examples(), ("True", "False"))
    return b


def _view(n_ctx):
    inner = FakeBackend([i % 2 == 0 for i in range(N + 4)], [30 + 3 * i for i in range(N + 4)], n_ctx=n_ctx)
    return BatchView(inner, list(range(4, N + 4)))


def _llama(n_ctx):
    from icm_lite.llama import LlamaBackend
    from icm_lite.models import resolve_model
    from icm_lite.options import ModelOptions

    b = LlamaBackend(str(resolve_model("smollm2").path), ModelOptions(n_ctx=n_ctx, n_threads=1))
    b.prepare(_examples(), ("True", "False"))
    return b


BACKENDS = [pytest.param(_fake, id="fake"), pytest.param(_view, id="batch-view"),
            pytest.param(_llama, id="llama-smollm2", marks=pytest.mark.model)]


@pytest.fixture(params=BACKENDS)
def make(request):
    made = []

    def build(n_ctx=4096):
        made.append(request.param(n_ctx))
        return made[-1]

    yield build
    for b in made:
        b.close()



def test_it_is_a_backend_with_lengths_and_a_prefix(make):
    b = make()
    assert isinstance(b, Backend) and isinstance(b.n_ctx, int) and isinstance(b.prefix_length, int)
    assert b.prefix_length >= 0
    for i in range(N):
        q, yes, no = b.length((i, None)), b.length((i, True)), b.length((i, False))
        assert 0 < q < yes and 0 < q < no  # a demonstration is the query plus its label word and a separator


def test_a_plan_reads_exactly_its_keys_and_equals_each_context_alone(make):
    b = make()
    labels = [i % 3 != 0 for i in range(N)]
    labels[2] = None
    root = Scorer(b, _examples()).plan([labels, [not y if y is not None else None for y in labels]])
    got = b.run(root)
    ctx = contexts(root)
    assert set(got) == set(ctx)
    for key, seq in sorted(ctx.items())[::3]:  # the same context alone, after other work in the cache
        alone = b.run(Node(seq, [], ("k",)))["k"]
        assert alone == pytest.approx(got[key], abs=1e-9)


def test_shared_prefixes_are_evaluated_once(make):
    b = make()
    demos = tuple((i, i % 2 == 0) for i in range(4))
    seqs = [(demos + ((q, None),), q) for q in range(4, N)]
    b.run(Node(((N - 1, None),), [], ("warm",)))  # something else in the cache first
    b.reset_stats()
    b.run(trie(seqs))
    shared = b.stats()["tokens_evaluated"]
    separate = sum(plan_tokens(trie([s]), b.length) for s in seqs)  # every context decoded on its own
    assert shared < 0.6 * separate
    assert shared <= plan_tokens(trie(seqs), b.length) + 8 * len(seqs)  # the real backend re-decodes <= 7 tokens


def test_a_context_longer_than_n_ctx_is_an_error_never_truncated(make):
    b = make(n_ctx=160)
    seq = tuple((i, True) for i in range(N - 1)) + ((N - 1, None),)
    assert b.prefix_length + sum(b.length(it) for it in seq) > 160
    with pytest.raises(UserError, match="n_ctx"):
        b.run(Node(seq, [], ("k",)))


def test_stats_count_and_reset(make):
    b = make()
    assert set(STATS) <= set(b.stats())
    b.reset_stats()
    assert all(b.stats()[k] == 0 for k in STATS)
    b.run(Node(((0, True), (1, None)), [], ("k",)))
    st = b.stats()
    assert st["tokens_evaluated"] > 0 and st["naive_tokens"] >= st["tokens_evaluated"] - 8
    assert b.tokens_evaluated == st["tokens_evaluated"]


def test_close_twice_is_fine(make):
    b = make()
    b.close()
    b.close()
