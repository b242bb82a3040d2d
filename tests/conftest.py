"""Shared fixtures: where the read-only MNIST copy lives (../shared/datasets/mnist)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Shared CI machines are loaded: time limits per example only produce flaky failures, so the
# default profile has none (set HYPOTHESIS_PROFILE=dev for hypothesis' own defaults).
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "datasets" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    d = Path(os.environ.get("TTZO_DATA", SHARED_MNIST))
    if not (d / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST not found in {d}")
    return d
