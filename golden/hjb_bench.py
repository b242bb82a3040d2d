"""Timing and accuracy of the HJB loss models at one parameter vector (docs/pinn.md, "Node differences").

    python -m ttzo.golden.hjb_bench CHECKPOINT.npz [--points 3] [--batches 8]

For the losses of one ZO-signRGE step (level-3 SG, `points` collocation points) it prints the time
of FloatHJB float32 / float64 and DeltaHJB (central: 21 losses, forward: 11), and how well the ZO
loss differences L(theta + mu xi) - L(theta) of float32 and delta32 agree with float64 over
`batches` batches of 10 Gaussian directions (RMS error relative to their size, sign agreement).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from . import hjb, zo


def _time(fn, repeats: int = 3) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def bench(theta: np.ndarray, points: int = 3, batches: int = 8, mu: float = 0.1, seed: int = 7) -> dict:
    net = hjb.hjb_tt_net()
    fac = hjb.estimator_factors("sg")
    rng = np.random.default_rng(seed)
    mu_eff = mu / np.sqrt(theta.size)
    models = {"float32": hjb.FloatHJB(net, np.float32), "float64": hjb.FloatHJB(net, np.float64),
              "delta32": hjb.DeltaHJB(net)}
    xt = hjb.sample_points(rng, points)
    xi = zo.directions(seed, 0, 10, theta.size, "gaussian")
    central = np.vstack([theta[None], theta + mu_eff * xi, theta - mu_eff * xi])
    out: dict = {"points": points, "loadavg_start": os.getloadavg()[0], "seconds_per_step": {}}
    for name in ("float32", "float64", "delta32"):
        out["seconds_per_step"][f"{name} central (21 losses)"] = _time(lambda: models[name].batched_loss(xt, fac)(central))
    out["seconds_per_step"]["delta32 forward (11 losses)"] = _time(
        lambda: models["delta32"].batched_loss(xt, fac)(central[:11]))
    diffs: dict = {k: [] for k in models}
    for b in range(batches):
        xt = hjb.sample_points(rng, points)
        xi = zo.directions(seed, 1 + b, 10, theta.size, "gaussian")
        sets = np.vstack([theta[None], theta + mu_eff * xi])
        for k, m in models.items():
            L = m.batched_loss(xt, fac)(sets)
            diffs[k].append(L[1:] - L[0])
    ref = np.concatenate(diffs["float64"])
    for k in ("float32", "delta32"):
        d = np.concatenate(diffs[k])
        out[f"{k}_diff_rel_rms_error"] = float(np.sqrt(np.mean((d - ref) ** 2) / np.mean(ref ** 2)))
        out[f"{k}_diff_sign_agreement"] = float(np.mean(np.sign(d) == np.sign(ref)))
    out["queries"] = int(ref.size)
    out["loadavg_end"] = os.getloadavg()[0]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="checkpoint.npz of `ttzo train hjb` (its theta is used)")
    ap.add_argument("--points", type=int, default=3)
    ap.add_argument("--batches", type=int, default=8)
    args = ap.parse_args(argv)
    try:
        theta = np.load(args.checkpoint)["theta"]
    except (OSError, KeyError, ValueError) as e:
        ap.error(f"{args.checkpoint}: not a training checkpoint with a 'theta' array ({e})")
    if theta.shape != (hjb.hjb_tt_net().n_params,):
        ap.error(f"{args.checkpoint}: theta has shape {theta.shape}, the TT network needs ({hjb.hjb_tt_net().n_params},)")
    print(json.dumps(bench(theta, args.points, args.batches), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
