"""Where a placed-and-routed design is slow and congested, by design block (nextpnr diagnostics).

nextpnr reports one critical path per clock; that says nothing about how many other paths are nearly as
long, or where router2 fought for wires.  This module summarises two of nextpnr's optional outputs by the
hierarchical prefix of the net names (``core.trainer.engine``, ``core.cp``; Yosys keeps the Amaranth
hierarchy in the flattened names):

- the ``detailed_net_timings`` list that ``--report FILE --detailed-timing-report`` appends to the report
  JSON.  Each entry is one net with its driver and its *timing endpoints*, the inputs that end a
  register-to-register path (ECP5: flip-flop, block RAM and multiplier inputs; iCE40: the input of the
  logic cell whose flip-flop captures), not every sink; each endpoint's ``delay`` is ``[min, max]`` of
  the signal's **arrival time** there in ns, counted from the launching clock edge (clock-to-out + logic
  + routing, no setup), one entry per launch/capture domain pair, the launch domain not named (so a
  net fed both from a register and, combinationally, from an input pin shows the later of the two).  It
  is not the routing delay of the arc alone (nextpnr writes none per arc): a net whose worst arrival
  exceeds 10 ns ends a path that misses 100 MHz.
- router2's ``--router2-heatmap PREFIX`` CSV files, four per routing iteration N (nextpnr adds the ``_``):
  ``PREFIX_congestion_by_wiretype_N.csv`` (per wire type, a histogram of wires by number of nets bound:
  ``type,bound=0,bound=1,...``; wires bound more than once are overused, which gives the log's
  ``overused=``/``overuse=`` figures), ``PREFIX_congestion_by_net_N.csv`` (``net,overuse``: the sum of
  users-1 over the net's overused wires), ``PREFIX_congestion_by_coordinate_N.csv`` (one line per tile
  column x, one value per row y: the users of overused wires in that tile) and
  ``PREFIX_utilisation_by_wiretype_N.csv`` (not used here).

Everything returns plain JSON-able dicts; :func:`markdown` renders them.  ``python -m
ttzo.boards.routing_report BUILD_DIR`` prints the summary of a build folder (docs/boards.md, "Flow").
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

#: default arrival-time thresholds (ns): 10 ns is the 100 MHz goal's period, 15 ns about 66 MHz
THRESHOLDS_NS: tuple[float, ...] = (10.0, 15.0)
#: default number of hierarchy components that name a block (``core.trainer.engine``)
DEPTH = 3
#: default length of the "worst nets" / "hottest tiles" lists
TOP = 15
#: where ``ttzo build --router2-heatmap`` asks nextpnr to write its files, relative to the build folder
HEATMAP_PREFIX = "router2-heatmap/heat"
HEATMAP_KINDS = ("congestion_by_wiretype", "congestion_by_net", "congestion_by_coordinate",
                 "utilisation_by_wiretype")
_HEAT_RE = re.compile(r"^(?P<prefix>.*?)_(?P<kind>" + "|".join(HEATMAP_KINDS) + r")_(?P<it>\d+)\.csv$")
_COMPONENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\d+\])*$")
TOP_BLOCK = "(top)"


class RoutingReportError(ValueError):
    """A nextpnr diagnostics file is missing, truncated or not in the expected format."""


# ------------------------------------------------------------------------------------------- names

def block_of(name: str, depth: int = DEPTH) -> str:
    """The design block of a flattened net name: its hierarchy prefix, at most ``depth`` components.

    ``core.trainer.engine.acc_TRELLIS_FF_Q_DI`` -> ``core.trainer.engine``; ``core.cp.word[3]`` ->
    ``core.cp`` (the last component is the signal); Yosys-generated components (``$abc$...``, which may
    contain dots) end the prefix; a name with no hierarchy (``$glbnet$clk``, pins) is ``(top)``.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    parts = name.split(".")
    hier: list[str] = []
    for i, part in enumerate(parts[:-1]):
        if not _COMPONENT_RE.match(part):
            break
        hier.append(part)
    return ".".join(hier[:depth]) or TOP_BLOCK


