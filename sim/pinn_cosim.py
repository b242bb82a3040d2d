"""Co-simulate the PINN loss block (rtl/pinn_loss.py + the TT engine) against golden/stein_fixed.py.

`cosimulate_pinn(cases, spec, sim)` builds (or reuses) one model for a `PinnSpec` (engine sizes and
table/point maxima), runs every case in one simulator invocation (sim/tb_pinn_loss.py: bus writes,
start, await the fall of busy, read the per-point results) and compares, bit for bit, every gradient
component, Laplacian, residual and r^2 code and the batch loss with golden's integer definition.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..golden.fixed import QFormat
from ..golden.formats import FixedConfig
from ..golden.hjb import HJB_FIXED_CONFIG, INTERP_BITS, hjb_tt_net
from ..golden.network import LayerSpec, Params, TTNet
from ..golden.nodetable import sparse_grid_table
from ..golden.stein_fixed import DEFAULT_STEIN_FORMATS, SteinFixedHJB, SteinFormats, SteinResult, TableCodes, table_codes
from ..golden.tt import TTShape
from ..rtl.descriptors import REGION_SHIFT as REGION_SHIFT_BITS
from ..rtl.descriptors import EngineParams, compile_network, region_addr
from ..rtl.pinn_loss import REG_DIM, REG_N_NODES, REG_N_POINTS, REGION_NODES, REGION_POINTS, REGION_REGS, PinnLoss
from ..rtl.tt_engine import TTEngine
from . import runner

TB_MODULE = "ttzo.sim.tb_pinn_loss"
SIGMA = 0.1


@dataclass(frozen=True)
class PinnSpec:
    """Elaboration-time sizes of one PINN-loss build: the engine and the table/point maxima."""

    engine: EngineParams
    cfg: FixedConfig
    max_dim: int
    max_nodes: int
    max_points: int
    fmts: SteinFormats = DEFAULT_STEIN_FORMATS

    def build(self) -> PinnLoss:
        return PinnLoss(TTEngine(self.engine), self.cfg, max_dim=self.max_dim, max_nodes=self.max_nodes,
                        max_points=self.max_points, fmts=self.fmts)

    @property
    def stride(self) -> int:
        return self.max_dim + 3


#: The HJB formats (HJB_FIXED_CONFIG) with P phase bits of the sine table.
def pinn_config(sine_bits: int) -> FixedConfig:
    return replace(HJB_FIXED_CONFIG, sine_bits=sine_bits)


def tiny_pinn_net(dim: int = 3) -> TTNet:
    """dim -> 8 -> 4 -> 1 TT-MLP (sine, sine, identity): the small case of the default suite."""
    return TTNet((LayerSpec(TTShape((1, dim), (2, 4), (1, 2, 1)), "sine"),
                  LayerSpec(TTShape((2, 4), (2, 2), (1, 2, 1)), "sine"),
                  LayerSpec(TTShape((4,), (1,), (1, 1)), "identity")), name=f"pinn-tiny-d{dim}")


SMALL_SPEC = PinnSpec(EngineParams(lanes=4, data_bits=32, weight_bits=20, bias_bits=20, acc_bits=60, sine_bits=10,
                                   buf_elems=256, in_elems=64, out_elems=16, core_words=256, bias_words=64,
                                   max_steps=8, sine_interp_bits=INTERP_BITS),
                      pinn_config(10), max_dim=4, max_nodes=64, max_points=8)

#: The paper's HJB-20 network (21 -> 768 -> 768 -> 1), level-3 table of 925 nodes.
HJB_SPEC = PinnSpec(EngineParams(lanes=16, drains=2, data_bits=32, weight_bits=20, bias_bits=20, acc_bits=62,
                                 sine_bits=14, sine_interp_bits=INTERP_BITS),
                    pinn_config(14), max_dim=21, max_nodes=925, max_points=16)


@dataclass
class PinnCase:
    """One network, parameter codes, node table and batch of collocation points (input codes)."""

    name: str
    net: TTNet
    codes: Params
    table: TableCodes
    x: np.ndarray
    sine: str = "interp"     # the engine's interpolated sine (golden hjb.sine_fixed_interp) or "table"


@dataclass
class PinnResult:
    name: str
    bit_exact: bool
    mismatches: dict
    points: int
    nodes: int
    cycles: int
    loss_sum: int
    want: SteinResult = field(repr=False, default=None)
    got: dict = field(repr=False, default_factory=dict)

    @property
    def cycles_per_point(self) -> float:
        return self.cycles / max(1, self.points)

    def to_dict(self) -> dict:
        return {"name": self.name, "bit_exact": self.bit_exact, "mismatches": self.mismatches,
                "points": self.points, "nodes": self.nodes, "evaluations_per_point": self.nodes,
                "evaluations_eq13": 2 * self.nodes - 1, "cycles": self.cycles,
                "cycles_per_point": self.cycles_per_point, "cycles_per_evaluation": self.cycles_per_point / self.nodes,
                "loss_sum": self.loss_sum}


def bus_writes(case: PinnCase, spec: PinnSpec) -> list[tuple[int, int]]:
    """Every cfg-bus write of a case: engine program, node-table body, points, registers."""
    if case.table.dim > spec.max_dim or case.table.count > spec.max_nodes or len(case.x) > spec.max_points:
        raise ValueError(f"case {case.name}: dim {case.table.dim}, {case.table.count} nodes, {len(case.x)} points "
                         f"exceed the build's {spec.max_dim}, {spec.max_nodes}, {spec.max_points}")
    w = list(compile_network(case.net, case.codes, spec.cfg, spec.engine, case.sine).bus_writes())
    w += [(region_addr(REGION_NODES, i), int(v)) for i, v in enumerate(case.table.body_words())]
    w += [(region_addr(REGION_POINTS, i), int(v)) for i, v in enumerate(np.asarray(case.x).reshape(-1))]
    w += [(region_addr(REGION_REGS, REG_N_NODES), case.table.count),
          (region_addr(REGION_REGS, REG_N_POINTS), len(case.x)), (region_addr(REGION_REGS, REG_DIM), case.table.dim)]
    return w


def model_for(spec: PinnSpec, sim: str, waves: bool = False) -> runner.Model:
    return runner.build(spec.build(), "pinn_loss", sim=sim, waves=waves)


def cosimulate_pinn(cases: list[PinnCase], spec: PinnSpec, sim: str = "verilator", waves: bool = False,
                    workdir: Path | None = None) -> list[PinnResult]:
    """Run every case on one model; never raises on a mismatch, only on failure to run."""
    arrays: dict[str, np.ndarray] = {"n_cases": np.array(len(cases))}
    for i, c in enumerate(cases):
        arrays[f"case{i}_writes"] = np.array(bus_writes(c, spec), dtype=np.int64).reshape(-1, 2)
        arrays[f"case{i}_points"] = np.array(len(c.x))
        arrays[f"case{i}_stride"] = np.array(spec.stride)
    model = model_for(spec, sim, waves)
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="run-", dir=model.build_dir))
    work.mkdir(parents=True, exist_ok=True)
    data_path, result_path = work / "cases.npz", work / "results.npz"
    np.savez(data_path, **arrays)
    runner.run(model, TB_MODULE, env={"TTZO_TB_DATA": str(data_path), "TTZO_TB_RESULT": str(result_path)},
               test_dir=work, waves=waves)
    res = np.load(result_path)
    out = []
    for i, c in enumerate(cases):
        want = SteinFixedHJB(c.net, spec.cfg, spec.fmts, c.sine).evaluate(c.codes, c.x, c.table)
        words = res[f"case{i}_results"].reshape(len(c.x), spec.stride)
        D = c.table.dim
        got = {"grad": words[:, :D], "lap": words[:, D], "res": words[:, D + 1], "loss": words[:, D + 2]}
        mism = {k: int(np.count_nonzero(got[k] != getattr(want, k))) for k in got}
        loss_sum = int(res[f"case{i}_loss_sum"])
        mism["loss_sum"] = int(loss_sum != want.loss_sum)
        out.append(PinnResult(c.name, not any(mism.values()), mism, len(c.x), c.table.count,
                              int(res[f"case{i}_cycles"]), loss_sum, want, got))
    return out


# ------------------------------------------------------------------------------------------------
# Standard cases
# ------------------------------------------------------------------------------------------------

def seeded_codes(net: TTNet, cfg: FixedConfig, seed: int, bias_std: float = 0.3, out_scale: float = 1.0) -> Params:
    """Golden's seeded init with random biases; `out_scale` shrinks the output layer (a trained-like NN ~ 0)."""
    rng = np.random.default_rng(seed)
    params = net.init(rng)
    params = [(cores, rng.normal(0.0, bias_std, size=np.shape(b))) for cores, b in params]
    cores, b = params[-1]
    params[-1] = ([c * out_scale for c in cores], b * out_scale)
    return net.quantize(params, cfg)


