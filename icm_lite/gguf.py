"""Check a .gguf file before llama.cpp sees it.

llama.cpp can abort the whole process on a damaged file, so we read the GGUF header ourselves: magic,
version, metadata, tensor table, and the byte size the tensor data needs. A wrong magic, an unknown
version, a header that runs past the end, or a file shorter than its tensors is a `ModelError`.
This module does not load weights and does not import llama_cpp.

Example: inspect_gguf("model.gguf").architecture -> "gemma3"
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError

# ggml type id -> (elements per block, bytes per block); unknown types only bound the size from below
_TYPE_SIZE = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
    22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


@dataclass(frozen=True)
class GgufInfo:
    path: Path
    version: int
    architecture: str | None
    n_tensors: int
    file_size: int
    needed_size: int
    context_length: int | None


class _Truncated(Exception):
    pass


class _Reader:
    def __init__(self, f, size: int):
        self.f, self.size = f, size

    def take(self, n: int) -> bytes:
        if n > self.size - self.f.tell():  # check first: a damaged length must not allocate gigabytes
            raise _Truncated
        b = self.f.read(n)
        if len(b) != n:
            raise _Truncated
        return b

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > self.size:
            raise _Truncated
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, vtype: int):
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype])
        if vtype == 8:
            return self.string()
        if vtype == 9:
            itype, count = self.unpack("<I"), self.unpack("<Q")
            if count > self.size:
                raise _Truncated
            if itype in _SCALAR:  # skip fixed-size arrays in one read
                self.take(struct.calcsize(_SCALAR[itype]) * count)
            else:
                for _ in range(count):
                    self.value(itype)
            return None
        raise ValueError(f"unknown metadata value type {vtype}")


def inspect_gguf(path: str | Path) -> GgufInfo:
    """Check the header and size of a .gguf file; every problem is a `ModelError` naming the file."""
    p = Path(path)
    try:
        if not p.exists():
            raise ModelError(f"model file {p} does not exist")
        if not p.is_file():
            raise ModelError(f"model path {p} is not a file (pass the .gguf file itself)")
        size = p.stat().st_size
        with p.open("rb") as f:
            return _parse(p, f, size)
    except OSError as e:
        raise ModelError(f"cannot read model file {p}: {e.strerror or e}") from None


def _parse(p: Path, f, size: int) -> GgufInfo:
    r = _Reader(f, size)
    if size == 0:
        raise ModelError(f"{p} is empty, not a GGUF model; download it again")
    head = f.read(32)
    f.seek(0)
    if head[:4] != b"GGUF":
        if head.startswith(b"version https://git-lfs"):
            raise ModelError(f"{p} is a Git LFS pointer, not the model itself; fetch the real file (git lfs pull)")
        if len(head) < 4:
            raise ModelError(f"{p} is not a GGUF model (only {size} bytes)")
        raise ModelError(f"{p} is not a GGUF model (magic {head[:4]!r}, expected b'GGUF')")
    r.take(4)
    try:
        version = r.unpack("<I")
        if version not in (2, 3):
            raise ModelError(f"{p}: unsupported GGUF version {version} (llama.cpp reads 2 and 3)")
        n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
        meta = {}
        for _ in range(n_kv):
            key = r.string()
            meta[key] = r.value(r.unpack("<I"))
        needed_data = 0
        for _ in range(n_tensors):
            r.string()
            dims = [r.unpack("<Q") for _ in range(r.unpack("<I"))]
            ttype, offset = r.unpack("<I"), r.unpack("<Q")
            n_el = 1
            for d in dims:
                n_el *= d
            block, nbytes = _TYPE_SIZE.get(ttype, (1, 0))
            needed_data = max(needed_data, offset + (n_el // block) * nbytes)
        align = meta.get("general.alignment", 32)
        if isinstance(align, bool) or not isinstance(align, int) or align <= 0:
            raise ValueError(f"general.alignment is {align!r}, not a positive integer")
        data_start = -(-f.tell() // align) * align
    except _Truncated:
        raise ModelError(f"{p} is truncated: its GGUF header runs past the end of the file ({size} bytes); "
                         "download it again") from None
    except (ValueError, struct.error, RecursionError) as e:
        raise ModelError(f"{p} has a damaged GGUF header ({e})") from None
    needed = data_start + needed_data
    if size < needed:
        raise ModelError(f"{p} is truncated: its tensors need {needed} bytes, the file has {size}; download it again")
    arch = meta.get("general.architecture")
    arch = arch if isinstance(arch, str) else None
    ctx = meta.get(f"{arch}.context_length") if arch else None
    ctx = ctx if isinstance(ctx, int) and not isinstance(ctx, bool) else None
    return GgufInfo(p, version, arch, n_tensors, size, needed, ctx)
