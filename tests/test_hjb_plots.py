"""hjb_plots: learning curves from `ttzo train hjb` metrics; a clear error for a file that is not one."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ttzo.golden.hjb_plots import load_curve, main


def test_curve_png_from_metrics(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"log": [{"step": s, "val_mse": 1e-2 / (s + 1)} for s in range(0, 50, 10)]}))
    assert load_curve(run) == ([0, 10, 20, 30, 40], [1e-2 / (s + 1) for s in range(0, 50, 10)])
    out = tmp_path / "c.png"
    assert main([str(out), f"{run}=hybrid", "--title", "t"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_not_a_metrics_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({"epochs": []}))
    with pytest.raises(SystemExit, match="not a `ttzo train hjb` metrics file"):
        load_curve(tmp_path)
