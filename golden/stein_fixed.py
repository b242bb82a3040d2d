"""The HJB loss as the chip computes it: integer Stein sums, residual and squared residual, bit for bit.

`hjb.FixedHJB` evaluates the network bit-exactly but forms the Stein sums in float.  This module
is the integer definition of everything after the network (docs/rtl-pinn.md is the prose form),
for a D-input problem (x_1..x_{D-1}, t) with the HJB-20 residual generalised to D - 1 space
coordinates (D = 21 is the paper's HJB-20):

  node table   delta_j, a_j (D), b_j as int32 codes of the table formats (golden/nodetable.py);
               the origin is node 0 (a symmetric sparse-grid table); its factors are unused
  inputs       y_j = sat_X(x + delta_j)               (X = cfg.input; delta has X's fraction)
  network      n_j = NN(y_j)                          (cfg.act codes; table or interpolated sine)
  ansatz       g_j = sat_G(rhu(sat_X(1 - y_j,t) * sat_A(1 + n_j), fX + fA - fG))
  differences  d_j = g_j - g_0                        (exact, G.bits + 1)
  Stein sums   S_i = sum_{j=1..J-1} a_{j,i} d_j  (i < D),   S_D = sum_j b_j d_j   (exact, in node order)
  derivatives  grad_i = sat_GR(rhu(S_i, fG + fa - fGR)),   lap = sat_L(rhu(S_D, fG + fb - fL))
  residual     v_i = 2^fGR + grad_i (i < D - 1),  Q = sum_i v_i^2 (exact),
               q = rhu(rhu(Q, 2 fGR - fR) * COEFF, fC)     COEFF = rhu(0.05 * 2^fC)
               r = sat_R(rhu(grad_{D-1}, fGR - fR) + rhu(lap, fL - fR) - q + 2 * 2^fR)
  loss         l = sat_LOSS(rhu(r^2, 2 fR - fLOSS)) per point; the batch loss is the exact sum
               over the points (no division: the ZO step sizes absorb 1/P, as for MNIST)

rhu(v, s) = round half up of v / 2^s (golden/fixed.round_shift).  The sums are exact: they are
computed with Python integers here (the accumulators exceed 62 bits: |a| < 2^31, |d| < 2^32,
J terms); the RTL holds them in `accumulator_bits()`-wide registers.  Every saturation is counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .fixed import OverflowCounter, QFormat, round_shift
from .formats import FixedConfig
from .network import Params, TTNet
from .nodetable import DEFAULT_TABLE_FORMATS, NodeTable, NodeTableError

#: HJB coefficients (eq. 14): r = d_t u + lap_x u - COEFF |grad_x u|^2 - RHS, RHS = -2.
HJB_COEFF = 0.05
HJB_RHS = -2


@dataclass(frozen=True)
class SteinFormats:
    """Formats of the Stein path after the network (the node-table formats included)."""

    table: dict = field(default_factory=lambda: dict(DEFAULT_TABLE_FORMATS))  # delta, weight, a, b
    g: QFormat = QFormat(32, 25)       # g = (1 - t)(1 + NN)
    grad: QFormat = QFormat(32, 24)    # each component of the gradient estimate
    lap: QFormat = QFormat(32, 20)     # Laplacian estimate
    res: QFormat = QFormat(32, 20)     # residual r
    loss: QFormat = QFormat(40, 24)    # r^2 per point
    coeff_frac: int = 24               # fraction bits of the 0.05 constant

    def __post_init__(self) -> None:
        a, b = self.table["a"], self.table["b"]
        if self.g.frac + a.frac < self.grad.frac or self.g.frac + b.frac < self.lap.frac:
            raise ValueError("grad/lap formats need at most the Stein sums' fraction bits")
        if self.grad.frac < self.res.frac or self.lap.frac < self.res.frac:
            raise ValueError("the residual format needs at most the grad/lap fraction bits")
        if 2 * self.res.frac < self.loss.frac:
            raise ValueError("the loss format needs at most 2 x the residual's fraction bits")

    @property
    def coeff_code(self) -> int:
        return int(np.floor(HJB_COEFF * 2 ** self.coeff_frac + 0.5))

    def to_dict(self) -> dict:
        return {"table": {k: str(v) for k, v in self.table.items()}, "g": str(self.g), "grad": str(self.grad),
                "lap": str(self.lap), "res": str(self.res), "loss": str(self.loss), "coeff_frac": self.coeff_frac,
                "coeff_code": self.coeff_code}


DEFAULT_STEIN_FORMATS = SteinFormats()


@dataclass(frozen=True)
class TableCodes:
    """What the chip stores of a node table: int32 codes of delta (J, D), a (J, D), b (J,)."""

    delta: np.ndarray
    a: np.ndarray
    b: np.ndarray
    weight: np.ndarray

    @property
    def count(self) -> int:
        return int(self.delta.shape[0])

    @property
    def dim(self) -> int:
        return int(self.delta.shape[1])

    def body_words(self) -> np.ndarray:
        """The node-table file's body as int32 words: per node [delta_1..D, w, a_1..D, b]."""
        return np.concatenate([self.delta, self.weight[:, None], self.a, self.b[:, None]], axis=1).reshape(-1)


