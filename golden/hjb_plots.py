"""Learning curves of HJB runs: validation MSE against step from each run's metrics.json.

    python -m ttzo.golden.hjb_plots OUT.png RUN_DIR[=LABEL] [RUN_DIR[=LABEL] ...]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def load_curve(run: Path) -> tuple[list[int], list[float]]:
    path = Path(run) / "metrics.json"
    try:
        rows = json.loads(path.read_text())["log"]
        return [int(r["step"]) for r in rows], [float(r["val_mse"]) for r in rows]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"{path}: not a `ttzo train hjb` metrics file with a 'log' of steps and val_mse ({e})")


TITLE = "HJB-20, TT-MLP 7,745 parameters, BP-free (ZO) training + sparse-grid Stein loss"


def plot_curves(out: Path, runs: list[tuple[Path, str]], goals: tuple[float, ...] = (1e-4, 4.79e-5),
                title: str = TITLE) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run, label in runs:
        steps, val = load_curve(run)
        ax.semilogy(steps, val, label=label, lw=1)
    for g in goals:
        ax.axhline(g, color="k", ls=":", lw=0.8)
        ax.text(0, g, f" {g:.3g}", va="bottom", fontsize=8)
    ax.set_xlabel("ZO step")
    ax.set_ylabel("validation MSE of u (10,000 points)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output PNG")
    ap.add_argument("runs", nargs="+", help="run folder (with metrics.json), optionally =LABEL")
    ap.add_argument("--title", default=TITLE, help="figure title (say which optimisers the runs used)")
    args = ap.parse_args(argv)
    runs = []
    for spec in args.runs:
        path, _, label = spec.partition("=")
        runs.append((Path(path), label or Path(path).name))
    plot_curves(Path(args.out), runs, title=args.title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
