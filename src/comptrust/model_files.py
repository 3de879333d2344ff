"""Is a model file intact?  Structural checks of safetensors, GGUF and pickle weights.

Why: a truncated download or a foreign file otherwise surfaces as a library's
``SafetensorError``/``ValueError`` deep inside transformers, which reads like a
comptrust bug.  These checks read only headers (milliseconds, even for a 13B
model), so every load runs them and the user hears which file is damaged and
what to do.  They catch truncation, random bytes and files of another format;
flipped bits inside tensor data need a content hash (``comptrust inspect
--verify`` for artifacts).
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

from comptrust.compression.base import MANIFEST_NAME
from comptrust.errors import DataError, ModelError
from comptrust.store.paths import comptrust_home, models_dir

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
SAFETENSORS_HEADER_LIMIT = 100_000_000  # the safetensors library refuses larger headers
# bytes per element of each safetensors dtype (F4/F6 packed types are skipped: sizes below one byte)
SAFETENSORS_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
                           "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
                           "F8_E8M0": 1}
GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)  # v1 (2023) counted in 32 bits; llama.cpp writes v3
GGUF_FIXED = {0: 1, 1: 1, 7: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 10: 8, 11: 8, 12: 8}  # metadata value widths
GGUF_STRING, GGUF_ARRAY = 8, 9
LEGACY_TORCH_PREFIX = b"\x80\x02"  # torch.save before 1.6: a bare pickle stream, protocol 2


def _n(value: int) -> str:
    return f"{value:,}"


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete safetensors file, or None when its header and size agree."""
    size = path.stat().st_size
    if size < 8:
        return f"is not a safetensors file (only {size} bytes)"
    with path.open("rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        if header_len > min(size - 8, SAFETENSORS_HEADER_LIMIT):
            return (f"is not a valid safetensors file: its first 8 bytes announce a {_n(header_len)}-byte header "
                    f"in a {_n(size)}-byte file (random, damaged or foreign bytes)")
        raw = fh.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "is not a valid safetensors file: its header is not JSON (damaged or foreign bytes)"
    if not isinstance(header, dict):
        return "is not a valid safetensors file: its header is not a JSON object"
    data_len, end = size - 8 - header_len, 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = (int(x) for x in entry["data_offsets"])
            shape = [int(d) for d in entry["shape"]]
            dtype = str(entry["dtype"])
        except (KeyError, TypeError, ValueError):
            return f"has a damaged header: tensor {name!r} lacks a dtype, shape or data offsets"
        width = SAFETENSORS_DTYPE_BYTES.get(dtype)
        if stop < begin or (width is not None and stop - begin != math.prod(shape) * width):
            return f"has a damaged header: tensor {name!r} ({dtype} {shape}) has offsets {begin}..{stop}"
        end = max(end, stop)
    if end > data_len:
        return f"is truncated: its tensors need {_n(end)} bytes of data but the file holds {_n(data_len)}"
    if end < data_len:
        return f"is damaged: {_n(data_len - end)} bytes follow the last tensor"
    return None


class _Cursor:
    """Bounds-checked little-endian reads from a memory map (a short file raises ``EOFError``)."""

    def __init__(self, data: mmap.mmap) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > len(self.data):
            raise EOFError
        self.pos += n
        return start

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack_from(fmt, self.data, self.take(struct.calcsize(fmt)))

    def string(self) -> bytes:
        (n,) = self.unpack("<Q")
        start = self.take(n)
        return self.data[start:start + n]

    def skip_value(self, kind: int) -> None:
        if kind in GGUF_FIXED:
            self.take(GGUF_FIXED[kind])
        elif kind == GGUF_STRING:
            self.string()
        elif kind == GGUF_ARRAY:
            item, count = self.unpack("<IQ")
            if item in GGUF_FIXED:
                self.take(count * GGUF_FIXED[item])
            elif item == GGUF_STRING:  # a vocabulary: ~100k strings, so a tight loop
                data, pos, end = self.data, self.pos, len(self.data)
                for _ in range(count):
                    if pos + 8 > end:
                        raise EOFError
                    pos += 8 + struct.unpack_from("<Q", data, pos)[0]
                self.take(pos - self.pos)
            else:
                for _ in range(count):
                    self.skip_value(item)
        else:
            raise ValueError(f"unknown metadata value type {kind}")


def gguf_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete GGUF file, or None when its tensor table fits in the file.

    Parses the header and tensor table itself: the ``gguf`` package's reader decodes the whole
    vocabulary into arrays, slow even on a small model (docs/benchmarks.md, "Integrity checks (issue 15)").
    """
    size = path.stat().st_size
    if size < 24:
        return f"is not a GGUF file (only {size} bytes)"
    with path.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            return "is not a GGUF file (it does not start with the GGUF magic bytes)"
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            try:
                return _gguf_table_problem(_Cursor(data), size)
            except EOFError:
                return f"is truncated: its header runs past the end of the {_n(size)}-byte file"
            except (ValueError, UnicodeDecodeError, OverflowError) as exc:
                return f"has a damaged header ({exc})"


def _gguf_table_problem(cur: _Cursor, size: int) -> str | None:
    from gguf.constants import GGML_QUANT_SIZES  # (elements per block, bytes per block) per ggml type

    blocks = {int(k): v for k, v in GGML_QUANT_SIZES.items()}
    cur.take(4)
    version, n_tensors, n_meta = cur.unpack("<IQQ")
    if version not in GGUF_VERSIONS:
        return f"is GGUF version {version}, which comptrust cannot read (it reads versions 2 and 3)"
    alignment = 32
    for _ in range(n_meta):
        key = cur.string().decode("utf-8")
        (kind,) = cur.unpack("<I")
        if key == "general.alignment" and kind == 4:
            (alignment,) = cur.unpack("<I")
        else:
            cur.skip_value(kind)
    tensors = []
    for _ in range(n_tensors):
        name = cur.string().decode("utf-8")
        (n_dims,) = cur.unpack("<I")
        if n_dims > 8:
            return f"has a damaged tensor table: tensor {name!r} claims {n_dims} dimensions"
        dims = cur.unpack(f"<{n_dims}Q")
        ggml_type, offset = cur.unpack("<IQ")
        tensors.append((name, math.prod(dims), ggml_type, offset))
    if alignment <= 0:
        return f"has a damaged header: alignment {alignment}"
    data_start = (cur.pos + alignment - 1) // alignment * alignment
    end = data_start
    for _name, count, ggml_type, offset in tensors:
        per_block, block_bytes = blocks.get(ggml_type, (1, 0))  # an unknown (newer) type: only its start is checked
        end = max(end, data_start + offset + count // per_block * block_bytes)
    if end > size:
        return f"is truncated: its tensors need {_n(end)} bytes but the file holds {_n(size)}"
    return None


def pickle_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable PyTorch checkpoint, judged without unpickling anything."""
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith(LEGACY_TORCH_PREFIX):
        return None  # the pre-1.6 format has no structure to check short of unpickling it
    if not zipfile.is_zipfile(path):
        if head.startswith(b"PK"):
            return "is truncated: it starts as a PyTorch zip checkpoint but its directory at the end is missing"
        return "is not a PyTorch checkpoint (neither a zip archive nor a pickle stream)"
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        return f"is damaged ({exc})"
    if not any(n.endswith("data.pkl") for n in names):
        return "is a zip archive but not a PyTorch checkpoint (no data.pkl inside)"
    return None


def json_problem(path: Path) -> str | None:
    """Why ``path`` is not a JSON object file, or None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return "is not UTF-8 text (damaged or foreign bytes)"
    except json.JSONDecodeError as exc:
        return f"is not valid JSON (line {exc.lineno}: {exc.msg})"
    return None if isinstance(data, dict) else "is not a JSON object"


def index_problem(path: Path) -> str | None:
    """Why a sharded checkpoint's index is unusable (unreadable, or naming shards that are absent)."""
    problem = json_problem(path)
    if problem:
        return problem
    weight_map = json.loads(path.read_text(encoding="utf-8")).get("weight_map")
    if not isinstance(weight_map, dict):
        return "has no weight_map"
    absent = sorted({str(f) for f in weight_map.values()} - {p.name for p in path.parent.iterdir()})
    if absent:
        more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
        return f"names shard {absent[0]}{more}, which is missing"
    return None


def check_model_files(folder: Path, fix: str, pickles: bool = False) -> None:
    """Raise one DataError for the first damaged file among a model folder's config, index and weights.

    ``pickles``: also check pickle weights (only when the user allowed loading them).
    """
    checks: list[tuple[Path, Any]] = [(folder / "config.json", json_problem)]
    checks += [(p, index_problem) for p in sorted(folder.glob("*.index.json"))]
    checks += [(p, safetensors_problem) for p in sorted(folder.glob("*.safetensors"))]
    if pickles:
        checks += [(p, pickle_problem) for p in sorted(folder.iterdir()) if p.suffix in PICKLE_SUFFIXES]
    for path, problem_of in checks:
        if path.is_file() and (problem := problem_of(path)):
            raise DataError(f"{path} {problem}", fix)


def check_gguf_file(path: Path) -> None:
    """Raise a DataError when ``path`` is not a complete GGUF file."""
    problem = gguf_problem(path)
    if problem:
        raise DataError(f"{path} {problem}", "download the GGUF file again (or pass another model)")


def loading_problem(info: dict[str, Any]) -> str | None:
    """What transformers' loading report says is wrong: weights the folder lacks or has in other shapes.

    Unexpected extra tensors are fine (old Llama checkpoints carry ``rotary_emb.inv_freq``);
    missing ones would silently be random numbers.
    """
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or [])
    if mismatched:
        return (f"{len(mismatched)} weight(s) have other shapes than its config.json describes "
                f"(e.g. {mismatched[0]}): the weights belong to another model")
    if missing:
        return (f"{len(missing)} weight(s) its config.json needs are absent from its weight files "
                f"(e.g. {missing[0]}): the weights belong to another model or are incomplete")
    return None


