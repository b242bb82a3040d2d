"""Optimizer configuration, learning-rate schedule, the hybrid switch rule and the step interface.

`OptimConfig` holds every hyperparameter (paper defaults: batch 64, mu 0.1, N 10; fine-tune
mu 0.01, m 0.9; lr decay x0.9 every 10 epochs).  `OptState` is everything a resumed run needs:
parameters (float values or integer codes), CGE momentum, the PRNG step counter (one per
optimizer step, it seeds the perturbation streams), the phase and the switch-rule memory.

A `Stepper` performs one optimizer step on one batch.  `GoldenStepper` is this numpy model
(float or the integer step of golden/zo_fixed.py); a board backend (issue 8) implements the
same `step` by sending the batch to the chip.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from . import zo, zo_fixed
from .fastforward import NetEvaluator
from .fixed import FormatError
from .formats import FixedConfig
from .network import TTNet

OPTIMIZERS = ("fo", "rge", "signrge", "cge", "hybrid")
CGE_ROUNDINGS = ("nearest", "stochastic")


@dataclass
class OptimConfig:
    optimizer: str = "hybrid"
    lr: float = 0.005            # signRGE / RGE step (signRGE: per-coordinate step size alpha)
    mu: float = 0.1              # RGE/signRGE smoothing
    queries: int = 10            # N perturbations per step
    perturbation: str = "rademacher"
    central: bool = False
    cge_lr: float = 0.001
    cge_mu: float = 0.01
    momentum: float = 0.9
    cge_fraction: float = 1.0    # probability that CGE visits a coordinate in a step (authors: 0.5)
    lr_decay: float = 0.9
    lr_decay_every: int = 10
    cge_lr_min: float = 0.0           # floor of the decayed CGE lr (0: none): decay fast, then hold
    cge_rounding: str = "nearest"     # fixed-point CGE update rounding: "nearest" (half up) or "stochastic"
    switch_epoch: int | None = None   # hybrid: switch to CGE at this epoch (0-based) ...
    patience: int | None = 2          # ... or when the epoch train loss has not improved for this many epochs
    fo_lr: float = 0.05               # first-order baseline (SGD with momentum)
    fo_momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r}: choose from {', '.join(OPTIMIZERS)}")
        if self.perturbation not in ("rademacher", "gaussian"):
            raise ValueError(f"perturbation {self.perturbation!r}: use 'rademacher' or 'gaussian'")
        if not 1 <= self.queries < 2048:
            raise ValueError(f"queries={self.queries} outside 1..2047")
        if not 0 < self.cge_fraction <= 1:
            raise ValueError(f"cge_fraction={self.cge_fraction} outside (0, 1]")
        if self.cge_rounding not in CGE_ROUNDINGS:
            raise ValueError(f"cge_rounding {self.cge_rounding!r}: use one of {', '.join(CGE_ROUNDINGS)}")
        if not 0 <= self.cge_lr_min <= self.cge_lr:
            raise ValueError(f"cge_lr_min={self.cge_lr_min} outside [0, cge_lr={self.cge_lr}]")
        for name in ("lr", "mu", "cge_lr", "cge_mu", "fo_lr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class OptState:
    theta: np.ndarray
    momentum: np.ndarray
    step: int = 0                       # PRNG step counter (optimizer steps taken)
    phase: str = "signrge"
    best_loss: float = float("inf")
    bad_epochs: int = 0
    switch_epoch: int | None = None     # epoch at which the hybrid switched (None: not yet)
    history: list = field(default_factory=list)


def initial_phase(cfg: OptimConfig) -> str:
    return "signrge" if cfg.optimizer == "hybrid" else cfg.optimizer


def lr_at(base: float, epochs_in_phase: int, decay: float, every: int) -> float:
    """Step decay: base * decay^floor(epochs_in_phase / every)."""
    return base * decay ** (epochs_in_phase // max(1, every))


def end_of_epoch(cfg: OptimConfig, st: OptState, epoch: int, epoch_loss: float) -> bool:
    """Apply the hybrid switch rule after `epoch`; returns True when it switched to CGE."""
    if cfg.optimizer != "hybrid" or st.phase != "signrge":
        return False
    improved = epoch_loss < st.best_loss
    st.best_loss = min(st.best_loss, epoch_loss)
    st.bad_epochs = 0 if improved else st.bad_epochs + 1
    if cfg.switch_epoch is not None:
        switch = epoch + 1 >= cfg.switch_epoch
    else:
        switch = cfg.patience is not None and st.bad_epochs >= cfg.patience
    if switch:
        st.phase = "cge"
        st.switch_epoch = epoch + 1
    return switch


@dataclass
class StepResult:
    loss: float          # unperturbed batch loss (float: mean CE; fixed: per-sample mean of the loss codes' value)
    correct: int         # correctly classified samples of the batch (unperturbed model)
    evaluations: int     # forward evaluations of this step


class Stepper(Protocol):
    def step(self, st: OptState, x: np.ndarray, y: np.ndarray, epoch: int) -> StepResult: ...


class _Objective:
    """Batched loss of one batch for the estimators, remembering the unperturbed logits."""

    def __init__(self, ev: NetEvaluator, x: np.ndarray, y: np.ndarray) -> None:
        self.ev, self.x, self.y = ev, x, y
        self.logits0: np.ndarray | None = None

    def __call__(self, thetas: np.ndarray) -> np.ndarray:
        z = self.ev.logits(np.asarray(thetas, dtype=np.float64), self.x)
        if self.logits0 is None:
            self.logits0 = z[0]
        return self.ev.batch_loss(z, self.y)

    def coordinate_losses(self, theta: np.ndarray, coords: np.ndarray, values: np.ndarray) -> np.ndarray:
        return self.ev.coordinate_losses(np.asarray(theta, dtype=np.float64), coords, values, self.x, self.y)


class GoldenStepper:
    """One optimizer step of the numpy golden model; fixed point when `fixed` is a FixedConfig."""

    def __init__(self, net: TTNet, cfg: OptimConfig, seed: int, batch: int, fixed: FixedConfig | None) -> None:
        self.net, self.cfg, self.seed, self.batch, self.fixed = net, cfg, seed, batch, fixed
        self.ev = NetEvaluator(net, fixed)
        if fixed is None and cfg.cge_rounding != "nearest":
            raise FormatError("--cge-rounding stochastic rounds the integer update: use --arith fixed")
        if fixed is not None:
            if cfg.optimizer == "fo":
                raise FormatError("the first-order baseline is float only (use --arith float)")
            if cfg.optimizer == "rge" and cfg.perturbation != "rademacher":
                raise FormatError("fixed-point RGE is defined for Rademacher perturbations only")
            self.pf = zo_fixed.ParamFormats.of(net, fixed)
            self.mu_codes = self.pf.codes(cfg.mu, "mu")

    # --- per-epoch constants ---------------------------------------------------------------------
    def phase_lr(self, st: OptState, epoch: int) -> float:
        if st.phase == "cge":
            start = st.switch_epoch or 0
            return max(lr_at(self.cfg.cge_lr, epoch - start, self.cfg.lr_decay, self.cfg.lr_decay_every),
                       self.cfg.cge_lr_min)
        if st.phase == "fo":
            return lr_at(self.cfg.fo_lr, epoch, self.cfg.lr_decay, self.cfg.lr_decay_every)
        return lr_at(self.cfg.lr, epoch, self.cfg.lr_decay, self.cfg.lr_decay_every)

    def schedule_epochs(self, epochs: int, st: OptState | None = None, start: int = 0
                        ) -> tuple[range, range]:
        """Epochs known before training to be signRGE, and the CGE phase's possible epochs-in-phase.

        The hybrid is in signRGE up to its earliest possible switch and in CGE at most from
        then to the end; a patience switch happens no earlier than `patience` non-improving
        epochs after `start` (a fresh run's first epoch always improves).  `st`/`start`: the
        state and epoch a (resumed) run starts from.
        """
        cfg = self.cfg
        phase = st.phase if st is not None else initial_phase(cfg)
        if phase == "cge":
            switch = (st.switch_epoch or 0) if st is not None else 0
            return range(0), range(max(0, start - switch), max(0, epochs - switch))
        if phase != "signrge":
            return range(0), range(0)
        if cfg.optimizer != "hybrid":
            return range(start, epochs), range(0)
        if cfg.switch_epoch is not None:
            switch = max(cfg.switch_epoch, start + 1)          # end_of_epoch switches after >= 1 epoch
        elif cfg.patience is not None:
            fresh = st is None or not np.isfinite(st.best_loss)
            bad = 0 if st is None else st.bad_epochs
            switch = start + 1 + cfg.patience if fresh else start + max(1, cfg.patience - bad)
        else:
            return range(start, epochs), range(0)                # never switches
        return range(start, min(switch, epochs)), range(0, max(0, epochs - switch))

    def check_schedule(self, epochs: int, st: OptState | None = None, start: int = 0) -> None:
        """Refuse (before training) a schedule whose fixed-point step codes would round to 0 LSB.

        Per phase: signRGE's lr only over the epochs that are certainly signRGE, CGE's over
        every epoch its phase can reach.  Epochs whose phase is not known in advance (a
        patience switch) are checked when they start (`check_epoch`).
        """
        if self.fixed is None:
            return
        sig, cge = self.schedule_epochs(epochs, st, start)
        for e in sig:
            self.check_epoch(OptState(np.zeros(1), np.zeros(1), phase="signrge"), e)
        for e in cge:
            self.check_epoch(OptState(np.zeros(1), np.zeros(1), phase="cge", switch_epoch=0), e,
                             label=f"CGE phase epoch {e}")

    def check_epoch(self, st: OptState, epoch: int, label: str | None = None) -> None:
        """Refuse (FormatError) epoch `epoch` if its phase's lr has no fixed-point code (0 LSB)."""
        if self.fixed is None or st.phase not in ("signrge", "cge"):
            return
        lr = self.phase_lr(st, epoch)
        where = label or f"epoch {epoch}"
        try:
            if st.phase == "signrge":
                self.pf.codes(lr, f"signRGE lr at {where}")
            else:
                zo_fixed.CGEConstants.make(self.pf, lr, self.cfg.cge_mu, self.cfg.momentum, self.batch,
                                           self.fixed.loss.frac)
        except FormatError as exc:
            raise FormatError(f"{st.phase} phase, {where} (lr {lr:g}): {exc}") from None

    # --- one step ----------------------------------------------------------------------------------------
    def step(self, st: OptState, x: np.ndarray, y: np.ndarray, epoch: int) -> StepResult:
        cfg = self.cfg
        xin = x if self.fixed is not None else np.asarray(x, dtype=np.float64) / 256.0
        obj = _Objective(self.ev, xin, y)
        lr = self.phase_lr(st, epoch)
        B = len(y)
        if st.phase == "fo":
            from .fo import loss_and_grad
            loss, grads, logits = loss_and_grad(self.net, self.net.unflatten(st.theta), xin, y)
            st.momentum = cfg.fo_momentum * st.momentum + self.net.flatten(grads)
            st.theta = st.theta - lr * st.momentum
            st.step += 1
            return StepResult(float(loss), int(np.sum(np.argmax(logits, -1) == y)), 1)
        if self.fixed is None:
            if st.phase in ("rge", "signrge"):
                xi = zo.directions(self.seed, st.step, cfg.queries, st.theta.size, cfg.perturbation)
                est = (zo.sign_rge if st.phase == "signrge" else zo.rge)(obj, st.theta, cfg.mu, xi, cfg.central)
                st.theta = st.theta - lr * est.grad
            else:
                coords = zo.sample_coordinates(self.seed, st.step, st.theta.size, cfg.cge_fraction)
                est = zo.cge(obj, st.theta, cfg.cge_mu, coords)
                st.momentum = cfg.momentum * st.momentum + est.grad
                st.theta = st.theta - lr * st.momentum
            st.step += 1
            return StepResult(est.loss0, int(np.sum(np.argmax(obj.logits0, -1) == y)), est.evaluations)
        # fixed point: integer codes
        theta = st.theta.astype(np.int64)
        if st.phase == "rge":
            new, info = zo_fixed.rge_step(obj, theta, self.seed, st.step, cfg.queries, self.mu_codes, lr, B,
                                          self.fixed.loss.frac, self.pf, cfg.central)
        elif st.phase == "signrge":
            alpha = self.pf.codes(lr, "lr")
            new, info = zo_fixed.signrge_step(obj, theta, self.seed, st.step, cfg.queries, self.mu_codes, alpha,
                                              self.pf, cfg.perturbation, cfg.central)
        else:
            c = zo_fixed.CGEConstants.make(self.pf, lr, cfg.cge_mu, cfg.momentum, self.batch, self.fixed.loss.frac)
            coords = zo.sample_coordinates(self.seed, st.step, theta.size, cfg.cge_fraction)
            words = (zo_fixed.stochastic_rounding_words(self.seed, st.step, theta.size)
                     if cfg.cge_rounding == "stochastic" else None)
            new, b, info = zo_fixed.cge_step(obj, theta, st.momentum.astype(np.int64), coords, c, self.pf,
                                             obj.coordinate_losses, words)
            st.momentum = b
        st.theta = new
        st.step += 1
        loss = info.loss0 * self.fixed.loss.lsb / B
        return StepResult(loss, int(np.sum(np.argmax(obj.logits0, -1) == y)), info.evaluations)

    # --- evaluation ------------------------------------------------------------------------------------
    def evaluate(self, theta: np.ndarray, images: np.ndarray, labels: np.ndarray, chunk: int = 1000
                 ) -> tuple[float, float]:
        """(mean loss, accuracy) of the model on a dataset (fixed: the chip's integer loss and argmax)."""
        tot, correct = 0.0, 0
        for s in range(0, len(labels), chunk):
            xb = images[s:s + chunk]
            xin = xb if self.fixed is not None else np.asarray(xb, dtype=np.float64) / 256.0
            z = self.ev.logits(theta.astype(np.float64), xin)
            per = self.ev.per_sample_loss(z, labels[s:s + chunk])
            tot += float(per.sum()) * (self.fixed.loss.lsb if self.fixed is not None else 1.0)
            correct += int(np.sum(np.argmax(z, -1) == labels[s:s + chunk]))
        n = max(1, len(labels))
        return tot / n, correct / n
