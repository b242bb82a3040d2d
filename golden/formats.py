"""Per-tensor fixed-point configuration of a network (the `FixedConfig` every path shares).

Which format each tensor uses is configuration, not code: the TT cores, the biases, the
network input, the intermediate TT-contraction state, the layer activations, the
zeroth-order step sizes (mu, alpha share the core format's fraction so an update is one
integer add) and the per-sample loss.  The default was chosen by measured accuracy
(docs/fixed-point.md, "Choosing the default").
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .fixed import FormatError, QFormat


@dataclass(frozen=True)
class FixedConfig:
    """Formats of every tensor of a fixed-point TT network."""

    input: QFormat = QFormat(8, 8, signed=False)   # MNIST pixel byte p is the code: value p/256
    weight: QFormat = QFormat(16, 13)               # TT-core entries
    bias: QFormat = QFormat(16, 10)
    state: QFormat = QFormat(16, 10)                # TT partial contractions, requantised after each core
    act: QFormat = QFormat(16, 8)                   # layer outputs (after activation) = next layer's input
    loss: QFormat = QFormat(32, 16)                 # per-sample loss; batch sums are exact wide integers
    sine_bits: int = 10                             # phase bits of the sine table (PINN path)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "sine_bits":
                if not 4 <= int(v) <= 16:
                    raise FormatError(f"sine_bits={v} outside 4..16")
            elif not isinstance(v, QFormat):
                raise FormatError(f"{f.name} must be a QFormat, got {type(v).__name__}")
        if self.bias.frac > self.state.frac + self.weight.frac or self.bias.frac > self.act.frac + self.weight.frac \
                or self.bias.frac > self.input.frac + self.weight.frac:
            raise FormatError("bias.frac must not exceed the accumulator's fraction (input/state/act + weight)")
        for name in ("state", "act"):
            if getattr(self, name).frac > self.weight.frac + min(self.state.frac, self.act.frac, self.input.frac):
                raise FormatError(f"{name}.frac larger than any accumulator fraction: it would need a left shift")

    # --- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            d[f.name] = str(v) if isinstance(v, QFormat) else v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FixedConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise FormatError(f"unknown format fields: {sorted(unknown)}")
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k == "sine_bits":
                kw[k] = int(v)
            elif isinstance(v, QFormat):
                kw[k] = v
            elif isinstance(v, str):
                kw[k] = QFormat.parse(v)
            elif isinstance(v, dict):
                kw[k] = QFormat(**v)
            else:
                raise FormatError(f"cannot read format {k}={v!r}")
        return cls(**kw)

    def with_(self, **kw: Any) -> "FixedConfig":
        """A copy with some formats replaced (strings like 's16.12' accepted)."""
        kw = {k: QFormat.parse(v) if isinstance(v, str) else v for k, v in kw.items()}
        return replace(self, **kw)

    # --- step sizes ------------------------------------------------------------------------------
    def step_code(self, value: float, what: str = "step") -> int:
        """mu or alpha as an integer number of core LSBs (round half up); refuses 0 and overflow."""
        code = int(self.weight.quantize(value))
        if value > 0 and code == 0:
            raise FormatError(f"{what}={value} is below one LSB of the core format {self.weight} "
                              f"({self.weight.lsb:g}); use more fraction bits or a larger {what}")
        if abs(code) >= self.weight.max_code:
            raise FormatError(f"{what}={value} does not fit the core format {self.weight}")
        return code


#: Formats for the PINN (HJB) path: inputs in [-1, 2], sine activations need finer resolution.
PINN_CONFIG = FixedConfig(input=QFormat(16, 12), weight=QFormat(16, 13), bias=QFormat(16, 12),
                          state=QFormat(20, 14), act=QFormat(20, 14), loss=QFormat(32, 20), sine_bits=12)

DEFAULT_CONFIG = FixedConfig()

__all__ = ["FixedConfig", "DEFAULT_CONFIG", "PINN_CONFIG", "asdict"]
