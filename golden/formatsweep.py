"""Measure fixed-point formats: train the TT-MLP in float (FO), then test each candidate format.

This is how DEFAULT_CONFIG was chosen (docs/fixed-point.md, "Choosing the default"): a few
FO epochs give realistic trained weights; each candidate FixedConfig then quantises them
and runs the bit-exact fixed-point forward (network.forward_fixed) over the test set.  The
report gives test accuracy, agreement with the float model (argmax, RMS logit error, mean
absolute error of the fixed-point loss) and how many values saturated per tensor.
Run it with `ttzo formats sweep` (host/commands/formats.py).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .activations import apply_float
from .fixed import OverflowCounter, QFormat
from .fo import EpochStats, evaluate, fo_train, forward_dense, images_to_float
from .formats import DEFAULT_CONFIG, FixedConfig
from .loss import argmax_first, cross_entropy_fixed, cross_entropy_float
from .mnist import MNIST
from .network import Params, TTNet, mnist_tt
from .tt import tt_forward_float


def _cfg(width: int, weight: int, bias: int, state: int, act: int) -> FixedConfig:
    """A config of `width`-bit words with the given fraction bits (input stays u8.8)."""
    q = lambda frac: QFormat(width, frac)  # noqa: E731
    return DEFAULT_CONFIG.with_(weight=q(weight), bias=q(bias), state=q(state), act=q(act))


#: Candidates: name -> config.  16-bit words suit iCE40 SB_MAC16 (16x16), 18-bit ECP5 MULT18X18D.
#: Narrower words keep the 16-bit choice's integer bits (weight 3, bias/state 6, act 8, sign included).
CANDIDATES: dict[str, FixedConfig] = {
    "default": DEFAULT_CONFIG,
    "first draft (st .11)": _cfg(16, 13, 10, 11, 8),
    "st .9": _cfg(16, 13, 10, 9, 8),
    "st .10": _cfg(16, 13, 10, 10, 8),
    "st .12": _cfg(16, 13, 10, 12, 8),
    "w .12": _cfg(16, 12, 10, 10, 8),
    "w .14": _cfg(16, 14, 10, 10, 8),
    "b .12": _cfg(16, 13, 12, 10, 8),
    "act .7": _cfg(16, 13, 10, 10, 7),
    "act .9": _cfg(16, 13, 10, 10, 9),
    "act .10": _cfg(16, 13, 10, 10, 10),
    "act .12": _cfg(16, 13, 10, 10, 12),
    "18-bit": _cfg(18, 15, 12, 12, 10),
    "12-bit": _cfg(12, 9, 6, 6, 4),
    "10-bit": _cfg(10, 7, 4, 4, 2),
    "8-bit": _cfg(8, 5, 2, 2, 0),
}


def fixed_eval(net: TTNet, params: Params, cfg: FixedConfig, images_u8: np.ndarray, labels: np.ndarray,
               float_logits: np.ndarray | None = None, batch: int = 1000) -> dict:
    """Accuracy, agreement with the float model (argmax, RMS logit error) and saturation counts."""
    counter = OverflowCounter()
    codes = net.quantize(params, cfg, counter)
    zc = np.concatenate([net.forward_fixed(codes, np.asarray(images_u8[s:s + batch], dtype=np.int64), cfg, counter)
                         for s in range(0, len(labels), batch)])
    logits = cfg.act.to_float(zc)
    pred = argmax_first(logits)
    loss_fixed = cfg.loss.to_float(cross_entropy_fixed(zc, labels, cfg.act, cfg.loss, counter))
    row = {"config": cfg.to_dict(), "acc": float(np.mean(pred == labels)), "overflow": counter.report(),
           "saturated": int(sum(counter.counts.values()))}
    if float_logits is not None:
        row["agree_float"] = float(np.mean(pred == argmax_first(float_logits)))
        row["logit_rms_err"] = float(np.sqrt(np.mean((logits - float_logits) ** 2)))
        row["loss_mae"] = float(np.mean(np.abs(loss_fixed - cross_entropy_float(float_logits, labels))))
    return row


def value_ranges(net: TTNet, params: Params, images_u8: np.ndarray) -> dict[str, float]:
    """Largest |value| of cores, biases, hidden pre-activations and logits (float, given images)."""
    cores = np.concatenate([np.abs(c).ravel() for cs, _ in params for c in cs])
    biases = np.concatenate([np.abs(b).ravel() for _, b in params])
    h = images_to_float(images_u8)
    out: dict[str, float] = {"weight": float(cores.max()), "bias": float(biases.max())}
    for i, (spec, (cs, b)) in enumerate(zip(net.layers, params)):
        pre = tt_forward_float(spec.shape, cs, h, b, spec.contraction)
        out[f"layer{i}_out"] = float(np.abs(pre).max())
        h = apply_float(spec.activation, pre)
    return out


def sweep(data: MNIST, rank: int = 6, epochs: int = 3, lr: float = 0.05, batch: int = 64, seed: int = 0,
          candidates: dict[str, FixedConfig] | None = None, max_batches: int | None = None,
          n_test: int | None = None, log: Callable[[str], None] | None = None,
          params: Params | None = None) -> dict:
    """Train mnist_tt(rank) with FO SGD (momentum 0.9) in float, then evaluate every candidate.

    Pass `params` (trained float parameters of mnist_tt(rank)) to skip the training.
    """
    say = log or (lambda s: None)
    candidates = CANDIDATES if candidates is None else candidates
    net = mnist_tt(rank)
    t0 = time.perf_counter()
    hist: list[EpochStats] = []
    if params is None:
        params, hist = fo_train(net, net.init(np.random.default_rng(seed)), data.train_images, data.train_labels,
                                epochs=epochs, lr=lr, batch=batch, seed=seed, max_batches=max_batches,
                                log=lambda s: say(f"epoch {s.epoch}: loss {s.train_loss:.4f} ({s.seconds:.0f} s)"))
    train_s = time.perf_counter() - t0
    ti = data.test_images if n_test is None else data.test_images[:n_test]
    tl = data.test_labels if n_test is None else data.test_labels[:n_test]
    f_loss, f_acc = evaluate(net, params, ti, tl)
    float_logits = np.concatenate([forward_dense(net, params, images_to_float(ti[s:s + 2000]))
                                   for s in range(0, len(tl), 2000)])
    say(f"float test accuracy {f_acc:.4f}")
    rows = []
    for name, cfg in candidates.items():
        row = {"name": name, **fixed_eval(net, params, cfg, ti, tl, float_logits)}
        say(f"{name:22s} acc {row['acc']:.4f} agree {row['agree_float']:.4f} "
            f"logit rms err {row['logit_rms_err']:.5f} loss mae {row['loss_mae']:.5f} saturated {row['saturated']}")
        rows.append(row)
    return {"rank": rank, "epochs": epochs, "lr": lr, "batch": batch, "seed": seed, "max_batches": max_batches,
            "train_seconds": round(train_s, 1), "history": [vars(h) for h in hist],
            "float_test_acc": f_acc, "float_test_loss": f_loss, "test_count": int(len(tl)),
            "ranges": value_ranges(net, params, ti[:2000]), "rows": rows, "params": params}


def markdown_table(report: dict) -> str:
    """The sweep as a Markdown table (the one in docs/fixed-point.md)."""
    head = ["name", "weight", "bias", "state", "act", "test acc", "argmax = float", "logit RMS error",
            "loss mean abs error", "saturated (tensor: count)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["rows"]:
        c = r["config"]
        sat = ", ".join(f"{k}: {v['saturated']}" for k, v in r["overflow"].items() if v["saturated"]) or "0"
        lines.append(f"| {r['name']} | {c['weight']} | {c['bias']} | {c['state']} | {c['act']} | "
                     f"{100 * r['acc']:.2f}% | {100 * r['agree_float']:.2f}% | {r['logit_rms_err']:.4f} | "
                     f"{r['loss_mae']:.4f} | {sat} |")
    return "\n".join(lines)


__all__ = ["CANDIDATES", "fixed_eval", "sweep", "markdown_table", "value_ranges"]