def table_codes(table: NodeTable, input_fmt: QFormat, fmts: SteinFormats = DEFAULT_STEIN_FORMATS) -> TableCodes:
    """Quantise a node table for the chip; refuses a table the Stein path cannot use."""
    t = fmts.table
    if t["delta"].frac != input_fmt.frac:
        raise NodeTableError(f"delta format {t['delta']} must have the input format's {input_fmt.frac} fraction bits")
    if table.deltas[0].any():
        raise NodeTableError("node 0 must be the origin (d_j = g_j - g_0 needs g at the point first)")
    if table.lap_dims != table.dim - 1:
        raise NodeTableError(f"lapdims {table.lap_dims}: the HJB residual needs the Laplacian over the first "
                             f"{table.dim - 1} coordinates (the last input is t)")
    codes = {}
    for key, vals in (("delta", table.deltas), ("weight", table.weights), ("a", table.a), ("b", table.b)):
        c = OverflowCounter()
        codes[key] = t[key].quantize(vals, c, key)
        if c.any:
            raise NodeTableError(f"node-table field {key} saturates in {t[key]}")
    return TableCodes(codes["delta"], codes["a"], codes["b"], codes["weight"])


def _big(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.int64).astype(object)


def _rhu_big(v, s: int):
    """round_shift on Python ints (arbitrary width)."""
    if s <= 0:
        return v * (1 << -s)
    return (v + (1 << (s - 1))) >> s


def _sat_big(v: np.ndarray, fmt: QFormat, counter: OverflowCounter | None, name: str) -> np.ndarray:
    arr = np.asarray(v, dtype=object)
    lo, hi = fmt.min_code, fmt.max_code
    if counter is not None:
        n = sum(1 for x in arr.reshape(-1) if x < lo or x > hi)
        counter.add(name, n, int(arr.size))
    return np.array([min(max(int(x), lo), hi) for x in arr.reshape(-1)], dtype=np.int64).reshape(arr.shape)


@dataclass
class SteinResult:
    """Every intermediate the chip produces for a batch of P collocation points."""

    nn: np.ndarray      # (P, J) network outputs (act codes)
    g: np.ndarray       # (P, J) g codes
    grad: np.ndarray    # (P, D) gradient codes
    lap: np.ndarray     # (P,) Laplacian codes
    res: np.ndarray     # (P,) residual codes
    loss: np.ndarray    # (P,) per-point r^2 codes
    fmts: SteinFormats

    @property
    def loss_sum(self) -> int:
        return int(self.loss.sum())

    def floats(self) -> dict[str, np.ndarray]:
        f = self.fmts
        return {"grad": f.grad.to_float(self.grad), "lap": f.lap.to_float(self.lap), "res": f.res.to_float(self.res),
                "loss": float(f.loss.to_float(self.loss).mean()) if self.loss.size else 0.0}


def node_inputs(x_codes: np.ndarray, tab: TableCodes, input_fmt: QFormat,
                counter: OverflowCounter | None = None) -> np.ndarray:
    """y = sat_X(x + delta_j) for every point and node: (P, J, D)."""
    x = np.asarray(x_codes, dtype=np.int64)
    return input_fmt.saturate(x[:, None, :] + tab.delta[None], counter, "input+delta")


def g_codes(nn: np.ndarray, t_codes: np.ndarray, cfg: FixedConfig, fmts: SteinFormats,
            counter: OverflowCounter | None = None) -> np.ndarray:
    """g = sat_G(rhu(sat_X(1 - t) * sat_A(1 + NN), fX + fA - fG)) (int64-exact: both factors < 2^31)."""
    X, A = cfg.input, cfg.act
    omt = X.saturate((1 << X.frac) - np.asarray(t_codes, dtype=np.int64), counter, "1-t")
    onn = A.saturate((1 << A.frac) + np.asarray(nn, dtype=np.int64), counter, "1+nn")
    if X.bits > 32 or A.bits > 32:
        raise ValueError("g's product is int64-exact only for input/act formats of at most 32 bits")
    return fmts.g.saturate(round_shift(omt * onn, X.frac + A.frac - fmts.g.frac), counter, "g")


def stein_sums(g: np.ndarray, tab: TableCodes) -> tuple[np.ndarray, np.ndarray]:
    """Exact S_i = sum_j a_{j,i} (g_j - g_0) and S_D = sum_j b_j (g_j - g_0), as Python-int arrays."""
    d = _big(g) - _big(g[:, :1])
    return d @ _big(tab.a), d @ _big(tab.b)


