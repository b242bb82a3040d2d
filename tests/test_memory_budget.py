"""golden/memory_budget.py: the on-chip budget adds up, per optimizer, from independently counted sizes."""
from __future__ import annotations

import pytest

from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.memory_budget import OPTIMIZERS, memory_budget, model_memory_fields
from ttzo.golden.network import dense_mlp, mnist_tt
from ttzo.golden.zo_fixed import B_BITS


def test_mnist_r6_parameter_and_momentum_bytes() -> None:
    net = mnist_tt(6)
    # 3,962 parameters (the paper's Table 1): 2,928 core entries + 1,034 biases, all 16-bit by default
    b = memory_budget(net, DEFAULT_CONFIG, batch=64, optimizer="hybrid")
    assert b["params"] == 3962
    assert b["parameter_bytes"] == 3962 * 2
    assert b["momentum_bytes"] == (3962 * B_BITS + 7) // 8
    assert b["accumulator_bytes"] == 0
    assert b["per_batch_bytes"] == 64 * 784 + (64 * 4 + 7) // 8  # u8 pixels + 4-bit labels


def test_signrge_needs_no_momentum_and_totals_add_up() -> None:
    net = mnist_tt(6)
    s = memory_budget(net, optimizer="signrge", n_queries=10)
    c = memory_budget(net, optimizer="cge")
    assert s["momentum_bytes"] == 0 and c["momentum_bytes"] > 0
    assert s["onchip_bytes"] < c["onchip_bytes"]
    parts = ("parameter_bytes", "working_copy_bytes", "momentum_bytes", "per_step_bytes", "per_batch_bytes", "activation_buffer_bytes",
             "loss_table_bytes", "prng_checkpoint_bytes")
    for b in (s, c):
        total = sum(b[k] for k in parts)
        assert total - len(parts) <= b["onchip_bytes"] <= total  # each part rounded up to whole bytes


def test_model_fields_and_bad_input() -> None:
    f = model_memory_fields(dense_mlp())
    assert set(f["memory"]) == set(OPTIMIZERS)
    assert f["onchip_bytes"] == f["memory"]["hybrid"]["onchip_bytes"]
    assert f["memory"]["signrge"]["parameter_bytes"] == (784 * 1024 + 1024 * 10 + 1034) * 2
    with pytest.raises(ValueError, match="optimizer"):
        memory_budget(mnist_tt(2), optimizer="adam")
    with pytest.raises(ValueError, match="positive"):
        memory_budget(mnist_tt(2), batch=0)
