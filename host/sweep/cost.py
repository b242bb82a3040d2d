"""On-chip cost of a grid point without building it.

Two figures per point: `param_bytes`, the parameter storage alone (every TT-core entry in the
weight format, every bias in the bias format, packed bits rounded up to bytes), and
`onchip_bytes`, the whole ZO-training datapath's memory from the golden memory budget
(ttzo.golden.memory_budget: parameters, momentum, batch buffer, activation buffers, loss
tables, PRNG checkpoints) when that module is available.
"""
from __future__ import annotations

import math
from typing import Any

#: memory_budget knows these optimizers; RGE keeps what signRGE keeps.
BUDGET_OPTIMIZER = {"signrge": "signrge", "rge": "signrge", "cge": "cge", "hybrid": "hybrid"}


def param_bytes(rank: int, cfg: Any) -> int:
    """Bytes to hold the MNIST TT-MLP's parameters at rank `rank` in the formats `cfg`."""
    from ttzo.golden.network import mnist_tt
    net = mnist_tt(int(rank))
    n_bias = int(net.bias_mask().sum())
    n_core = net.n_params - n_bias
    return math.ceil((n_core * cfg.weight.bits + n_bias * cfg.bias.bits) / 8)


def onchip_bytes(rank: int, cfg: Any, optimizer: str | None = "hybrid", batch: int = 64,
                 queries: int = 10) -> int | None:
    """Training-datapath bytes from the golden memory budget; None without it or for FO training."""
    try:
        from ttzo.golden.memory_budget import memory_budget
        from ttzo.golden.network import mnist_tt
    except ImportError:
        return None
    opt = BUDGET_OPTIMIZER.get(str(optimizer or "hybrid"))
    if opt is None:
        return None  # first-order training has no on-chip datapath here
    return int(memory_budget(mnist_tt(int(rank)), cfg, int(batch), opt, int(queries))["onchip_bytes"])


def point_costs(values: dict[str, Any]) -> dict[str, Any]:
    """Cost columns of a point from its (merged) run parameters; {} when it has no rank."""
    if values.get("rank") is None:
        return {}
    from ttzo.golden.network import mnist_tt

    from .step_train import fixed_config
    cfg = fixed_config(values)
    rank = int(values["rank"])
    return {"n_params": mnist_tt(rank).n_params, "weight_bits": cfg.weight.bits, "act_bits": cfg.act.bits,
            "param_bytes": param_bytes(rank, cfg),
            "onchip_bytes": onchip_bytes(rank, cfg, values.get("optimizer") or "hybrid",
                                         values.get("batch") or 64, values.get("queries") or 10)}
