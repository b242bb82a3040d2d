"""First-order (exact-gradient) float baseline for TT networks: manual backprop and SGD.

The gradient is exact (no autodiff library): each layer runs through its dense-equivalent
matrix W = to_dense(cores) (same result as the TT forward, see tests), the softmax
cross-entropy is back-propagated to dL/dW = dY^T X, and dL/dW is chained to every core G_k
by contracting it with the products of the other cores (left part over cores < k, right
part over cores > k).  This is the "FO" column of the paper's tables; the ZO optimizers and
the chip never use it.  Inputs are pixel bytes, scaled as the fixed-point input u8.8: x = p/256.

    params, hist = fo_train(net, net.init(rng), images_u8, labels, epochs=5, lr=0.05)
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .activations import apply_float
from .loss import cross_entropy_float
from .network import Params, TTNet
from .tt import TTShape, to_dense

INPUT_SCALE = 1.0 / 256.0  # u8.8: the pixel byte p is the code, its value p/256


def images_to_float(images_u8: np.ndarray) -> np.ndarray:
    """Pixel bytes -> float inputs p/256 (the value of the u8.8 input code)."""
    return np.asarray(images_u8, dtype=np.float64) * INPUT_SCALE


def _partials(shape: TTShape, cores: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Left products (M_<k, N_<k, r_k) and right products (r_{k+1}, M_>k, N_>k) of the cores."""
    L = shape.L
    left = [np.ones((1, 1, 1))]
    for G in cores[:-1]:
        t = left[-1]
        _, n, m, r1 = G.shape
        left.append(np.einsum("abr,rnms->ambns", t, G).reshape(t.shape[0] * m, t.shape[1] * n, r1))
    right = [np.ones((1, 1, 1))]
    for G in cores[:0:-1]:
        t = right[-1]
        r0, n, m, _ = G.shape
        right.append(np.einsum("rnms,sab->rmanb", G, t).reshape(r0, m * t.shape[1], n * t.shape[2]))
    right = right[::-1]
    assert len(left) == len(right) == L
    return left, right


def core_grads(shape: TTShape, cores: Sequence[np.ndarray], dW: np.ndarray) -> list[np.ndarray]:
    """dL/dG_k for every core, given dL/dW (M x N) of the dense-equivalent matrix."""
    left, right = _partials(shape, cores)
    grads = []
    for k, G in enumerate(cores):
        r0, n, m, r1 = G.shape
        lt, rt = left[k], right[k]
        A, B, C, D = lt.shape[0], lt.shape[1], rt.shape[1], rt.shape[2]
        # dG[a,n,m,b] = sum dW[(A,m,C),(B,n,D)] lt[A,B,a] rt[b,C,D], as two matmuls
        T = dW.reshape(A, m, C, B, n, D).transpose(0, 3, 1, 4, 2, 5).reshape(A * B, m * n * C * D)
        U = (lt.reshape(A * B, r0).T @ T).reshape(r0 * m * n, C * D)
        grads.append((U @ rt.reshape(r1, C * D).T).reshape(r0, m, n, r1).transpose(0, 2, 1, 3))
    return grads


def dense_weights(net: TTNet, params: Params) -> list[np.ndarray]:
    return [to_dense(spec.shape, cores) for spec, (cores, _) in zip(net.layers, params)]


def forward_dense(net: TTNet, params: Params, x: np.ndarray, weights: list[np.ndarray] | None = None) -> np.ndarray:
    """Float logits via the dense-equivalent matrices (equal to net.forward_float)."""
    weights = dense_weights(net, params) if weights is None else weights
    h = np.asarray(x, dtype=np.float64)
    for spec, W, (_, b) in zip(net.layers, weights, params):
        h = apply_float(spec.activation, h @ W.T + b)
    return h


def _act_grad(name: str, pre: np.ndarray, dout: np.ndarray) -> np.ndarray:
    if name == "identity":
        return dout
    if name == "relu":
        return dout * (pre > 0)
    if name == "sine":
        return dout * np.cos(pre)
    raise ValueError(f"no derivative for activation {name!r}")