def repair_hint(folder: Path) -> str:
    """What to do about a damaged file in ``folder``: it depends on who wrote the folder."""
    folder = folder.resolve()
    if folder.is_relative_to(models_dir().resolve()):  # comptrust's own conversion (it may keep a manifest copy)
        return f"delete {folder}; the next run converts the checkpoint again"
    if (folder / MANIFEST_NAME).is_file():
        return f"delete {folder} and run 'comptrust compress' again (it rebuilds the same artifact)"
    if folder.is_relative_to((comptrust_home() / "hub").resolve()):
        return f"delete {folder} and run again to download the model afresh"
    return "download the model again, or save it again with save_pretrained"


def weights_fingerprint(folder: Path, only: str | None = None) -> str:
    """SHA-256 over the weight files' bytes (cached by path, size and mtime); ``only``: one file of the folder."""
    files = sorted(p for p in folder.iterdir() if p.name == only) if only else \
        sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
    if not files:
        raise ModelError(f"{folder} has no weight files", "the folder needs *.safetensors weights")
    stamp = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    memo_path = comptrust_home() / "fingerprints.json"
    key = hashlib.sha256(json.dumps([str(folder.resolve()), stamp]).encode()).hexdigest()
    memo: dict[str, str] = {}
    if memo_path.is_file():
        try:
            loaded = json.loads(memo_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):  # a damaged memo is only a lost shortcut
            loaded = {}
        memo = loaded if isinstance(loaded, dict) else {}
    if key in memo:
        return memo[key]
    digest = hashlib.sha256()
    for p in files:
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    value = digest.hexdigest()[:20]
    memo[key] = value
    memo_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(memo))
    os.replace(tmp, memo_path)
    return value
