"""update_stats: the share of a fixed-point CGE update that nearest rounding keeps, from a real checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ttzo.golden import zo_fixed
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.network import mnist_tt
from ttzo.golden.optim import OptimConfig
from ttzo.golden.train import TrainConfig, train_mnist
from ttzo.golden.update_stats import update_stats


@pytest.fixture(scope="module")
def mnist(mnist_dir: Path):
    from ttzo.golden.mnist import load_mnist
    return load_mnist(mnist_dir)


def test_stats_match_the_integer_update(tmp_path: Path, mnist) -> None:
    oc = OptimConfig(optimizer="cge", cge_fraction=0.05, cge_lr=0.02)
    train_mnist(TrainConfig(arith="fixed", rank=2, epochs=1, seed=1, batch=64, out=str(tmp_path / "r"),
                            train_samples=128, test_samples=64, optim=oc), data=mnist, progress=False)
    s = update_stats(str(tmp_path / "r" / "checkpoint-e001.npz"), 0.02)
    ck = np.load(tmp_path / "r" / "checkpoint-e001.npz")
    pf = zo_fixed.ParamFormats.of(mnist_tt(2), DEFAULT_CONFIG)
    c = zo_fixed.CGEConstants.make(pf, 0.02, oc.cge_mu, oc.momentum, 64, DEFAULT_CONFIG.loss.frac)
    b = ck["momentum"].astype(np.int64)
    upd = np.floor(c.k_code * b.astype(float) * 2.0 ** -c.k_shift + 0.5)
    assert s["parameters"] == b.size
    assert s["nearest_changed_share"] == pytest.approx(np.count_nonzero(upd) / b.size)
    assert 0 <= s["nearest_magnitude_lost_share"] <= 1
    exact = np.abs(c.k_code * b.astype(float) * 2.0 ** -c.k_shift)
    want = np.mean(np.where(exact >= 1, 1.0, exact))       # P(change) of a stochastically rounded update
    assert s["stochastic_expected_changed_share"] == pytest.approx(want)


def test_fd_check_float_differences_agree_with_the_true_gradient(tmp_path: Path, mnist, mnist_dir: Path) -> None:
    from ttzo.golden.update_stats import fd_check
    oc = OptimConfig(optimizer="cge", cge_fraction=0.05, cge_lr=0.02)
    train_mnist(TrainConfig(arith="fixed", rank=2, epochs=1, seed=1, batch=64, out=str(tmp_path / "r"),
                            data=str(mnist_dir), train_samples=128, test_samples=64, optim=oc), data=mnist,
                progress=False)
    rows = fd_check(str(tmp_path / "r" / "checkpoint-e001.npz"), [0.001, 0.05], samples=64, coords=40)
    assert [r["mu"] for r in rows] == [0.001, 0.05]
    assert rows[0]["float_corr"] > 0.99 and rows[0]["float_sign_agreement"] >= 0.9   # small step: ~the gradient
    assert all(0 <= r["fixed_sign_agreement"] <= 1 for r in rows)