def loss_and_grad(net: TTNet, params: Params, x: np.ndarray, labels: np.ndarray) -> tuple[float, Params, np.ndarray]:
    """Mean softmax cross-entropy over the batch, its exact gradient (same structure as params), logits."""
    weights = dense_weights(net, params)
    hs, pres = [np.asarray(x, dtype=np.float64)], []
    for spec, W, (_, b) in zip(net.layers, weights, params):
        pre = hs[-1] @ W.T + b
        pres.append(pre)
        hs.append(apply_float(spec.activation, pre))
    logits = hs[-1]
    B = logits.shape[0]
    lab = np.asarray(labels, dtype=np.int64)
    loss = float(cross_entropy_float(logits, lab).mean())
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(B), lab] -= 1.0
    dh = p / B
    grads: Params = []
    for i in range(len(net.layers) - 1, -1, -1):
        spec = net.layers[i]
        dpre = _act_grad(spec.activation, pres[i], dh)
        dW = dpre.T @ hs[i]
        grads.append((core_grads(spec.shape, params[i][0], dW), dpre.sum(axis=0)))
        if i:
            dh = dpre @ weights[i]
    return loss, grads[::-1], logits


def evaluate(net: TTNet, params: Params, images_u8: np.ndarray, labels: np.ndarray, batch: int = 2000
             ) -> tuple[float, float]:
    """(mean float cross-entropy, accuracy) over a dataset."""
    weights = dense_weights(net, params)
    tot_loss, correct = 0.0, 0
    for s in range(0, len(labels), batch):
        z = forward_dense(net, params, images_to_float(images_u8[s:s + batch]), weights)
        lab = np.asarray(labels[s:s + batch], dtype=np.int64)
        tot_loss += float(cross_entropy_float(z, lab).sum())
        correct += int(np.sum(np.argmax(z, axis=1) == lab))
    n = len(labels)
    return tot_loss / n, correct / n


@dataclass
class EpochStats:
    epoch: int
    lr: float
    train_loss: float   # mean over the epoch's batches
    seconds: float
    test_loss: float | None = None
    test_acc: float | None = None


def fo_train(net: TTNet, params: Params, images_u8: np.ndarray, labels: np.ndarray, epochs: int, lr: float,
             batch: int = 64, seed: int = 0, momentum: float = 0.9, weight_decay: float = 0.0,
             lr_decay: float = 1.0, eval_data: tuple[np.ndarray, np.ndarray] | None = None,
             max_batches: int | None = None, log: Callable[[EpochStats], None] | None = None
             ) -> tuple[Params, list[EpochStats]]:
    """SGD (heavy-ball momentum) on the mean softmax cross-entropy with exact gradients.

    images_u8: (count, features) pixel bytes; labels: (count,).  Each epoch shuffles with
    np.random.default_rng(seed + epoch) and runs batches of `batch`; the learning rate is
    lr * lr_decay**epoch; velocity v = momentum*v + g + weight_decay*theta, theta -= lr*v.
    `max_batches` caps the batches per epoch (quick runs); `eval_data` = (images_u8, labels)
    is evaluated after each epoch.  Returns the new params (input params are not modified)
    and one EpochStats per epoch.
    """
    theta = net.flatten(params).astype(np.float64)
    vel = np.zeros_like(theta)
    n = len(labels)
    history: list[EpochStats] = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        rate = lr * lr_decay ** epoch
        perm = np.random.default_rng(seed + epoch).permutation(n)
        losses = []
        for bi, s in enumerate(range(0, n, batch)):
            if max_batches is not None and bi >= max_batches:
                break
            idx = perm[s:s + batch]
            loss, g, _ = loss_and_grad(net, net.unflatten(theta), images_to_float(images_u8[idx]), labels[idx])
            gvec = net.flatten(g)
            if weight_decay:
                gvec = gvec + weight_decay * theta
            vel = momentum * vel + gvec
            theta = theta - rate * vel
            losses.append(loss)
        stats = EpochStats(epoch=epoch, lr=rate, train_loss=float(np.mean(losses)),
                           seconds=time.perf_counter() - t0)
        if eval_data is not None:
            stats.test_loss, stats.test_acc = evaluate(net, net.unflatten(theta), *eval_data)
        history.append(stats)
        if log is not None:
            log(stats)
    return net.unflatten(theta), history
