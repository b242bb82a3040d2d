"""Training loop of the HJB-20 PINN: ZO-signRGE or ZO-RGE (BP-free), hybrid, or a first-order baseline.

Every step draws `points` fresh uniform collocation points (the authors use 100), builds the
estimator's node rule (SG: the fixed level-3 grid; MC: fresh antithetic directions; FD: the
+-h e_i stencil) and minimises the mean squared HJB residual.

* signrge: theta <- theta - lr * sign(g), g the central-difference RGE of B's golden/zo.py
  with N directions of radius mu (paper: mu = 0.1, N = 10), directions from the hardware PRNG;
* rge:     theta <- theta - lr * v, v = rge_momentum * v + g (heavy ball; rge_momentum 0: plain
  ZO-RGE, eq. 2).  The step carries g's magnitude: under the ansatz NN = 0 is exact and has zero
  residual at every collocation point, so near the solution the update noise shrinks with the
  gradient, unlike signRGE's steps of +-lr on every coordinate;
* hybrid:  signrge for `switch` steps, then the fine stage `fine`: ZO-CGE on a random coordinate
  subset with momentum (the paper's fine-tuning stage; expensive, d + 1 evaluations per full
  sweep), or ZO-RGE as above; the fine stage's learning rate is `cge_lr`, decaying like `lr`;
  or ZO Gauss-Newton ("gn", golden/hjb_gn.py: the output layer's residual Jacobian from 1 + 769
  forward queries on `gn_points` fresh points, then Levenberg-Marquardt on the host; delta32 only);
* fo:      Adam on the exact gradient of the same (SG/MC/FD) loss by float autodiff (jax, an
  optional extra), i.e. the paper's Table 4 "FO + estimator" rows.

The learning rate decays exponentially from `lr` to `lr_final` over the run.  The float loss is
float32, float64 or delta32 (`hjb.DeltaHJB`: node differences carried exactly in float32, the
choice for ZO near a trained network); `average_tail` also reports the validation MSE of the mean
of the last iterates; SIGTERM / SIGINT stop a run with a checkpoint and its final metrics.  Outputs in
`out/`: metrics.json (config, per-log rows, final figures, wall time, machine; "evals" counts
loss evaluations times collocation points, i.e. network forwards / the rule's node count), checkpoint.npz
(theta, step; `--resume` continues from it) and diagonal.png (u along x_i = t = s against the
exact solution).
"""
from __future__ import annotations

import json
import os
import platform
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import hjb
from .formats import PINN_CONFIG, FixedConfig

OPTIMIZERS = ("signrge", "rge", "hybrid", "fo")
FINE_STAGES = ("cge", "rge", "gn")
ARITHS = ("float", "fixed")
DTYPES = ("float32", "float64", "delta32")
CGE_LAYERS = ("all", "last")