# ------------------------------------------------------------------------------------ timing report

def load_pnr_report(path: str | Path) -> dict:
    """nextpnr's ``--report`` JSON, with a clear error for a missing, truncated or non-object file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RoutingReportError(f"{path}: no such file (nextpnr writes it with --report {path.name})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RoutingReportError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}; "
                                 f"truncated, or nextpnr still running?)") from None
    if not isinstance(data, dict):
        raise RoutingReportError(f"{path}: expected a JSON object (nextpnr --report), got {type(data).__name__}")
    return data


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RoutingReportError(f"{where}: expected a number, got {value!r}")
    return float(value)


def net_timings(report: dict, *, depth: int = DEPTH, source: str = "report") -> list[dict]:
    """One record per net of ``detailed_net_timings``: worst arrival (ns) at its endpoints, and where.

    Record: ``net, block, driver, port, event`` (launch clock of the net's first entry), ``endpoints``
    (distinct endpoint cell/port pairs: a lower bound on fan-out, LUT inputs are not endpoints),
    ``worst_ns`` and ``worst_sink`` (``cell.port``).  Raises :class:`RoutingReportError` when the
    report has no such list (nextpnr ran without ``--detailed-timing-report``) or an entry is malformed.
    """
    if "detailed_net_timings" not in report:
        raise RoutingReportError(f"{source}: no 'detailed_net_timings' (nextpnr ran without "
                                 "--detailed-timing-report)")
    entries = report["detailed_net_timings"]
    if not isinstance(entries, list):
        raise RoutingReportError(f"{source}: 'detailed_net_timings' is {type(entries).__name__}, expected a list")
    out = []
    for i, e in enumerate(entries):
        where = f"{source}: detailed_net_timings[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("net"), str) or not isinstance(e.get("endpoints"), list):
            raise RoutingReportError(f"{where}: expected an object with 'net' (string) and 'endpoints' (list)")
        worst, sink, sinks = None, None, set()
        for j, ep in enumerate(e["endpoints"]):
            if not isinstance(ep, dict) or "delay" not in ep:
                raise RoutingReportError(f"{where}.endpoints[{j}]: expected an object with 'delay'")
            d = ep["delay"]
            # [min, max] arrival in current nextpnr; a single number in older reports
            late = _float(d[-1] if isinstance(d, list) and d else d, f"{where}.endpoints[{j}].delay")
            key = f"{ep.get('cell', '?')}.{ep.get('port', '?')}"
            sinks.add(key)
            if worst is None or late > worst:
                worst, sink = late, key
        out.append({"net": e["net"], "block": block_of(e["net"], depth), "driver": e.get("driver"),
                    "port": e.get("port"), "event": e.get("event"), "endpoints": len(sinks),
                    "worst_ns": worst, "worst_sink": sink})
    return out


def _clock(report: dict) -> dict | None:
    fmax = report.get("fmax")
    if not isinstance(fmax, dict) or not fmax:
        return None
    name, entry = min(fmax.items(), key=lambda kv: float(kv[1].get("achieved", 0.0)))
    return {"name": name, "achieved_mhz": entry.get("achieved"), "constraint_mhz": entry.get("constraint")}


def timing_summary(report: dict, *, top: int = TOP, depth: int = DEPTH,
                   thresholds: Iterable[float] = THRESHOLDS_NS, source: str = "report") -> dict:
    """Per-block counts of nets arriving late, and the ``top`` latest nets, from a detailed report.

    ``blocks``: per block the nets with endpoints, the endpoints, for each threshold the nets whose
    worst arrival exceeds it (key ``"over_10ns"`` etc.), and the worst net; sorted by the count over the
    first threshold, then the worst arrival.  Nets launched by ``<async>`` (input pins) are counted
    apart (``async_nets``) and left out of the ranking: their arrival is not bounded by a clock.
    """
    ths = sorted(float(t) for t in thresholds)
    nets = net_timings(report, depth=depth, source=source)
    clocked = [n for n in nets if n["event"] != "<async>" and n["worst_ns"] is not None]
    keys = [_th_key(t) for t in ths]
    blocks: dict[str, dict] = {}
    for n in clocked:
        b = blocks.setdefault(n["block"], {"block": n["block"], "nets": 0, "endpoints": 0,
                                           **{k: 0 for k in keys}, "worst_ns": None, "worst_net": None})
        b["nets"] += 1
        b["endpoints"] += n["endpoints"]
        for t, k in zip(ths, keys):
            if n["worst_ns"] > t:
                b[k] += 1
        if b["worst_ns"] is None or n["worst_ns"] > b["worst_ns"]:
            b["worst_ns"], b["worst_net"] = n["worst_ns"], n["net"]
    order = sorted(blocks.values(), key=lambda b: tuple(-b[k] for k in keys) + (-(b["worst_ns"] or 0.0), b["block"]))
    worst = sorted(clocked, key=lambda n: (-n["worst_ns"], n["net"]))[:top]
    return {"source": source, "clock": _clock(report), "depth": depth, "thresholds_ns": ths,
            "nets": len(clocked), "async_nets": len(nets) - len(clocked),
            "endpoints": sum(n["endpoints"] for n in clocked),
            "over": {k: sum(b[k] for b in blocks.values()) for k in keys},
            "blocks": order, "worst_nets": worst}


def _th_key(t: float) -> str:
    return f"over_{t:g}ns"


# ------------------------------------------------------------------------------------ router2 heatmap

def heatmap_files(prefix: str | Path) -> dict[int, dict[str, Path]]:
    """router2's heatmap files of ``prefix`` (the path given to ``--router2-heatmap``, e.g.
    ``build/router2-heatmap/heat`` for ``heat_congestion_by_net_1.csv`` ...): iteration -> kind -> path."""
    prefix = Path(prefix)
    folder, stem = prefix.parent, prefix.name
    found: dict[int, dict[str, Path]] = defaultdict(dict)
    if folder.is_dir():
        for p in folder.iterdir():
            m = _HEAT_RE.match(p.name)
            if m and m["prefix"] == stem:
                found[int(m["it"])][m["kind"]] = p
    return dict(sorted(found.items()))


def find_heatmap_prefix(folder: str | Path) -> Path | None:
    """The heatmap prefix of a build folder: ``router2-heatmap/heat`` or any one prefix in the folder itself.

    Raises :class:`RoutingReportError` when the folder holds more than one prefix (ambiguous)."""
    folder = Path(folder)
    if heatmap_files(folder / HEATMAP_PREFIX):          # where `ttzo build --router2-heatmap` writes them
        return folder / HEATMAP_PREFIX
    prefixes = set()
    if folder.is_dir():
        for p in folder.iterdir():
            m = _HEAT_RE.match(p.name)
            if m:
                prefixes.add(m["prefix"])
    if len(prefixes) > 1:
        raise RoutingReportError(f"{folder}: heatmap files of several prefixes {sorted(prefixes)}; pass one")
    return folder / prefixes.pop() if prefixes else None


def _rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="") as fh:
            return [[c for c in row] for row in csv.reader(fh) if row]
    except FileNotFoundError:
        raise RoutingReportError(f"{path}: no such file") from None


def _int(text: str, where: Path, line: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise RoutingReportError(f"{where}, line {line}: expected an integer, got {text!r}") from None


def wiretype_overuse(path: Path) -> dict:
    """``congestion_by_wiretype`` file -> overused wires and overuse (as router2's log), and per type."""
    rows = _rows(path)
    if not rows or not rows[0] or rows[0][0] != "type":
        raise RoutingReportError(f"{path}: expected a header 'type,bound=0,...'")
    by_type, overused, overuse = {}, 0, 0
    for ln, row in enumerate(rows[1:], 2):
        counts = [_int(c, path, ln) for c in row[1:] if c != ""]
        n = sum(c for b, c in enumerate(counts) if b >= 2)
        overused += n
        overuse += sum((b - 1) * c for b, c in enumerate(counts) if b >= 2)
        if n:
            by_type[row[0]] = n
    return {"overused_wires": overused, "overuse": overuse, "by_wiretype": by_type}


def net_overuse(path: Path) -> dict[str, int]:
    """``congestion_by_net`` file -> net -> overuse (sum of users-1 over its overused wires)."""
    out = {}
    for ln, row in enumerate(_rows(path), 1):
        if len(row) < 2:
            raise RoutingReportError(f"{path}, line {ln}: expected 'net,overuse', got {','.join(row)!r}")
        # net names may contain commas; the count is the last field
        out[",".join(row[:-1])] = _int(row[-1], path, ln)
    return out


def tile_congestion(path: Path) -> list[list[int]]:
    """``congestion_by_coordinate`` file -> grid[x][y] (users of overused wires per tile)."""
    return [[_int(c, path, ln) for c in row if c != ""] for ln, row in enumerate(_rows(path), 1)]


#: the "persistent" window of :func:`congestion_summary` starts where overused wires first fall to this
#: fraction of iteration 1's: the bulk that negotiation clears in the first few iterations is behind
PERSISTENT_FRACTION = 0.05


def window_summary(files: dict[int, dict[str, Path]], iterations: list[int], *, top: int = TOP,
                   depth: int = DEPTH) -> dict:
    """Congestion summed over router2 ``iterations`` (one or several): totals, per-block share, worst nets
    (with the number of iterations each was congested in), hottest tiles, overused wires by type."""
    its = sorted(iterations)
    out: dict[str, Any] = {"iterations": [its[0], its[-1]], "count": len(its)}
    missing = [f"{k}_{it}.csv" for it in its for k in HEATMAP_KINDS[:3] if k not in files.get(it, {})]
    if missing:
        out["missing"] = missing
    have = {k: [files[it][k] for it in its if k in files.get(it, {})] for k in HEATMAP_KINDS[:3]}
    if have["congestion_by_wiretype"]:
        by_type: dict[str, int] = defaultdict(int)
        out["overused_wires"] = out["overuse"] = 0
        for path in have["congestion_by_wiretype"]:
            w = wiretype_overuse(path)
            out["overused_wires"] += w["overused_wires"]
            out["overuse"] += w["overuse"]
            for t, n in w["by_wiretype"].items():
                by_type[t] += n
        out["by_wiretype"] = dict(sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0]))[:top])
    if have["congestion_by_net"]:
        nets: dict[str, list[int]] = {}
        for path in have["congestion_by_net"]:
            for name, v in net_overuse(path).items():
                acc = nets.setdefault(name, [0, 0])
                acc[0] += v
                acc[1] += 1
        total = sum(v for v, _ in nets.values())
        blocks: dict[str, dict] = {}
        for name, (v, _) in nets.items():
            b = blocks.setdefault(block_of(name, depth), {"nets": 0, "overuse": 0})
            b["nets"] += 1
            b["overuse"] += v
        out["net_overuse_total"] = total
        out["congested_nets"] = len(nets)
        out["by_block"] = [{"block": k, "nets": b["nets"], "overuse": b["overuse"],
                            "share": round(b["overuse"] / total, 4) if total else 0.0}
                           for k, b in sorted(blocks.items(), key=lambda kv: (-kv[1]["overuse"], kv[0]))]
        out["worst_nets"] = [{"net": n, "block": block_of(n, depth), "overuse": v, "iterations": k}
                             for n, (v, k) in sorted(nets.items(), key=lambda kv: (-kv[1][0], kv[0]))[:top]]
    if have["congestion_by_coordinate"]:
        grid: list[list[int]] = []
        for path in have["congestion_by_coordinate"]:
            for x, col in enumerate(tile_congestion(path)):
                if x == len(grid):
                    grid.append([])
                row = grid[x]
                row.extend([0] * (len(col) - len(row)))
                for y, v in enumerate(col):
                    row[y] += v
        tiles = [(v, x, y) for x, col in enumerate(grid) for y, v in enumerate(col) if v > 0]
        out["grid"] = {"x": len(grid), "y": max((len(c) for c in grid), default=0)}
        out["congested_tiles"] = len(tiles)
        out["hottest_tiles"] = [{"x": x, "y": y, "value": v}
                                for v, x, y in sorted(tiles, key=lambda t: (-t[0], t[1], t[2]))[:top]]
        if tiles:
            xs, ys = [t[1] for t in tiles], [t[2] for t in tiles]
            out["bbox"] = {"x0": min(xs), "x1": max(xs), "y0": min(ys), "y1": max(ys)}
    return out


