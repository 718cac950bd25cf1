"""A stand-in for llama.cpp in CLI tests that need a run but not a real model.

`use_fake_model(monkeypatch)` makes `icm_lite.run.open_backend` return a `PromptFake`: the fake backend, sized when
it is prepared, with a hidden concept and token lengths derived from each example's prompt (deterministic). Run as
a script (`python tests/fake_model.py label ...`) it is the `icm-lite` command with that stand-in, for tests that
need a real process (signals).
"""

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from icm_lite.fake import FakeBackend  # noqa: E402
from icm_lite.options import ModelOptions  # noqa: E402


class PromptFake(FakeBackend):
    def __init__(self, path=None, opts: ModelOptions | None = None):
        self._n_ctx = (opts or ModelOptions()).n_ctx
        super().__init__([], n_ctx=self._n_ctx)

    def prepare(self, examples, words) -> None:
        digest = [hashlib.sha256(ex.prompt.encode()).digest() for ex in examples]
        FakeBackend.__init__(self, [d[0] % 2 == 0 for d in digest], [8 + len(ex.prompt) // 4 for ex in examples],
                             n_ctx=self._n_ctx)


def use_fake_model(monkeypatch) -> None:
    from icm_lite import run

    monkeypatch.setattr(run, "open_backend", lambda path, opts: PromptFake(path, opts))


if __name__ == "__main__":
    from icm_lite import run
    from icm_lite.cli import main

    run.open_backend = lambda path, opts: PromptFake(path, opts)
    sys.exit(main())