@dataclass
class HJBTrainConfig:
    estimator: str = "sg"
    optimizer: str = "signrge"
    arith: str = "float"
    net: str = "tt"
    steps: int = 2000
    points: int = 100          # collocation points per step
    lr: float = 2e-3
    lr_final: float = 2e-5
    mu: float = 0.1
    mu_is_radius: bool = True  # mu is the radius |mu xi| (xi ~ N(0, I/d)); False: per-entry (xi ~ N(0, I))
    queries: int = 10          # N
    central: bool = True
    perturbation: str = "gaussian"
    switch: int = 0            # hybrid: step at which signRGE hands over to CGE (0: 80% of steps)
    cge_fraction: float = 0.02
    average_tail: float = 0.0  # > 0: also report the mean of theta over the last average_tail of the steps
    cge_layers: str = "all"    # hybrid: CGE visits coordinates of all layers, or only the output layer ("last")
    cge_mu: float = 0.0        # hybrid CGE: coordinate step (0: the RGE's per-entry mu); see _one_step
    cge_lr: float = 1e-3       # hybrid: learning rate of the fine stage (CGE or RGE), decays like lr
    momentum: float = 0.9      # hybrid: CGE momentum
    fine: str = "cge"          # hybrid: fine stage after the switch, "cge" (paper) or "rge"
    rge_momentum: float = 0.0  # rge (and hybrid with fine="rge"): heavy-ball momentum of the RGE step
    gn_points: int = 0         # hybrid with fine="gn": collocation points per GN step (0: `points`)
    gn_lambda: float = 1e-6    # hybrid GN: initial Levenberg-Marquardt damping (adapted, carried across steps)
    gn_inner: int = 3          # hybrid GN: LM iterations per step on the step's queried (affine) Stein map
    gn_mu: float = 1e-3        # hybrid GN: finite-difference step of the Jacobian's queries
    gn_central: bool = False   # hybrid GN: central differences (1 + 2K queries instead of 1 + K)
    seed: int = 0
    val_points: int = 10000
    log_every: int = 10
    ckpt_every: int = 50
    dtype: str = "float32"     # training loss: float32, float64, or delta32 (hjb.DeltaHJB; validation is float64)
    f64_from: float = 0.75     # fraction of the steps after which the loss switches to float64
    fixed_config: dict = field(default_factory=lambda: hjb.HJB_FIXED_CONFIG.to_dict())
    fixed_sine: str = "interp"  # "table" (the contract's plain table sine) or "interp" (linear interpolation)

    def validate(self) -> None:
        if self.estimator not in hjb.ESTIMATORS:
            raise ValueError(f"estimator {self.estimator!r}: choose from {hjb.ESTIMATORS}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r}: choose from {OPTIMIZERS}")
        if self.arith not in ARITHS:
            raise ValueError(f"arith {self.arith!r}: choose from {ARITHS}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r}: choose from {DTYPES}")
        if self.fine not in FINE_STAGES:
            raise ValueError(f"fine {self.fine!r}: choose from {FINE_STAGES}")
        if not 0.0 <= self.rge_momentum < 1.0:
            raise ValueError(f"rge_momentum {self.rge_momentum} must be in [0, 1)")
        if self.cge_layers not in CGE_LAYERS:
            raise ValueError(f"cge_layers {self.cge_layers!r}: choose from {CGE_LAYERS}")
        if self.fixed_sine not in hjb.SINE_MODES:
            raise ValueError(f"fixed_sine {self.fixed_sine!r}: choose from {hjb.SINE_MODES}")
        if self.steps < 0 or self.points < 1 or self.queries < 1 or self.val_points < 1:
            raise ValueError("steps >= 0, points >= 1, queries >= 1 and val_points >= 1 are required")
        if not 0.0 <= self.average_tail <= 1.0:
            raise ValueError(f"average_tail {self.average_tail} must be in [0, 1]")
        if self.cge_mu < 0:
            raise ValueError(f"cge_mu {self.cge_mu} must be >= 0 (0: the RGE's per-entry mu)")
        if not (self.lr > 0 and self.lr_final > 0 and self.mu > 0):
            raise ValueError("lr, lr_final and mu must be positive")
        if self.fine == "gn" and self.optimizer == "hybrid" and (self.arith != "float" or self.dtype != "delta32"):
            raise ValueError("fine 'gn' needs --arith float --dtype delta32 (the output layer's exact fast path)")
        if self.gn_points < 0 or self.gn_inner < 1 or self.gn_lambda < 0 or self.gn_mu <= 0:
            raise ValueError("gn_points >= 0, gn_inner >= 1, gn_lambda >= 0 and gn_mu > 0 are required")
        if self.optimizer == "fo" and self.arith == "fixed":
            raise ValueError("the first-order baseline runs in float only (--arith float)")


def lr_at(cfg: HJBTrainConfig, step: int, base: float | None = None) -> float:
    base = cfg.lr if base is None else base
    if cfg.steps <= 1:
        return base
    return base * (cfg.lr_final / cfg.lr) ** (step / (cfg.steps - 1))


def active_lr(cfg: HJBTrainConfig, step: int, switch: int) -> float:
    """The learning rate the optimiser uses at `step` (hybrid: the fine stage's from `switch` on)."""
    if cfg.optimizer == "hybrid" and step >= switch:
        return lr_at(cfg, step, cfg.cge_lr)
    return lr_at(cfg, step)


def machine() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


# ------------------------------------------------------------------------------------------------
# Model wrappers
# ------------------------------------------------------------------------------------------------

