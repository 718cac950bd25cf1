"""The run directory: everything a labeling run writes, so finished work is never lost.

    config.json    what was run (data file + sha256, task, model, options, search config)
    state.json     the search snapshot (labels, scores, iteration, temperature inputs, RNG state)
    events.jsonl   append-only log, one search event per line (example = index in the data file, batch = 0-based)
    labels.jsonl   one line per input example: id, label, log-odds score, source ("search": labeled by the ICM
                   search; "prediction": left unlabeled by the search, or outside its core, then predicted from its
                   labels; "pinned": given by a person with --pin; null: not labeled yet)
    summary.json   the final numbers
    .lock          held by the process that labels this directory (its pid inside), so no second one can

state.json and labels.jsonl are replaced atomically (write a temp file, fsync, rename), so a crash or
a full disk leaves the previous version intact. state.json is saved after every event and records how long the
event log was then: a resumed run cuts the log back to that point and redoes what came after, identically.
No gold labels are written here.

Example: rd = RunDir.create("runs/demo", force=False); rd.save_state(search.snapshot())
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Collection

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the directory is not guarded there
    fcntl = None

import orjson

from .errors import RunError

_RUN_FILES = ("config.json", "state.json", "events.jsonl", "labels.jsonl", "summary.json")


def write_atomic(path: Path, data: bytes, sync: bool = True) -> None:
    """Replace `path` whole. sync=False skips the fsync (~7 ms here): still whole after a killed process, but
    after a power loss only the last synced version is sure to be there."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise RunError(f"cannot write {path}: {e.strerror or e}; the previous version is intact") from None


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._events = None
        self._lock = None

    def lock(self) -> None:
        """Take the directory for this process: a second labeling process gets a one-line error naming the first.
        The OS drops the lock when the holder exits, however it exits."""
        if fcntl is None or self._lock is not None:
            return
        f = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            pid = f.read().strip() or "?"
            f.close()
            raise RunError(f"run directory {self.path} is in use by process {pid} (another icm-lite label?); "
                           "wait for it to finish or stop it first") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lock = f

    def unlock(self) -> None:
        f, self._lock = self._lock, None
        if f is not None:
            f.close()

    @staticmethod
    def check_new(path: str | Path, force: bool = False) -> None:
        """The errors create() would raise, found before any work starts (nothing is written or deleted)."""
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise RunError(f"{p} exists and is not a directory")
        if p.exists() and any(n.name != ".lock" for n in p.iterdir()) and not force:
            raise RunError(f"run directory {p} already exists; use --resume to continue it or --force to overwrite it")
        base = p
        while not base.exists() and base != base.parent:
            base = base.parent
        if not os.access(base, os.W_OK):
            raise RunError(f"cannot write to run directory {p}: {base} is not writable")

    @classmethod
    def create(cls, path: str | Path, force: bool = False) -> "RunDir":
        """A new (or --force emptied) run directory, locked by this process."""
        p = Path(path)
        cls.check_new(p, force)
        try:
            p.mkdir(parents=True, exist_ok=True)
            probe = p / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise RunError(f"cannot write to run directory {p}: {e.strerror or e}") from None
        rd = cls(p)
        rd.lock()  # before anything is removed: --force on a directory in use is refused
        for name in _RUN_FILES:
            (p / name).unlink(missing_ok=True)
        return rd

    @classmethod
    def open(cls, path: str | Path, lock: bool = False) -> "RunDir":
        """An existing run directory; lock=True to write it (resume)."""
        p = Path(path)
        if not (p / "config.json").exists():
            raise RunError(f"{p} is not a run directory (no config.json)")
        rd = cls(p)
        if lock:
            rd.lock()
        return rd

    def read_json(self, name: str):
        f = self.path / name
        try:
            return orjson.loads(f.read_bytes())
        except FileNotFoundError:
            raise RunError(f"{f} is missing") from None
        except orjson.JSONDecodeError as e:
            raise RunError(f"{f} is damaged ({e})") from None

    def write_json(self, name: str, obj, sync: bool = True) -> None:
        write_atomic(self.path / name, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY), sync)

    def save_state(self, snapshot: dict, sync: bool = True) -> None:
        self.write_json("state.json", snapshot, sync)

    def append_event(self, event: dict) -> None:
        """One line, written straight through (unbuffered: a failed write leaves nothing to re-flush later)."""
        data = memoryview(orjson.dumps(event) + b"\n")
        try:
            if self._events is None:
                self._events = open(self.path / "events.jsonl", "ab", buffering=0)
            while data:
                data = data[self._events.write(data):]
        except OSError as e:
            self.close_log(quiet=True)
            raise RunError(f"cannot append to {self.path / 'events.jsonl'}: {e.strerror or e}") from None

    def events_size(self) -> int:
        """Bytes in the event log so far (what a state saved now has seen)."""
        if self._events is not None:
            return self._events.tell()
        f = self.path / "events.jsonl"
        return f.stat().st_size if f.exists() else 0

    def truncate_events(self, size: int) -> None:
        """Cut the log back to `size` bytes: the events after the saved state will be redone."""
        self.close_log()
        f = self.path / "events.jsonl"
        try:
            have = f.stat().st_size if f.exists() else 0
            if have < size:
                raise RunError(f"{f} is shorter ({have} bytes) than state.json says ({size}); the run directory is damaged")
            if have > size:
                with open(f, "r+b") as fh:
                    fh.truncate(size)
        except OSError as e:
            raise RunError(f"cannot cut back {f}: {e.strerror or e}") from None

    def events(self) -> list[dict]:
        f = self.path / "events.jsonl"
        if not f.exists():
            return []
        out = []
        for line in f.read_bytes().splitlines():
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                break  # a line cut by a crash ends the log
        return out

    def write_labels(self, ids, labels, scores: dict[int, float], predicted: dict | None = None,
                     pinned: Collection[int] = ()) -> None:
        """labels: searched labels (None = not labeled by the search); predicted: {index: (label, score)};
        pinned: indices whose label a person gave (--pin)."""
        predicted = predicted or {}
        rows = []
        for i, (ex_id, y) in enumerate(zip(ids, labels)):
            if y is not None:
                row = {"id": ex_id, "label": y, "score": scores.get(i), "source": "pinned" if i in pinned else "search"}
            elif i in predicted:
                row = {"id": ex_id, "label": predicted[i][0], "score": predicted[i][1], "source": "prediction"}
            else:
                row = {"id": ex_id, "label": None, "score": None, "source": None}
            rows.append(orjson.dumps(row))
        write_atomic(self.path / "labels.jsonl", b"\n".join(rows) + b"\n")

    def close(self, quiet: bool = False) -> None:
        """Close the event log and give up the lock."""
        try:
            self.close_log(quiet)
        finally:
            self.unlock()

    def close_log(self, quiet: bool = False) -> None:
        f, self._events = self._events, None
        if f is not None:
            try:
                f.close()
            except OSError as e:
                if not quiet:
                    raise RunError(f"cannot close {self.path / 'events.jsonl'}: {e.strerror or e}") from None

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
