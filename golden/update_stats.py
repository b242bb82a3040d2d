"""How much of a fixed-point CGE update survives its rounding, at a training checkpoint.

The integer update is round(k * b / 2^k_shift) per parameter (golden/zo_fixed.cge_step).  Near a
plateau most momentum terms ask for less than half an LSB, so nearest rounding drops them; this
prints the share of parameters that change and the share of the exact update magnitude lost,
for nearest and for stochastic rounding (expected values).  Used in docs/results.md:

    python -m ttzo.golden.update_stats RUN/checkpoint-e028.npz --lr 0.003
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--lr", type=float, required=True, help="CGE learning rate of the next epoch")
    a = ap.parse_args(argv)
    print(json.dumps(update_stats(a.checkpoint, a.lr), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
