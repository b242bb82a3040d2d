"""Networks: the paper's TT-MLP sizes, flat parameter order, float vs dense, fixed vs float."""
from __future__ import annotations

import numpy as np
import pytest

from ttzo.golden.fixed import OverflowCounter
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.loss import argmax_first
from ttzo.golden.network import LayerSpec, TTNet, dense_mlp, mnist_tt
from ttzo.golden.tt import TTShape, to_dense


def test_paper_sizes() -> None:
    net = mnist_tt(6)
    # Table 1: 1,824 + 1,104 core parameters + 1,024 + 10 biases
    assert net.n_params == 3962
    assert net.param_sizes() == [336, 576, 576, 336, 1024, 48, 720, 288, 48, 10]
    assert net.macs("left_to_right") == 338_688 + 41_184
    assert net.macs("dense") == 802_816 + 10_240
    assert net.macs() == net.describe()["macs_per_sample"] < net.macs("left_to_right")
    assert dense_mlp().n_params == 814_090                    # the paper's dense MLP
    assert mnist_tt(10).n_params == 8314                      # Table 2, compression ratio 0.01


def test_flat_order() -> None:
    net = mnist_tt(2)
    rng = np.random.default_rng(0)
    params = net.init(rng)
    params = [(cores, rng.normal(size=b.shape)) for cores, b in params]
    flat = net.flatten(params)
    assert flat.shape == (net.n_params,)
    # layer by layer: cores in C order over (r_{k-1}, n_k, m_k, r_k), then the bias
    c0 = params[0][0][0]
    assert flat[0] == c0[0, 0, 0, 0] and flat[1] == c0[0, 0, 0, 1] and flat[2] == c0[0, 0, 1, 0]
    off = sum(c.size for c in params[0][0])
    assert np.array_equal(flat[off:off + 1024], params[0][1])
    assert flat[off + 1024] == params[1][0][0].reshape(-1)[0]
    assert np.array_equal(flat[-10:], params[1][1])
    back = net.unflatten(flat)
    for (c1, b1), (c2, b2) in zip(params, back):
        assert all(np.array_equal(a, b) for a, b in zip(c1, c2)) and np.array_equal(b1, b2)
    mask = net.bias_mask()
    assert mask.sum() == 1034 and np.array_equal(flat[mask], np.concatenate([b for _, b in params]))
    with pytest.raises(ValueError, match="entries"):
        net.unflatten(flat[:-1])
    # a leading query axis survives unflatten
    q = net.unflatten(np.stack([flat, 2 * flat]))
    assert q[0][0][0].shape == (2,) + c0.shape


def test_forward_float_equals_dense_matrices() -> None:
    net = mnist_tt(3)
    rng = np.random.default_rng(1)
    params = [(c, rng.normal(0, 0.1, size=b.shape)) for c, b in net.init(rng)]
    x = rng.random((8, 784))
    h = x
    for spec, (cores, b) in zip(net.layers, params):
        h = h @ to_dense(spec.shape, cores).T + b
        h = np.maximum(h, 0) if spec.activation == "relu" else h
    np.testing.assert_allclose(net.forward_float(params, x), h, rtol=1e-9, atol=1e-12)


def test_forward_fixed_tracks_float() -> None:
    """Fixed forward of quantised params vs float forward of the same (dequantised) params and inputs."""
    net = mnist_tt(6)
    rng = np.random.default_rng(2)
    cfg = DEFAULT_CONFIG
    params = [(c, rng.normal(0, 0.1, size=b.shape)) for c, b in net.init(rng)]
    codes = net.quantize(params, cfg)
    x = rng.integers(0, 256, size=(64, 784))
    ctr = OverflowCounter()
    z = net.forward_fixed(codes, x, cfg, ctr)
    zf = net.forward_float(net.dequantize(codes, cfg), x / 256)
    assert not ctr.any
    assert np.max(np.abs(cfg.act.to_float(z) - zf)) < 0.05
    assert np.mean(argmax_first(z) == argmax_first(zf)) > 0.9
    with pytest.raises(ValueError, match="input format"):
        net.forward_fixed(codes, x - 1, cfg)


def test_dense_net_is_l1_tt() -> None:
    net = dense_mlp((6, 5, 3))
    assert [s.shape.ranks for s in net.layers] == [(1, 1), (1, 1)]
    assert net.macs() == net.macs("dense") == 6 * 5 + 5 * 3
    with pytest.raises(ValueError, match="chain"):
        TTNet((LayerSpec(TTShape((4,), (3,), (1, 1))), LayerSpec(TTShape((4,), (2,), (1, 1)))))