def points(rng: np.random.Generator, n: int, dim: int, fmt: QFormat) -> np.ndarray:
    """n uniform collocation points in [0, 1]^dim as input codes."""
    return fmt.quantize(rng.uniform(0.0, 1.0, size=(n, dim)))


def small_case(dim: int = 3, level: int = 2, n_points: int = 4, seed: int = 0, spec: PinnSpec = SMALL_SPEC,
               sine: str = "interp") -> PinnCase:
    net = tiny_pinn_net(dim)
    tab = table_codes(sparse_grid_table(dim, level, SIGMA, lap_dims=dim - 1), spec.cfg.input, spec.fmts)
    rng = np.random.default_rng(seed + 100)
    return PinnCase(f"d{dim}-l{level}-{sine}", net, seeded_codes(net, spec.cfg, seed), tab,
                    points(rng, n_points, dim, spec.cfg.input), sine)


def hjb_case(n_points: int = 2, seed: int = 0, level: int = 3, spec: PinnSpec = HJB_SPEC) -> PinnCase:
    """The paper's HJB-20 network (seeded init, output layer x 0.1) on the D = 21 level-`level` table."""
    net = hjb_tt_net()
    tab = table_codes(sparse_grid_table(21, level, SIGMA, lap_dims=20), spec.cfg.input, spec.fmts)
    rng = np.random.default_rng(seed + 100)
    return PinnCase(f"hjb20-l{level}", net, seeded_codes(net, spec.cfg, seed, out_scale=0.1), tab,
                    points(rng, n_points, 21, spec.cfg.input))


