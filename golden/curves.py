"""Learning-curve figure comparing training runs (like the paper's Figure 1): accuracy vs forward evaluations."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence


def load_run(d: str | Path) -> dict:
    p = Path(d) / "metrics.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no metrics (is {d} a `ttzo train mnist` output directory?)")
    return json.loads(p.read_text())


def label_of(run: dict) -> str:
    c = run["config"]
    return f"{c['optim']['optimizer']} ({c['arith']})"


def plot_runs(dirs: Sequence[str | Path], out: str | Path, title: str = "TT-MLP r=6 on MNIST") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for d in dirs:
        run = load_run(d)
        ep = run["epochs"]
        if not ep:
            continue
        lab = label_of(run)
        ax[0].semilogx([e["evaluations"] for e in ep], [100 * e["test_acc"] for e in ep], "o-", label=lab)
        ax[1].plot([e["epoch"] + 1 for e in ep], [e["train_loss"] for e in ep], "o-", label=lab)
        sw = run.get("switch_epoch")
        if sw:
            ax[1].axvline(sw + 0.5, color="gray", ls=":", lw=1)
    ax[0].set_xlabel("forward evaluations (parameter sets x batches)")
    ax[0].set_ylabel("test accuracy %")
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("training loss (mean over the epoch)")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
