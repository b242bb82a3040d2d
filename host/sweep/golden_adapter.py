"""The one place that knows the golden training loop's Python interface.

The sweep's `train` step calls `ttzo.golden.train.train_mnist(TrainConfig(...))` -- the code
behind `ttzo train mnist` -- in-process (no CLI parsing, no subprocess).  Sweep parameters map
one to one onto TrainConfig fields (rank, epochs, seed, batch, arith, data, train_samples,
test_samples), OptimConfig fields (optimizer, lr, mu, queries, ...) and `*_format` strings
(the FixedConfig fields).  A parameter left unset (None) takes the training loop's default.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

FORMAT_KEYS = ("input_format", "weight_format", "bias_format", "state_format", "act_format")
TRAIN_KEYS = ("arith", "rank", "epochs", "seed", "batch", "data", "train_samples", "test_samples")


def golden_train_missing() -> str | None:
    """None when the golden training loop is importable, else why not."""
    try:
        from ttzo.golden.train import TrainConfig, train_mnist  # noqa: F401
    except ImportError as exc:
        return f"the golden training loop is not importable: {exc}"
    return None


def optim_keys() -> tuple[str, ...]:
    """OptimConfig's field names (the optimizer settings a sweep may vary)."""
    try:
        from ttzo.golden.optim import OptimConfig
    except ImportError:
        return ("optimizer", "lr", "mu", "queries")
    return tuple(f.name for f in fields(OptimConfig))


def train_config(params: dict[str, Any], out: Path | str):
    """The TrainConfig of a sweep point (raises ValueError naming a bad value)."""
    from ttzo.golden.optim import OptimConfig
    from ttzo.golden.train import TrainConfig
    optim = OptimConfig(**{k: params[k] for k in optim_keys() if params.get(k) is not None})
    formats = {k[:-len("_format")]: params[k] for k in FORMAT_KEYS if params.get(k)}
    base = {k: params[k] for k in TRAIN_KEYS if params.get(k) is not None}
    cfg = TrainConfig(**base, out=str(out), optim=optim, formats=formats or None)
    cfg.fixed_config()  # parse the formats now: a FormatError names the bad one
    return cfg


def call_golden_train(params: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run the training loop into `workdir`; metrics of the last epoch plus totals."""
    from ttzo.golden.train import train_mnist
    cfg = train_config(params, workdir)
    result = train_mnist(cfg, progress=False)
    if result.interrupted or not result.metrics:
        raise RuntimeError("training was interrupted before its last epoch")
    final = dict(result.final)
    final["best_test_acc"] = max(m["test_acc"] for m in result.metrics)
    final["epochs_run"] = len(result.metrics)
    return final