def congestion_summary(prefix: str | Path, *, top: int = TOP, depth: int = DEPTH) -> dict:
    """router2's congestion from its heatmap files: the per-iteration trajectory and three views of it.

    ``first``: iteration 1 (the placement's routing demand before negotiation); ``persistent``: summed
    from the first iteration whose overused wires are at most :data:`PERSISTENT_FRACTION` of iteration
    1's to the last congested one (the nets and tiles router2 kept fighting over: what decides whether a
    seed converges); ``final``: the last iteration that still had overused wires (the last iteration of
    a run that did not converge).  Raises :class:`RoutingReportError` when there are no files.
    """
    files = heatmap_files(prefix)
    if not files:
        raise RoutingReportError(f"{prefix}_*.csv: no router2 heatmap files (nextpnr ran without "
                                 f"--router2-heatmap {Path(prefix).name}, or with another prefix)")
    trajectory = []
    for it, kinds in files.items():
        if "congestion_by_wiretype" in kinds:
            w = wiretype_overuse(kinds["congestion_by_wiretype"])
            trajectory.append([it, w["overused_wires"], w["overuse"]])
    first_it = min(files)
    congested = [t[0] for t in trajectory if t[1] > 0]
    final_it = max(congested) if congested else max(files)
    first_over = trajectory[0][1] if trajectory else 0
    settled = [t[0] for t in trajectory if first_it < t[0] <= final_it and t[1] <= PERSISTENT_FRACTION * first_over]
    window = [it for it in files if (settled[0] if settled else final_it) <= it <= final_it]
    size = sum(p.stat().st_size for kinds in files.values() for p in kinds.values())
    return {"prefix": str(prefix), "iterations": len(files), "last_iteration": max(files),
            "converged": bool(trajectory) and trajectory[-1][1] == 0, "files_bytes": size,
            "trajectory": trajectory, "depth": depth,
            "first": window_summary(files, [first_it], top=top, depth=depth),
            "persistent": window_summary(files, window, top=top, depth=depth),
            "final": window_summary(files, [final_it], top=top, depth=depth)}


