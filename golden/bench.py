"""Throughput of the golden model: our batched TT forward vs the authors' einsum sweep; CGE step time.

Measured in one process, on the same cores and inputs:
* `ours_fixed` / `ours_float`: `NetEvaluator.logits` on Q parameter sets x B samples at once
  (the ZO inner loop: N+1 = 11 parameter sets share a batch);
* `einsum_sweep`: the authors' method, one parameter set at a time, each TT layer contracted left
  to right with `np.einsum` (one call per core, float64, default optimize=False);
  `einsum_sweep_opt` the same with optimize=True (BLAS where einsum can use it);
* CGE: one integer CGE step (every coordinate, and the sampled fraction), and the same
  coordinate losses by plain re-evaluation, timed on a subset and scaled; each the least CPU
  time of 3 repetitions.
Rates are sample-forwards (one parameter set applied to one sample) per CPU second of the process,
and times are CPU seconds: on a shared machine wall-clock figures measure the neighbours.
"""
from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from .fastforward import NetEvaluator
from .formats import DEFAULT_CONFIG
from .network import TTNet, mnist_tt
from .tt import TTShape


def einsum_layer(shape: TTShape, cores, x: np.ndarray, optimize: bool = False) -> np.ndarray:
    """Left-to-right sweep: state (B, M_done, n_k, N_rest, r) contracted with core (r, n, m, r') per step."""
    B = x.shape[0]
    t = x.reshape(B, 1, shape.in_features, 1)
    m_done, n_rest = 1, shape.in_features
    for k, G in enumerate(cores):
        r, n, m, r1 = G.shape
        n_rest //= n
        t = t.reshape(B, m_done, n, n_rest, r)
        t = np.einsum("bmnxr,rnos->bmoxs", t, G, optimize=optimize)
        m_done *= m
    return t.reshape(B, shape.out_features)


def einsum_forward(net: TTNet, params, x: np.ndarray, optimize: bool = False) -> np.ndarray:
    h = np.asarray(x, dtype=np.float64)
    for spec, (cores, bias) in zip(net.layers, params):
        h = einsum_layer(spec.shape, cores, h, optimize) + bias
        h = np.maximum(h, 0.0) if spec.activation == "relu" else h
    return h


def _rate(fn: Callable[[], object], samples: int, min_time: float) -> float:
    """Sample-forwards per CPU second of this process (robust on a shared machine; set
    OPENBLAS_NUM_THREADS=1 for a single-core figure)."""
    fn()  # warm-up
    n, t0 = 0, time.process_time()
    while True:
        fn()
        n += 1
        dt = time.process_time() - t0
        if dt >= min_time:
            return n * samples / dt


def _seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    """CPU seconds of one call: the least of `repeats` (neighbours only ever add time)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def run_bench(rank: int = 6, batch: int = 64, queries: int = 11, min_time: float = 3.0, cge_fraction: float = 0.05,
              seed: int = 0) -> dict:
    net = mnist_tt(rank)
    rng = np.random.default_rng(seed)
    params = net.init(rng)
    cfg = DEFAULT_CONFIG
    theta_f = net.flatten(params)
    theta_c = net.flatten(net.quantize(params, cfg)).astype(np.float64)
    x_u8 = rng.integers(0, 256, (batch, net.in_features))
    x_f = x_u8 / 256.0
    y = rng.integers(0, 10, batch)
    thetas_c = theta_c[None] + rng.integers(-819, 820, (queries, theta_c.size))
    thetas_f = theta_f[None] + 0.1 * rng.choice([-1.0, 1.0], (queries, theta_f.size))
    evx, evf = NetEvaluator(net, cfg), NetEvaluator(net, None)
    S = queries * batch
    res: dict = {"rank": rank, "batch": batch, "queries": queries, "params": net.n_params,
                 "macs_per_sample": net.macs("chosen"), "macs_left_to_right": net.macs("left_to_right")}
    res["ours_fixed"] = _rate(lambda: evx.logits(thetas_c, x_u8), S, min_time)
    res["ours_float"] = _rate(lambda: evf.logits(thetas_f, x_f), S, min_time)
    plist = [net.unflatten(t) for t in thetas_f]
    res["einsum_sweep"] = _rate(lambda: [einsum_forward(net, p, x_f) for p in plist], S, min_time)
    res["einsum_sweep_opt"] = _rate(lambda: [einsum_forward(net, p, x_f, True) for p in plist], S, min_time)
    ref = einsum_forward(net, plist[0], x_f)
    res["einsum_matches_ours"] = bool(np.allclose(ref, evf.logits(thetas_f[0], x_f), atol=1e-9))
    res["ratio_fixed_vs_einsum"] = res["ours_fixed"] / res["einsum_sweep"]
    res["ratio_float_vs_einsum"] = res["ours_float"] / res["einsum_sweep"]
    res["ratio_fixed_vs_einsum_opt"] = res["ours_fixed"] / res["einsum_sweep_opt"]
    res["ratio_float_vs_einsum_opt"] = res["ours_float"] / res["einsum_sweep_opt"]
    # CGE: one step's coordinate losses, reuse vs plain re-evaluation (subset, scaled)
    from . import zo
    d = theta_c.size
    allc = np.arange(d)
    vals = theta_c + np.where(net.bias_mask(), 10, 82)  # mu = 0.01 in each format
    res["cge_step_seconds_all"] = _seconds(lambda: evx.coordinate_losses(theta_c, allc, vals, x_u8, y))
    sub = zo.sample_coordinates(seed, 0, d, cge_fraction)
    res["cge_fraction"] = cge_fraction
    res["cge_step_seconds_fraction"] = _seconds(lambda: evx.coordinate_losses(theta_c, sub, vals[sub], x_u8, y))
    probe = rng.choice(d, 64, replace=False)
    tt = np.repeat(theta_c[None], probe.size, 0)
    tt[np.arange(probe.size), probe] = vals[probe]
    res["cge_plain_seconds_all_estimated"] = _seconds(lambda: evx.losses(tt, x_u8, y)) * d / probe.size
    res["cge_reuse_speedup"] = res["cge_plain_seconds_all_estimated"] / res["cge_step_seconds_all"]
    res["load_average"] = os.getloadavg()
    res["blas_threads"] = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    res["units"] = "sample-forwards per CPU second; CPU seconds"
    return res
