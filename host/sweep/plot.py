"""The Pareto plot: test accuracy against on-chip bytes (and board resources / Fmax).

Our points are coloured by TT rank and shaped by weight format; the Pareto front (no
other point is both cheaper and more accurate) is drawn as a step line; the paper's
Table 2 points (hybrid ZO and first-order, float32 storage) are marked for reference.
Board panels (logic, block RAMs, achieved Fmax) appear only when build reports exist.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .paper import PAPER_BYTES_PER_PARAM, TABLE2, label, paper_onchip_bytes


def pareto_front(cost: Sequence[float], gain: Sequence[float], lower_cost_is_better: bool = True) -> list[int]:
    """Indices of the non-dominated points, by increasing cost.

    A point is dominated when another is at least as good in both coordinates and strictly
    better in one (cost lower -- or higher when `lower_cost_is_better` is False -- gain higher).
    Points with identical (cost, gain) are reported once.
    """
    sign = 1.0 if lower_cost_is_better else -1.0
    order = sorted(range(len(cost)), key=lambda i: (sign * cost[i], -gain[i]))
    front: list[int] = []
    best = float("-inf")
    for i in order:
        if gain[i] > best:
            front.append(i)
            best = gain[i]
    return front


#: Flattened keys of the build report (boards/report.py) for logic use and achieved clock.
LOGIC_KEYS = ("build.resources.logic.used",)
BRAM_KEYS = ("build.resources.bram.used",)
FMAX_KEYS = ("build.timing.achieved_mhz",)


def _first(row: dict[str, Any], keys: Sequence[str]) -> float | None:
    for k in keys:
        v = row.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def board_columns(rows: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Per-row logic use (LUTs / logic cells), block RAMs and achieved Fmax from the build report (None: absent)."""
    return {"luts": [_first(r, LOGIC_KEYS) for r in rows], "bram": [_first(r, BRAM_KEYS) for r in rows],
            "fmax_mhz": [_first(r, FMAX_KEYS) for r in rows]}


def pareto_plot(rows: list[dict[str, Any]], path: Path, title: str = "") -> Path | None:
    """Write the PNG; returns None (no file) when no point has an accuracy yet."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    pts = [r for r in rows if r.get("test_acc_pct") is not None and r.get("param_bytes")]
    if not pts:
        return None
    board = board_columns(pts)
    panels = [("param_bytes", "parameter storage on chip (bytes)", [float(r["param_bytes"]) for r in pts], True)]
    if any(r.get("onchip_bytes") for r in pts):
        panels.append(("onchip_bytes", "ZO-training datapath memory on chip (bytes)",
                       [float(r["onchip_bytes"]) if r.get("onchip_bytes") else None for r in pts], True))
    if any(v is not None for v in board["luts"]):
        panels.append(("luts", "logic used (LUTs / logic cells)", board["luts"], True))
    if any(v is not None for v in board["bram"]):
        panels.append(("bram", "block RAMs used (EBR / BRAM)", board["bram"], True))
    if any(v is not None for v in board["fmax_mhz"]):
        panels.append(("fmax", "achieved Fmax (MHz)", board["fmax_mhz"], False))

    ncols = min(2 if len(panels) <= 4 else 3, len(panels))
    nrows = (len(panels) + ncols - 1) // ncols
    fig, grid = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 4.4 * nrows), squeeze=False)
    axes = [list(grid.flat)]
    for extra in axes[0][len(panels):]:
        extra.set_visible(False)
    ranks = sorted({int(r["rank"]) for r in pts if r.get("rank") is not None})
    cmap = plt.get_cmap("viridis")
    colour = {rk: cmap(i / max(1, len(ranks) - 1)) for i, rk in enumerate(ranks)}
    wfmts = sorted({str(r.get("weight_format") or r.get("weight_bits") or "default") for r in pts})
    shapes = dict(zip(wfmts, "osD^vP*"))
    acc = [float(r["test_acc_pct"]) for r in pts]
    for ax, (key, xlabel, xs, lower_better) in zip(axes[0], panels):
        have = [i for i, x in enumerate(xs) if x is not None]
        for i in have:
            r = pts[i]
            wf = str(r.get("weight_format") or r.get("weight_bits") or "default")
            ax.scatter(xs[i], acc[i], color=colour.get(r.get("rank"), "C0"), marker=shapes.get(wf, "o"),
                       s=46, edgecolor="black", linewidth=0.5, zorder=3)
        front = [have[j] for j in pareto_front([xs[i] for i in have], [acc[i] for i in have], lower_better)]
        if front:
            ax.step([xs[i] for i in front], [acc[i] for i in front], where="post", color="tab:red", lw=1.2,
                    zorder=2)
            ax.scatter([xs[i] for i in front], [acc[i] for i in front], s=150, facecolors="none",
                       edgecolors="tab:red", linewidths=1.2, zorder=2, label="Pareto front (ours)")
        if key in ("param_bytes", "onchip_bytes"):
            first = True
            for params, hyb, fo, rank in TABLE2:
                x = params * PAPER_BYTES_PER_PARAM if key == "param_bytes" else \
                    (paper_onchip_bytes(rank) if rank else None)
                if x is None:
                    continue
                ax.scatter(x, hyb, marker="X", color="tab:orange", s=70, zorder=4,
                           label="paper Table 2, hybrid ZO (float32)" if first else None)
                ax.scatter(x, fo, marker="+", color="tab:gray", s=70, zorder=4,
                           label="paper Table 2, first-order (float32)" if first else None)
                ax.annotate(label(params, rank), (x, hyb), textcoords="offset points", xytext=(4, -11), fontsize=7)
                first = False
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    # legends: ranks (colour), formats (marker), references
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], marker="o", ls="", color=colour[rk], label=f"r={rk}") for rk in ranks]
    handles += [Line2D([], [], marker=shapes[w], ls="", color="lightgray", markeredgecolor="black", label=f"w {w}")
                for w in wfmts]
    h0, _ = axes[0][0].get_legend_handles_labels()
    handles += h0
    fig.legend(handles=handles, fontsize=7, loc="lower center", ncol=min(len(handles), 7), frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.09 / nrows, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110 if len(panels) <= 2 else 85)
    plt.close(fig)
    return path
