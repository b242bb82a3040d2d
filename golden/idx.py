"""IDX files (the MNIST container format): read and write, gzip or raw, with exact checks.

An IDX file is a 4-byte magic (0x00, 0x00, type code, number of dimensions), one big-endian
uint32 per dimension, then the items in C order, big-endian.  Every check is exact: the
magic, the type code, the header length and the payload length must all agree, so a
truncated or padded file is rejected (IDXError naming the file and what is wrong) rather
than silently reshaped.  Gzip is detected from the content (1f 8b), not from the name.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

#: IDX type code -> big-endian numpy dtype.
DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


class IDXError(ValueError):
    """A file that is not a well-formed IDX file; the message names the file and the defect."""


def read_bytes(path: str | Path) -> bytes:
    """The file's decompressed content (gzip detected by its magic bytes)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise IDXError(f"{p}: file not found") from None
    except OSError as exc:
        raise IDXError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise IDXError(f"{p}: truncated gzip stream (the file ends before the compressed data does)") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise IDXError(f"{p}: corrupt gzip data: {exc}") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into a native-endian numpy array, checking every length exactly."""
    if len(data) < 4:
        raise IDXError(f"{name}: {len(data)} bytes is too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        raise IDXError(f"{name}: wrong magic number 0x{data[:4].hex()}: an IDX file starts with two zero bytes")
    code, ndim = data[2], data[3]
    if code not in DTYPES:
        raise IDXError(f"{name}: unknown IDX type code 0x{code:02x} in magic 0x{data[:4].hex()} "
                       f"(known: {', '.join(f'0x{c:02x}' for c in DTYPES)})")
    if ndim < 1:
        raise IDXError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{name}: truncated header: {ndim} dimensions need {header} bytes, file has {len(data)}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = DTYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) < expected:
        raise IDXError(f"{name}: truncated: dimensions {dims} of {dtype.itemsize}-byte items need {expected} bytes, "
                       f"the (decompressed) file has {len(data)}")
    if len(data) > expected:
        raise IDXError(f"{name}: {len(data) - expected} unexpected bytes after the {expected} that dimensions "
                       f"{dims} account for")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))  # a native-endian, writable copy


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzip or raw)."""
    return parse_idx(read_bytes(path), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """IDX bytes of `array` (its dtype must be one of DTYPES' item types)."""
    a = np.asarray(array)
    for code, dt in DTYPES.items():
        if a.dtype.kind == dt.kind and a.dtype.itemsize == dt.itemsize:
            header = bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, dtype=">u4").tobytes()
            return header + a.astype(dt).tobytes()
    raise IDXError(f"dtype {a.dtype} has no IDX type code")


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write `array` as IDX; gzip when `compress` (default: when the name ends in .gz)."""
    p = Path(path)
    data = encode_idx(array)
    if compress if compress is not None else p.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    p.write_bytes(data)
    return p
