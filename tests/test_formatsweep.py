"""The format sweep that chose DEFAULT_CONFIG: runs end to end and ranks precision sensibly."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.formatsweep import CANDIDATES, markdown_table, sweep
from ttzo.golden.mnist import load_mnist
from ttzo.host.cli import main


def test_candidates_are_valid_and_include_default() -> None:
    assert CANDIDATES["default"] == DEFAULT_CONFIG
    assert len({str(c.to_dict()) for c in CANDIDATES.values()}) >= len(CANDIDATES) - 1


def test_small_sweep(mnist_dir: Path) -> None:
    data = load_mnist(mnist_dir)
    cands = {k: CANDIDATES[k] for k in ("default", "18-bit", "8-bit")}
    rep = sweep(data, epochs=1, lr=0.05, max_batches=20, n_test=200, candidates=cands)
    rows = {r["name"]: r for r in rep["rows"]}
    assert set(rows) == set(cands) and rep["test_count"] == 200
    assert rep["float_test_acc"] > 0.5                         # 30 FO batches already learn something
    assert rows["18-bit"]["logit_rms_err"] < rows["default"]["logit_rms_err"] < rows["8-bit"]["logit_rms_err"]
    assert rows["default"]["saturated"] == 0 and rows["default"]["agree_float"] > 0.95
    assert "| default | s16.13 |" in markdown_table(rep)
    assert len(rep["params"]) == 2                             # trained params returned for reuse


def test_cli_sweep_reuses_params_file(mnist_dir: Path, tmp_path: Path, capsys) -> None:
    pf, out = tmp_path / "p.npy", tmp_path / "r.json"
    args = ["formats", "sweep", "--data", str(mnist_dir), "--epochs", "1", "--max-batches", "3", "--n-test", "100",
            "--candidates", "default,8-bit"]
    assert main(args + ["--params-file", str(pf)]) == 0 and pf.exists()
    first = capsys.readouterr().out
    assert main(args + ["--params-file", str(pf), "--out", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep == json.loads(out.read_text()) and rep["history"] == []          # loaded, not retrained
    assert f"{100 * rep['float_test_acc']:.2f}%" in first
    assert np.load(pf).shape == (3962,) and [r["name"] for r in rep["rows"]] == ["default", "8-bit"]
    assert main(args[:-2] + ["--candidates", "nope"]) == 2
