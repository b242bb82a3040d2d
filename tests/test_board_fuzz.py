"""Robustness of the integrated board (rtl/board_top.BoardTop, small profile, stream PHY): fuzzed frames.

sim/board_fuzz.py brings the virtual board into a real state through the host driver, then sends
link_fuzz's malformed/unknown/out-of-range frames plus the trainer's bad configurations and refused
RUN_STEPS arguments; every reply must equal the Python reference board's, nothing may hang, every
readable region (params, batch, labels, log) must read back unchanged, and identify and the same
forward pass must still work.  The run check of the trainer (board_top.runnable) is also compared
with its Python statement (board_fuzz.config_problems) on random register files.
"""
from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttzo.host import protocol as P
from ttzo.rtl import board_top as T
from ttzo.sim import verilator_env
from ttzo.sim.board_fuzz import BOARD_CATEGORIES, BoardFuzzer, config_problems, refusal_engine, runnable_in_rtl
from ttzo.sim.link_model import LinkModel

HAVE_VERILATOR = verilator_env.available()

needs_verilator = pytest.mark.skipif(not HAVE_VERILATOR, reason="Verilator not available")

BP = T.small_profile()


def _good() -> list[int]:
    """The register file the host driver writes for a signRGE run (what the fuzz starts from)."""
    from ttzo.host.backend_board import BoardSession
    from ttzo.host.board import Board
    from ttzo.sim.link_model import ModelTransport
    b = Board(ModelTransport(LinkModel(BP.identify())))
    b.identify()
    return BoardSession(b, BP).registers(seed=1, step0=0, n_samples=BP.max_samples, queries=2, mu=0.1, alpha=0.01)


def test_board_fuzzer_cases_are_refused_by_the_reference() -> None:
    """Broken frames never get OK; every bad configuration and K > 65,535 ends in the right op error."""
    bp, ident, good = BP, BP.identify(), _good()
    assert config_problems(bp, good) == []
    model = LinkModel(ident, engine=refusal_engine(bp))    # raises if a fuzz case would really run
    model.config = list(good)
    seen, op_errors = set(), {}
    for cat, line in BoardFuzzer(ident, bp, good, seed=5).cases(6000):
        seen.add(cat)
        sent = ({(P.decode_body(P.slip_unescape(f)).command | P.REPLY_BIT, P.decode_body(P.slip_unescape(f)).seq)
                 for f in P.FrameSplitter().feed(line)} if cat in ("bad_config", "bad_run") else set())
        for raw in P.FrameSplitter().feed(model.feed(line)):
            f = P.decode_body(P.slip_unescape(raw))
            if cat in ("bad_config", "bad_run"):
                if (f.command, f.seq) in sent:              # (not a late answer to the previous case)
                    assert f.status == P.Status.OK, (cat, f)
                    if f.command == P.Cmd.STATUS | P.REPLY_BIT:
                        op_errors.setdefault(cat, set()).add(P.BoardStatus.decode(f.payload).op_error)
            else:
                assert cat == "probe" or f.status != P.Status.OK, (cat, line.hex())
        if cat == "bad_config":
            assert config_problems(bp, model.config)       # the register file it leaves is unrunnable
    assert seen == set(BOARD_CATEGORIES)
    assert op_errors == {"bad_config": {T.ERR_CONFIG}, "bad_run": {T.ERR_ARG}}
    assert all(not any(model.mem[r.id]) for r in ident.regions)


@st.composite
def _register_files(draw) -> list[int]:
    """The good register file with a few registers replaced by edge values or random words."""
    regs = _GOOD[:]
    for _ in range(draw(st.integers(0, 3))):
        k = draw(st.integers(0, len(regs) - 1))
        regs[k] = draw(st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from(
            [0, 1, 2, 63, 64, 4095, 4096, 4097, 0x7FFF, 0x8000, 0xFFFF8000, 0xFFFF7FFF, 0xFFFFFFFF, BP.n_max,
             BP.n_max + 1, BP.max_samples, BP.max_samples + 1, BP.max_segments, BP.max_segments + 1,
             BP.net.n_params - 1, BP.net.n_params, 0x80000000, regs[k] + 1, regs[k] - 1 & 0xFFFFFFFF,
             regs[k] + (1 << 16)])))
    return regs


_GOOD = _good()


@settings(max_examples=30, database=None)
@given(st.lists(_register_files(), min_size=40, max_size=40))
def test_rtl_run_check_equals_its_statement(files: list[list[int]]) -> None:
    """The gateware's run check (board_top.runnable) accepts exactly the register files config_problems accepts."""
    got = runnable_in_rtl(BP, files)
    for regs, ok in zip(files, got):
        assert ok == (config_problems(BP, regs) == []), (config_problems(BP, regs), regs)


def test_rtl_run_check_known_cases() -> None:
    """Hand-picked register files: the host's own configuration runs; each single defect is refused."""
    good = _GOOD
    files, want = [good], [True]
    rng = random.Random(0)
    for idx, bad in ((T.CFG_N_SAMPLES, 0), (T.CFG_N_SAMPLES, BP.max_samples + 1), (T.CFG_N_SEGMENTS, 0),
                     (T.CFG_N_QUERIES, BP.n_max + 1), (T.CFG_OPTIMIZER, 2), (T.CFG_MU_W, 0x8000),
                     (T.CFG_M_CODE, 4097), (T.CFG_SEGMENTS, 1), (T.CFG_SEGMENTS + 9, BP.net.n_params | 1 << 31),
                     (T.CFG_SEGMENTS + 3, good[T.CFG_SEGMENTS + 2])):
        regs = good[:]
        regs[idx] = bad
        files.append(regs)
        want.append(False)
    regs = good[:]
    regs[T.CFG_MU_W] = 0xFFFF8000          # -32768 fits a signed 16-bit code
    regs[T.CFG_SEED] = rng.getrandbits(32)
    files.append(regs)
    want.append(True)
    assert runnable_in_rtl(BP, files) == want


@needs_verilator
def test_board_fuzz_default() -> None:
    from ttzo.sim.board_fuzz import fuzz, passed
    rep = fuzz(BP, n=1000, seed=7)
    print(json.dumps(rep, indent=1))
    assert passed(rep), rep
    assert set(rep["categories"]) == set(BOARD_CATEGORIES)
    assert sum(rep["dropped"].values()) > 0 and sum(rep["answered"].values()) > 500
    assert rep["op_errors"] == {f"bad_config: op error {T.ERR_CONFIG}": rep["categories"]["bad_config"],
                                f"bad_run: op error {T.ERR_ARG}": rep["categories"]["bad_run"]}


@needs_verilator
@pytest.mark.slow
def test_board_fuzz_10000_frames() -> None:
    from ttzo.sim.board_fuzz import fuzz, passed
    rep = fuzz(BP, n=10_000, seed=1)
    print(json.dumps(rep, indent=1))                     # the numbers of docs/protocol.md (pytest -s)
    assert passed(rep), rep
    assert set(rep["categories"]) == set(BOARD_CATEGORIES)
    assert rep["op_errors"] == {f"bad_config: op error {T.ERR_CONFIG}": rep["categories"]["bad_config"],
                                f"bad_run: op error {T.ERR_ARG}": rep["categories"]["bad_run"]}
