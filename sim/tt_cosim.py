"""Co-simulate the TT engine against golden: compile programs, run cocotb once, compare bit for bit.

`cosimulate(cases, params, sim)` builds (or reuses) one simulation model for `params`, runs all
cases in one simulator invocation (one program + batch per case, many descriptors per build)
and returns per-case results: bit_exact (every output code equals golden's forward_fixed),
cycles and lane utilisation = golden MACs / (cycles x P).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..golden.formats import DEFAULT_CONFIG, FixedConfig
from ..golden.network import Params, TTNet, mnist_tt
from ..rtl.descriptors import EngineParams, Program, compile_network
from . import runner
from .harness import EngineHarness

TB_MODULE = "ttzo.sim.tb_tt_engine"


@dataclass
class Case:
    """One network, its quantised parameters, formats and a batch of input codes."""

    name: str
    net: TTNet
    codes: Params
    cfg: FixedConfig
    x: np.ndarray
    throttle: bool = False
    expected: np.ndarray | None = None  # golden forward_fixed (computed when None)


@dataclass
class CaseResult:
    name: str
    bit_exact: bool
    mismatches: int
    outputs: int
    batch: int
    cycles: int
    lanes: int
    macs_per_sample: int
    got: np.ndarray = field(repr=False, default=None)
    expected: np.ndarray = field(repr=False, default=None)
    run_dir: Path | None = None  # where the simulator ran (logs, waveforms)

    @property
    def cycles_per_sample(self) -> float:
        return self.cycles / self.batch

    @property
    def lane_utilisation(self) -> float:
        return self.macs_per_sample * self.batch / (self.cycles * self.lanes)

    def to_dict(self) -> dict:
        return {"name": self.name, "bit_exact": self.bit_exact, "mismatches": self.mismatches,
                "outputs": self.outputs, "samples": self.batch, "cycles": self.cycles,
                "cycles_per_sample": self.cycles_per_sample, "macs_per_sample": self.macs_per_sample,
                "lanes": self.lanes, "lane_utilisation": self.lane_utilisation}


def harness_for(params: EngineParams, sample_words: int = 1 << 17, result_words: int = 1 << 14) -> EngineHarness:
    return EngineHarness(params, sample_words, result_words)


def cosimulate(cases: list[Case], params: EngineParams, sim: str = "verilator", waves: bool = False,
               sample_words: int = 1 << 17, result_words: int = 1 << 14,
               workdir: Path | None = None) -> list[CaseResult]:
    """Run every case on one model; return results (never raises on a mismatch, only on failure to run)."""
    progs: list[Program] = []
    for c in cases:
        progs.append(compile_network(c.net, c.codes, c.cfg, params))
        if c.x.size > sample_words:
            raise ValueError(f"case {c.name}: {c.x.size} input codes exceed the harness's {sample_words}")
        if len(c.x) * c.net.out_features > result_words:
            raise ValueError(f"case {c.name}: outputs exceed the harness's {result_words}")
    model = runner.build(harness_for(params, sample_words, result_words), "tt_harness", sim=sim, waves=waves)
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="run-", dir=model.build_dir))
    work.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"n_cases": np.array(len(cases))}
    for i, (c, prog) in enumerate(zip(cases, progs)):
        arrays[f"case{i}_writes"] = np.array(prog.bus_writes(), dtype=np.int64).reshape(-1, 2)
        arrays[f"case{i}_x"] = np.asarray(c.x, dtype=np.int64)
        arrays[f"case{i}_n_out"] = np.array(prog.out_features)
        arrays[f"case{i}_throttle"] = np.array(int(c.throttle))
    data_path, result_path = work / "cases.npz", work / "results.npz"
    np.savez(data_path, **arrays)
    runner.run(model, TB_MODULE, env={"TTZO_TB_DATA": str(data_path), "TTZO_TB_RESULT": str(result_path)},
               test_dir=work, waves=waves)
    res = np.load(result_path)
    out: list[CaseResult] = []
    for i, (c, prog) in enumerate(zip(cases, progs)):
        exp = c.expected if c.expected is not None else c.net.forward_fixed(c.codes, c.x, c.cfg)
        got = res[f"case{i}_y"]
        mism = int(np.count_nonzero(got != exp)) if got.shape == exp.shape else int(exp.size)
        out.append(CaseResult(c.name, mism == 0, mism, int(exp.size), len(c.x), int(res[f"case{i}_cycles"]),
                              params.lanes, prog.macs_per_sample, got, exp, work))
    return out


# ------------------------------------------------------------------------------------------------
# Standard cases
# ------------------------------------------------------------------------------------------------

def seeded_params(net: TTNet, cfg: FixedConfig, seed: int, bias_std: float = 0.1) -> Params:
    """Golden's seeded init, with small random biases (init gives zeros; we want the bias path used)."""
    rng = np.random.default_rng(seed)
    params = net.init(rng)
    params = [(cores, rng.normal(0.0, bias_std, size=np.shape(b))) for cores, b in params]
    return net.quantize(params, cfg)


def mnist_case(rank: int = 6, samples: int = 100, seed: int = 0, data_dir: str | None = None,
               cfg: FixedConfig = DEFAULT_CONFIG) -> Case:
    """The paper's MNIST TT net (seeded init) on the first `samples` real MNIST test images."""
    from ..golden.mnist import MNISTError, load_mnist
    try:
        ds = load_mnist(data_dir)
    except MNISTError as exc:
        raise ValueError(f"MNIST: {exc}") from None
    x = np.asarray(ds.test_images[:samples], dtype=np.int64).reshape(samples, -1)
    net = mnist_tt(rank)
    return Case(f"mnist-r{rank}", net, seeded_params(net, cfg, seed), cfg, x)


def hjb_case(samples: int = 20, seed: int = 0) -> Case:
    """The HJB TT network of golden/hjb.py (sine, sine, identity; PINN formats) on random points.

    Points are drawn uniformly in [-1, 1]^21 (inputs in the PINN input format), parameters from
    golden's seeded HJB init with small random biases.
    """
    from ..golden.formats import PINN_CONFIG
    from ..golden.hjb import hjb_tt_net
    net = hjb_tt_net()
    codes = seeded_params(net, PINN_CONFIG, seed, bias_std=0.3)
    rng = np.random.default_rng(seed + 1)
    x = PINN_CONFIG.input.quantize(rng.uniform(-1.0, 1.0, size=(samples, net.in_features)))
    return Case("hjb-tt-768", net, codes, PINN_CONFIG, x)
