"""The Hugging Face Hub: the only module that imports huggingface_hub. Model files in (models.py), exports out.

Downloads: `cached_file` (the local cache only) and `download_file`. Uploads: `check_push` runs every check a push
needs before any work (offline mode, a token, the endpoint reachable, the token accepted), so an export that
cannot be pushed fails in one line before it is written; `push_folder` then creates the dataset repository (or
reuses it) and uploads the folder as one commit, which the Hub applies whole or not at all. `HF_ENDPOINT` points
both at a mirror or a local stand-in (the tests run one on 127.0.0.1).

Example: check_push("me/reviews-icm"); push_folder("ft/", "me/reviews-icm", private=True)
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from pathlib import Path

from .errors import UserError

_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def offline() -> bool:
    """HF_HUB_OFFLINE as the environment says now. huggingface_hub reads it once, at import; a process whose
    environment changed since (a test, a long-lived caller) gets the library's switch set to match."""
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = value
    return value


@contextlib.contextmanager
def forced_offline(*modules):
    """Offline while the block runs, whatever the environment says: huggingface_hub's switch and the copies of it
    in `modules` (e.g. datasets.config), restored afterwards. The libraries read HF_HUB_OFFLINE from the
    environment at import, so setting the variable then would do nothing (an uncached name retried the Hub)."""
    from huggingface_hub import constants

    flags = [(constants, "HF_HUB_OFFLINE")] + [(m, n) for m in modules for n in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")]
    saved = [(m, n, getattr(m, n)) for m, n in flags if hasattr(m, n)]
    for m, n, _ in saved:
        setattr(m, n, True)
    try:
        yield
    finally:
        for m, n, value in saved:
            setattr(m, n, value)


def cache_dir() -> str | None:
    """The Hub cache, read from the environment now (huggingface_hub reads it once, at import)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return os.environ[var]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or constants.ENDPOINT


def unreachable() -> str | None:
    """Why the Hub's host cannot be reached ("host:port (reason)"), or None. Skipped behind a proxy, where only
    the proxy knows the way (huggingface-hub itself would retry for ~20 s and print every retry)."""
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    from urllib.parse import urlparse

    url = urlparse(endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=10).close()
    except OSError as e:
        return f"{url.hostname}:{port} ({e.strerror or str(e) or type(e).__name__})"
    return None


def cached_file(repo_id: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    got = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir())
    return Path(got) if isinstance(got, str) else None


def download_file(repo_id: str, filename: str) -> Path:
    """hf_hub_download into the cache; LookupError when the Hub answered nothing (no connection)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, cache_dir=cache_dir()))
    except LocalEntryNotFoundError:
        raise LookupError(f"{repo_id}/{filename}") from None


def check_push(repo_id: str) -> str:
    """Every reason a push of `repo_id` would fail before it starts, as one UserError; the user name on success."""
    from huggingface_hub import HfApi, get_token

    if not REPO_ID.match(repo_id):
        raise UserError(f"--push-to-hub {repo_id!r}: write OWNER/NAME (letters, digits, '-', '_', '.')")
    if offline():
        raise UserError("--push-to-hub: HF_HUB_OFFLINE is set; unset it to push, or push the export folder later")
    token = get_token()
    if not token:
        raise UserError("--push-to-hub needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")
    why = unreachable()
    if why is not None:
        raise UserError(f"--push-to-hub: the Hub at {endpoint()} is not reachable from here: {why}; the export "
                        "folder can be pushed later, or set HF_ENDPOINT to a mirror")
    try:
        who = HfApi(endpoint=endpoint(), token=token).whoami()
    except Exception as e:
        raise UserError(f"--push-to-hub: the Hub at {endpoint()} refused the token ({_short(e)}); log in again") from None
    return who.get("name", "?")


def push_folder(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Create (or reuse) the dataset repository and upload `folder` in one commit; its URL."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint())
    offline()  # the library's switch as the environment says
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset",
                          commit_message="icm-lite export")
    except Exception as e:
        raise UserError(f"--push-to-hub {repo_id}: the upload failed ({_short(e)}); nothing was committed, the "
                        f"export is in {folder}") from None
    return f"{endpoint()}/datasets/{repo_id}"


def _short(e: Exception) -> str:
    text = " ".join(str(e).split())
    return (text[:200] + "…" if len(text) > 200 else text) or type(e).__name__