def derivatives(sg: np.ndarray, sl: np.ndarray, fmts: SteinFormats, counter: OverflowCounter | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    t = fmts.table
    sg_s = np.vectorize(lambda v: _rhu_big(v, fmts.g.frac + t["a"].frac - fmts.grad.frac), otypes=[object])(sg)
    sl_s = np.vectorize(lambda v: _rhu_big(v, fmts.g.frac + t["b"].frac - fmts.lap.frac), otypes=[object])(sl)
    return _sat_big(sg_s, fmts.grad, counter, "grad"), _sat_big(sl_s, fmts.lap, counter, "lap")


def residual_codes(grad: np.ndarray, lap: np.ndarray, fmts: SteinFormats,
                   counter: OverflowCounter | None = None) -> np.ndarray:
    """The HJB residual r from the gradient (P, D; the last component is d/dt) and Laplacian codes."""
    fgr, fr = fmts.grad.frac, fmts.res.frac
    out = []
    for gi, li in zip(np.asarray(grad), np.asarray(lap)):
        v = [(1 << fgr) + int(c) for c in gi[:-1]]
        Q = sum(x * x for x in v)
        q = _rhu_big(_rhu_big(Q, 2 * fgr - fr) * fmts.coeff_code, fmts.coeff_frac)
        out.append(_rhu_big(int(gi[-1]), fgr - fr) + _rhu_big(int(li), fmts.lap.frac - fr) - q + (-HJB_RHS << fr))
    return _sat_big(np.array(out, dtype=object), fmts.res, counter, "res")


def loss_codes(res: np.ndarray, fmts: SteinFormats, counter: OverflowCounter | None = None) -> np.ndarray:
    """Per-point r^2 in the loss format."""
    sq = np.array([_rhu_big(int(r) * int(r), 2 * fmts.res.frac - fmts.loss.frac) for r in np.asarray(res)],
                  dtype=object)
    return _sat_big(sq, fmts.loss, counter, "loss")


@dataclass
class SteinFixedHJB:
    """The whole on-chip HJB loss: network (bit-exact, table or interpolated sine) + integer Stein path."""

    net: TTNet
    cfg: FixedConfig
    fmts: SteinFormats = DEFAULT_STEIN_FORMATS
    sine: str = "table"
    counter: OverflowCounter = field(default_factory=OverflowCounter)

    def nn(self, codes: Params, y: np.ndarray) -> np.ndarray:
        """Network output codes for input codes y (..., D)."""
        from .hjb import FixedHJB
        shape = y.shape[:-1]
        fx = FixedHJB(self.net, self.cfg, self.counter, self.sine)
        return fx.nn_codes(codes, y.reshape(-1, y.shape[-1])).reshape(shape)

    def evaluate(self, codes: Params, x_codes: np.ndarray, tab: TableCodes) -> SteinResult:
        """All intermediates for points x_codes (P, D) in the input format."""
        x = np.asarray(x_codes, dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != tab.dim or tab.dim != self.net.in_features:
            raise ValueError(f"points {x.shape}, table dim {tab.dim}, network inputs {self.net.in_features} disagree")
        y = node_inputs(x, tab, self.cfg.input, self.counter)
        nn = self.nn(codes, y)
        g = g_codes(nn, y[..., -1], self.cfg, self.fmts, self.counter)
        sg, sl = stein_sums(g, tab)
        grad, lap = derivatives(sg, sl, self.fmts, self.counter)
        res = residual_codes(grad, lap, self.fmts, self.counter)
        return SteinResult(nn, g, grad, lap, res, loss_codes(res, self.fmts, self.counter), self.fmts)

    def batched_loss(self, x_codes: np.ndarray, tab: TableCodes):
        """(Q, d) flat parameter codes -> (Q,) integer batch losses, for golden/zo_fixed.py."""
        def f(thetas: np.ndarray) -> np.ndarray:
            return np.array([self.evaluate(self.net.unflatten(th), x_codes, tab).loss_sum
                             for th in np.atleast_2d(thetas)], dtype=np.int64)
        return f


def accumulator_bits(fmts: SteinFormats, nodes: int) -> dict[str, int]:
    """Signed widths that hold the Stein sums and the residual's |1 + grad|^2 exactly (RTL registers)."""
    grow = max(1, (nodes - 1).bit_length())
    d_bits = fmts.g.bits + 1
    t = fmts.table
    return {"grad": d_bits + t["a"].bits - 1 + grow + 1, "lap": d_bits + t["b"].bits - 1 + grow + 1,
            "norm": 2 * (fmts.grad.bits + 1) + 6}


def float_reference(net: TTNet, params: Params, xt: np.ndarray, table: NodeTable) -> dict[str, np.ndarray]:
    """Float64 grad, lap, residual and mean r^2 of the same estimator (for the accuracy tests)."""
    xt = np.asarray(xt, dtype=np.float64)
    y = xt[:, None, :] + table.deltas[None]
    nn = net.forward_float(params, y.reshape(-1, y.shape[-1]))[:, 0].reshape(y.shape[:2])
    g = (1.0 - y[..., -1]) * (1.0 + nn)
    d = g - g[:, :1]
    grad, lap = d @ table.a, d @ table.b
    v = 1.0 + grad[:, :-1]
    r = grad[:, -1] + lap - HJB_COEFF * np.sum(v * v, axis=1) - HJB_RHS
    return {"grad": grad, "lap": lap, "res": r, "loss": float(np.mean(r * r))}
