"""Learning-rate schedule, the hybrid switch rule, and schedule validation for the integer step."""
from __future__ import annotations

import numpy as np
import pytest

from ttzo.golden.fixed import FormatError
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.network import mnist_tt
from ttzo.golden.optim import GoldenStepper, OptimConfig, OptState, end_of_epoch, initial_phase, lr_at


def test_lr_step_decay() -> None:
    assert lr_at(1e-3, 0, 0.9, 10) == 1e-3
    assert lr_at(1e-3, 9, 0.9, 10) == 1e-3
    assert lr_at(1e-3, 10, 0.9, 10) == pytest.approx(9e-4)
    assert lr_at(1e-3, 25, 0.9, 10) == pytest.approx(1e-3 * 0.81)


def _state(cfg: OptimConfig) -> OptState:
    return OptState(np.zeros(3), np.zeros(3), phase=initial_phase(cfg))


def test_hybrid_switches_at_fixed_epoch() -> None:
    cfg = OptimConfig(optimizer="hybrid", switch_epoch=3)
    st = _state(cfg)
    assert [end_of_epoch(cfg, st, e, 1.0 - 0.1 * e) for e in range(5)] == [False, False, True, False, False]
    assert st.phase == "cge" and st.switch_epoch == 3


def test_hybrid_switches_when_loss_stalls() -> None:
    cfg = OptimConfig(optimizer="hybrid", patience=2)
    st = _state(cfg)
    losses = [2.0, 1.5, 1.4, 1.45, 1.41, 1.3]
    got = [end_of_epoch(cfg, st, e, v) for e, v in enumerate(losses)]
    assert got == [False, False, False, False, True, False]
    assert st.switch_epoch == 5


def test_other_optimizers_never_switch() -> None:
    for name in ("signrge", "cge", "rge", "fo"):
        cfg = OptimConfig(optimizer=name, patience=1)
        st = _state(cfg)
        assert not any(end_of_epoch(cfg, st, e, 1.0) for e in range(4))
        assert st.phase == name


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        OptimConfig(optimizer="adam")
    with pytest.raises(ValueError, match="cge_fraction"):
        OptimConfig(cge_fraction=0.0)


def test_fixed_schedule_rounding_to_zero_is_refused_before_training() -> None:
    net = mnist_tt(2)
    st = GoldenStepper(net, OptimConfig(optimizer="signrge", lr=0.005, lr_decay=0.5, lr_decay_every=1), 0, 64,
                       DEFAULT_CONFIG)
    st.check_schedule(3)  # 0.005, 0.0025, 0.00125 -> bias codes 5, 3, 1
    with pytest.raises(FormatError, match="below one LSB"):
        st.check_schedule(5)  # 0.0003125 -> 0.3 LSB of the bias format


def test_fixed_fo_and_gaussian_rge_are_refused() -> None:
    with pytest.raises(FormatError, match="float only"):
        GoldenStepper(mnist_tt(2), OptimConfig(optimizer="fo"), 0, 64, DEFAULT_CONFIG)
    with pytest.raises(FormatError, match="Rademacher"):
        GoldenStepper(mnist_tt(2), OptimConfig(optimizer="rge", perturbation="gaussian"), 0, 64, DEFAULT_CONFIG)
    GoldenStepper(mnist_tt(2), OptimConfig(optimizer="rge"), 0, 64, DEFAULT_CONFIG)  # Rademacher RGE is defined


def test_cge_lr_floor_holds_the_decayed_lr_and_only_the_cge_lr() -> None:
    """--cge-lr-min: CGE lr = max(cge_lr * decay^k, floor); signRGE's lr is not floored."""
    cfg = OptimConfig(optimizer="hybrid", switch_epoch=1, lr=0.005, cge_lr=0.05, lr_decay=0.9, lr_decay_every=1,
                      cge_lr_min=0.003)
    g = GoldenStepper(mnist_tt(2), cfg, 0, 64, None)
    cge = OptState(np.zeros(1), np.zeros(1), phase="cge", switch_epoch=1)
    lrs = [g.phase_lr(cge, e) for e in range(1, 40)]
    k = next(i for i, v in enumerate(lrs) if v == 0.003)
    assert k == 27 and lrs[k - 1] == pytest.approx(0.05 * 0.9 ** 26)      # unchanged until the floor binds
    assert all(v == 0.003 for v in lrs[k:])
    sig = OptState(np.zeros(1), np.zeros(1), phase="signrge")
    assert g.phase_lr(sig, 30) == pytest.approx(0.005 * 0.9 ** 30)
    # with the floor, a schedule whose CGE lr would underflow the update multiplier is accepted
    fixed = GoldenStepper(mnist_tt(2), OptimConfig(optimizer="hybrid", switch_epoch=1, lr=0.002, lr_decay=0.5,
                                                    lr_decay_every=1, cge_lr=0.02, cge_lr_min=0.001), 0, 64,
                          DEFAULT_CONFIG)
    fixed.check_schedule(60)
    with pytest.raises(ValueError, match="cge_lr_min"):
        OptimConfig(cge_lr=0.01, cge_lr_min=0.02)


def test_stochastic_cge_rounding_is_fixed_point_only() -> None:
    with pytest.raises(FormatError, match="arith fixed"):
        GoldenStepper(mnist_tt(2), OptimConfig(optimizer="cge", cge_rounding="stochastic"), 0, 64, None)
    with pytest.raises(ValueError, match="cge_rounding"):
        OptimConfig(cge_rounding="up")
