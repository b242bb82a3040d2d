"""Shared fixtures: where the read-only MNIST copy lives (../shared/datasets/mnist)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "datasets" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    d = Path(os.environ.get("TTZO_DATA", SHARED_MNIST))
    if not (d / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST not found in {d}")
    return d
