"""icm_lite: Internal Coherence Maximization (Wen et al. 2025) on local GGUF models through llama.cpp.

The folder is the architecture, from pure to effectful:
  tasks.py, data.py      records -> examples (prompt, consistency group/key); gold kept aside
  consistency.py         I(D): inconsistent pairs and their fix options
  plan.py                which token sequences to evaluate: exact leave-one-out as a prefix tree
  scoring.py             the Scorer contract and P(D) for both objectives
  search.py              simulated annealing (Algorithms 1 and 2), emits events
  batches.py             data larger than one context: batches that fit n_ctx, carried demonstrations
  fake.py                a fake backend with a hidden concept, for tests and token counts
  gguf.py, models.py     model files: header checks, registry, cache, Hugging Face downloads
  backend.py             the only module that imports llama_cpp
  rundir.py, run.py      run directories and the labeling job (batch after batch, resumable)
  ui.py                  what `label` shows while it runs: Rich dashboard or plain lines (renders events only)
  cli.py                 the `icm-lite` command
"""

__version__ = "0.1.0"
