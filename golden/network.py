"""Multi-layer TT networks: the paper's MNIST TT-MLP, its dense baseline, flat parameter order.

A network is a list of (TTShape, activation).  A dense layer is the L = 1 TT layer with
modes (N,) -> (M,) and ranks (1, 1), so one forward (and one RTL engine) serves both.

Parameters are a list of layers, each (cores, bias).  The *flat order* that the PRNG
streams, the wire protocol and the chip's parameter memory share: layer by layer, cores
1..L each in C order over (r_{k-1}, n_k, m_k, r_k), then the bias.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .activations import apply_fixed, apply_float
from .fixed import OverflowCounter
from .formats import DEFAULT_CONFIG, FixedConfig
from .tt import FixedLayerFormats, Order, TTShape, init_cores, tt_forward_fixed, tt_forward_float

Layer = tuple[list[np.ndarray], np.ndarray]  # (cores, bias)
Params = list[Layer]


@dataclass(frozen=True)
class LayerSpec:
    shape: TTShape
    activation: str = "relu"
    order: Order | None = None  # None: the fewest-MAC order

    @property
    def contraction(self) -> Order:
        return self.shape.best_order if self.order is None else self.order


@dataclass(frozen=True)
class TTNet:
    """A stack of TT-matrix layers with biases."""

    layers: tuple[LayerSpec, ...]
    name: str = "net"
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        for a, b in zip(self.layers, self.layers[1:]):
            if a.shape.out_features != b.shape.in_features:
                raise ValueError(f"layer sizes do not chain: {a.shape.out_features} -> {b.shape.in_features}")

    # --- sizes -------------------------------------------------------------------------------------
    @property
    def in_features(self) -> int:
        return self.layers[0].shape.in_features

    @property
    def out_features(self) -> int:
        return self.layers[-1].shape.out_features

    def param_sizes(self) -> list[int]:
        """Sizes of the flat-order blocks: each core, then each bias, layer by layer."""
        sizes: list[int] = []
        for spec in self.layers:
            sizes += [int(np.prod(s)) for s in spec.shape.core_shapes]
            sizes.append(spec.shape.out_features)
        return sizes

    @property
    def n_params(self) -> int:
        return sum(self.param_sizes())

    def macs(self, which: str = "chosen") -> int:
        """Per-sample MACs: 'chosen' orders, 'left_to_right' sweep, or 'dense'."""
        total = 0
        for spec in self.layers:
            s = spec.shape
            total += {"chosen": lambda: s.macs(spec.contraction), "left_to_right": lambda: s.macs(s.left_to_right),
                      "dense": lambda: s.dense_macs}[which]()
        return total

    # --- parameters --------------------------------------------------------------------------------
    def init(self, rng: np.random.Generator) -> Params:
        params: Params = []
        for spec in self.layers:
            gain = 2.0 if spec.activation == "relu" else 1.0
            params.append((init_cores(spec.shape, rng, gain), np.zeros(spec.shape.out_features)))
        return params

    def flatten(self, params: Params) -> np.ndarray:
        parts = []
        for cores, bias in params:
            parts += [np.asarray(c).reshape(-1) for c in cores] + [np.asarray(bias).reshape(-1)]
        return np.concatenate(parts)

    def unflatten(self, vec: np.ndarray) -> Params:
        vec = np.asarray(vec)
        if vec.shape[-1] != self.n_params:
            raise ValueError(f"flat parameter vector has {vec.shape[-1]} entries, the network has {self.n_params}")
        lead = vec.shape[:-1]
        out: Params = []
        pos = 0
        for spec in self.layers:
            cores = []
            for cs in spec.shape.core_shapes:
                n = int(np.prod(cs))
                cores.append(vec[..., pos:pos + n].reshape(lead + cs))
                pos += n
            n = spec.shape.out_features
            out.append((cores, vec[..., pos:pos + n]))
            pos += n
        return out

    def bias_mask(self) -> np.ndarray:
        """True at flat positions that are biases (they use the bias format)."""
        mask = []
        for spec in self.layers:
            mask += [np.zeros(int(np.prod(cs)), bool) for cs in spec.shape.core_shapes]
            mask.append(np.ones(spec.shape.out_features, bool))
        return np.concatenate(mask)

    def quantize(self, params: Params, cfg: FixedConfig = DEFAULT_CONFIG,
                 counter: OverflowCounter | None = None) -> Params:
        return [([cfg.weight.quantize(c, counter, "weight") for c in cores], cfg.bias.quantize(b, counter, "bias"))
                for cores, b in params]

    def dequantize(self, codes: Params, cfg: FixedConfig = DEFAULT_CONFIG) -> Params:
        return [([cfg.weight.to_float(c) for c in cores], cfg.bias.to_float(b)) for cores, b in codes]

    # --- forward -------------------------------------------------------------------------------------
    def forward_float(self, params: Params, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, dtype=np.float64)
        for spec, (cores, bias) in zip(self.layers, params):
            h = apply_float(spec.activation, tt_forward_float(spec.shape, cores, h, bias, spec.contraction))
        return h

    def layer_formats(self, cfg: FixedConfig, index: int) -> FixedLayerFormats:
        return FixedLayerFormats(x=cfg.input if index == 0 else cfg.act, weight=cfg.weight, bias=cfg.bias,
                                 state=cfg.state, out=cfg.act)

    def forward_fixed(self, codes: Params, x: np.ndarray, cfg: FixedConfig = DEFAULT_CONFIG,
                      counter: OverflowCounter | None = None) -> np.ndarray:
        """Bit-exact forward: input codes (cfg.input) -> output codes (cfg.act)."""
        h = np.asarray(x, dtype=np.int64)
        if not cfg.input.contains(h):
            raise ValueError(f"input codes outside the input format {cfg.input}")
        for i, (spec, (cores, bias)) in enumerate(zip(self.layers, codes)):
            h = tt_forward_fixed(spec.shape, cores, h, bias, self.layer_formats(cfg, i), spec.contraction, counter)
            h = apply_fixed(spec.activation, h, cfg.act, cfg.sine_bits)
        return h

    def describe(self) -> dict:
        return {
            "name": self.name,
            "layers": [{"in_modes": list(s.shape.in_modes), "out_modes": list(s.shape.out_modes),
                        "ranks": list(s.shape.ranks), "activation": s.activation,
                        "order": list(s.contraction), "macs": s.shape.macs(s.contraction),
                        "macs_left_to_right": s.shape.macs(s.shape.left_to_right),
                        "macs_dense": s.shape.dense_macs, "params": s.shape.n_core_params + s.shape.out_features}
                       for s in self.layers],
            "params": self.n_params,
            "macs_per_sample": self.macs("chosen"),
            "macs_left_to_right": self.macs("left_to_right"),
            "macs_dense": self.macs("dense"),
        }


MNIST_IN = (7, 4, 4, 7)
MNIST_HIDDEN = (8, 4, 4, 8)
MNIST_OUT = (1, 5, 2, 1)


def mnist_tt(rank: int = 6, hidden_activation: str = "relu") -> TTNet:
    """The paper's TT-MLP: 784 -> 1024 -> 10 folded 7x4x4x7 -> 8x4x4x8 -> 1x5x2x1, ranks [1,r,r,r,1].

    The output layer's activation is the identity (logits); ReLU after the hidden layer.
    """
    if rank < 1:
        raise ValueError("rank must be >= 1")
    return TTNet((LayerSpec(TTShape.uniform(MNIST_IN, MNIST_HIDDEN, rank), hidden_activation),
                  LayerSpec(TTShape.uniform(MNIST_HIDDEN, MNIST_OUT, rank), "identity")), name=f"mnist-tt-r{rank}")


def dense_mlp(sizes: Sequence[int] = (784, 1024, 10), activation: str = "relu") -> TTNet:
    """Dense baseline as L=1 TT layers (one core (1, N, M, 1) per layer)."""
    layers = []
    for i, (n, m) in enumerate(zip(sizes, sizes[1:])):
        act = activation if i < len(sizes) - 2 else "identity"
        layers.append(LayerSpec(TTShape((n,), (m,), (1, 1)), act))
    return TTNet(tuple(layers), name="dense-" + "x".join(map(str, sizes)))
