"""Random TT networks, orders and fixed-point formats within an engine's maxima (for equivalence tests).

Every draw is reproducible from its seed.  Layers chain through compatible foldings (the next
layer's input modes equal, merge or split the previous output modes), activations are drawn
from identity/ReLU/sine, contraction orders from all valid orders, and formats from widths the
engine holds; draws the compiler refuses (accumulator or buffer limits) are redrawn.
"""
from __future__ import annotations

import numpy as np

from ..golden.fixed import FormatError, QFormat
from ..golden.formats import FixedConfig
from ..golden.network import LayerSpec, TTNet
from ..golden.tt import TTShape
from ..rtl.descriptors import EngineParams, compile_network
from .tt_cosim import Case


def _factor(n: int, rng: np.random.Generator) -> tuple[int, ...]:
    """A random row-major folding of n (split one mode into two when possible)."""
    for d in rng.permutation(np.arange(2, n)):
        if n % d == 0:
            return (int(d), n // int(d))
    return (n,)


def random_formats(rng: np.random.Generator, params: EngineParams) -> FixedConfig:
    while True:
        wb = int(rng.integers(6, params.weight_bits + 1))
        w = QFormat(wb, int(rng.integers(wb // 2, wb)))
        inp = (QFormat(8, 8, signed=False) if rng.random() < 0.4
               else QFormat(int(rng.integers(6, params.data_bits + 1)), int(rng.integers(2, 10))))
        sb = int(rng.integers(8, params.data_bits + 1))
        st = QFormat(sb, int(rng.integers(2, sb - 2)))
        ab = int(rng.integers(8, params.data_bits + 1))
        act = QFormat(ab, int(rng.integers(2, ab - 2)))
        bb = int(rng.integers(6, params.bias_bits + 1))
        bias = QFormat(bb, int(rng.integers(0, min(bb, w.frac + min(st.frac, act.frac, inp.frac)) + 1)))
        try:
            return FixedConfig(input=inp, weight=w, bias=bias, state=st, act=act,
                               sine_bits=int(rng.integers(6, params.sine_bits + 1)))
        except FormatError:
            continue


def random_net(rng: np.random.Generator, max_layers: int = 3) -> TTNet:
    n_layers = int(rng.integers(1, max_layers + 1))
    layers = []
    in_modes = tuple(int(v) for v in rng.integers(1, 6, size=int(rng.integers(1, 4))))
    for li in range(n_layers):
        L = len(in_modes)
        out_modes = tuple(int(v) for v in rng.integers(1, 6, size=L))
        ranks = (1,) + tuple(int(v) for v in rng.integers(1, 5, size=L - 1)) + (1,)
        shape = TTShape(in_modes, out_modes, ranks)
        orders = shape.orders()
        order = orders[int(rng.integers(len(orders)))]
        act = ("identity", "relu", "sine")[int(rng.integers(3))]
        layers.append(LayerSpec(shape, act, order))
        # next input folding: same modes, or refold by splitting one mode / merging two
        r = rng.random()
        nxt = list(out_modes)
        if r < 0.3 and len(nxt) >= 2:
            i = int(rng.integers(len(nxt) - 1))
            nxt[i:i + 2] = [nxt[i] * nxt[i + 1]]
        elif r < 0.6:
            i = int(rng.integers(len(nxt)))
            nxt[i:i + 1] = list(_factor(nxt[i], rng))
        in_modes = tuple(nxt)
    return TTNet(tuple(layers), name="random")


def random_case(seed: int, params: EngineParams, batch: int = 3, max_layers: int = 3) -> Case:
    """A random network + formats + parameters + inputs that the engine accepts."""
    rng = np.random.default_rng(seed)
    while True:
        net = random_net(rng, max_layers)
        cfg = random_formats(rng, params)
        fparams = net.init(rng)
        # scale so that values use the formats' range without saturating everything
        fparams = [([c * rng.uniform(0.5, 3.0) for c in cores], rng.normal(0, 0.5, size=np.shape(b)))
                   for cores, b in fparams]
        codes = net.quantize(fparams, cfg)
        try:
            compile_network(net, codes, cfg, params)
        except FormatError:
            continue
        lo, hi = cfg.input.min_code, cfg.input.max_code
        x = rng.integers(lo, hi + 1, size=(batch, net.in_features))
        return Case(f"random-{seed}", net, codes, cfg, x, throttle=bool(rng.random() < 0.3))
