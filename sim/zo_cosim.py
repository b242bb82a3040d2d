"""Co-simulate whole ZO training steps on chip (rtl/zo_trainer.py + the TT engine) against golden.

`cosimulate_zo(cases, engine_params, sim)` builds (or reuses) one model of ZoTrainer(TTEngine),
runs every case in one simulator invocation (sim/tb_zo_trainer.py: load, start, await done) and
compares, bit for bit, the parameters after the steps, the CGE momentum and every batch loss and
correct count the chip logged with golden (golden/zo_fixed.py through sim/tb_zo_golden.py).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..golden import zo_fixed
from ..golden.formats import DEFAULT_CONFIG, FixedConfig
from ..golden.network import TTNet
from ..rtl.descriptors import REGION_BIASES, REGION_CORES, REGION_SHIFT, EngineParams, compile_network
from ..rtl.tt_engine import TTEngine
from ..rtl.zo_dense_engine import DenseEngine
from ..rtl.zo_trainer import HostTarget, Optimizer, ZoTrainer
from ..rtl.zo_update import Rounding
from . import runner
from .tb_zo_golden import cge_step, signrge_steps
from .tb_zo_nets import segments

TB_MODULE = "ttzo.sim.tb_zo_trainer"

#: Engine sizes for the small TT net (784 -> 16 -> 10): the default cocotb suite and
#: `ttzo sim zo-step --net small` build the same model (with n_max=4, log_depth=256), so it is reused.
SMALL_ENGINE = EngineParams(lanes=4, buf_elems=1024, in_elems=1024, out_elems=64, core_words=512, bias_words=64,
                            max_steps=8, sine_bits=4)
SMALL_N_MAX, SMALL_LOG_DEPTH = 4, 256


@dataclass
class ZoCase:
    """One training run on one batch: signRGE (k_steps steps) or one CGE step."""

    name: str
    net: TTNet
    theta: np.ndarray            # flat parameter codes
    x: np.ndarray                # (B, in_features) input codes
    labels: np.ndarray           # (B,)
    optimizer: str = "signrge"   # or "cge"
    seed: int = 1
    step0: int = 0
    k_steps: int = 3
    n_queries: int = 4
    kind: str = "rademacher"
    mu: float = 0.1
    alpha: float = 0.01
    cge_lr: float = 0.05
    cge_mu: float = 0.01
    momentum: float = 0.9
    fraction: float = 1.0
    momentum0: np.ndarray | None = None
    cfg: FixedConfig = DEFAULT_CONFIG
    cge_rounding: str = "nearest"   # or "stochastic" (golden's cge_rounding; the trainer is then built with it)


@dataclass
class ZoResult:
    name: str
    bit_exact: bool
    params_equal: bool
    momentum_equal: bool
    losses_equal: bool
    forwards: int
    steps: int
    cycles: int
    got_log: list = field(repr=False, default_factory=list)
    want_log: list = field(repr=False, default_factory=list)

    @property
    def cycles_per_step(self) -> float:
        return self.cycles / max(1, self.steps)

    def to_dict(self) -> dict:
        return {"name": self.name, "bit_exact": self.bit_exact, "params_equal": self.params_equal,
                "momentum_equal": self.momentum_equal, "losses_equal": self.losses_equal,
                "forward_passes": self.forwards, "steps": self.steps, "cycles": self.cycles,
                "cycles_per_step": self.cycles_per_step,
                "losses": [int(v) for v, _ in self.got_log], "correct": [int(c) for _, c in self.got_log]}


def _regs(case: ZoCase, stochastic_build: bool = False) -> dict[str, int]:
    pf = zo_fixed.ParamFormats.of(case.net, case.cfg)
    w, b = ~pf.is_bias, pf.is_bias
    regs = dict(n_segments=len(segments(case.net)), n_samples=len(case.x), seed=case.seed, step0=case.step0,
                kind=1 if case.kind == "gaussian" else 0)
    if case.optimizer == "signrge":
        mu, alpha = pf.codes(case.mu, "mu"), pf.codes(case.alpha, "alpha")
        regs.update(optimizer=Optimizer.SIGNRGE, k_steps=case.k_steps, n_queries=case.n_queries,
                    mu_w=int(mu[w][0]), mu_b=int(mu[b][0]), alpha_w=int(alpha[w][0]), alpha_b=int(alpha[b][0]))
    elif case.optimizer == "cge":
        c = cge_constants(case)
        regs.update(optimizer=Optimizer.CGE, k_steps=1, n_queries=0, mu_w=int(c.mu_codes[w][0]),
                    mu_b=int(c.mu_codes[b][0]), m_code=c.m_code, k_code_w=int(c.k_code[w][0]),
                    k_shift_w=int(c.k_shift[w][0]), k_code_b=int(c.k_code[b][0]), k_shift_b=int(c.k_shift[b][0]),
                    cge_threshold=1 << 32 if case.fraction >= 1.0 else round(case.fraction * 2 ** 32))
        if stochastic_build:
            regs["cge_rounding"] = (Rounding.STOCHASTIC if case.cge_rounding == "stochastic" else Rounding.NEAREST).value
    else:
        raise ValueError(f"optimizer {case.optimizer!r}: choose 'signrge' or 'cge'")
    return regs


def cge_constants(case: ZoCase) -> zo_fixed.CGEConstants:
    pf = zo_fixed.ParamFormats.of(case.net, case.cfg)
    return zo_fixed.CGEConstants.make(pf, case.cge_lr, case.cge_mu, case.momentum, len(case.x), case.cfg.loss.frac)


def expected(case: ZoCase) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Golden parameters, momentum and (loss, correct) log of the case."""
    b0 = np.zeros(case.net.n_params, np.int64) if case.momentum0 is None else np.asarray(case.momentum0, np.int64)
    if case.optimizer == "signrge":
        pf = zo_fixed.ParamFormats.of(case.net, case.cfg)
        w, b = ~pf.is_bias, pf.is_bias
        mu, alpha = pf.codes(case.mu, "mu"), pf.codes(case.alpha, "alpha")
        theta, log = signrge_steps(case.net, case.theta, case.x, case.labels, seed=case.seed, step0=case.step0,
                                   k_steps=case.k_steps, n_queries=case.n_queries, mu_w=int(mu[w][0]),
                                   mu_b=int(mu[b][0]), alpha_w=int(alpha[w][0]), alpha_b=int(alpha[b][0]),
                                   kind=case.kind, cfg=case.cfg)
        return theta, b0, log
    theta, bm, log, _ = cge_step(case.net, case.theta, b0, case.x, case.labels, seed=case.seed, step=case.step0,
                                 fraction=case.fraction, c=cge_constants(case), cfg=case.cfg,
                                 rounding=case.cge_rounding)
    return theta, bm, log


