"""The fast evaluator equals the contract's forward: batched queries and CGE reuse, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

from ttzo.golden.fastforward import NetEvaluator
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.network import LayerSpec, TTNet, mnist_tt
from ttzo.golden.tt import TTShape


def small_net() -> TTNet:
    """Three layers whose contraction orders use every absorption side (first, left, right)."""
    return TTNet((LayerSpec(TTShape.uniform((4, 3, 2), (2, 3, 4), 3), "relu", order=(1, 0, 2)),
                  LayerSpec(TTShape.uniform((2, 3, 4), (2, 2, 2), 2), "relu", order=(2, 1, 0)),
                  LayerSpec(TTShape.uniform((2, 2, 2), (1, 5, 1), 2), "identity")), name="small")


def codes_of(net: TTNet, seed: int, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    params = [([c * scale for c in cores], b + rng.normal(0, 0.3, b.shape)) for cores, b in net.init(rng)]
    return net.flatten(net.quantize(params, DEFAULT_CONFIG))


@pytest.mark.parametrize("net", [small_net(), mnist_tt(2)], ids=["small", "mnist-r2"])
def test_batched_fixed_equals_per_query_contract(net: TTNet) -> None:
    rng = np.random.default_rng(1)
    theta = codes_of(net, 2, scale=3.0)  # large enough that some states saturate
    Q, B = 4, 5
    thetas = theta[None] + rng.integers(-900, 900, (Q, theta.size))
    x = rng.integers(0, 256, (B, net.in_features))
    ev = NetEvaluator(net, DEFAULT_CONFIG)
    got = ev.logits(thetas.astype(float), x)
    for q in range(Q):
        ref = net.forward_fixed(net.unflatten(thetas[q]), x, DEFAULT_CONFIG)
        assert np.array_equal(got[q], ref), f"query {q} differs"
        assert np.array_equal(ev.logits(thetas[q].astype(float), x), ref)


@pytest.mark.parametrize("net", [small_net(), mnist_tt(2)], ids=["small", "mnist-r2"])
def test_cge_reuse_equals_plain_reevaluation(net: TTNet) -> None:
    rng = np.random.default_rng(3)
    theta = codes_of(net, 4, scale=3.0).astype(float)
    x = rng.integers(0, 256, (6, net.in_features))
    ev = NetEvaluator(net, DEFAULT_CONFIG, max_elems=20_000)  # small chunks exercise the chunking
    # a few coordinates of every block, incl. values at the format limits (saturation)
    coords = np.concatenate([rng.choice(np.arange(a, b), min(b - a, 7), replace=False)
                             for a, b in zip(ev.offsets[:-1], ev.offsets[1:])])
    mask = net.bias_mask()[coords]
    hi = np.where(mask, DEFAULT_CONFIG.bias.max_code, DEFAULT_CONFIG.weight.max_code)
    values = theta[coords] + rng.choice([-82, 82, 700], coords.size)
    values[::5] = hi[::5]
    got = ev.coordinate_logits(theta, coords, values, x)
    plain = np.repeat(theta[None], coords.size, 0)
    plain[np.arange(coords.size), coords] = values
    for q in range(coords.size):
        ref = net.forward_fixed(net.unflatten(plain[q].astype(np.int64)), x, DEFAULT_CONFIG)
        assert np.array_equal(got[q], ref), f"coordinate {coords[q]} differs"


def test_float_paths_match_contract() -> None:
    net = small_net()
    rng = np.random.default_rng(5)
    theta = net.flatten(net.init(rng))
    x = rng.random((4, net.in_features))
    ev = NetEvaluator(net, None)
    ref = net.forward_float(net.unflatten(theta), x)
    assert np.allclose(ev.logits(theta, x), ref, atol=1e-12)
    coords = np.arange(theta.size)
    got = ev.coordinate_logits(theta, coords, theta + 0.05, x)
    for q in range(0, theta.size, 7):
        t = theta.copy()
        t[q] += 0.05
        assert np.allclose(got[q], net.forward_float(net.unflatten(t), x), atol=1e-12)


def test_losses_are_exact_integer_batch_sums() -> None:
    from ttzo.golden.loss import batch_loss_fixed
    net = mnist_tt(2)
    rng = np.random.default_rng(6)
    theta = codes_of(net, 7)
    x = rng.integers(0, 256, (8, net.in_features))
    y = rng.integers(0, 10, 8)
    ev = NetEvaluator(net, DEFAULT_CONFIG)
    ref = batch_loss_fixed(net.forward_fixed(net.unflatten(theta), x, DEFAULT_CONFIG), y,
                           DEFAULT_CONFIG.act, DEFAULT_CONFIG.loss)
    assert ev.losses(theta[None].astype(float), x, y).tolist() == [int(ref)]


def test_rejects_input_outside_format() -> None:
    net = mnist_tt(2)
    ev = NetEvaluator(net, DEFAULT_CONFIG)
    with pytest.raises(ValueError, match="input codes"):
        ev.logits(codes_of(net, 1).astype(float), np.full((1, 784), 256))


# --- property tests: random networks, orders, activations and parameter sets ------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as hst  # noqa: E402


@hst.composite
def random_nets(draw) -> TTNet:
    """1-3 layers of 1-3 cores, modes 1..4, ranks 1..3, any contiguous order; the next layer's input
    modes either equal the previous output modes (CGE's restricted next layer) or are refolded."""
    layers = []
    in_modes = tuple(draw(hst.lists(hst.integers(1, 4), min_size=1, max_size=3)))
    n_layers = draw(hst.integers(1, 3))
    for li in range(n_layers):
        L = len(in_modes)
        out_modes = tuple(draw(hst.lists(hst.integers(1, 4), min_size=L, max_size=L)))
        ranks = (1,) + tuple(draw(hst.lists(hst.integers(1, 3), min_size=L - 1, max_size=L - 1))) + (1,)
        shape = TTShape(in_modes, out_modes, ranks)
        order = draw(hst.sampled_from(shape.orders()))
        act = "identity" if li == n_layers - 1 else draw(hst.sampled_from(["relu", "relu", "identity", "sine"]))
        layers.append(LayerSpec(shape, act, order=order))
        in_modes = out_modes if draw(hst.booleans()) else (int(np.prod(out_modes)),)
    return TTNet(tuple(layers), name="random")


@settings(max_examples=40)
@given(net=random_nets(), seed=hst.integers(0, 2**31 - 1), scale=hst.sampled_from([1.0, 4.0]))
def test_property_fast_paths_equal_contract(net: TTNet, seed: int, scale: float) -> None:
    """Batched logits and every CGE shortcut equal the contract's forward bit for bit (fixed point)."""
    rng = np.random.default_rng(seed)
    theta = codes_of(net, seed, scale).astype(float)
    B = int(rng.integers(1, 5))
    x = rng.integers(0, 256, (B, net.in_features))
    ev = NetEvaluator(net, DEFAULT_CONFIG, max_elems=int(rng.integers(50, 5000)))  # varied chunking
    thetas = theta[None] + rng.integers(-3000, 3000, (3, theta.size))
    lo = np.where(net.bias_mask(), DEFAULT_CONFIG.bias.min_code, DEFAULT_CONFIG.weight.min_code)
    hi = np.where(net.bias_mask(), DEFAULT_CONFIG.bias.max_code, DEFAULT_CONFIG.weight.max_code)
    thetas = np.clip(thetas, lo, hi)
    got = ev.logits(thetas, x)
    for q in range(len(thetas)):
        assert np.array_equal(got[q], net.forward_fixed(net.unflatten(thetas[q].astype(np.int64)), x, DEFAULT_CONFIG))
    coords = rng.choice(theta.size, min(theta.size, 25), replace=False)
    values = np.clip(theta[coords] + rng.choice([-900, -82, 82, 5000], coords.size), lo[coords], hi[coords])
    cl = ev.coordinate_logits(theta, coords, values, x)
    for q, (c, v) in enumerate(zip(coords, values)):
        t = theta.copy()
        t[c] = v
        assert np.array_equal(cl[q], net.forward_fixed(net.unflatten(t.astype(np.int64)), x, DEFAULT_CONFIG)), c


@settings(max_examples=25)
@given(net=random_nets(), seed=hst.integers(0, 2**31 - 1))
def test_property_float_paths_match_contract(net: TTNet, seed: int) -> None:
    rng = np.random.default_rng(seed)
    theta = net.flatten(net.init(rng))
    x = rng.random((3, net.in_features))
    ev = NetEvaluator(net, None, max_elems=int(rng.integers(50, 5000)))
    assert np.allclose(ev.logits(theta, x), net.forward_float(net.unflatten(theta), x), atol=1e-10)
    coords = rng.choice(theta.size, min(theta.size, 15), replace=False)
    got = ev.coordinate_logits(theta, coords, theta[coords] + 0.3, x)
    for q, c in enumerate(coords):
        t = theta.copy()
        t[c] += 0.3
        assert np.allclose(got[q], net.forward_float(net.unflatten(t), x), atol=1e-10)


def test_bench_compares_against_an_equal_einsum_sweep() -> None:
    """`ttzo bench golden` measures the same function both ways (small and quick here)."""
    from ttzo.golden.bench import run_bench
    r = run_bench(rank=2, batch=8, queries=3, min_time=0.02, cge_fraction=0.2)
    assert r["einsum_matches_ours"]
    assert r["ours_fixed"] > 0 and r["einsum_sweep"] > 0 and r["cge_step_seconds_all"] > 0
    assert r["ratio_fixed_vs_einsum"] == r["ours_fixed"] / r["einsum_sweep"]
