"""Node tables: the sparse-grid (or any Stein rule) nodes, weights and Stein factors as a binary file.

The host streams this file to the board, which evaluates f(x + delta_j) for every node and
accumulates grad = sum_j a_j f_j and lap = sum_j b_j f_j.  Layout (all little-endian):

  header, 64 bytes:
    0  magic    4s   b"TTSG"
    4  version  u16  1
    6  kind     u8   0 = float64 entries, 1 = fixed point (int32 codes)
    7  flags    u8   bit 0: the rule is symmetric (node 2i+2 = -node 2i+1, origin first)
    8  dim      u16  D
   10  lapdims  u16  coordinates the Laplacian sums over (the first `lapdims`)
   12  count    u32  J nodes
   16  level    u16  sparse-grid level (0: not a sparse grid, e.g. Monte Carlo or FD)
   18  reserved u16  0
   20  sigma    f64  the smoothing radius (FD: the step h)
   28  formats  4 x (u8 bits, i8 frac)  delta, weight, a, b  (fixed point; zeros for float)
   36  reserved 24 bytes of 0
   60  crc32    u32  of the header bytes 0..59 followed by the whole body
  body: J records, each [delta_1..delta_D, w, a_1..a_D, b]  (2D + 2 entries,
        float64 or int32 codes of the formats above: delta, w, a, b)

Float entries are the exact values; fixed entries are round-half-up codes that saturate
(`QFormat.quantize`), and writing refuses a table whose codes would saturate.  The reader
checks magic, version, sizes and the CRC and names the file and field it rejects.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fixed import FormatError, QFormat
from .stein import SteinFactors

MAGIC = b"TTSG"
VERSION = 1
HEADER = struct.Struct("<4sHBBHHIHHd8B24sI")
assert HEADER.size == 64
KIND_FLOAT, KIND_FIXED = 0, 1

#: Fixed-point formats of the table entries (delta in the PINN input's fraction; Stein
#: factors reach ~1e4 for the level-3 D = 21 rule with sigma = 0.1, b up to ~4e5 before folding).
DEFAULT_TABLE_FORMATS = {"delta": QFormat(32, 28), "weight": QFormat(32, 20), "a": QFormat(32, 16),
                         "b": QFormat(32, 8)}


class NodeTableError(ValueError):
    """A node-table file or table that is malformed; the message names the file and field."""


@dataclass(frozen=True)
class NodeTable:
    """A rule as shipped: deltas (J, D), weights (J,), gradient factors a (J, D), Laplacian factors b (J,)."""

    sigma: float
    deltas: np.ndarray
    weights: np.ndarray
    a: np.ndarray
    b: np.ndarray
    lap_dims: int
    level: int = 0
    symmetric: bool = False

    @property
    def dim(self) -> int:
        return int(self.deltas.shape[1])

    @property
    def count(self) -> int:
        return int(self.deltas.shape[0])

    @classmethod
    def from_factors(cls, fac: SteinFactors, weights: np.ndarray, lap_dims: int, level: int = 0,
                     symmetric: bool = False) -> "NodeTable":
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (fac.count,):
            raise NodeTableError(f"weights have shape {w.shape}, the rule has {fac.count} nodes")
        return cls(fac.sigma, fac.deltas, w, fac.a, fac.b, int(lap_dims), int(level), bool(symmetric))

    def factors(self) -> SteinFactors:
        return SteinFactors(self.sigma, self.deltas, self.a, self.b, 0.0)

    def records(self) -> np.ndarray:
        """(J, 2D + 2) float rows [delta, w, a, b]."""
        return np.concatenate([self.deltas, self.weights[:, None], self.a, self.b[:, None]], axis=1)


def sparse_grid_table(dim: int, level: int, sigma: float, lap_dims: int | None = None) -> NodeTable:
    """The node table of the level-`level` sparse grid for N(0, sigma^2 I_dim)."""
    from .sparse_grid import smolyak_gauss_hermite
    from .stein import sparse_grid_factors
    g = smolyak_gauss_hermite(dim, level)
    fac = sparse_grid_factors(g, sigma, lap_dims)
    if fac.count != g.count:
        raise AssertionError("a sparse grid always contains the origin")
    return NodeTable.from_factors(fac, g.weights, dim if lap_dims is None else lap_dims, level, symmetric=True)


def _formats_bytes(fmts: dict[str, QFormat] | None) -> list[int]:
    if fmts is None:
        return [0] * 8
    out: list[int] = []
    for key in ("delta", "weight", "a", "b"):
        f = fmts[key]
        if not f.signed or f.bits > 32:
            raise NodeTableError(f"table format {key}={f}: entries are signed int32 codes (bits <= 32)")
        out += [f.bits, f.frac & 0xFF]
    return out


def encode(table: NodeTable, fixed: dict[str, QFormat] | None = None) -> bytes:
    """The file bytes of `table`: float64 entries, or int32 codes in the `fixed` formats."""
    D, J = table.dim, table.count
    rec = table.records()
    if fixed is None:
        body = rec.astype("<f8").tobytes()
        kind = KIND_FLOAT
    else:
        cols = [fixed["delta"]] * D + [fixed["weight"]] + [fixed["a"]] * D + [fixed["b"]]
        codes = np.empty(rec.shape, dtype=np.int64)
        for c, f in enumerate(cols):
            scaled = np.floor(rec[:, c] * 2.0 ** f.frac + 0.5)
            if np.any(scaled < f.min_code) or np.any(scaled > f.max_code):
                name = ["delta", "weight", "a", "b"][0 if c < D else 1 if c == D else 2 if c <= 2 * D else 3]
                raise FormatError(f"node table: {name} values up to {np.abs(rec[:, c]).max():g} do not fit {f}")
            codes[:, c] = scaled.astype(np.int64)
        body = codes.astype("<i4").tobytes()
        kind = KIND_FIXED
    fb = _formats_bytes(fixed)
    head = HEADER.pack(MAGIC, VERSION, kind, 1 if table.symmetric else 0, D, table.lap_dims, J, table.level, 0,
                       float(table.sigma), *[b if i % 2 == 0 else (b & 0xFF) for i, b in enumerate(fb)],
                       b"\0" * 24, 0)
    crc = zlib.crc32(head[:60] + body) & 0xFFFFFFFF
    return head[:60] + struct.pack("<I", crc) + body


def decode(data: bytes, source: str = "<bytes>") -> tuple[NodeTable, dict[str, QFormat] | None]:
    """Parse file bytes; returns the table (float values; fixed codes are converted) and the formats."""
    if len(data) < HEADER.size:
        raise NodeTableError(f"{source}: {len(data)} bytes, shorter than the {HEADER.size}-byte header")
    (magic, version, kind, flags, D, lap_dims, J, level, _res, sigma, *rest) = HEADER.unpack(data[:HEADER.size])
    fmt_bytes, crc = rest[:8], rest[-1]
    if magic != MAGIC:
        raise NodeTableError(f"{source}: magic {magic!r} is not {MAGIC!r} (not a ttzo node table)")
    if version != VERSION:
        raise NodeTableError(f"{source}: version {version} unsupported (this reader knows {VERSION})")
    if kind not in (KIND_FLOAT, KIND_FIXED):
        raise NodeTableError(f"{source}: kind {kind} is neither 0 (float) nor 1 (fixed)")
    if D < 1 or J < 1:
        raise NodeTableError(f"{source}: dim {D} and count {J} must be >= 1")
    if lap_dims > D:
        raise NodeTableError(f"{source}: lapdims {lap_dims} exceeds dim {D}")
    if not np.isfinite(sigma) or sigma <= 0:
        raise NodeTableError(f"{source}: sigma {sigma} must be a positive number")
    width = 8 if kind == KIND_FLOAT else 4
    need = J * (2 * D + 2) * width
    body = data[HEADER.size:]
    if len(body) != need:
        raise NodeTableError(f"{source}: body has {len(body)} bytes, count {J} x dim {D} needs {need}")
    if zlib.crc32(data[:60] + body) & 0xFFFFFFFF != crc:
        raise NodeTableError(f"{source}: crc32 mismatch (file corrupted or truncated)")
    fmts = None
    if kind == KIND_FLOAT:
        rec = np.frombuffer(body, dtype="<f8").reshape(J, 2 * D + 2).astype(np.float64)
    else:
        fmts = {}
        for i, key in enumerate(("delta", "weight", "a", "b")):
            bits, frac = fmt_bytes[2 * i], fmt_bytes[2 * i + 1]
            frac = frac - 256 if frac > 127 else frac
            try:
                fmts[key] = QFormat(int(bits), int(frac))
            except FormatError as exc:
                raise NodeTableError(f"{source}: format of {key}: {exc}") from None
        codes = np.frombuffer(body, dtype="<i4").reshape(J, 2 * D + 2).astype(np.int64)
        cols = [fmts["delta"]] * D + [fmts["weight"]] + [fmts["a"]] * D + [fmts["b"]]
        rec = np.stack([f.to_float(codes[:, c]) for c, f in enumerate(cols)], axis=1)
    table = NodeTable(float(sigma), rec[:, :D], rec[:, D], rec[:, D + 1:2 * D + 1], rec[:, 2 * D + 1],
                      int(lap_dims), int(level), bool(flags & 1))
    return table, fmts


def write(path: str | Path, table: NodeTable, fixed: dict[str, QFormat] | None = None) -> int:
    """Write the table; returns the byte count."""
    data = encode(table, fixed)
    Path(path).write_bytes(data)
    return len(data)


def read(path: str | Path) -> tuple[NodeTable, dict[str, QFormat] | None]:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise NodeTableError(f"{p}: cannot read: {exc.strerror}") from None
    return decode(data, str(p))


def codes(table: NodeTable, fixed: dict[str, QFormat]) -> dict[str, np.ndarray]:
    """The integer codes of each field in `fixed` (what the board stores)."""
    return {"delta": fixed["delta"].quantize(table.deltas), "weight": fixed["weight"].quantize(table.weights),
            "a": fixed["a"].quantize(table.a), "b": fixed["b"].quantize(table.b)}