def _is_dense(net: TTNet) -> bool:
    return len(net.layers) == 1 and net.layers[0].shape.L == 1 and net.layers[0].activation == "identity"


def trainer_for(net: TTNet, params: EngineParams | None, max_samples: int, n_max: int, log_depth: int,
                cfg: FixedConfig = DEFAULT_CONFIG, stochastic_rounding: bool = False) -> ZoTrainer:
    """The trainer around the TT engine (`params`), or around the small dense engine when params is None;
    `stochastic_rounding` builds its run-time CGE rounding select."""
    if params is None:
        if not _is_dense(net):
            raise ValueError("the dense engine runs one dense identity layer; give EngineParams for TT nets")
        eng = DenseEngine(net.in_features, net.out_features, cfg.input, cfg.weight, cfg.bias, cfg.act)
    else:
        eng = TTEngine(params)
    return ZoTrainer(eng, n_params=net.n_params, n_inputs=net.in_features, classes=net.out_features,
                     max_samples=max_samples, n_max=n_max, max_segments=max(4, len(net.param_sizes())),
                     log_depth=log_depth, weight=cfg.weight, bias=cfg.bias, act=cfg.act, loss=cfg.loss,
                     x_fmt=cfg.input, stochastic_rounding=stochastic_rounding)


def cosimulate_zo(cases: list[ZoCase], params: EngineParams | None, sim: str = "verilator", n_max: int = 10,
                  log_depth: int = 256, waves: bool = False, workdir: Path | None = None) -> list[ZoResult]:
    """Run every case on one model (all cases share the network shape); never raises on a mismatch.

    `params` None runs the small dense engine (rtl/zo_dense_engine.py) for one-layer dense nets.
    """
    net = cases[0].net
    if any(c.net.describe() != net.describe() for c in cases):
        raise ValueError("all cases of one co-simulation must use the same network shape")
    max_samples = max(len(c.x) for c in cases)
    for c in cases:
        if c.cge_rounding not in ("nearest", "stochastic"):
            raise ValueError(f"case {c.name}: cge_rounding {c.cge_rounding!r}: use 'nearest' or 'stochastic'")
    sr = any(c.optimizer == "cge" and c.cge_rounding == "stochastic" for c in cases)
    model = runner.build(trainer_for(net, params, max_samples, n_max, log_depth, cases[0].cfg, sr),
                         f"zo_trainer_{net.name.replace('-', '_')}", sim=sim, waves=waves)
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="run-", dir=model.build_dir))
    work.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"n_cases": np.array(len(cases))}
    wants = []
    prev_batch = None
    for i, c in enumerate(cases):
        if c.optimizer == "signrge" and c.n_queries > n_max:
            raise ValueError(f"case {c.name}: {c.n_queries} queries exceed the trainer's n_max={n_max}")
        cfg_writes = []
        if params is not None:
            prog = compile_network(c.net, c.net.unflatten(np.asarray(c.theta)), c.cfg, params)
            cfg_writes = [(a, d) for a, d in prog.bus_writes()
                          if (a >> REGION_SHIFT) not in (REGION_CORES, REGION_BIASES)]
        b0 = np.zeros(c.net.n_params, np.int64) if c.momentum0 is None else np.asarray(c.momentum0, np.int64)
        host_params = [(HostTarget.PARAMS, p, int(v)) for p, v in enumerate(c.theta)]
        host_params += [(HostTarget.MOMENTUM, p, int(v)) for p, v in enumerate(b0)]
        batch = [(HostTarget.INPUTS, j, int(v)) for j, v in enumerate(np.asarray(c.x).reshape(-1))]
        batch += [(HostTarget.LABELS, j, int(v)) for j, v in enumerate(c.labels)]
        key = (np.asarray(c.x).tobytes(), np.asarray(c.labels).tobytes())
        regs = _regs(c, sr)
        arrays[f"case{i}_cfg"] = np.array(cfg_writes, dtype=np.int64).reshape(-1, 2)
        arrays[f"case{i}_host"] = np.array(host_params + batch, dtype=np.int64).reshape(-1, 3)
        arrays[f"case{i}_host_params"] = np.array(host_params, dtype=np.int64).reshape(-1, 3)
        arrays[f"case{i}_same_host"] = np.array(int(key == prev_batch))
        arrays[f"case{i}_segs"] = np.array([(s, int(b)) for s, _, b in segments(c.net)], dtype=np.int64)
        arrays[f"case{i}_reg_names"] = np.array(list(regs))
        arrays[f"case{i}_reg_values"] = np.array(list(regs.values()), dtype=np.int64)
        arrays[f"case{i}_n_params"] = np.array(c.net.n_params)
        arrays[f"case{i}_log_depth"] = np.array(log_depth)
        prev_batch = key
        wants.append(expected(c))
    data_path, result_path = work / "cases.npz", work / "results.npz"
    np.savez(data_path, **arrays)
    runner.run(model, TB_MODULE, env={"TTZO_TB_DATA": str(data_path), "TTZO_TB_RESULT": str(result_path)},
               test_dir=work, waves=waves)
    res = np.load(result_path)
    out = []
    for i, (c, (theta, bm, log)) in enumerate(zip(cases, wants)):
        forwards = int(res[f"case{i}_forwards"])
        got_log = list(zip(res[f"case{i}_log_loss"].tolist(), res[f"case{i}_log_correct"].tolist()))
        want_tail = log[-log_depth:] if len(log) > log_depth else log
        if forwards > log_depth:   # the log wrapped: entry j holds forward pass j mod depth
            start = forwards % log_depth
            got_log = got_log[start:] + got_log[:start]
        p_eq = bool(np.array_equal(res[f"case{i}_theta"], theta))
        b_eq = bool(np.array_equal(res[f"case{i}_momentum"], bm))
        l_eq = forwards == len(log) and [tuple(map(int, e)) for e in got_log] == [tuple(e) for e in want_tail]
        out.append(ZoResult(c.name, p_eq and b_eq and l_eq, p_eq, b_eq, l_eq, forwards, int(res[f"case{i}_steps"]),
                            int(res[f"case{i}_cycles"]), got_log, log))
    return out
