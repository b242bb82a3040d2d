"""`train` and `quant-eval`: accuracy of one (rank, formats, optimizer, seed) point on MNIST.

`train` calls the golden training loop (ttzo.golden.train, the same code as
`ttzo train mnist`) with a short budget and reports its final metrics.  `quant-eval` is the
cheap stand-in used while that loop did not exist, and still a useful question on its own:
first-order float training (golden/fo.py), then post-training quantisation to the point's
formats and the bit-exact fixed-point test accuracy (golden/formatsweep.fixed_eval).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .golden_adapter import FORMAT_KEYS, call_golden_train, golden_train_missing, optim_keys, train_config
from .step import Metrics, Params, StepKind, register

def fixed_config(params: Params):
    """The FixedConfig of a point: DEFAULT_CONFIG with the point's `*_format` strings replaced."""
    from ttzo.golden.formats import DEFAULT_CONFIG
    kw = {k[:-len("_format")]: params[k] for k in FORMAT_KEYS if params.get(k)}
    return DEFAULT_CONFIG.with_(**kw) if kw else DEFAULT_CONFIG


def _validate(params: Params) -> None:
    if int(params["rank"]) < 1:
        raise ValueError(f"rank={params['rank']} must be >= 1")
    if int(params["epochs"]) < 1:
        raise ValueError(f"epochs={params['epochs']} must be >= 1")
    for k in ("train_samples", "test_samples"):
        if params.get(k) is not None and int(params[k]) < 1:
            raise ValueError(f"{k}={params[k]} must be >= 1")
    fixed_config(params)  # FormatError (a ValueError) names the bad format


def _subset(images: np.ndarray, labels: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n is None or n >= len(labels):
        return images, labels
    idx = np.sort(np.random.default_rng(seed).permutation(len(labels))[:int(n)])
    return images[idx], labels[idx]


def run_quant_eval(params: Params, workdir: Path) -> Metrics:
    from ttzo.golden.fo import evaluate, fo_train
    from ttzo.golden.formatsweep import fixed_eval
    from ttzo.golden.mnist import load_mnist
    from ttzo.golden.network import mnist_tt

    t0 = time.perf_counter()
    cfg = fixed_config(params)
    data = load_mnist(params["data"])
    seed = int(params["seed"])
    xtr, ytr = _subset(data.train_images, data.train_labels, params["train_samples"], seed)
    xte, yte = _subset(data.test_images, data.test_labels, params["test_samples"], seed + 1)
    net = mnist_tt(int(params["rank"]))
    trained, history = fo_train(net, net.init(np.random.default_rng(seed)), xtr, ytr, epochs=int(params["epochs"]),
                                lr=float(params["lr"] or 0.05), batch=int(params["batch"]), seed=seed)
    _, float_acc = evaluate(net, trained, xte, yte)
    fixed = fixed_eval(net, trained, cfg, xte, yte)
    metrics = {"test_acc": fixed["acc"], "float_test_acc": float(float_acc), "saturated": fixed["saturated"],
               "train_loss": history[-1].train_loss, "n_params": net.n_params, "wall_s": time.perf_counter() - t0}
    np.savez_compressed(workdir / "params.npz", theta=net.flatten(trained))
    (workdir / "metrics.json").write_text(json.dumps({**metrics, "overflow": fixed["overflow"]}, indent=2))
    return metrics


def run_train(params: Params, workdir: Path) -> Metrics:
    metrics = call_golden_train(params, workdir)
    from ttzo.golden.network import mnist_tt
    metrics["n_params"] = mnist_tt(int(params["rank"])).n_params
    return metrics


def _validate_train(params: Params) -> None:
    _validate(params)
    if golden_train_missing() is None:
        train_config(params, "unused")


COMMON: dict[str, Any] = {"rank": 6, "seed": 0, "epochs": 1, "batch": 64, "lr": None, "train_samples": None,
                          "test_samples": None, "data": None, **{k: None for k in FORMAT_KEYS}}

TRAIN = register(StepKind(
    name="train",
    description="golden ZO/FO training of the MNIST TT-MLP (ttzo.golden.train), short budget",
    params={**COMMON, "arith": "fixed", **{k: None for k in optim_keys()}, "optimizer": "signrge"},
    run=run_train, label_keys=("rank", "weight_format", "act_format", "optimizer", "seed"),
    validate=_validate_train, available=golden_train_missing))

QUANT_EVAL = register(StepKind(
    name="quant-eval",
    description="first-order float training, then fixed-point (post-training quantised) test accuracy",
    params=dict(COMMON),
    run=run_quant_eval, label_keys=("rank", "weight_format", "act_format", "seed"), validate=_validate))
