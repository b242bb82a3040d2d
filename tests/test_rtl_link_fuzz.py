"""Robustness of the simulated command processor (Verilator, byte-stream port): fuzzed frames.

Memories and registers are preloaded with a known pattern, then the fuzz cases of sim/link_fuzz.py
(random bytes, flipped bits, truncated frames, wrong lengths, unknown commands, out-of-range
addresses, bad headers and escapes, over-long frames, and valid read-only probes) go through the
design one by one; every reply must equal the Python reference board's, no broken request may get
an OK, nothing may hang, and reading everything back must return the preload unchanged.
"""
from __future__ import annotations

import pytest

from ttzo.sim import verilator_env
from ttzo.sim.link_model import default_identify

HAVE_VERILATOR = verilator_env.available()

needs_verilator = pytest.mark.skipif(not HAVE_VERILATOR, reason="Verilator not available")

IDENT = default_identify(max_payload=256)


def _check(report: dict, n: int) -> None:
    assert report["cases"] == n
    assert report["hangs"] == []
    assert report["mismatches"] == []
    assert report["ok_on_broken"] == []
    assert report["readback_equal"]
    assert set(report["categories"]) >= {"random_bytes", "bit_flips", "truncated", "wrong_length",
                                         "unknown_command", "out_of_range"}
    assert 0 < report["dropped"] < n and report["answered"] > n // 2


def test_fuzzer_never_builds_a_valid_state_change():
    """The generator's broken cases are refused by the reference board (so an OK from the RTL is a bug)."""
    from ttzo.host import protocol as P
    from ttzo.sim.link_fuzz import Fuzzer
    from ttzo.sim.link_model import LinkModel
    model = LinkModel(IDENT)
    seen = set()
    for cat, line in Fuzzer(IDENT, seed=3).cases(20_000):
        for raw in P.FrameSplitter().feed(model.feed(line)):
            st = P.decode_body(P.slip_unescape(raw)).status
            assert cat == "probe" or st != P.Status.OK, (cat, line.hex())
            seen.add(P.Status(st))
    assert seen == set(P.Status) - {P.Status.BUSY}        # every refusal class occurs (nothing ever runs)
    assert all(v == 0 for v in model.config) and not any(any(m) for m in model.mem.values())


@needs_verilator
def test_fuzz_1000_frames():
    from ttzo.sim.link_sim import fuzz
    _check(fuzz(IDENT, n=1000, seed=7), 1000)


@needs_verilator
@pytest.mark.slow
def test_fuzz_10000_frames():
    from ttzo.sim.link_sim import fuzz
    _check(fuzz(IDENT, n=10_000, seed=1), 10_000)