# ---------------------------------------------------------------------------------------- together

def routing_summary(folder: str | Path, *, report: dict | str | Path | None = None,
                    heatmap: str | Path | None | bool = None, top: int = TOP, depth: int = DEPTH,
                    thresholds: Iterable[float] = THRESHOLDS_NS) -> dict:
    """Both summaries of a build folder; a section that cannot be made holds ``{"error": reason}``.

    ``report``: the parsed report dict, or its path (default ``FOLDER/pnr-report.json``); ``heatmap``:
    the heatmap prefix (default: found by :func:`find_heatmap_prefix`; ``False``: none was written)."""
    folder = Path(folder)
    out: dict[str, Any] = {}
    try:
        if isinstance(report, dict):
            rep, source = report, str(folder / "pnr-report.json")
        else:
            path = Path(report) if report is not None else folder / "pnr-report.json"
            rep, source = load_pnr_report(path), str(path)
        out["timing"] = timing_summary(rep, top=top, depth=depth, thresholds=thresholds, source=source)
    except RoutingReportError as exc:
        out["timing"] = {"error": str(exc)}
    if heatmap is False:
        out["congestion"] = {"error": "no router2 heatmap was written (ttzo build --router2-heatmap)"}
        return out
    try:
        prefix = Path(heatmap) if heatmap not in (None, True) else find_heatmap_prefix(folder)
        if prefix is None:
            raise RoutingReportError(f"{folder}: no router2 heatmap files (build with --router2-heatmap)")
        out["congestion"] = congestion_summary(prefix, top=top, depth=depth)
    except RoutingReportError as exc:
        out["congestion"] = {"error": str(exc)}
    return out


