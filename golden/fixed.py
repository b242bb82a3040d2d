"""Fixed-point number formats: the arithmetic contract between golden/ and rtl/.

A :class:`QFormat` is (signed, bits, frac): a value v is stored as the integer code
c = v * 2**frac, held in `bits` two's-complement (or unsigned) bits.  Every conversion
uses ONE rounding mode, round-half-up on the dropped bits (add 2**(s-1), then an
arithmetic shift right by s), because it costs one adder in hardware; every store
saturates to the format's range and counts the values it clipped.

All functions work on integer numpy arrays (int64) and are exact; see
docs/fixed-point.md for the prose version an RTL engineer implements.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Largest magnitude an int64 computation may reach (we keep one bit of headroom).
INT64_SAFE_BITS = 62
#: Largest magnitude a float64 (BLAS) computation represents exactly.
FLOAT64_EXACT_BITS = 53


class FormatError(ValueError):
    """A format, or a computation over formats, that the integer arithmetic cannot hold exactly."""


@dataclass(frozen=True)
class QFormat:
    """A fixed-point format: `bits` total bits (sign included when `signed`), `frac` fraction bits."""

    bits: int
    frac: int
    signed: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.bits, (int, np.integer)) or not isinstance(self.frac, (int, np.integer)):
            raise FormatError(f"bits and frac must be integers, got {self.bits!r}, {self.frac!r}")
        if not 1 <= self.bits <= 48:
            raise FormatError(f"format width {self.bits} bits is outside 1..48 (exact int64 arithmetic "
                              "needs headroom for products and accumulation)")
        if self.signed and self.bits < 2:
            raise FormatError("a signed format needs at least 2 bits")
        if not -64 <= self.frac <= 64:
            raise FormatError(f"fraction bits {self.frac} outside -64..64")

    # --- range -----------------------------------------------------------------------------
    @property
    def min_code(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def lsb(self) -> float:
        """Value of one code step."""
        return 2.0 ** -self.frac

    @property
    def min_value(self) -> float:
        return self.min_code * self.lsb

    @property
    def max_value(self) -> float:
        return self.max_code * self.lsb

    @property
    def magnitude_bits(self) -> int:
        """Bits needed for |code| (used to bound products and sums)."""
        return self.bits - 1 if self.signed else self.bits

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.bits}.{self.frac}"

    @classmethod
    def parse(cls, text: str) -> "QFormat":
        """Parse the short form used on the command line and in files: ``s16.12`` or ``u8.8``."""
        t = text.strip().lower()
        if len(t) < 4 or t[0] not in "su" or "." not in t:
            raise FormatError(f"cannot parse format {text!r}: expected e.g. 's16.12' or 'u8.8'")
        try:
            bits, frac = (int(p) for p in t[1:].split(".", 1))
        except ValueError as exc:
            raise FormatError(f"cannot parse format {text!r}: {exc}") from None
        return cls(bits=bits, frac=frac, signed=t[0] == "s")

    def to_dict(self) -> dict[str, Any]:
        return {"bits": int(self.bits), "frac": int(self.frac), "signed": bool(self.signed)}

    # --- conversions -------------------------------------------------------------------------
    def quantize(self, x: Any, counter: "OverflowCounter | None" = None, name: str = "") -> np.ndarray:
        """Float -> code: round half up (floor(x*2^frac + 1/2)), then saturate."""
        scaled = np.floor(np.asarray(x, dtype=np.float64) * (2.0 ** self.frac) + 0.5)
        if not np.all(np.isfinite(scaled)):
            raise FormatError(f"cannot quantise non-finite values to {self}")
        scaled = np.clip(scaled, -(2.0 ** 62), 2.0 ** 62)
        return self.saturate(scaled.astype(np.int64), counter, name)

    def to_float(self, code: Any) -> np.ndarray:
        return np.asarray(code, dtype=np.float64) * self.lsb

    def saturate(self, code: Any, counter: "OverflowCounter | None" = None, name: str = "") -> np.ndarray:
        """Clip integer codes to the format's range; clipped values are counted, never silent."""
        c = np.asarray(code)
        lo, hi = self.min_code, self.max_code
        if counter is not None:
            n = int(np.count_nonzero((c < lo) | (c > hi)))
            counter.add(name or str(self), n, int(c.size))
        return np.clip(c, lo, hi).astype(np.int64)

    def contains(self, code: Any) -> bool:
        c = np.asarray(code)
        return bool(np.all((c >= self.min_code) & (c <= self.max_code)))


def round_shift(code: Any, shift: int) -> np.ndarray:
    """Drop `shift` fraction bits with round-half-up: (c + 2^(shift-1)) >> shift (arithmetic).

    A negative shift is an exact left shift.  Works on int64 arrays and on float64 arrays
    holding integers below 2**53 (the result is then an exact integer-valued float64).
    """
    c = np.asarray(code)
    if shift <= 0:
        return c * (1 << -shift) if c.dtype.kind in "iu" else c * float(1 << -shift)
    if c.dtype.kind in "iu":
        return (c.astype(np.int64) + (1 << (shift - 1))) >> shift
    return np.floor((c + float(1 << (shift - 1))) / float(1 << shift))


def requantize(code: Any, frac_in: int, fmt: QFormat, counter: "OverflowCounter | None" = None,
               name: str = "") -> np.ndarray:
    """Move codes with `frac_in` fraction bits into `fmt`: round-half-up shift, then saturate."""
    shifted = round_shift(code, frac_in - fmt.frac)
    return fmt.saturate(np.asarray(shifted).astype(np.int64), counter, name)


@dataclass
class OverflowCounter:
    """Counts saturated values per named tensor, so overflow is reportable, never silent."""

    counts: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int, total: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + n
        self.totals[name] = self.totals.get(name, 0) + total

    @property
    def any(self) -> bool:
        return any(v > 0 for v in self.counts.values())

    def report(self) -> dict[str, dict[str, int]]:
        return {k: {"saturated": self.counts[k], "total": self.totals[k]} for k in sorted(self.counts)}

    def reset(self) -> None:
        self.counts.clear()
        self.totals.clear()


def accumulator_bits(a: QFormat, b: QFormat, terms: int, extra_bits: int = 0) -> int:
    """Signed bits an exact sum of `terms` products a*b (plus a bias of `extra_bits`) needs."""
    if terms < 1:
        raise FormatError("an accumulation needs at least one term")
    prod = a.magnitude_bits + b.magnitude_bits
    grow = int(np.ceil(np.log2(terms))) if terms > 1 else 0
    return max(prod + grow, extra_bits) + 2  # +1 for the bias add, +1 sign


def check_exact(a: QFormat, b: QFormat, terms: int, limit_bits: int = INT64_SAFE_BITS,
                what: str = "accumulation", extra_bits: int = 0) -> int:
    """Refuse (FormatError) a sum of products (plus an addend of `extra_bits` magnitude bits)
    that int64 cannot hold exactly; return its width."""
    need = accumulator_bits(a, b, terms, extra_bits)
    if need > limit_bits:
        raise FormatError(f"{what}: {terms} products of {a} x {b} need {need} bits, more than the "
                          f"{limit_bits} that exact integer arithmetic holds; use narrower formats")
    return need
