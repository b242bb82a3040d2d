"""Host side of the board backend without a simulator: identify records, profiles, program upload, refusals."""
from __future__ import annotations

import numpy as np
import pytest

from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.network import mnist_tt
from ttzo.golden.optim import OptimConfig
from ttzo.host import protocol as P
from ttzo.host.backend_board import BoardSession, BoardStepper, RunResult
from ttzo.host.board import BoardError, bytes_to_words
from ttzo.rtl import board_top as T


class FakeBoard:
    """Records region writes and configuration; enough of host.board.Board for BoardSession."""

    def __init__(self, info: P.Identify) -> None:
        self.info, self.url = info, "fake://"
        self.writes: list[tuple[int, int, bytes]] = []
        self.config = [0] * info.n_config

    def read_config(self, first: int = 0, count: int | None = None) -> list[int]:
        return self.config[first:first + (count or len(self.config))]

    def configure(self, first: int, values) -> None:
        self.config[first:first + len(values)] = list(values)

    def write_region(self, rid: int, data: bytes, offset: int = 0) -> None:
        r = self.info.region(rid)
        assert offset % r.word_bytes == 0 and len(data) % r.word_bytes == 0 and offset + len(data) <= r.size
        self.writes.append((rid, offset, bytes(data)))


@pytest.mark.parametrize("phy", ["stream", "uart"])
def test_identify_record_round_trips(phy: str) -> None:
    bp = T.small_profile()
    ident = bp.identify(phy)
    assert P.Identify.decode(ident.encode()) == ident
    assert ident.fixed_config() == DEFAULT_CONFIG
    assert ident.region(P.Region.PARAMS).depth == bp.net.n_params == 210
    assert ident.region(P.Region.BATCH).size == bp.max_samples * 784
    assert not ident.region(T.REGION_LOG).writable
    caps = ident.to_dict()["capabilities"]
    assert {"inference", "steps", phy if phy == "uart" else "stream"} <= set(caps)
    assert ident.n_config == T.CFG_SEGMENTS + bp.max_segments + 1 and ident.n_results == T.N_RESULTS
    assert bp.bank_config == ident.n_config - 1                     # the batch-bank register comes last
    nxt = [ident.region(P.Region.BATCH_NEXT), ident.region(P.Region.LABELS_NEXT)]
    assert [r.size for r in nxt] == [ident.region(P.Region.BATCH).size, ident.region(P.Region.LABELS).size]
    assert all(r.writable and r.busy_writable and not r.flags & P.REGION_FLAG_READABLE for r in nxt)
    assert not any(r.busy_writable for r in ident.regions if r not in nxt)


def test_profiles_by_name() -> None:
    assert T.profile("ttzo-small").net.n_params == 210
    assert T.profile("ttzo-mnist-r6").net.describe() == mnist_tt(6).describe()
    with pytest.raises(ValueError, match="unknown board design"):
        T.profile("ttzo-link")
    with pytest.raises(ValueError, match="longer than 16"):
        T.BoardParams("x" * 17, T.small_profile().net, T.small_profile().engine)