def _iters(v: dict) -> str:
    lo, hi = v["iterations"]
    return f"iter {lo}" if lo == hi else f"iters {lo}-{hi}"


def _ns(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def markdown(summary: dict, *, heading: str = "##") -> str:
    """Markdown of :func:`routing_summary`: per-block tables, worst nets, congestion trajectory and tiles."""
    lines = [f"{heading} Routing diagnostics by block", ""]
    t = summary.get("timing", {})
    if "error" in t:
        lines += [f"Timing by block: not available: {t['error']}", ""]
    elif t:
        keys = [_th_key(x) for x in t["thresholds_ns"]]
        clk = t.get("clock")
        clk_s = (f" Clock {clk['name']}: {clk['achieved_mhz']:.1f} MHz achieved, {clk['constraint_mhz']:g} MHz "
                 f"constraint." if clk and clk.get("achieved_mhz") is not None else "")
        lines += [f"Arrival time at each net's timing endpoints (register, RAM and multiplier inputs; clock-to-out "
                  f"+ logic + routing from the launching edge, nextpnr --detailed-timing-report; "
                  f"{t['nets']} clocked nets, {t['endpoints']} endpoints; {t['async_nets']} nets launched by "
                  f"input pins left out).{clk_s}", "",
                  "| block | nets | endpoints | " + " | ".join(f"nets > {x:g} ns" for x in t["thresholds_ns"])
                  + " | worst ns | worst net |",
                  "|---|---:|---:|" + "---:|" * len(keys) + "---:|---|"]
        for b in t["blocks"]:
            lines.append(f"| `{b['block']}` | {b['nets']} | {b['endpoints']} | "
                         + " | ".join(str(b[k]) for k in keys) + f" | {_ns(b['worst_ns'])} | `{b['worst_net']}` |")
        lines += ["", f"Latest {len(t['worst_nets'])} nets:", "", "| net | driver | endpoints | worst ns | at |",
                  "|---|---|---:|---:|---|"]
        for n in t["worst_nets"]:
            lines.append(f"| `{n['net']}` | `{n['driver']}` | {n['endpoints']} | {_ns(n['worst_ns'])} | "
                         f"`{n['worst_sink']}` |")
        lines.append("")
    c = summary.get("congestion", {})
    if "error" in c:
        lines += [f"Congestion by block: not available: {c['error']}", ""]
    elif c:
        traj = c["trajectory"]
        pick = sorted({0, 1, 4, 9, 19, 49, 99, len(traj) - 1} & set(range(len(traj))))
        steps = ", ".join(f"{traj[i][0]}: {traj[i][1]}" for i in pick)
        views = [(k, c[k]) for k in ("first", "persistent", "final") if k in c]
        lines += [f"router2 congestion ({c['prefix']}_*.csv, {c['iterations']} iterations, "
                  f"{'converged' if c['converged'] else 'NOT converged'}; {c['files_bytes'] / 1e6:.1f} MB of "
                  f"heatmap files). Overused wires by iteration: {steps}. Overuse by block (sum over the net's "
                  f"overused wires of users - 1) at the first iteration, summed over the persistent window "
                  f"(from where overused wires fell to {100 * PERSISTENT_FRACTION:g} % of the first iteration's), "
                  f"and at the last congested iteration:", ""]
        if all("by_block" in v for _, v in views):
            lines += ["| block | " + " | ".join(f"{_iters(v)} | share" for _, v in views) + " |",
                      "|---|" + "---:|---:|" * len(views)]
            rows = {b["block"]: {} for _, v in views for b in v["by_block"]}
            for name, v in views:
                for b in v["by_block"]:
                    rows[b["block"]][name] = b
            order = sorted(rows, key=lambda k: tuple(-rows[k].get(n, {}).get("overuse", 0) for n, _ in views) + (k,))
            for k in order:
                cells = [rows[k].get(n, {"overuse": 0, "share": 0.0}) for n, _ in views]
                lines.append(f"| `{k}` | " + " | ".join(f"{g['overuse']} | {100 * g['share']:.1f} %" for g in cells)
                             + " |")
            lines.append("")
        for label, v in views:
            where = f"{label} ({_iters(v)})"
            if v.get("worst_nets"):
                lines.append(f"Most congested nets, {where}: " + ", ".join(
                    f"`{n['net']}` {n['overuse']}" + (f" ({n['iterations']} it.)" if v["count"] > 1 else "")
                    for n in v["worst_nets"][:10]) + ".")
            if v.get("hottest_tiles"):
                bb = v.get("bbox", {})
                lines.append(f"Hottest tiles, {where} (x, y: users of overused wires; {v['congested_tiles']} tiles "
                             f"congested, x {bb.get('x0')}-{bb.get('x1')}, y {bb.get('y0')}-{bb.get('y1')} of "
                             f"{v['grid']['x']} x {v['grid']['y']}): "
                             + ", ".join(f"({h['x']}, {h['y']}) {h['value']}" for h in v["hottest_tiles"][:10]) + ".")
            if v.get("by_wiretype"):
                lines.append(f"Overused wires by type, {where}: " + ", ".join(
                    f"{k} {n}" for k, n in list(v["by_wiretype"].items())[:8]) + ".")
            if v.get("missing"):
                lines.append(f"Missing files, {where}: {', '.join(v['missing'][:10])}.")
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ttzo.boards.routing_report", description=__doc__.split("\n")[0])
    ap.add_argument("folder", help="build folder (pnr-report.json, router2 heatmap files)")
    ap.add_argument("--report", default=None, help="nextpnr --report JSON (default FOLDER/pnr-report.json)")
    ap.add_argument("--heatmap", default=None, metavar="PREFIX",
                    help="router2 heatmap prefix as a path (default: found in FOLDER)")
    ap.add_argument("--top", type=int, default=TOP, help=f"nets/tiles listed (default {TOP})")
    ap.add_argument("--depth", type=int, default=DEPTH, help=f"name components per block (default {DEPTH})")
    ap.add_argument("--thresholds", default=",".join(f"{t:g}" for t in THRESHOLDS_NS), metavar="NS[,NS]",
                    help="arrival thresholds in ns (default 10,15)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = ap.parse_args(argv)
    try:
        ths = tuple(float(x) for x in args.thresholds.split(","))
    except ValueError:
        ap.error(f"--thresholds {args.thresholds!r}: expected numbers separated by commas")
    if not Path(args.folder).is_dir():
        print(f"routing_report: error: {args.folder}: not a folder", file=sys.stderr)
        return 1
    s = routing_summary(args.folder, report=args.report, heatmap=args.heatmap, top=args.top, depth=args.depth,
                        thresholds=ths)
    print(json.dumps(s, indent=2) if args.json else markdown(s))
    return 0 if not all("error" in v for v in s.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