def make_model(cfg: HJBTrainConfig, net):
    if cfg.arith == "fixed":
        return hjb.FixedHJB(net, FixedConfig.from_dict(cfg.fixed_config), sine=cfg.fixed_sine)
    if cfg.dtype == "delta32":
        return hjb.DeltaHJB(net, np.float32)
    return hjb.FloatHJB(net, np.float32 if cfg.dtype == "float32" else np.float64)


def step_rule(cfg: HJBTrainConfig, rng: np.random.Generator):
    return hjb.estimator_factors(cfg.estimator, rng)


def diagonal_plot(path: Path, model, params, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s = np.linspace(0.0, 1.0, 101)
    xt = np.repeat(s[:, None], hjb.D, axis=1)
    u = model.u(params, xt)
    ex = hjb.exact_u(xt)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(s, ex, "k-", label="exact |x|_1 + 1 - t")
    a1.plot(s, u, "r--", label="network")
    a1.set_xlabel("s  (x_i = t = s)")
    a1.set_ylabel("u")
    a1.legend()
    a2.plot(s, u - ex, "b-")
    a2.set_xlabel("s")
    a2.set_ylabel("u - exact")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------

def train_hjb(cfg: HJBTrainConfig, out: Path, resume: bool = False, progress: bool = True,
              log: Callable[[str], None] = print) -> dict:
    """Run (or continue) a training; returns the final metrics dictionary (also in out/metrics.json)."""
    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    net = hjb.make_net(cfg.net)
    model = make_model(cfg, net)
    rng_init = np.random.default_rng(cfg.seed)
    theta = net.flatten(hjb.init_params(net, rng_init))
    val_xt = hjb.sample_points(np.random.default_rng(cfg.seed + 10_000), cfg.val_points)
    rows: list[dict] = []
    start_step, evals, wall0 = 0, 0, 0.0
    ck = out / "checkpoint.npz"
    velocity = np.zeros_like(theta)
    theta_sum, n_avg = np.zeros_like(theta), 0  # tail average (Polyak-Ruppert) of the iterates
    avg_start = cfg.steps - int(round(cfg.average_tail * cfg.steps))  # iterates after this step are averaged
    adam = None
    gn_state = {"lam": cfg.gn_lambda}  # the GN fine stage's LM damping, adapted step to step
    if resume and ck.exists():
        z = np.load(ck, allow_pickle=False)
        if z["theta"].shape != theta.shape:
            raise ValueError(f"{ck}: checkpoint has {z['theta'].shape[0]} parameters, the network {theta.size}")
        theta = z["theta"].copy()
        velocity = z["velocity"].copy()
        if "theta_sum" in z.files:
            theta_sum, n_avg = z["theta_sum"].copy(), int(z["n_avg"])
            # the sum belongs to the averaging window it was started for; a resume with another window
            # (other --steps or --average-tail) starts a fresh sum instead of mixing two runs' iterates
            if n_avg and ("avg_start" not in z.files or int(z["avg_start"]) != avg_start):
                log(f"{ck}: tail average of {n_avg} iterates from another averaging window discarded")
                theta_sum, n_avg = np.zeros_like(theta), 0
        start_step, evals, wall0 = int(z["step"]), int(z["evals"]), float(z["wall"])
        if "gn_lam" in z.files:
            gn_state["lam"] = float(z["gn_lam"])
        old = out / "metrics.json"
        if old.exists():
            rows = json.loads(old.read_text()).get("log", [])
        log(f"resumed from {ck} at step {start_step}")
    switch = cfg.switch or int(0.8 * cfg.steps)
    # the perturbation radius: |mu_eff xi| = mu for xi ~ N(0, I_d) when mu is a radius
    mu_eff = cfg.mu / np.sqrt(theta.size) if cfg.mu_is_radius else cfg.mu
    t0 = time.time() - wall0
    val_float = hjb.FloatHJB(net, np.float64)
    fo = None
    if cfg.optimizer == "fo":
        from . import hjb_fo
        fo = hjb_fo.FOTrainer(net, cfg)
        if resume and ck.exists() and "adam_m" in np.load(ck).files:
            z = np.load(ck)
            fo.load_state(z["adam_m"], z["adam_v"], int(z["step"]))

    def evaluate(step: int, loss0: float) -> dict:
        params = net.unflatten(theta)
        row = {"step": step, "loss": loss0, "val_mse": model.val_mse(params, val_xt) if cfg.arith == "float"
               else model.val_mse(params, val_xt[:1000]),
               "lr": active_lr(cfg, step, switch), "evals": evals, "wall_s": round(time.time() - t0, 1)}
        if cfg.arith == "fixed":
            row["val_mse_float"] = val_float.val_mse(params, val_xt)
        if "loss1" in gn_state:
            row["gn_loss_after"], row["gn_lambda"] = gn_state.pop("loss1"), gn_state["lam"]
        return row

    def save(step: int) -> None:
        extra = {}
        if fo is not None:
            extra = {"adam_m": fo.m, "adam_v": fo.v}
        tmp = out / "checkpoint.tmp.npz"
        np.savez(tmp, theta=theta, velocity=velocity, step=step, evals=evals, wall=time.time() - t0,
                 theta_sum=theta_sum, n_avg=n_avg, avg_start=avg_start, gn_lam=gn_state["lam"], **extra)
        os.replace(tmp, ck)

    def write(final: dict | None = None) -> dict:
        doc = {"config": asdict(cfg), "net": net.describe(), "machine": machine(), "log": rows}
        if final:
            doc["final"] = final
        (out / "metrics.json").write_text(json.dumps(doc, indent=1))
        return doc

    loss0 = float("nan")
    end = cfg.steps
    with _StopOnSignal() as stop:
        for step in range(start_step, cfg.steps):
            if stop.requested:
                end = step
                log(f"stopped by signal {stop.requested} before step {step}; checkpointing")
                break
            if cfg.arith == "float" and cfg.dtype == "float32" and step >= int(cfg.f64_from * cfg.steps):
                model = val_float  # late steps: float64 loss (float32 rounding is amplified ~1e4 by the Laplacian)
            theta, velocity, loss0, n_evals = _one_step(cfg, step, theta, velocity, model, fo, switch, mu_eff,
                                                        gn_state)
            evals += n_evals
            if cfg.average_tail > 0 and step + 1 > avg_start:
                theta_sum += theta
                n_avg += 1
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                rows.append(evaluate(step + 1, loss0))
                if progress:
                    r = rows[-1]
                    log(f"step {r['step']:6d}  loss {r['loss']:.4e}  val_mse {r['val_mse']:.4e}  lr {r['lr']:.2e}  "
                        f"{r['wall_s']:.0f}s")
                write()
            if (step + 1) % cfg.ckpt_every == 0:
                save(step + 1)
    save(end)
    params = net.unflatten(theta)
    final = {"val_mse": val_float.val_mse(params, val_xt), "steps": end, "evaluations": evals,
             "wall_s": round(time.time() - t0, 1), "params": net.n_params}
    if end < cfg.steps:
        final["stopped_early_of"] = cfg.steps
    if n_avg:
        # the mean of the last n_avg iterates: same training, the sign steps' jitter averaged out
        final["val_mse_tail_average"] = val_float.val_mse(net.unflatten(theta_sum / n_avg), val_xt)
        final["tail_average_steps"] = n_avg
    # the trained network evaluated the way hardware will: PINN_CONFIG with the plain table sine,
    # and the wide HJB config with the interpolated sine (forward only, 2,000 validation points)
    for key, fcfg, sine in (("val_mse_fixed_pinn_table", PINN_CONFIG, "table"),
                            ("val_mse_fixed_hjb_interp", hjb.HJB_FIXED_CONFIG, "interp")):
        fx = hjb.FixedHJB(net, fcfg, sine=sine)
        final[key] = fx.val_mse(params, val_xt[:2000])
        final[key + "_saturated"] = sum(v["saturated"] for v in fx.counter.report().values())
    final["val_mse_float_2000"] = val_float.val_mse(params, val_xt[:2000])
    diagonal_plot(out / "diagonal.png", val_float, params,
                  f"HJB-20 {cfg.optimizer}+{cfg.estimator} ({cfg.arith}), val MSE {final['val_mse']:.2e}")
    write(final)
    return final


def cge_coordinates(cfg: HJBTrainConfig, step: int, net) -> np.ndarray:
    """The coordinates a CGE step visits: a PRNG subset (fraction cge_fraction) of all parameters, or of
    the output layer's only (cge_layers="last": with DeltaHJB these cost no network evaluation each)."""
    from . import zo
    if cfg.cge_layers == "all":
        return zo.sample_coordinates(cfg.seed, step, net.n_params, cfg.cge_fraction)
    last = net.layers[-1].shape
    n_last = sum(int(np.prod(cs)) for cs in last.core_shapes) + last.out_features
    return net.n_params - n_last + zo.sample_coordinates(cfg.seed, step, n_last, cfg.cge_fraction)


def _one_step(cfg: HJBTrainConfig, step: int, theta: np.ndarray, velocity: np.ndarray, model, fo, switch: int,
              mu_eff: float, gn_state: dict | None = None) -> tuple[np.ndarray, np.ndarray, float, int]:
    """One optimiser step on fresh collocation points: (theta, velocity, loss at theta, network evaluations).

    The GN fine stage reads and updates gn_state["lam"] (LM damping) and leaves its after-step loss in
    gn_state["loss1"]."""
    from . import zo
    gn = cfg.optimizer == "hybrid" and step >= switch and cfg.fine == "gn"
    rng = np.random.default_rng([cfg.seed, step])
    xt = hjb.sample_points(rng, (cfg.gn_points or cfg.points) if gn else cfg.points)
    fac = step_rule(cfg, rng)
    if gn:
        from . import hjb_gn
        state = {"lam": cfg.gn_lambda} if gn_state is None else gn_state
        st = hjb_gn.gn_step(model, theta, xt, fac, state["lam"], mu=cfg.gn_mu, central=cfg.gn_central,
                            inner=cfg.gn_inner)
        state["lam"], state["loss1"] = st.lam, st.loss1
        theta, loss0, n_evals = st.theta, st.loss0, st.queries * xt.shape[0]
    elif cfg.optimizer == "fo":
        loss0, g = fo.loss_and_grad(theta, xt, fac)
        theta = fo.update(theta, g, lr_at(cfg, step))
        n_evals = 3 * fac.count * cfg.points  # forward + backward ~ 3 forwards
    else:
        loss = model.batched_loss(xt, fac)
        if cfg.optimizer == "signrge" or (cfg.optimizer == "hybrid" and step < switch):
            xi = zo.directions(cfg.seed, step, cfg.queries, theta.size, cfg.perturbation)
            est = zo.sign_rge(loss, theta, mu_eff, xi, central=cfg.central)
            theta = theta - lr_at(cfg, step) * est.grad
        elif cfg.optimizer == "rge" or cfg.fine == "rge":
            xi = zo.directions(cfg.seed, step, cfg.queries, theta.size, cfg.perturbation)
            est = zo.rge(loss, theta, mu_eff, xi, central=cfg.central)
            velocity = cfg.rge_momentum * velocity + est.grad
            lr = lr_at(cfg, step) if cfg.optimizer == "rge" else lr_at(cfg, step, cfg.cge_lr)
            theta = theta - lr * velocity
        else:
            coords = cge_coordinates(cfg, step, model.net)
            # forward differences are biased by cge_mu * L''_pp / 2; near the solution that bias, not the
            # noise, sets the floor (the output layer's Hessian is ill-conditioned), so a small cge_mu is
            # used with the exact float64 output-layer fast path (DeltaHJB, --cge-layers last)
            est = zo.cge(loss, theta, cfg.cge_mu or mu_eff, coords)
            velocity = cfg.momentum * velocity + est.grad
            theta = theta - lr_at(cfg, step, cfg.cge_lr) * velocity
        loss0 = est.loss0
        n_evals = est.evaluations * cfg.points
    if not np.all(np.isfinite(theta)):
        raise FloatingPointError(f"parameters became non-finite at step {step}")
    return theta, velocity, loss0, n_evals


class _StopOnSignal:
    """While active, SIGTERM / SIGINT only set `requested`: the loop then checkpoints and writes its
    final metrics (a long run can be stopped early without losing it)."""

    def __init__(self) -> None:
        self.requested = 0
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        self.requested = signum

    def __enter__(self) -> "_StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
