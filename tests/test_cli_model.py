"""`ttzo model` and `ttzo formats show`: the JSON the acceptance asks for, and a working --help."""
from __future__ import annotations

import json
import subprocess
import sys

from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.host.cli import main


def run_json(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_model_mnist_rank6_json(capsys) -> None:
    info = run_json(capsys, "model", "mnist", "--rank", "6", "--json")
    assert info["params"] == 3962
    assert info["macs_left_to_right"] == 379_872 == 338_688 + 41_184
    assert info["macs_dense"] == 813_056 == 802_816 + 10_240
    assert info["macs_per_sample"] == sum(layer["macs"] for layer in info["layers"])
    assert info["macs_per_sample"] <= info["macs_left_to_right"]
    assert [layer["macs_left_to_right"] for layer in info["layers"]] == [338_688, 41_184]
    assert [sorted(layer["order"]) for layer in info["layers"]] == [[0, 1, 2, 3]] * 2


def test_model_text_and_dense(capsys) -> None:
    assert main(["model", "mnist", "--rank", "6"]) == 0
    out = capsys.readouterr().out
    assert "3962 parameters" in out and "left-to-right 379872" in out
    assert run_json(capsys, "model", "mnist-dense", "--json")["params"] == 814_090


def test_formats_show(capsys) -> None:
    assert run_json(capsys, "formats", "show", "--json") == DEFAULT_CONFIG.to_dict()


def test_help_runs_as_a_program() -> None:
    r = subprocess.run([sys.executable, "-m", "ttzo.host.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "ttzo model mnist" in r.stdout
    r = subprocess.run([sys.executable, "-m", "ttzo.host.cli", "model", "--rank", "x"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "invalid int value" in r.stderr


def test_data_command(mnist_dir, tmp_path, capsys) -> None:
    info = run_json(capsys, "data", "--data", str(mnist_dir), "--json")
    assert (info["train"], info["test"], info["pixels"]) == (60000, 10000, 784)
    assert main(["data", "--data", str(tmp_path)]) == 2
    assert "file not found" in capsys.readouterr().err
