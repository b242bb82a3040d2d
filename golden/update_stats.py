"""How much of a fixed-point CGE update survives its rounding, at a training checkpoint.

The integer update is round(k * b / 2^k_shift) per parameter (golden/zo_fixed.cge_step).  Near a
plateau most momentum terms ask for less than half an LSB, so nearest rounding drops them; this
prints the share of parameters that change and the share of the exact update magnitude lost,
for nearest and for stochastic rounding (expected values).  With --fd-check it also compares the
fixed-point coordinate differences CGE sees with the true gradient (float central difference).
Used in docs/results.md:

    python -m ttzo.golden.update_stats RUN/checkpoint-e028.npz --lr 0.003
    python -m ttzo.golden.update_stats RUN/checkpoint-e050.npz --lr 0.0015 --fd-check 0.01 0.03 0.05
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from . import zo_fixed
from .train import TrainConfig, load_checkpoint


def update_stats(checkpoint: str, lr: float) -> dict:
    """Rounding statistics of the next CGE update from a fixed-point checkpoint's momentum."""
    ck = load_checkpoint(Path(checkpoint))
    cfg = TrainConfig.from_dict(ck["config"])
    fixed = cfg.fixed_config()
    if fixed is None:
        raise ValueError(f"{checkpoint}: a float run has no integer update to round")
    o = cfg.optim
    pf = zo_fixed.ParamFormats.of(cfg.network(), fixed)
    c = zo_fixed.CGEConstants.make(pf, lr, o.cge_mu, o.momentum, cfg.batch, fixed.loss.frac)
    b = np.asarray(ck["momentum"], dtype=np.int64)
    exact = c.k_code * b * 2.0 ** -c.k_shift
    nearest = (c.k_code * b + (np.int64(1) << (c.k_shift - 1))) >> c.k_shift
    frac = np.abs(exact) - np.floor(np.abs(exact))
    return {"checkpoint": checkpoint, "epoch": int(ck["epoch"]), "lr": lr, "parameters": int(b.size),
            "nearest_changed_share": float(np.count_nonzero(nearest) / b.size),
            "nearest_magnitude_lost_share": float(1 - np.abs(nearest).sum() / np.abs(exact).sum()),
            "stochastic_expected_changed_share": float(np.mean(np.where(np.abs(exact) >= 1, 1.0, frac))),
            "exact_update_lsb_median": float(np.median(np.abs(exact)))}


def fd_check(checkpoint: str, mus: list[float], samples: int = 256, coords: int = 300, seed: int = 0) -> list[dict]:
    """Sign agreement and correlation of fixed-point (and float) forward differences with step mu
    against a float central difference (h = 1e-4), on the first `samples` training images."""
    from .fastforward import NetEvaluator
    from .mnist import load_mnist
    ck = load_checkpoint(Path(checkpoint))
    cfg = TrainConfig.from_dict(ck["config"])
    fixed, net = cfg.fixed_config(), cfg.network()
    if fixed is None:
        raise ValueError(f"{checkpoint}: not a fixed-point run")
    pf = zo_fixed.ParamFormats.of(net, fixed)
    data = load_mnist(cfg.data)
    x, y = data.train_images[:samples], data.train_labels[:samples].astype(np.int64)
    evq, evf = NetEvaluator(net, fixed), NetEvaluator(net, None)
    th = np.asarray(ck["theta"], dtype=np.int64)
    scale = 2.0 ** -pf.frac()
    thf = th * scale
    cs = np.random.default_rng(seed).choice(th.size, min(coords, th.size), replace=False)
    rows = np.arange(len(cs))

    def float_losses(t: np.ndarray) -> np.ndarray:
        return evf.batch_loss(evf.logits(t, x / 256.0), y)

    def shifted(delta: np.ndarray) -> np.ndarray:
        t = np.repeat(thf[None], len(cs), axis=0)
        t[rows, cs] += delta
        return t
    h = 1e-4
    true = (float_losses(shifted(np.full(len(cs), h))) - float_losses(shifted(np.full(len(cs), -h)))) / (2 * h)
    Lq0 = int(evq.batch_loss(evq.logits(th[None].astype(np.float64), x), y)[0])
    Lf0 = float_losses(thf[None])[0]
    out = []
    for mu in mus:
        mc = pf.codes(mu, "mu")
        vals = pf.sat(th + mc)[cs]
        Lq = np.asarray(evq.coordinate_losses(th.astype(np.float64), cs, vals, x, y), dtype=np.int64)
        gq = (Lq - Lq0) / (mc[cs] * scale[cs])
        gf = (float_losses(shifted(vals * scale[cs] - thf[cs])) - Lf0) / (mc[cs] * scale[cs])
        out.append({"mu": mu, "fixed_sign_agreement": float(np.mean(np.sign(gq) == np.sign(true))),
                    "float_sign_agreement": float(np.mean(np.sign(gf) == np.sign(true))),
                    "fixed_corr": float(np.corrcoef(gq, true)[0, 1]), "float_corr": float(np.corrcoef(gf, true)[0, 1])})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--lr", type=float, required=True, help="CGE learning rate of the next epoch")
    ap.add_argument("--fd-check", type=float, nargs="*", metavar="MU",
                    help="also compare fixed-point coordinate differences of these mu with the true gradient")
    a = ap.parse_args(argv)
    doc = update_stats(a.checkpoint, a.lr)
    if a.fd_check:
        doc["fd_check"] = fd_check(a.checkpoint, a.fd_check)
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
