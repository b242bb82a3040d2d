"""The integer zeroth-order step the chip performs (docs/optimizers.md is the prose contract).

Parameters are integer codes theta_p in their tensor's format (TT cores: cfg.weight, biases:
cfg.bias).  A real step size s (mu, alpha) becomes a per-format code round_half_up(s * 2^frac),
refused when it rounds to 0 LSB.  The batched loss is integer: the exact sum over the batch of
`golden.loss.cross_entropy_fixed` codes (fraction cfg.loss.frac), kept in int64.

signRGE (N queries, stream (seed, step, i) gives xi_i, word p perturbs parameter p):
    theta_i = sat_p(theta + mu_code_p * xi_{i,p})              (round_half_up(mu*xi >> 7) for Gaussian)
    d_i = L(theta_i) - L(theta)         (central: L(theta_i+) - L(theta_i-))
    a_p = sum_i d_i * xi_{i,p}
    theta_p <- sat_p(theta_p - alpha_code_p * sign(a_p))      (sign(0) = 0)
CGE with momentum (coordinate subset S of this step, `zo.sample_coordinates`):
    g_p = L(theta + mu_code_p e_p, saturated) - L(theta)   for p in S, 0 otherwise
    b_p <- sat_b(round_half_up(m_code * b_p >> M_FRAC) + g_p)            (every p)
    theta_p <- sat_p(theta_p - round_half_up(k_code_p * b_p >> k_shift_p))
with k = lr * 2^(2 f_p - f_loss) / (B * mu_code_p) as a K_BITS-bit multiplier and a shift.
Widths: b is signed B_BITS; m_code*b and k_code*b stay below 2^60 (int64-exact).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import prng
from .fixed import FormatError, QFormat, round_shift
from .formats import FixedConfig
from .network import TTNet

M_FRAC = 12          # momentum coefficient m_code = round_half_up(m * 2^12), unsigned, <= 2^12
K_BITS = 12          # CGE update multiplier k_code in [2^11, 2^12)
B_BITS = 47          # momentum register: signed 47-bit, saturating
B_MAX = (1 << (B_BITS - 1)) - 1


def code_of(value: float, fmt: QFormat, what: str) -> int:
    """A positive step size as LSBs of `fmt` (round half up); refuses 0 LSB and overflow."""
    code = int(np.floor(value * 2.0 ** fmt.frac + 0.5))
    if value > 0 and code == 0:
        raise FormatError(f"{what}={value:g} is below one LSB of {fmt} ({fmt.lsb:g}): the step would be 0")
    if value < 0 or code >= fmt.max_code:
        raise FormatError(f"{what}={value:g} does not fit {fmt}")
    return code


@dataclass(frozen=True)
class ParamFormats:
    """Per flat coordinate: format index (0 core, 1 bias), and the saturation limits."""

    is_bias: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    weight: QFormat
    bias: QFormat

    @classmethod
    def of(cls, net: TTNet, cfg: FixedConfig) -> "ParamFormats":
        mask = net.bias_mask()
        lo = np.where(mask, cfg.bias.min_code, cfg.weight.min_code).astype(np.int64)
        hi = np.where(mask, cfg.bias.max_code, cfg.weight.max_code).astype(np.int64)
        return cls(mask, lo, hi, cfg.weight, cfg.bias)

    def codes(self, value: float, what: str) -> np.ndarray:
        """Per-coordinate code of a step size (each format's own rounding)."""
        cw = code_of(value, self.weight, what + " (cores)")
        cb = code_of(value, self.bias, what + " (biases)") if self.is_bias.any() else 0
        return np.where(self.is_bias, cb, cw).astype(np.int64)

    def frac(self) -> np.ndarray:
        return np.where(self.is_bias, self.bias.frac, self.weight.frac).astype(np.int64)

    def sat(self, codes: np.ndarray) -> np.ndarray:
        return np.clip(codes, self.lo, self.hi)


def perturb(theta: np.ndarray, xi: np.ndarray, mu_codes: np.ndarray, pf: ParamFormats, gaussian: bool = False
            ) -> np.ndarray:
    """theta + mu*xi per query, saturated to each parameter's format: (Q, d) int64."""
    step = mu_codes[None, :] * xi
    if gaussian:
        step = round_shift(step, prng.GAUSS_FRAC)
    return pf.sat(theta[None, :] + step)


@dataclass
class FixedStepInfo:
    loss0: int          # integer batch loss of the unperturbed parameters
    evaluations: int    # forward evaluations (parameter sets x one batch)
    moved: int          # parameters whose code changed


def signrge_step(loss, theta: np.ndarray, seed: int, step: int, queries: int, mu_codes: np.ndarray,
                 alpha_codes: np.ndarray, pf: ParamFormats, kind: str = "rademacher", central: bool = False
                 ) -> tuple[np.ndarray, FixedStepInfo]:
    """One integer ZO-signRGE step; `loss` maps (Q, d) int codes to (Q,) integer batch losses."""
    theta = np.asarray(theta, dtype=np.int64)
    xi = prng.perturbations(seed, step, queries, theta.size, kind)
    g = kind == "gaussian"
    plus = perturb(theta, xi, mu_codes, pf, g)
    if central:
        minus = perturb(theta, -xi, mu_codes, pf, g)
        L = np.asarray(loss(np.vstack([theta[None], plus, minus])), dtype=np.int64)
        d = L[1:queries + 1] - L[queries + 1:]
        evals = 2 * queries + 1
    else:
        L = np.asarray(loss(np.vstack([theta[None], plus])), dtype=np.int64)
        d = L[1:] - L[0]
        evals = queries + 1
    a = d @ xi  # exact int64: |d| < 2^40, |xi| <= 2^9, N <= 4096
    new = pf.sat(theta - alpha_codes * np.sign(a))
    return new, FixedStepInfo(int(L[0]), evals, int(np.count_nonzero(new != theta)))


def multiplier(k: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Real factors k > 0 as (k_code, k_shift): k ~ k_code * 2^-k_shift, k_code in [2^(K_BITS-1), 2^K_BITS)."""
    k = np.asarray(k, dtype=np.float64)
    if np.any(k <= 0):
        raise FormatError(f"{what} multiplier must be positive")
    e = np.floor(np.log2(k)).astype(np.int64)
    k_shift = (K_BITS - 1) - e
    k_code = np.floor(k * 2.0 ** k_shift + 0.5).astype(np.int64)
    over = k_code >= (1 << K_BITS)
    k_code = np.where(over, k_code >> 1, k_code)
    k_shift = np.where(over, k_shift - 1, k_shift)
    if np.any(k_shift < 1) or np.any(k_shift > 62):
        raise FormatError(f"{what} multiplier {k.min():g}..{k.max():g} is outside what a {K_BITS}-bit "
                          "multiplier and a 1..62 bit shift represent")
    return k_code, k_shift


def rge_step(loss, theta: np.ndarray, seed: int, step: int, queries: int, mu_codes: np.ndarray, lr: float,
             batch: int, loss_frac: int, pf: "ParamFormats", central: bool = False
             ) -> tuple[np.ndarray, FixedStepInfo]:
    """One integer ZO-RGE step (Rademacher): a_p as in signRGE, then theta_p -= rhu(k_code_p a_p >> k_shift_p).

    k_p = lr * 2^(2 f_p - f_loss) / (N * B * mu_p) (halved for central differences) turns a_p into
    lr * (RGE estimate of the mean-loss gradient) in parameter LSBs.
    """
    theta = np.asarray(theta, dtype=np.int64)
    xi = prng.perturbations(seed, step, queries, theta.size, "rademacher")
    plus = perturb(theta, xi, mu_codes, pf)
    if central:
        minus = perturb(theta, -xi, mu_codes, pf)
        L = np.asarray(loss(np.vstack([theta[None], plus, minus])), dtype=np.int64)
        d, evals = L[1:queries + 1] - L[queries + 1:], 2 * queries + 1
    else:
        L = np.asarray(loss(np.vstack([theta[None], plus])), dtype=np.int64)
        d, evals = L[1:] - L[0], queries + 1
    a = np.clip(d @ xi, -B_MAX - 1, B_MAX)
    k_code, k_shift = multiplier(lr * 2.0 ** (2 * pf.frac() - loss_frac) /
                                 ((2 if central else 1) * queries * batch * mu_codes), "RGE step")
    new = pf.sat(theta - ((k_code * a + (np.int64(1) << (k_shift - 1))) >> k_shift))
    return new, FixedStepInfo(int(L[0]), evals, int(np.count_nonzero(new != theta)))


@dataclass(frozen=True)
class CGEConstants:
    """Integer constants of one CGE epoch: mu codes, momentum code, update multiplier and shift."""

    mu_codes: np.ndarray
    m_code: int
    k_code: np.ndarray
    k_shift: np.ndarray

    @classmethod
    def make(cls, pf: ParamFormats, lr: float, mu: float, momentum: float, batch: int, loss_frac: int
             ) -> "CGEConstants":
        mu_codes = pf.codes(mu, "CGE mu")
        if not 0 <= momentum < 1:
            raise FormatError(f"momentum {momentum} must be in [0, 1)")
        m_code = int(np.floor(momentum * 2 ** M_FRAC + 0.5))
        if lr <= 0:
            raise FormatError(f"CGE learning rate {lr} must be positive")
        f = pf.frac()
        k_code, k_shift = multiplier(lr * 2.0 ** (2 * f - loss_frac) / (batch * mu_codes), "CGE step")
        return cls(mu_codes, m_code, k_code, k_shift)


def cge_step(loss, theta: np.ndarray, b: np.ndarray, coords: np.ndarray, c: CGEConstants, pf: ParamFormats,
             coordinate_losses=None, rounding_words: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, FixedStepInfo]:
    """One integer ZO-CGE step with momentum over the coordinate subset `coords`; returns theta, b, info.

    The update k*b >> k_shift rounds half up, or stochastically when `rounding_words` (one uint32
    per parameter, `stochastic_rounding_words`) is given: (k*b + (word mod 2^k_shift)) >> k_shift
    (word << (k_shift - 32) for shifts above 32), whose mean is k*b / 2^k_shift, so updates below half an LSB still act on average.
    """
    theta = np.asarray(theta, dtype=np.int64)
    coords = np.asarray(coords, dtype=np.int64)
    L0 = int(np.asarray(loss(theta[None]))[0])
    vals = pf.sat(theta + c.mu_codes)[coords]
    if coordinate_losses is not None:
        Lc = np.asarray(coordinate_losses(theta, coords, vals), dtype=np.int64)
    else:
        t = np.repeat(theta[None], len(coords), axis=0)
        t[np.arange(len(coords)), coords] = vals
        Lc = np.asarray(loss(t), dtype=np.int64)
    g = np.zeros_like(theta)
    g[coords] = Lc - L0
    b_new = np.clip(round_shift(c.m_code * np.asarray(b, dtype=np.int64), M_FRAC) + g, -B_MAX - 1, B_MAX)
    if rounding_words is None:
        add = np.int64(1) << (c.k_shift - 1)
    else:
        w = np.asarray(rounding_words, dtype=np.int64)
        add = np.where(c.k_shift <= 32, w & ((np.int64(1) << np.minimum(c.k_shift, 32)) - 1),
                       w << np.maximum(c.k_shift - 32, 0))
    upd = (c.k_code * b_new + add) >> c.k_shift
    new = pf.sat(theta - upd)
    return new, b_new, FixedStepInfo(L0, len(coords) + 1, int(np.count_nonzero(new != theta)))


SR_QUERY = prng.MAX_QUERY - 2   # PRNG stream of the CGE update's stochastic rounding (coords use MAX_QUERY - 1)


def stochastic_rounding_words(seed: int, step: int, d: int) -> np.ndarray:
    """Words 0..d-1 of PRNG stream (seed, step, SR_QUERY): parameter p's rounding word at `step`."""
    return prng.words(prng.stream_seed(seed, step, SR_QUERY), d)[0]
