"""The MNIST training loop: epochs of shuffled batches, metrics, checkpoints, bit-exact resume.

`train_mnist(TrainConfig(...))` runs one optimizer (golden/optim.py) on the paper's TT-MLP
(or its dense 784-1024-10 baseline, `net="dense"`), float or fixed point, and writes into `out`:
  config.json, metrics.json + metrics.csv (one row per epoch: loss, running train accuracy of
  the unperturbed model on the epoch's batches, test loss/accuracy, forward evaluations and
  sample-forwards so far; `train_seconds` = wall time of this epoch's steps, `wall_seconds` =
  cumulative wall time incl. evaluation), curve.png (learning curve), checkpoint.npz (latest, also
  written on Ctrl-C mid-epoch) and checkpoint-eNNN.npz (end of each epoch).
A checkpoint holds the parameters, optimizer state (momentum, PRNG step counter, hybrid phase),
the data-order RNG state at the start of the current epoch, the next batch index and the
epoch's running sums, so `resume` continues exactly where the run stopped: same bits.
The step itself is behind `optim.Stepper`, so a board backend can replace the golden step.

A backend that holds theta itself (host/backend_board.BoardStepper) may have a `sync(st)` method;
the loop then sets its `lazy` flag, so after a step `st.theta` may be a placeholder for parameters
the backend has not read back, and calls `sync(st)` wherever it reads theta: at each epoch's end
(evaluation, checkpoints), on interrupt (checkpoint) and before returning.  Interrupts: the first
Ctrl-C stops the loop between two steps; a second one interrupts the step in flight, which is
rolled back (golden) or, if the backend cannot undo it (a board step updates theta in place), ends
with `StepFinished` and is counted; either way the checkpoint is at a step boundary.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import signal
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

from .formats import DEFAULT_CONFIG, FixedConfig
from .network import TTNet, dense_mlp, mnist_tt
from .optim import GoldenStepper, OptimConfig, OptState, Stepper, StepResult, end_of_epoch, initial_phase

CHECKPOINT = "checkpoint.npz"


class StepFinished(KeyboardInterrupt):
    """An interrupt arrived during a step the backend could not roll back, so it let the step finish:
    `st` holds the state after it and `result` its StepResult.  The loop counts the step, then stops
    at the next step boundary (as after a first Ctrl-C).  A KeyboardInterrupt, so other callers stop."""

    def __init__(self, result: StepResult) -> None:
        super().__init__()
        self.result = result


@dataclass
class TrainConfig:
    arith: str = "fixed"
    rank: int = 6
    epochs: int = 1
    seed: int = 0
    batch: int = 64
    out: str = "runs/mnist"
    data: str | None = None
    train_samples: int | None = None
    test_samples: int | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    formats: dict | None = None      # FixedConfig.to_dict(); None = DEFAULT_CONFIG
    net: str = "tt"                  # "tt": the paper's TT-MLP at `rank`; "dense": the 784-1024-10 dense MLP
    #: settings that change at epoch boundaries: [{"epoch": E, "optim": {...}, "batch": B}, ...]; entry E acts
    #: from the epoch that starts after E epochs on (as `branch_run` from checkpoint-e{E}.npz would)
    schedule: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.optim, dict):
            self.optim = OptimConfig(**self.optim)
        if self.arith not in ("float", "fixed"):
            raise ValueError(f"arith {self.arith!r}: use 'float' or 'fixed'")
        if self.net not in ("tt", "dense"):
            raise ValueError(f"net {self.net!r}: use 'tt' (TT-MLP) or 'dense' (784-1024-10 dense MLP)")
        for name in ("rank", "epochs", "batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        self.schedule = [check_schedule_entry(e, self.optim) for e in self.schedule]
        self.schedule.sort(key=lambda e: e["epoch"])

    def at_epoch(self, epoch: int) -> tuple[OptimConfig, int]:
        """The optimizer settings and batch size of epoch `epoch` (0-based): the base ones with every
        schedule entry of epoch <= `epoch` applied in order."""
        optim, batch = self.optim.to_dict(), self.batch
        for e in self.schedule:
            if e["epoch"] <= epoch:
                optim.update(e.get("optim", {}))
                batch = e.get("batch") or batch
        return OptimConfig(**optim), batch

    def network(self) -> TTNet:
        return mnist_tt(self.rank) if self.net == "tt" else dense_mlp()

    def fixed_config(self) -> FixedConfig | None:
        if self.arith != "fixed":
            return None
        return FixedConfig.from_dict(self.formats) if self.formats else DEFAULT_CONFIG

    def to_dict(self) -> dict:
        d = asdict(self)
        d["optim"] = self.optim.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training config fields: {sorted(unknown)}")
        return cls(**d)


def check_schedule_entry(entry: dict, base: OptimConfig) -> dict:
    """Validate one schedule entry {"epoch": E >= 1, "optim": {field: value}, "batch": B >= 1} (clear errors)."""
    if not isinstance(entry, dict):
        raise ValueError(f"schedule entry {entry!r}: expected a mapping with 'epoch' and 'optim' and/or 'batch'")
    extra = set(entry) - {"epoch", "optim", "batch"}
    if extra:
        raise ValueError(f"schedule entry {entry!r}: unknown keys {sorted(extra)} (use epoch, optim, batch)")
    epoch = entry.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise ValueError(f"schedule entry {entry!r}: 'epoch' must be an integer >= 1 (the number of epochs "
                         "completed when the change takes effect)")
    optim = dict(entry.get("optim") or {})
    unknown = set(optim) - set(base.to_dict())
    if unknown:
        raise ValueError(f"schedule entry at epoch {epoch}: unknown optimizer settings {sorted(unknown)}; "
                         f"known: {sorted(base.to_dict())}")
    OptimConfig(**{**base.to_dict(), **optim})   # each change must make a valid config on its own
    batch = entry.get("batch")
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise ValueError(f"schedule entry at epoch {epoch}: batch={batch!r} must be an integer >= 1")
    if not optim and batch is None:
        raise ValueError(f"schedule entry at epoch {epoch}: changes nothing (give optim settings and/or batch)")
    return {"epoch": epoch, "optim": optim, **({"batch": batch} if batch is not None else {})}


@dataclass
class TrainResult:
    out: Path
    metrics: list[dict]
    theta: np.ndarray
    interrupted: bool = False

    @property
    def final(self) -> dict:
        return self.metrics[-1] if self.metrics else {}


def machine() -> str:
    return f"{platform.node()}: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}, numpy {np.__version__}"


# --- checkpoints ------------------------------------------------------------------------------------
def save_checkpoint(path: Path, st: OptState, epoch: int, batch_index: int, rng_state: dict, sums: dict,
                    counters: dict, metrics: list[dict], config: TrainConfig) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, theta=st.theta, momentum=st.momentum, step=st.step, epoch=epoch, batch_index=batch_index,
             meta=json.dumps({"phase": st.phase, "best_loss": st.best_loss, "bad_epochs": st.bad_epochs,
                              "switch_epoch": st.switch_epoch, "rng_state": rng_state, "sums": sums,
                              "counters": counters, "metrics": metrics, "config": config.to_dict()}))
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    with np.load(path) as z:
        try:
            meta = json.loads(str(z["meta"]))
            ck = {k: z[k] for k in ("theta", "momentum", "step", "epoch", "batch_index")}
        except KeyError as exc:
            raise ValueError(f"{path}: not a ttzo training checkpoint (missing {exc})") from None
    ck.update(meta)
    return ck


def branch_run(checkpoint: Path, out: Path, optim_changes: dict, epochs: int | None = None,
               batch: int | None = None) -> dict:
    """Start run `out` from an epoch checkpoint of another run, with some optimizer settings changed.

    The new run's history (metrics, PRNG step, momentum, phase) is the source's up to that epoch;
    `ttzo train mnist --resume OUT` then continues it under the new settings (e.g. a CGE-lr floor
    or stochastic rounding from epoch k; `batch`: a new batch size from the next epoch on).  If the
    source has a schedule (`TrainConfig.schedule`), its settings at the branch point become the new
    base and its later entries stay (they still act at their epochs).  Returns the new config as a dict.
    """
    ck_path, out = Path(checkpoint), Path(out)
    ck = load_checkpoint(ck_path)
    if int(ck["batch_index"]) != 0:
        raise ValueError(f"{ck_path}: taken mid-epoch (batch {int(ck['batch_index'])}); branch from an epoch "
                         "checkpoint (checkpoint-eNNN.npz)")
    if (out / CHECKPOINT).exists():
        raise FileExistsError(f"{out / CHECKPOINT} exists: branch into a new directory")
    cfg = TrainConfig.from_dict(ck["config"])
    at = int(ck["epoch"])                     # a scheduled source: what acts at the branch point becomes the base
    cfg.optim, cfg.batch = cfg.at_epoch(at)
    cfg.schedule = [e for e in cfg.schedule if e["epoch"] > at]
    unknown = set(optim_changes) - set(cfg.optim.to_dict())
    if unknown:
        raise ValueError(f"unknown optimizer settings {sorted(unknown)}; known: {sorted(cfg.optim.to_dict())}")
    cfg.optim = OptimConfig(**{**cfg.optim.to_dict(), **optim_changes})
    cfg.out = str(out)
    if epochs is not None:
        cfg.epochs = max(epochs, int(ck["epoch"]))
    if batch is not None:
        if batch < 1:
            raise ValueError(f"batch={batch} must be >= 1")
        cfg.batch = batch
    with np.load(ck_path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["config"] = cfg.to_dict()
    meta["branched_from"] = {"checkpoint": str(ck_path.resolve()), "epoch": int(ck["epoch"]), "changes": optim_changes}
    arrays["meta"] = json.dumps(meta)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (CHECKPOINT + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out / CHECKPOINT)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    return cfg.to_dict()


# --- comparing runs ---------------------------------------------------------------------------------
#: per-epoch metrics that measure the machine, not the run (left out when runs are compared)
TIME_KEYS = ("train_seconds", "wall_seconds")


def compare_runs(a: Path, b: Path) -> dict:
    """Compare two runs' per-epoch metrics key by key, times left out: how many leading epochs agree, and
    the first that does not (e.g. a scheduled run against the chain of branches it replaces)."""
    rows = []
    for run in (Path(a), Path(b)):
        try:
            rows.append(json.loads((run / "metrics.json").read_text())["epochs"])
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"{run}: no readable metrics.json with 'epochs' ({exc})") from None
    same, first_diff = 0, None
    for ra, rb in zip(*rows):
        da = {k: v for k, v in ra.items() if k not in TIME_KEYS}
        db = {k: v for k, v in rb.items() if k not in TIME_KEYS}
        if da != db:
            first_diff = {"epoch": ra.get("epoch", same) + 1,
                          "differences": {k: [da.get(k), db.get(k)] for k in sorted(set(da) | set(db))
                                          if da.get(k) != db.get(k)}}
            break
        same += 1
    return {"epochs_a": len(rows[0]), "epochs_b": len(rows[1]), "identical_epochs": same, "first_difference": first_diff}


# --- outputs ----------------------------------------------------------------------------------------
def write_metrics(out: Path, config: TrainConfig, metrics: list[dict], extra: dict) -> None:
    doc = {"config": config.to_dict(), "machine": machine(), "epochs": metrics, **extra}
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, out / "metrics.json")
    if metrics:
        with open(out / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(metrics[0]))
            w.writeheader()
            w.writerows(metrics)


def plot_curve(out: Path, metrics: list[dict], title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if not metrics:
        return
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ev = [m["evaluations"] for m in metrics]
    ax[0].plot([m["epoch"] + 1 for m in metrics], [m["train_loss"] for m in metrics], "o-", label="train loss")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("loss")
    ax[0].legend()
    ax[1].semilogx(ev, [100 * m["test_acc"] for m in metrics], "o-", label="test")
    ax[1].semilogx(ev, [100 * m["train_acc"] for m in metrics], "s--", label="train (running)")
    ax[1].set_xlabel("forward evaluations")
    ax[1].set_ylabel("accuracy %")
    ax[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=100)
    plt.close(fig)


# --- the loop -----------------------------------------------------------------------------------------
def train_mnist(config: TrainConfig, resume: bool = False, data=None, progress: bool = True,
                stepper: Stepper | None = None, stop_after: int | None = None,
                log: Callable[[dict], None] | None = None) -> TrainResult:
    """Train the TT-MLP on MNIST as configured; `resume` continues from config.out/checkpoint.npz.

    `data`: an object with train_images/train_labels/test_images/test_labels (default: load_mnist).
    `stop_after`: stop (as on Ctrl-C, leaving a checkpoint) after this many steps of this call (tests).
    """
    out = Path(config.out)
    ck = None
    if resume:
        ck = load_checkpoint(out / CHECKPOINT)
        saved = TrainConfig.from_dict(ck["config"])
        saved.epochs = max(saved.epochs, config.epochs) if config.epochs else saved.epochs
        saved.out, saved.data = config.out, config.data or saved.data
        config = saved
    if config.arith == "fixed" and not config.formats:
        config.formats = DEFAULT_CONFIG.to_dict()  # record the formats used, so a resume uses the same
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    if data is None:
        from .mnist import load_mnist
        data = load_mnist(config.data)
    Xtr, Ytr = data.train_images, data.train_labels.astype(np.int64)
    Xte, Yte = data.test_images, data.test_labels.astype(np.int64)
    if config.train_samples:
        Xtr, Ytr = Xtr[:config.train_samples], Ytr[:config.train_samples]
    if config.test_samples:
        Xte, Yte = Xte[:config.test_samples], Yte[:config.test_samples]

    net = config.network()
    fixed = config.fixed_config()
    if config.schedule and stepper is not None:
        raise ValueError("a training schedule (settings changing at epochs) runs on the golden stepper only")
    start_epoch = int(ck["epoch"]) if ck is not None else 0
    oc, batch = config.at_epoch(start_epoch)
    golden = GoldenStepper(net, oc, config.seed, batch, fixed)
    stepper = stepper or golden
    rng = np.random.default_rng(config.seed)
    if ck is None:
        params = net.init(np.random.default_rng([config.seed, 1]))
        theta = net.flatten(net.quantize(params, fixed)).astype(np.int64) if fixed else net.flatten(params)
        st = OptState(theta=theta, momentum=np.zeros_like(theta), phase=initial_phase(oc))
        epoch, batch_index, metrics = 0, 0, []
        sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        counters = {"evaluations": 0, "sample_forwards": 0, "steps": 0, "seconds": 0.0}
        rng_state = rng.bit_generator.state
    else:
        st = OptState(theta=ck["theta"], momentum=ck["momentum"], step=int(ck["step"]), phase=ck["phase"],
                      best_loss=float(ck["best_loss"]), bad_epochs=int(ck["bad_epochs"]),
                      switch_epoch=ck["switch_epoch"])
        epoch, batch_index = int(ck["epoch"]), int(ck["batch_index"])
        sums, counters, metrics, rng_state = ck["sums"], ck["counters"], ck["metrics"], ck["rng_state"]
    # per phase: what is known now is refused now; an epoch whose phase depends on the switch rule
    # is checked when it starts (the checkpoint of the epoch boundary is then intact)
    _check_segments(config, net, fixed, st, epoch)

    n = len(Ytr)
    nb = (n + batch - 1) // batch
    title = f"{config.arith} {oc.optimizer} {'dense' if config.net == 'dense' else f'r={config.rank}'} seed={config.seed}"
    interrupted = False
    steps_this_call = 0
    bar = None
    if progress:
        from tqdm import tqdm
        steps = [(n + config.at_epoch(e)[1] - 1) // config.at_epoch(e)[1] for e in range(config.epochs)]
        bar = tqdm(total=sum(steps), initial=sum(steps[:epoch]) + batch_index, desc=title, unit="step",
                   dynamic_ncols=True)

    def checkpoint(ep: int, bi: int) -> None:
        save_checkpoint(out / CHECKPOINT, st, ep, bi, rng_state, sums, counters, metrics, config)

    # a backend that holds theta (the board) reads it back only where the loop needs it (module docstring)
    sync = getattr(stepper, "sync", None)
    was_lazy = getattr(stepper, "lazy", False)
    if sync is not None:
        stepper.lazy = True

    def current_theta() -> None:
        if sync is not None:
            sync(st)

    stop = _StopFlag()
    try:
        while epoch < config.epochs:
            if config.schedule and config.at_epoch(epoch) != (oc, batch):
                oc, batch = config.at_epoch(epoch)
                golden = stepper = GoldenStepper(net, oc, config.seed, batch, fixed)
                nb = (n + batch - 1) // batch
            golden.check_epoch(st, epoch)
            rng.bit_generator.state = rng_state
            perm = rng.permutation(n)
            next_state = rng.bit_generator.state
            t_epoch = time.perf_counter()
            while batch_index < nb:
                if stop.requested or (stop_after is not None and steps_this_call >= stop_after):
                    raise KeyboardInterrupt
                idx = perm[batch_index * batch:(batch_index + 1) * batch]
                if batch_index + 1 < nb and hasattr(stepper, "prefetch"):   # lookahead: a board uploads the
                    nxt = perm[(batch_index + 1) * batch:(batch_index + 2) * batch]   # next batch during this step
                    stepper.prefetch(Xtr[nxt], Ytr[nxt])
                before = (st.theta, st.momentum, st.step)
                try:
                    r = stepper.step(st, Xtr[idx], Ytr[idx], epoch)
                except StepFinished as done:  # the backend could not undo the step: count it, then stop
                    r = done.result
                    stop.requested = True
                except KeyboardInterrupt:
                    st.theta, st.momentum, st.step = before  # steps replace arrays, never edit them in place
                    raise
                batch_index += 1
                steps_this_call += 1
                sums["loss"] += r.loss * len(idx)
                sums["correct"] += r.correct
                sums["seen"] += len(idx)
                counters["evaluations"] += r.evaluations
                counters["sample_forwards"] += r.evaluations * len(idx)
                counters["steps"] += 1
                if bar is not None:
                    bar.update(1)
                    if batch_index % 20 == 0:
                        bar.set_postfix(loss=f"{sums['loss'] / max(1, sums['seen']):.3f}",
                                        acc=f"{sums['correct'] / max(1, sums['seen']):.3f}", phase=st.phase)
            dt = time.perf_counter() - t_epoch
            sums["seconds"] += dt
            counters["seconds"] += dt
            t_eval = time.perf_counter()
            current_theta()
            test_loss, test_acc = golden.evaluate(st.theta, Xte, Yte)
            row = {"epoch": epoch, "phase": st.phase, "lr": golden.phase_lr(st, epoch),
                   "train_loss": sums["loss"] / max(1, sums["seen"]),
                   "train_acc": sums["correct"] / max(1, sums["seen"]),
                   "test_loss": test_loss, "test_acc": test_acc,
                   "evaluations": counters["evaluations"], "sample_forwards": counters["sample_forwards"],
                   "steps": counters["steps"], "train_seconds": sums["seconds"],
                   "wall_seconds": counters["seconds"] + (time.perf_counter() - t_eval)}
            counters["seconds"] += time.perf_counter() - t_eval
            metrics.append(row)
            end_of_epoch(oc, st, epoch, row["train_loss"])
            epoch += 1
            batch_index = 0
            sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
            rng_state = next_state
            checkpoint(epoch, 0)
            save_checkpoint(out / f"checkpoint-e{epoch:03d}.npz", st, epoch, 0, rng_state, sums, counters,
                            metrics, config)
            write_metrics(out, config, metrics, {"switch_epoch": st.switch_epoch})
            plot_curve(out, metrics, title)
            if log is not None:
                log(row)
            if bar is not None:
                bar.write(f"epoch {epoch}: loss {row['train_loss']:.4f} train {100 * row['train_acc']:.2f}% "
                          f"test {100 * test_acc:.2f}% evals {row['evaluations']} ({row['wall_seconds']:.0f} s)")
        current_theta()
    except KeyboardInterrupt:
        interrupted = True
        current_theta()        # may fail if the backend lost theta: the last checkpoint then stays as it is
        checkpoint(epoch, batch_index)
        write_metrics(out, config, metrics, {"switch_epoch": st.switch_epoch, "interrupted_at":
                                             {"epoch": epoch, "batch": batch_index}})
    finally:
        stop.restore()
        if sync is not None:
            stepper.lazy = was_lazy
        if bar is not None:
            bar.close()
    return TrainResult(out, metrics, st.theta, interrupted)


def _check_segments(config: TrainConfig, net: TTNet, fixed: FixedConfig | None, st: OptState, start: int) -> None:
    """Refuse before training a schedule whose fixed-point steps round to 0 LSB, segment by segment.

    A later segment (settings from a schedule entry) is checked now when its phase is known in
    advance (already in CGE, or a fixed switch epoch before it, or a single-phase optimizer);
    otherwise (a patience switch) its epochs are checked as they start (`check_epoch`).
    """
    bounds = sorted({start, config.epochs, *(e["epoch"] for e in config.schedule if start < e["epoch"] < config.epochs)})
    for a, b in zip(bounds, bounds[1:]):
        oc, batch = config.at_epoch(a)
        g = GoldenStepper(net, oc, config.seed, batch, fixed)
        if a == start or st.phase != "signrge" or oc.optimizer != "hybrid":
            g.check_schedule(b, st, a)
        elif oc.switch_epoch is not None:
            switch = max(oc.switch_epoch, start + 1)
            if switch <= a:
                g.check_schedule(b, OptState(np.zeros(1), np.zeros(1), phase="cge", switch_epoch=switch), a)
            else:                                   # signRGE until the switch: the stepper predicts it
                g.check_schedule(b, st, a)


class _StopFlag:
    """Ctrl-C / SIGTERM during training only set a flag; the loop stops between two steps.

    So an interrupt can never fall between a finished step and its bookkeeping (which would make
    the checkpoint repeat or skip a batch).  A second signal interrupts at once: the step in
    flight is rolled back, or finished and counted by a backend that cannot undo it (a board,
    `StepFinished`).  Only installed in the main thread.
    """

    def __init__(self) -> None:
        self.requested = False
        self._old: dict = {}
        import threading
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)
        self._old.clear()


def install_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so a killed run also leaves its checkpoint."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