# ------------------------------------------------------------------------------------------------
# ZO steps on the HJB loss (rtl/zo_trainer.py with PinnLoss as its loss source)
# ------------------------------------------------------------------------------------------------

ZO_TB_MODULE = "ttzo.sim.tb_zo_trainer"


@dataclass
class PinnZoResult:
    name: str
    bit_exact: bool
    params_equal: bool
    losses_equal: bool
    forwards: int
    steps: int
    cycles: int
    changed: int
    got_log: list = field(repr=False, default_factory=list)
    want_log: list = field(repr=False, default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "bit_exact": self.bit_exact, "params_equal": self.params_equal,
                "losses_equal": self.losses_equal, "forward_passes": self.forwards, "steps": self.steps,
                "cycles": self.cycles, "parameters_changed": self.changed, "losses": [int(v) for v in self.got_log]}


def trainer_for(spec: PinnSpec, net: TTNet, n_max: int, log_depth: int):
    from ..rtl.zo_trainer import ZoTrainer
    cfg = spec.cfg
    return ZoTrainer(spec.build(), n_params=net.n_params, n_inputs=1, classes=2, max_samples=1, n_max=n_max,
                     max_segments=max(4, len(net.param_sizes())), log_depth=log_depth, weight=cfg.weight,
                     bias=cfg.bias, act=cfg.act, loss=spec.fmts.loss, x_fmt=cfg.input)


