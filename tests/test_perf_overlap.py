"""boards/perf.py's overlapped epoch (next batch uploaded while a step computes): its limits and bounds."""
from __future__ import annotations

import math

import pytest

from ttzo.boards.perf import (BYTES_PER_SAMPLE, MNIST_TRAIN, full_design_perf, overlapped_epoch_seconds, perf_model,
                              uart_seconds)


def test_overlapped_epoch_limits() -> None:
    baud, eff, B = 3_000_000, 0.9, 64
    steps = math.ceil(MNIST_TRAIN / B)
    link = MNIST_TRAIN * BYTES_PER_SAMPLE * 10 / baud / eff          # every batch of the epoch, in series
    up0 = B * BYTES_PER_SAMPLE * 10 / baud / eff
    assert uart_seconds(B * BYTES_PER_SAMPLE, baud, eff) == pytest.approx(up0)
    # compute-bound: the first upload, then one step after another
    assert overlapped_epoch_seconds(10.0, B, baud, eff) == pytest.approx(up0 + steps * 10.0)
    # link-bound (no compute): exactly the serial transfer of all batches, the last one 60000 - 937*64 = 32 samples
    assert overlapped_epoch_seconds(0.0, B, baud, eff) == pytest.approx(link)
    for step in (0.05, 0.1861, 0.19, 0.5):
        t = overlapped_epoch_seconds(step, B, baud, eff)
        assert max(steps * step, link) <= t + 1e-9 <= steps * step + link + 1e-9


@pytest.mark.parametrize("fmax", [17.7e6, 50e6, 100e6])
def test_full_design_overlapped_epoch(fmax: float) -> None:
    p = full_design_perf(fmax)
    assert p.epoch_overlapped_seconds == pytest.approx(overlapped_epoch_seconds(p.step_seconds, 64, p.baud))
    assert max(p.epoch_compute_seconds, p.epoch_link_seconds) <= p.epoch_overlapped_seconds < p.epoch_seconds
    assert p.batch_upload_seconds == pytest.approx(64 * 785 * 10 / p.baud / 0.9)
    if p.step_seconds > p.batch_upload_seconds:   # compute-bound: compute + the first batch's upload
        assert p.epoch_overlapped_seconds == pytest.approx(p.epoch_compute_seconds + p.batch_upload_seconds)
    pm = perf_model(6, 16, fmax)
    assert pm.epoch_overlapped_seconds == pytest.approx(overlapped_epoch_seconds(pm.step_seconds, 64, pm.baud))


def test_build_report_shows_the_overlapped_epoch(tmp_path) -> None:
    from ttzo.boards.build import BuildResult
    from ttzo.boards.profiles import get_profile
    from ttzo.boards.report import make_report, markdown
    golden = {"arith": "fixed", "data": "MNIST", "machine": "test", "load_average": 1.0, "step_cpu_seconds": 0.385,
              "step_seconds": 0.385, "epoch_seconds": 361.5, "steps_timed": 3, "batch": 64}
    rep = make_report(BuildResult(get_profile("ulx3s-85f"), tmp_path, 6, "full", True), golden)
    perf = rep["performance"]
    p = full_design_perf(perf["clock_mhz"] * 1e6)
    assert perf["epoch_overlapped_seconds"] == pytest.approx(p.epoch_overlapped_seconds)
    assert perf["overlapped_speedup_vs_golden"] == pytest.approx(361.5 / p.epoch_overlapped_seconds)
    md = markdown(rep)
    assert f"| MNIST epoch, next batch uploaded during each step (double-buffered) | | " \
           f"{p.epoch_overlapped_seconds:.1f} |" in md
    assert f"{361.5 / p.epoch_overlapped_seconds:.2f} with the upload overlapping the steps" in md
