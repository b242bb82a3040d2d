"""First-order baseline: exact gradients (vs central finite differences) and a training step that learns."""
from __future__ import annotations

import numpy as np
import pytest

from ttzo.golden.fo import core_grads, evaluate, fo_train, forward_dense, images_to_float, loss_and_grad
from ttzo.golden.network import LayerSpec, TTNet, dense_mlp
from ttzo.golden.tt import TTShape, to_dense


def small_net(act: str = "relu") -> TTNet:
    return TTNet((LayerSpec(TTShape((3, 2, 2), (2, 3, 2), (1, 2, 3, 1)), act),
                  LayerSpec(TTShape((4, 3), (2, 2), (1, 2, 1)), "identity")))


@pytest.mark.parametrize("act, dense", [("relu", False), ("sine", False), ("relu", True)])
def test_gradient_matches_central_differences(act: str, dense: bool) -> None:
    net = dense_mlp((12, 7, 4), act) if dense else small_net(act)
    rng = np.random.default_rng(0)
    params = [(c, rng.normal(0, 0.1, size=b.shape)) for c, b in net.init(rng)]
    x, lab = rng.random((5, 12)), rng.integers(0, 4, 5)
    loss, grads, logits = loss_and_grad(net, params, x, lab)
    np.testing.assert_allclose(logits, net.forward_float(params, x), rtol=1e-10, atol=1e-12)
    theta, g = net.flatten(params), net.flatten(grads)
    h = 1e-6
    num = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        num[i] = (loss_and_grad(net, net.unflatten(theta + e), x, lab)[0]
                  - loss_and_grad(net, net.unflatten(theta - e), x, lab)[0]) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-8)


def test_core_grads_are_the_chain_rule_of_to_dense() -> None:
    """<dW, dense(G + t dG_k)> is linear in each core: check core_grads against a directional derivative."""
    rng = np.random.default_rng(1)
    shape = TTShape((2, 3, 2), (3, 2, 2), (1, 2, 2, 1))
    cores = [rng.normal(size=s) for s in shape.core_shapes]
    dW = rng.normal(size=(shape.out_features, shape.in_features))
    grads = core_grads(shape, cores, dW)
    for k in range(shape.L):
        D = rng.normal(size=cores[k].shape)
        moved = [c + (D if j == k else 0) for j, c in enumerate(cores)]
        exact = np.sum(dW * (to_dense(shape, moved) - to_dense(shape, cores)))  # linear in core k
        assert np.sum(grads[k] * D) == pytest.approx(exact, rel=1e-10)


def test_fo_train_learns_a_separable_problem() -> None:
    net = small_net()
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(400, 12)).astype(np.uint8)
    labels = (images[:, :3].astype(int).sum(axis=1) > 3 * 127).astype(np.uint8) + 2 * (images[:, 5] > 127)
    params0 = net.init(np.random.default_rng(3))
    before = evaluate(net, params0, images, labels)
    params, hist = fo_train(net, params0, images, labels, epochs=15, lr=0.1, batch=32, seed=0,
                            eval_data=(images, labels))
    assert len(hist) == 15 and hist[-1].train_loss < hist[0].train_loss
    assert hist[-1].test_acc > max(0.8, before[1] + 0.2)
    assert hist[-1].test_loss == pytest.approx(evaluate(net, params, images, labels)[0])
    np.testing.assert_allclose(forward_dense(net, params, images_to_float(images[:5])),
                               net.forward_float(params, images[:5] / 256), rtol=1e-9, atol=1e-12)
    # the input params are untouched, the run is reproducible
    assert np.array_equal(net.flatten(params0), net.flatten(net.init(np.random.default_rng(3))))
    again, _ = fo_train(net, params0, images, labels, epochs=15, lr=0.1, batch=32, seed=0)
    assert np.array_equal(net.flatten(again), net.flatten(params))