def golden_signrge(case: PinnCase, spec: PinnSpec, *, seed: int, step0: int, k_steps: int, n_queries: int,
                   mu: float, alpha: float, kind: str = "rademacher") -> tuple[np.ndarray, list[int], dict]:
    """K golden signRGE steps on the integer HJB loss; returns theta, every batch loss in chip order, regs."""
    from ..golden import zo_fixed
    pf = zo_fixed.ParamFormats.of(case.net, spec.cfg)
    mu_c, alpha_c = pf.codes(mu, "mu"), pf.codes(alpha, "alpha")
    model = SteinFixedHJB(case.net, spec.cfg, spec.fmts, case.sine)
    base = model.batched_loss(case.x, case.table)
    log: list[int] = []

    def loss(thetas: np.ndarray) -> np.ndarray:
        out = base(thetas)
        log.extend(int(v) for v in out)
        return out

    theta = case.net.flatten(case.codes).astype(np.int64)
    for t in range(step0, step0 + k_steps):
        theta, _ = zo_fixed.signrge_step(loss, theta, seed, t, n_queries, mu_c, alpha_c, pf, kind)
    w, b = ~pf.is_bias, pf.is_bias
    regs = dict(optimizer=0, k_steps=k_steps, n_queries=n_queries, seed=seed, step0=step0,
                kind=1 if kind == "gaussian" else 0, mu_w=int(mu_c[w][0]), mu_b=int(mu_c[b][0]),
                alpha_w=int(alpha_c[w][0]), alpha_b=int(alpha_c[b][0]), n_samples=1)
    return theta, log, regs


def cosimulate_pinn_zo(case: PinnCase, spec: PinnSpec, sim: str = "verilator", *, seed: int = 3, step0: int = 0,
                       k_steps: int = 1, n_queries: int = 2, mu: float = 0.01, alpha: float = 0.001,
                       kind: str = "rademacher", n_max: int = 4, log_depth: int = 64,
                       workdir: Path | None = None) -> PinnZoResult:
    """signRGE steps on the HJB loss on chip (sim/tb_zo_trainer.py) against golden, bit for bit."""
    from ..rtl.descriptors import REGION_BIASES, REGION_CORES
    from ..rtl.zo_trainer import HostTarget
    from .tb_zo_nets import segments
    if n_queries > n_max:
        raise ValueError(f"{n_queries} queries exceed the trainer's n_max={n_max}")
    theta, log, regs = golden_signrge(case, spec, seed=seed, step0=step0, k_steps=k_steps, n_queries=n_queries,
                                      mu=mu, alpha=alpha, kind=kind)
    segs = segments(case.net)
    regs["n_segments"] = len(segs)
    cfg_writes = [(a, d) for a, d in bus_writes(case, spec)
                  if (a >> REGION_SHIFT_BITS) not in (REGION_CORES, REGION_BIASES)]
    theta0 = case.net.flatten(case.codes).astype(np.int64)
    host = [(HostTarget.PARAMS, p, int(v)) for p, v in enumerate(theta0)]
    host += [(HostTarget.MOMENTUM, p, 0) for p in range(len(theta0))]
    arrays = {"n_cases": np.array(1), "case0_cfg": np.array(cfg_writes, dtype=np.int64).reshape(-1, 2),
              "case0_host": np.array(host, dtype=np.int64).reshape(-1, 3),
              "case0_host_params": np.array(host, dtype=np.int64).reshape(-1, 3), "case0_same_host": np.array(0),
              "case0_segs": np.array([(s, int(b)) for s, _, b in segs], dtype=np.int64),
              "case0_reg_names": np.array(list(regs)), "case0_reg_values": np.array(list(regs.values()), np.int64),
              "case0_n_params": np.array(case.net.n_params), "case0_log_depth": np.array(log_depth)}
    model = runner.build(trainer_for(spec, case.net, n_max, log_depth), "zo_pinn_trainer", sim=sim)
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="run-", dir=model.build_dir))
    work.mkdir(parents=True, exist_ok=True)
    data_path, result_path = work / "cases.npz", work / "results.npz"
    np.savez(data_path, **arrays)
    runner.run(model, ZO_TB_MODULE, env={"TTZO_TB_DATA": str(data_path), "TTZO_TB_RESULT": str(result_path)},
               test_dir=work)
    res = np.load(result_path)
    got_theta = res["case0_theta"]
    got_log = [int(v) for v in res["case0_log_loss"]]
    p_eq = bool(np.array_equal(got_theta, theta))
    l_eq = got_log == log[-log_depth:]
    return PinnZoResult(case.name, p_eq and l_eq, p_eq, l_eq, int(res["case0_forwards"]), int(res["case0_steps"]),
                        int(res["case0_cycles"]), int(np.count_nonzero(theta != theta0)), got_log, log)