def test_program_upload_covers_every_engine_word_but_cores_and_biases() -> None:
    from ttzo.rtl.descriptors import REGION_BIASES, REGION_CORES, REGION_SHIFT, compile_network
    bp = T.small_profile()
    fb = FakeBoard(bp.identify())
    s = BoardSession(fb)
    n = s.load_program()
    got = {}
    for rid, off, data in fb.writes:
        assert rid == T.REGION_PROGRAM
        for k, w in enumerate(bytes_to_words(data, 32, signed=False).tolist()):
            got[off // 4 + k] = w
    prog = compile_network(bp.net, bp.net.unflatten(np.zeros(bp.net.n_params, np.int64)), bp.cfg, bp.engine)
    want = {a: d for a, d in prog.bus_writes() if (a >> REGION_SHIFT) not in (REGION_CORES, REGION_BIASES)}
    assert got == want and n == len(want)


def test_registers_hold_the_segment_table_and_step_codes() -> None:
    bp = T.small_profile()
    s = BoardSession(FakeBoard(bp.identify()))
    regs = s.registers(seed=5, step0=9, n_samples=8, queries=3, mu=0.1, alpha=0.01)
    sizes, mask = bp.net.param_sizes(), bp.net.bias_mask()
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    assert regs[T.CFG_N_SEGMENTS] == len(sizes)
    assert [regs[T.CFG_SEGMENTS + k] for k in range(len(sizes))] == \
        [int(a) | (int(mask[a]) << 31) for a in starts]
    # mu = 0.1 in s16.13 (cores) and s16.10 (biases), alpha = 0.01 likewise, rounded half up
    assert (regs[T.CFG_MU_W], regs[T.CFG_MU_B]) == (int(0.1 * 2**13 + 0.5), int(0.1 * 2**10 + 0.5))
    assert (regs[T.CFG_ALPHA_W], regs[T.CFG_ALPHA_B]) == (int(0.01 * 2**13 + 0.5), int(0.01 * 2**10 + 0.5))
    assert (regs[T.CFG_SEED], regs[T.CFG_STEP0], regs[T.CFG_N_SAMPLES], regs[T.CFG_N_QUERIES]) == (5, 9, 8, 3)


def test_session_refuses_what_the_design_cannot_hold() -> None:
    bp = T.small_profile()
    s = BoardSession(FakeBoard(bp.identify()))
    x = np.zeros((8, 784), np.int64)
    with pytest.raises(ValueError, match="labels must be classes 0..9"):
        s.load_batch(x, np.full(8, 10))
    with pytest.raises(ValueError, match="holds 1..8"):
        s.load_batch(np.zeros((9, 784), np.int64), np.zeros(9, np.int64))
    with pytest.raises(ValueError, match="at most 4"):
        s.registers(seed=1, step0=0, n_samples=8, queries=5)
    with pytest.raises(ValueError, match="expected 210"):
        s.load_params(np.zeros(100, np.int64))
    other = bp.identify()
    other = P.Identify(**{**other.__dict__, "name": "ttzo-link"})
    with pytest.raises(BoardError, match="unknown board design"):
        BoardSession(FakeBoard(other))


@pytest.mark.parametrize("oc, fixed, msg", [
    (OptimConfig(optimizer="cge"), DEFAULT_CONFIG, "only 'signrge'"),
    (OptimConfig(optimizer="signrge", central=True), DEFAULT_CONFIG, "forward differences"),
    (OptimConfig(optimizer="signrge"), None, "fixed point"),
])
def test_stepper_refuses_what_the_trainer_does_not_run(oc, fixed, msg) -> None:
    bp = T.small_profile()
    s = BoardSession(FakeBoard(bp.identify()))
    with pytest.raises(BoardError, match=msg):
        BoardStepper(s, bp.net, oc, 0, 8, fixed)
    with pytest.raises(BoardError, match="built for small-mnist-r2"):
        BoardStepper(s, mnist_tt(2), OptimConfig(optimizer="signrge"), 0, 8, DEFAULT_CONFIG)


def test_run_result_decodes_signed_48_bit_loss() -> None:
    r = [0] * T.N_RESULTS
    r[T.RES_L0_LO], r[T.RES_L0_HI] = 0xFFFFFFFE, 0xFFFFFFFF          # -2 sign-extended to 64 bits
    r[T.RES_CYCLES_LO], r[T.RES_CYCLES_HI] = 5, 1
    res = RunResult.of(r)
    assert res.loss0 == -2 and res.cycles == (1 << 32) + 5


def test_double_buffered_session_addresses_the_banks() -> None:
    """BATCH/LABELS go to the bank the trainer reads, BATCH_NEXT/LABELS_NEXT to the other; the bank is a
    configuration register the session keeps in every register file it writes."""
    bp = T.small_profile()
    fb = FakeBoard(bp.identify())
    fb.config[bp.bank_config] = 1                       # the board was left on bank 1: the session reads it
    s = BoardSession(fb)
    assert (s.banks, s.bank) == (2, 1)
    x, y = np.arange(8 * 784).reshape(8, 784) % 256, np.arange(8) % 10
    s.load_batch(x, y)
    s.load_batch(x[::-1], y[::-1], next_bank=True)
    assert [(rid, off) for rid, off, _ in fb.writes] == [(P.Region.BATCH, 0), (P.Region.LABELS, 0),
                                                         (P.Region.BATCH_NEXT, 0), (P.Region.LABELS_NEXT, 0)]
    assert fb.writes[2][2] == np.asarray(x[::-1], np.uint8).tobytes()
    assert s.registers(seed=1, step0=0, n_samples=8)[bp.bank_config] == 1
    regs = s.configure_signrge(seed=1, step0=0, n_samples=8, bank=0)
    assert regs[bp.bank_config] == 0 == s.bank == fb.config[bp.bank_config] and len(regs) == bp.n_config
    s.select_bank(1)
    assert s.bank == 1 == fb.config[bp.bank_config]


def test_session_adapts_to_a_single_bank_bitstream() -> None:
    """A board built before double buffering (no BATCH_NEXT, one register fewer) still trains: the session
    writes its register file without the bank register and refuses next-bank uploads."""
    from dataclasses import replace
    old = replace(T.small_profile(), batch_banks=1)
    fb = FakeBoard(old.identify())
    s = BoardSession(fb)
    assert s.banks == 1 and s.bp.batch_banks == 1 and len(s.registers(seed=1, step0=0, n_samples=8)) == old.n_config
    with pytest.raises(BoardError, match="one batch bank"):
        s.load_batch(np.zeros((8, 784), np.int64), np.zeros(8, np.int64), next_bank=True)
    st = BoardStepper(s, old.net, OptimConfig(optimizer="signrge"), 0, 8, DEFAULT_CONFIG)
    st.prefetch(np.zeros((8, 784)), np.zeros(8))
    assert st._upcoming is None and not st.double_buffered


def test_banked_design_refuses_a_bad_bank_register() -> None:
    """rtl/board_top.runnable and its Python statement (sim/board_fuzz.config_problems) agree: bank 0/1 only."""
    from ttzo.sim.board_fuzz import config_problems, runnable_in_rtl
    bp = T.small_profile()
    good = BoardSession(FakeBoard(bp.identify())).registers(seed=1, step0=0, n_samples=8, queries=2)
    files = []
    for v in (0, 1, 2, 0x80000001):
        regs = list(good)
        regs[bp.bank_config] = v
        files.append(regs)
    assert [not config_problems(bp, f) for f in files] == [True, True, False, False] == runnable_in_rtl(bp, files)
