"""Real models through llama.cpp: the prefix-tree scores equal from-scratch evaluations of the same tokens.

SmolLM2 (llama architecture) is bit-exact under any KV-cache rewind, so the tree must match within
0.01 nats. Gemma-3 uses interleaved sliding-window attention: the same tokens decoded after a rewind
move by up to ~0.15-0.25 nats with the KV-cache history (llama-cpp-facts.md), measured up to 0.41
(f16 KV) and 0.31 (f32 KV); 0.5 is its bound here.
"""

import random

import pytest

from icm_lite.backend import LlamaBackend
from icm_lite.data import load_dataset
from icm_lite.plan import Node, compare_plan, contexts
from icm_lite.scoring import Scorer
from icm_lite.tasks import Task

pytestmark = pytest.mark.model


def _examples(n):
    ds = load_dataset("examples/truthfulqa_sample.jsonl", Task.builtin("claim"))
    return ds.examples[:n]


def _check(path, tol, n=12, **backend_options):
    examples = _examples(n)
    b = LlamaBackend(path, n_ctx=4096, **backend_options)
    b.prepare(examples, ("True", "False"))
    sc = Scorer(b, examples)
    rng = random.Random(0)
    labels = [rng.random() < 0.5 for _ in examples]  # arbitrary labels: exactness is about tokens, not truth
    labels[3] = None
    changed = [0, 5]
    labelings = [{0: labels[0], 5: labels[5]}, {0: not labels[0], 5: labels[5]}, {0: not labels[0], 5: not labels[5]}]
    worst = 0.0
    for root in (compare_plan(sc.demos(labels), [], [{}], sc.group_of),
                 compare_plan(sc.demos(labels, changed), changed, labelings, sc.group_of)):
        got = b.run(root)
        ctx = contexts(root)
        assert set(got) == set(ctx) and len(got) >= n - 1
        for key, seq in ctx.items():
            b.clear()
            ref = b.run(Node(seq, [], (key,)))[key]
            worst = max(worst, abs(got[key] - ref))
    assert worst <= tol, f"max |tree - scratch| = {worst:.4f} nats"
    return worst


def test_smollm2_tree_scores_equal_from_scratch(smollm2_path):
    _check(smollm2_path, 0.01)


def test_gemma_tree_scores_match_from_scratch_within_kv_noise(gemma_path):
    # Measured here: up to 0.27-0.41 nats with the default f16 KV cache (bench_scoring, n=16..64) and
    # 0.31 with an f32 cache (this test, n=12), above the 0.25 hoped for. Exactness itself is proven on
    # SmolLM2 (0.01 above); this bound catches gross plan errors on the default model.
    _check(gemma_path, 0.5)


def test_label_token_ids_come_from_the_full_distribution(gemma_path):
    examples = _examples(2)
    b = LlamaBackend(gemma_path, n_ctx=512)
    b.prepare(examples, ("True", "False"))
    words = [b.llm.detokenize([t]).decode() for t in b.true_ids]
    assert " True" in words and all(w.strip().lower() == "true" for w in words)
    assert not set(b.true_ids) & set(b.false_ids)
