import random

import pytest

from icm_lite.fake import FakeBackend
from icm_lite.tasks import Example


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep the model cache of tests apart from the user's, but share it across one session."""
    monkeypatch.setenv("ICM_LITE_CACHE", str(tmp_path_factory.getbasetemp() / "icm-cache"))


def hidden_concept(n: int, seed: int = 1, groups: int | None = None):
    """n examples with a hidden True/False concept; optional consistency groups of n // groups."""
    rng = random.Random(seed)
    hidden = [rng.random() < 0.5 for _ in range(n)]
    examples = []
    for i in range(n):
        g = str(i * groups // n) if groups else None
        examples.append(Example(f"ex{i}", f"prompt {i}", g, None))
    return examples, hidden


@pytest.fixture
def concept():
    examples, hidden = hidden_concept(40)
    return examples, hidden, FakeBackend(hidden)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "icm-cache"


@pytest.fixture(scope="session")
def gemma_path(model_cache):
    """The default model (assembled from its PyPI packages into the test cache)."""
    import os

    from icm_lite.models import resolve_model

    os.environ["ICM_LITE_CACHE"] = str(model_cache)
    return resolve_model("gemma-3-270m").path


@pytest.fixture(scope="session")
def smollm2_path():
    from icm_lite.models import resolve_model

    return resolve_model("smollm2").path


def one_error(res, code: int) -> str:
    """The one `error: ...` line of a failed CLI run, after checking its exit code and that no traceback shows."""
    assert res.exit_code == code, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output
    lines = res.stderr.splitlines()
    assert lines and lines[-1].startswith("error: "), res.stderr
    assert sum(line.startswith("error") for line in lines) == 1, res.stderr
    return lines[-1]


def job_for(dataset, backend, search, run_dir, batches=None, carried=8):
    """A labeling job over an in-memory dataset (no data file, no model file): run.Job with its RunConfig."""
    from icm_lite.config import RunConfig
    from icm_lite.run import Job

    config = RunConfig(data=dataset.source, task=dataset.task, search=search,
                       batches=None if batches is None else tuple(tuple(b) for b in batches), carried=carried)
    return Job(config, dataset, backend, run_dir)


def pairs(n_pairs: int, seed: int = 0):
    """Pairs with exactly one true member (an asymmetry group each, keys "a"/"b"), the true one's slot drawn at
    random: the examples and the hidden concept."""
    rng = random.Random(seed)
    examples, hidden = [], []
    for k in range(n_pairs):
        first = rng.random() < 0.5
        for slot, h in (("a", first), ("b", not first)):
            examples.append(Example(f"p{k}{slot}", f"pair {k} {slot}", str(k), slot))
            hidden.append(h)
    return examples, hidden
