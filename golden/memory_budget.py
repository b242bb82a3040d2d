"""On-chip memory budget of ZO training for any network: per parameter, per batch, and in total.

What the training engine (rtl/zo_*.py, docs/rtl-zo.md) keeps on chip, in bits:

* parameters: every core entry in the weight format, every bias in the bias format;
* accumulators: none per parameter.  The signRGE pass runs its N PRNG streams in parallel
  (rtl/prng.PrngBank), so a_p = sum_i d_i xi_{i,p} lives in a pipeline register; what it keeps
  is the N loss differences (N x diff_bits) — listed under ``per_step``;
* momentum (CGE): one signed B_BITS (47-bit, golden/zo_fixed.py) entry per parameter, updated in
  place while the coordinates are evaluated (no gradient buffer);
* perturbation: xi is never stored (regenerated from the seed); 32 bits of PRNG checkpoint per
  parameter segment (one per core, one per bias).  The TT engine reads its cores at random
  addresses from its own core/bias memories, so the trainer keeps the master parameters and
  loads the (perturbed) working copy into the engine before each forward pass: one extra copy
  of the parameters (``working_copy_bytes``), the engine's own parameter memory;
* per batch: the input codes (B x in_features x input bits) and labels (B x ceil(log2 C) bits);
* fixed tables of the loss unit: EXP2 (1024 x 31 bits) and LOG2 (1025 x 17 bits).

The TT engine's own activation buffers are the inference engine's budget (docs/rtl.md); they are
estimated here as two ping-pong buffers of the largest intermediate state of one sample, so
``onchip_bytes`` covers a whole training datapath.  `model_memory_fields` is the function the
``ttzo model --json`` command calls.
"""
from __future__ import annotations

from math import ceil
from typing import Any

import numpy as np

from .formats import DEFAULT_CONFIG, FixedConfig
from .loss import EXP_BITS, LOG_BITS, SUM_FRAC
from .network import TTNet
from .zo_fixed import B_BITS

OPTIMIZERS = ("signrge", "cge", "hybrid")
PRNG_STATE_BITS = 32
EXP2_ROM_BITS = (1 << EXP_BITS) * (SUM_FRAC + 1)
LOG2_ROM_BITS = ((1 << LOG_BITS) + 1) * 17


def _bytes(bits: int) -> int:
    return int(ceil(bits / 8))


def largest_state(net: TTNet) -> int:
    """Entries of the largest per-sample intermediate (any absorption's output, any layer's input/output)."""
    biggest = net.in_features
    for spec in net.layers:
        for step in spec.shape.steps(spec.contraction):
            biggest = max(biggest, step.outputs)
        biggest = max(biggest, spec.shape.out_features)
    return biggest


def memory_budget(net: TTNet, cfg: FixedConfig = DEFAULT_CONFIG, batch: int = 64, optimizer: str = "hybrid",
                  n_queries: int = 10, momentum_bits: int = B_BITS, batch_bits: int = 16) -> dict[str, Any]:
    """Bits and bytes the ZO training datapath keeps on chip for `net` (see module docstring)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer {optimizer!r}: choose from {OPTIMIZERS}")
    if batch < 1 or n_queries < 1:
        raise ValueError("batch and n_queries must be positive")
    mask = net.bias_mask()
    n_bias = int(mask.sum())
    n_core = net.n_params - n_bias
    param_bits = n_core * cfg.weight.bits + n_bias * cfg.bias.bits
    uses_cge = optimizer in ("cge", "hybrid")
    uses_rge = optimizer in ("signrge", "hybrid")
    momentum_total = net.n_params * momentum_bits if uses_cge else 0
    segments = len(net.param_sizes())
    classes = net.out_features
    label_bits = max(1, (classes - 1).bit_length())
    diff_bits = cfg.loss.bits + batch_bits + 1
    per_step_bits = (n_queries * diff_bits if uses_rge else 0) + (2 * diff_bits if uses_cge else 0)
    batch_input_bits = batch * net.in_features * cfg.input.bits
    batch_label_bits = batch * label_bits
    state_bits = max(cfg.state.bits, cfg.act.bits)
    act_buffer_bits = 2 * largest_state(net) * state_bits
    fixed_bits = EXP2_ROM_BITS + LOG2_ROM_BITS + segments * PRNG_STATE_BITS
    total_bits = (2 * param_bits + momentum_total + per_step_bits + batch_input_bits + batch_label_bits
                  + act_buffer_bits + fixed_bits)
    per_param_bits = {
        "parameters": param_bits / net.n_params,
        "working_copy": param_bits / net.n_params,
        "accumulators": 0,
        "momentum": momentum_total / net.n_params,
    }
    return {
        "optimizer": optimizer,
        "params": net.n_params,
        "per_parameter_bytes": {k: v / 8 for k, v in per_param_bits.items()},
        "parameter_bytes": _bytes(param_bits),
        "working_copy_bytes": _bytes(param_bits),
        "accumulator_bytes": 0,
        "momentum_bytes": _bytes(momentum_total),
        "per_step_bytes": _bytes(per_step_bits),
        "per_batch_bytes": _bytes(batch_input_bits + batch_label_bits),
        "per_sample_bytes": _bytes(net.in_features * cfg.input.bits + label_bits),
        "batch": batch,
        "activation_buffer_bytes": _bytes(act_buffer_bits),
        "loss_table_bytes": _bytes(EXP2_ROM_BITS + LOG2_ROM_BITS),
        "prng_checkpoint_bytes": _bytes(segments * PRNG_STATE_BITS),
        "onchip_bits": int(total_bits),
        "onchip_bytes": _bytes(total_bits),
        "formats": {"weight": str(cfg.weight), "bias": str(cfg.bias), "momentum": f"s{momentum_bits}",
                    "input": str(cfg.input), "state": str(cfg.state), "act": str(cfg.act)},
    }


def model_memory_fields(net: TTNet, cfg: FixedConfig = DEFAULT_CONFIG, batch: int = 64,
                        n_queries: int = 10) -> dict[str, Any]:
    """The fields `ttzo model --json` adds: ``onchip_bytes`` (hybrid training) and the breakdown per optimizer."""
    budgets = {opt: memory_budget(net, cfg, batch, opt, n_queries) for opt in OPTIMIZERS}
    return {"onchip_bytes": budgets["hybrid"]["onchip_bytes"], "memory": budgets}


def param_bits_vector(net: TTNet, cfg: FixedConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Bits of each flat parameter (weight or bias format), for boards that pack memories per entry."""
    return np.where(net.bias_mask(), cfg.bias.bits, cfg.weight.bits)
