"""Boards: profiles on amaranth-boards, PLL settings, memory sizing, the stand-in core, Verilog export, builds.

Fast tests run in the default suite (elaboration and Verilog export of every board's top, the
stand-in datapath and UART in Amaranth's simulator against a numpy model); place-and-route
builds are `slow`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from ttzo.boards.clocking import ecp5_pll, ice40_pll
from ttzo.boards.datapath import RepresentativeDatapath
from ttzo.boards.perf import perf_model
from ttzo.boards.profiles import PROFILES, get_profile
from ttzo.boards.sizing import MemoryPlan, Region, bram_blocks, map_plan, max_state_words, memory_plan
from ttzo.boards.top import BoardTop
from ttzo.boards.uart_shell import UartShell
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.memory_budget import largest_state
from ttzo.golden.network import mnist_tt
from ttzo.golden.prng import fmix32


# ---------------------------------------------------------------- profiles and platforms

def test_platforms_are_real_amaranth_boards_classes():
    expected = {"icebreaker": ("ICEBreakerPlatform", "iCE40UP5K", 12e6),
                "ulx3s-85f": ("ULX3S_85F_Platform", "LFE5U-85F", 25e6),
                "arty-a7-35": ("ArtyA7_35Platform", "xc7a35ti", 100e6)}
    for name, (cls, device, osc) in expected.items():
        plat = get_profile(name).platform()
        assert type(plat).__name__ == cls and plat.device == device
        assert plat.default_clk_frequency == osc == PROFILES[name].osc_hz
        assert "uart" in {r.name for r in plat.resources.values()}


def test_unknown_board_and_bad_lanes_are_clear_errors():
    with pytest.raises(ValueError, match="known boards: icebreaker"):
        get_profile("de10-nano")
    with pytest.raises(ValueError, match="1..8"):
        get_profile("icebreaker").with_lanes(9)
    assert get_profile("ULX3S").name == "ulx3s-85f"


def test_uart_divisor_within_two_percent():
    for p in PROFILES.values():
        assert abs(p.uart_baud_error) < 0.02, p.name


def test_with_clock_sets_the_pll_frequency_and_uart_divisor():
    p = get_profile("ulx3s-85f").with_clock(60)
    assert p.clock_hz == 60e6 and p.uart_divisor == 20 and p.uart_baud_error == 0
    assert get_profile("ulx3s-85f").with_clock(None) is get_profile("ulx3s-85f")
    ice = get_profile("icebreaker").with_clock(24)
    assert ice.clock_hz == ice40_pll(12e6, 24e6).fout_hz == 24e6 and ice.uart_divisor == 8
    # 53 MHz on the ECP5: the PLL's closest output is what the profile then holds (within 1 %)
    q = get_profile("ulx3s-85f").with_clock(53)
    assert q.clock_hz == ecp5_pll(25e6, 53e6).fout_hz and abs(q.clock_hz - 53e6) <= 0.53e6


@pytest.mark.parametrize("board, mhz, match", [
    ("arty-a7-35", 50, "oscillator"),          # no PLL in our 7-series clocking
    ("ulx3s-85f", 0, "positive"),
    ("ulx3s-85f", 10, "UART"),                 # divisor 3 (< 4) at 3 Mbaud
    ("ulx3s-85f", 12.5, "UART"),               # divisor 4 at 12.5 MHz: +4.2 % baud error
    ("icebreaker", 5, "PLL"),                  # below the iCE40 PLL's output range
])
def test_with_clock_refuses_what_the_board_cannot_do(board, mhz, match):
    with pytest.raises(ValueError, match=match):
        get_profile(board).with_clock(mhz)


# ---------------------------------------------------------------- PLLs (known answers from icepll / ecppll)

def test_ice40_pll_matches_icepll():
    # `icepll -i 12 -o 30` and `-o 24` (yowasp-icepll, Project IceStorm)
    assert (lambda s: (s.divr, s.divf, s.divq, s.filter_range))(ice40_pll(12e6, 30e6)) == (0, 79, 5, 1)
    assert (lambda s: (s.divr, s.divf, s.divq, s.filter_range))(ice40_pll(12e6, 24e6)) == (0, 63, 5, 1)


def test_ecp5_pll_matches_ecppll():
    # `ecppll -i 25 -o 100` (yowasp-ecppll, Project Trellis): CLKI_DIV 1, CLKFB_DIV 4, CLKOP_DIV 6, CPHASE 2
    s = ecp5_pll(25e6, 100e6)
    assert (s.clki_div, s.clkfb_div, s.clkop_div, s.clkop_cphase) == (1, 4, 6, 2)
    assert s.fout_hz == 100e6 and 400e6 <= s.fvco_hz <= 800e6


# ---------------------------------------------------------------- sizing

def test_memory_plan_of_mnist_r6_is_the_paper_network():
    net = mnist_tt(6)
    plan = memory_plan(net, lanes=8, batch=64)
    assert net.n_params == 3962                                   # paper, Table 1
    assert plan.region("params").depth * 8 >= 3962 > (plan.region("params").depth - 1) * 8
    assert plan.region("batch").depth == 64 * 784
    assert max_state_words(net) == largest_state(net) == plan.region("state_a").depth   # golden's budget agrees
    assert plan.region("labels").width == 4


def test_bram_blocks_picks_best_aspect_ratio():
    assert bram_blocks("ice40", 256, 16) == 1 and bram_blocks("ice40", 257, 16) == 2
    assert bram_blocks("ice40", 2048, 1) == 1
    assert bram_blocks("ecp5", 50176, 8) == math.ceil(50176 / 2048)   # 2048 x 9
    assert bram_blocks("xc7", 5376, 16) == 3                           # 2048 x 18


def test_mnist_r6_training_plan_fits_up5k_and_uses_spram():
    p = get_profile("icebreaker")
    fit = map_plan(memory_plan(mnist_tt(6), p.lanes, p.batch), p)
    assert fit.fits and fit.spram == 4 and fit.dsp == 8 <= 8
    # without SPRAM the batch alone (401 Kbit) would not fit the 30 x 4 Kbit EBRs
    assert 64 * 784 * 8 > 30 * 4096


def test_largest_rank_is_the_fit_boundary():
    from ttzo.boards.sizing import largest_rank
    for p in PROFILES.values():
        r = largest_rank(p)
        assert r >= 6, p.name                                  # the paper's network fits every board
        assert map_plan(memory_plan(mnist_tt(r), p.lanes, p.batch), p).fits
        assert not map_plan(memory_plan(mnist_tt(r + 1), p.lanes, p.batch), p).fits
        assert p.rank <= r


def test_rank_that_does_not_fit_is_refused():
    from ttzo.boards.top import design_rank
    with pytest.raises(ValueError, match="does not fit"):
        design_rank(get_profile("icebreaker"), 40)


# ---------------------------------------------------------------- perf model

def test_perf_model_formula():
    pm = perf_model(6, lanes=8, fmax_hz=25e6, utilisation=1.0)
    assert pm.macs_per_sample == mnist_tt(6).macs() == 366048
    assert pm.forward_cycles == 366048 // 8
    assert pm.step_cycles == 64 * 11 * (366048 // 8) + 10 * math.ceil(3962 / 8)
    assert pm.steps_per_epoch == 938
    assert pm.epoch_compute_seconds == pytest.approx(938 * pm.step_cycles / 25e6)
    assert pm.epoch_link_seconds == pytest.approx(60000 * 785 * 10 / 3e6 / 0.9)
    with pytest.raises(ValueError):
        perf_model(6, lanes=8, fmax_hz=25e6, utilisation=1.5)


# ---------------------------------------------------------------- UART shell (Amaranth simulator)

def test_uart_shell_loopback():
    div = 6
    dut = UartShell(div)
    sent, got = [0x55, 0x00, 0xFF, 0xA3], []

    async def bench(ctx):
        ctx.set(dut.rx.ready, 1)
        for b in sent:                          # feed tx -> pin -> rx (looped back in `loop`)
            ctx.set(dut.tx.payload, b)
            ctx.set(dut.tx.valid, 1)
            await ctx.tick().until(dut.tx.ready)
            ctx.set(dut.tx.valid, 0)
            while len(got) <= sent.index(b):
                await ctx.tick()
        assert got == sent

    async def loop(ctx):
        async for _, _, pin in ctx.tick().sample(dut.tx_pin):
            ctx.set(dut.rx_pin, pin)

    async def collect(ctx):
        async for _, _, valid, payload in ctx.tick().sample(dut.rx.valid, dut.rx.payload):
            if valid:
                got.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_process(loop)
    sim.add_process(collect)
    sim.add_testbench(bench)
    sim.run_until(2e-3)
    assert got == sent


# ---------------------------------------------------------------- stand-in datapath vs a numpy model

def _small_plan(lanes=2, bank=8, batch_bytes=16, state=16) -> MemoryPlan:
    return MemoryPlan("test", lanes, 1, (
        Region("params", bank, 16, lanes, "params"), Region("batch", batch_bytes, 8, 1, "batch"),
        Region("state_a", state, 16, 1, "state_a"), Region("state_b", state, 16, 1, "state_b")))


def _requant(acc: int, shift: int) -> int:
    v = (acc + (1 << (shift - 1))) >> shift
    return max(-32768, min(32767, v))


def _run_datapath(plan, bank_words, batch, state_a, commands):
    """Load memories through the byte protocol, run `commands`, return all reply bytes."""
    dut = RepresentativeDatapath(plan)
    replies: list[int] = []
    P = plan.lanes
    lb = max(0, (P - 1).bit_length())

    def frame() -> list[int]:
        out = []
        for i, bank in enumerate(bank_words):
            for a, w in enumerate(bank):
                ptr = (0 << 21) | (a << lb) | i
                out += [ord("A"), ptr & 255, (ptr >> 8) & 255, ptr >> 16, ord("W"), w & 255, (w >> 8) & 255]
        words = [batch[2 * j] | (batch[2 * j + 1] << 8) for j in range(len(batch) // 2)]
        for region, data in ((1, words), (2, [v & 0xFFFF for v in state_a])):
            ptr = region << 21
            out += [ord("A"), ptr & 255, (ptr >> 8) & 255, ptr >> 16]
            for w in data:
                out += [ord("W"), w & 255, (w >> 8) & 255]
        return out + commands

    stream_in = frame()
    expected_replies = [None]

    async def bench(ctx):
        ctx.set(dut.tx.ready, 1)
        for b in stream_in:
            ctx.set(dut.rx.payload, b)
            ctx.set(dut.rx.valid, 1)
            await ctx.tick().until(dut.rx.ready)
        ctx.set(dut.rx.valid, 0)
        for _ in range(2000):
            await ctx.tick()

    async def collect(ctx):
        async for _, _, valid, ready, payload in ctx.tick().sample(dut.tx.valid, dut.tx.ready, dut.tx.payload):
            if valid and ready:
                replies.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_process(collect)
    sim.add_testbench(bench)
    sim.run()
    del expected_replies
    return replies


@pytest.mark.parametrize("K,groups,src", [(3, 5, 1), (6, 3, 1), (4, 4, 0)])
def test_datapath_mac_lanes_match_numpy(K, groups, src):
    rng = np.random.default_rng(K * 7 + src)
    plan = _small_plan()
    P, Bd, Sd = plan.lanes, 8, 16
    banks = [[int(v) for v in rng.integers(-3000, 3000, Bd)] for _ in range(P)]
    batch = [int(v) for v in rng.integers(0, 256, 16)]
    sa = [int(v) for v in rng.integers(-30000, 30000, Sd)]
    G = [ord("G"), K, groups & 255, groups >> 8, src]                # mu = 0
    read_back = [ord("A"), 0, 0, (3 if src == 1 else 2) << 5] + [ord("R")] * (groups * P)
    replies = _run_datapath(plan, banks, batch, sa, G + read_back)

    c = DEFAULT_CONFIG                       # shifts follow the formats (the datapath reads them too)
    shift = c.weight.frac + (c.input.frac if src == 0 else c.state.frac) - c.state.frac
    xs = batch if src == 0 else sa
    outs = []
    for g in range(groups):
        for i in range(P):
            acc = sum(xs[(g * K + t) % len(xs)] * banks[i][(g * K + t) % Bd] for t in range(K))
            outs.append(_requant(acc, shift))
    loss = sum(outs) & 0xFFFFFFFF
    assert len(replies) == 4 + 2 * groups * P
    assert int.from_bytes(bytes(replies[:4]), "little") == loss
    words = [int.from_bytes(bytes(replies[4 + 2 * j: 6 + 2 * j]), "little", signed=True) for j in range(groups * P)]
    assert words == outs[:Sd]


def test_datapath_sign_update_uses_lane_prng():
    plan = _small_plan()
    banks = [[100 * (i + 1) + a for a in range(8)] for i in range(2)]
    cmds = [ord("U"), 3, 0] + [ord("A"), 0, 0, 0] + [ord("R")] * 16
    replies = _run_datapath(plan, banks, [0] * 16, [0] * 16, cmds)
    assert replies[0] == 0x55
    words = [int.from_bytes(bytes(replies[1 + 2 * j: 3 + 2 * j]), "little", signed=True) for j in range(16)]
    for j, w in enumerate(words):            # pointer order: word a of bank i at (a << 1) | i
        a, i = j >> 1, j & 1
        step = -1 if (fmix32(i + 1) >> 30) & 1 else 1
        assert w == banks[i][a] - (step if a < 3 else 0)


# ---------------------------------------------------------------- elaboration and Verilog export of every board

def _engine_collision_cmd_covers_the_monitored_memories(out, prof) -> None:
    """The build's Yosys script marks read/write collisions undefined on exactly the engine read ports whose
    memories tests/test_rtl_tt_engine_collisions.py monitors (boards/build.ENGINE_NO_COLLISION_CMD)."""
    import re

    from test_rtl_tt_engine_collisions import MEMORIES   # tests/ is on sys.path
    from ttzo.boards.build import ENGINE_MODULE, ENGINE_NO_COLLISION_CMD
    il = (out / "top.il").read_text() if (out / "top.il").exists() else None
    if il is None:                                # the 7-series plan carries the RTLIL too, under another name
        il = next(out.glob("*.il")).read_text()
    body = il.split(f"module \\{ENGINE_MODULE}\n", 1)[1].split("\nend\n", 1)[0]
    read_mems = re.findall(r"cell \$memrd_v2 .*?parameter \\MEMID \"\\\\(\w+)\"", body, re.S)
    assert sorted(read_mems) == sorted(MEMORIES)
    if prof.family in ("ice40", "ecp5"):
        lines = [line.strip() for line in (out / "top.ys").read_text().splitlines()]
        assert ENGINE_NO_COLLISION_CMD in lines
        assert lines.index("read_rtlil top.il") < lines.index(ENGINE_NO_COLLISION_CMD) < next(
            i for i, line in enumerate(lines) if line.startswith("synth_"))


@pytest.mark.parametrize("board", sorted(PROFILES))
def test_board_top_elaborates_and_exports_verilog(board, tmp_path):
    """Every board's default top (the full design where it fits, else the stand-in) exports Verilog."""
    from ttzo.boards.build import build
    prof = get_profile(board)
    r = build(board, tmp_path, verilog_only=True, rank=6)
    assert r.core == prof.default_core
    v = (tmp_path / "top.v").read_text()
    assert "module top" in v
    c = (tmp_path / r.files["constraints"]).read_text()
    assert "uart" in c
    if prof.default_core == "full":              # command processor, trainer and TT engine are all there
        assert all(f"module \\top.core.{sub} " in v for sub in ("cp", "trainer", "trainer.engine", "urx", "utx"))
        _engine_collision_cmd_covers_the_monitored_memories(tmp_path, prof)
    else:
        assert "SB_SPRAM256KA" in v
    if board == "icebreaker":
        assert "SB_PLL40_PAD" in v
    if board == "ulx3s-85f":
        assert "EHXPLLL" in v
        # two registered resets reach their flip-flops through global buffers (one DCCA each): the
        # trainer's and the sync domain's (BoardClock, RESET_GLOBAL)
        assert v.count("DCCA ") == 2 and ".CLKO(train_rst)" in v and ".CLKI(sync_rst)" in v
        # ... the sync domain's power-on reset from a register (boards/clocking.BoardClock), not a comparison
        assert "reg sync_rst = 1'h1;" in v
    if board == "arty-a7-35":
        assert "BUFG " in v and ".O(train_rst)" in v
        assert "set_property LOC" in c and "create_clock" in c
    plan = json.loads((tmp_path / "memory-plan.json").read_text())
    assert plan["net"] == "mnist-tt-r6" and r.rank == 6


def test_stand_in_still_builds_on_every_board(tmp_path):
    from ttzo.boards.build import build
    build("ulx3s-85f", tmp_path, core="stand-in", lanes=2, rank=6, verilog_only=True)
    v = (tmp_path / "top.v").read_text()
    assert "module \\top.uart " in v and "top.core.trainer" not in v      # the byte shell, no trainer


# ---------------------------------------------------------------- the full design (rtl/board_top) on a board

def test_full_design_engine_is_sized_to_the_program():
    """The engine memories are exactly what the r = 6 program needs: one lane word less is refused."""
    from dataclasses import replace
    from ttzo.boards.design import engine_params
    from ttzo.golden.fixed import FormatError
    from ttzo.rtl.descriptors import compile_network
    net = mnist_tt(6)
    ep = engine_params(net)
    assert ep.lanes == 16 and ep.drains == 1
    assert ep.buf_elems == max_state_words(net) == largest_state(net)    # 5376, golden's budget
    assert ep.in_elems == 784 and ep.out_elems == 16
    codes = net.quantize(net.init(np.random.default_rng(3)), DEFAULT_CONFIG)
    for field in ("buf_elems", "in_elems", "core_words", "bias_words"):
        smaller = max(ep.lanes, getattr(ep, field) - ep.lanes) if field.endswith("elems") else getattr(ep, field) - 1
        with pytest.raises(FormatError):
            compile_network(net, codes, DEFAULT_CONFIG, replace(ep, **{field: smaller}))


def test_full_design_runs_the_hosts_program():
    """The host compiles 'ttzo-mnist-r6' for rtl's profile; the board's smaller engine takes the same words."""
    from ttzo.boards.design import board_params
    from ttzo.rtl import board_top as T
    from ttzo.rtl.descriptors import compile_network
    prof = get_profile("ulx3s-85f")
    bp = board_params(prof, 6)
    host = T.profile(bp.name)
    assert bp.name == "ttzo-mnist-r6" and bp.net.describe() == host.net.describe()
    assert (bp.uart_divisor, bp.clock_hz) == (prof.uart_divisor, int(prof.clock_hz))
    assert bp.engine.step_layout() == host.engine.step_layout()
    assert bp.engine.header_layout() == host.engine.header_layout()
    codes = bp.net.quantize(bp.net.init(np.random.default_rng(5)), DEFAULT_CONFIG)
    assert compile_network(bp.net, codes, DEFAULT_CONFIG, bp.engine).bus_writes() == \
        compile_network(host.net, codes, DEFAULT_CONFIG, host.engine).bus_writes()


def test_full_design_has_sixteen_lanes():
    from ttzo.boards.build import build
    with pytest.raises(ValueError, match="16 lanes"):
        build("ulx3s-85f", None, lanes=8, verilog_only=True)


def test_full_design_perf_from_simulated_cycles():
    from ttzo.boards.perf import FULL_R6_STEP_N2_CYCLES, full_design_perf
    pm = full_design_perf(50e6)
    fwd = (FULL_R6_STEP_N2_CYCLES - (3962 + 10 + 10)) / 3       # three forward passes + the update pass (N_max = 10)
    fwd += 64 * (5 * 8 + 3 * 6) + 7 + 6   # + 5 drain stages x 8 steps and 3 MAC stages x 6 MAC-bound steps per
    #                                 sample, + the perturber's drain per load pass
    #                                + the loss unit's longer latency on the last sample
    fwd += 3 + 1                   # + the trainer's banked batch read and logits register (FULL_R6_TRAINER_GLUE_CYCLES)
    upd = 11 * 3962 + 10 + 3 + 12  # the serial update pass: (N_max + 1) n_params + N_max + C + 12, C = 3 chunks of d
    assert pm.step_cycles == pytest.approx(11 * fwd + upd, abs=6)   # F rounded
    from ttzo.boards import perf
    from ttzo.rtl.perturb import Perturber
    from ttzo.rtl.zo_update import signrge_pass_cycles
    assert perf.FULL_R6_UPDATE_CYCLES == signrge_pass_cycles(3962, 10, 49) == upd   # the model = the RTL
    assert perf.FULL_R6_LOAD_DRAIN_CYCLES == Perturber.LATENCY
    from ttzo.rtl.loss_unit import latency
    assert perf.FULL_R6_LOSS_DRAIN_CYCLES == latency(10) - (2 * 10 + 2)
    assert pm.epoch_compute_seconds == pytest.approx(938 * pm.step_cycles / 50e6)
    assert pm.macs_per_sample / (16 * pm.forward_cycles) == pytest.approx(pm.utilisation)
    # a forward pass of 64 samples is 64 engine samples plus the load pass (~n_params cycles)
    assert 64 * pm.forward_cycles < fwd < 64 * (pm.forward_cycles + 5 * 8 + 3 * 6) + 2 * 3962


def test_global_buffer_primitives() -> None:
    """boards/clocking.global_buffer: the family's global buffer cell drives the returned net; unknown families refused."""
    from amaranth.back import rtlil
    from amaranth.hdl import Module, Signal
    from ttzo.boards.clocking import global_buffer
    for family, cell in (("ecp5", "DCCA"), ("ice40", "SB_GB"), ("xc7", "BUFG")):
        m, net = Module(), Signal(name="r")
        out = global_buffer(family)(m, net)
        text = rtlil.convert(m, ports=[net, out])
        assert text.count(f"cell \\{cell} ") == 1 and out is not net
    with pytest.raises(ValueError, match="no global buffer for family 'gowin'"):
        global_buffer("gowin")


@pytest.mark.slow
def test_full_profile_tops_elaborate():
    """The default profiles elaborate on their platforms."""
    for name, p in PROFILES.items():
        top = BoardTop(p)
        p.platform().prepare(top, name="top")
        assert top.entry.name == p.default_core


def test_link_core_swaps_in_on_a_board(tmp_path):
    """The registry builds E's link top (UART pins straight to its PHY) in place of the stand-in."""
    pytest.importorskip("ttzo.rtl.link_top")
    from ttzo.boards.build import build
    build("icebreaker", tmp_path, core="link", rank=6, verilog_only=True)
    v = (tmp_path / "top.v").read_text()
    assert "module top" in v and "SB_PLL40_PAD" in v and "RepresentativeDatapath" not in v


def test_unknown_core_is_a_clear_error():
    from ttzo.boards.top import get_core
    with pytest.raises(ValueError, match="registered cores: full, serial, stand-in"):
        get_core("nope")


# ---------------------------------------------------------------- real builds (slow)

@pytest.mark.slow
@pytest.mark.parametrize("board", ["icebreaker", pytest.param("ulx3s-85f", marks=pytest.mark.xfail(
    reason="full design ~17.7 MHz after placement vs 100 MHz (docs/boards.md)", strict=False))])
def test_bitstream_build_meets_timing(board, tmp_path):
    from ttzo.boards.build import build
    from ttzo.boards.report import make_report
    r = build(board, tmp_path)
    rep = make_report(r, golden=None)
    assert (tmp_path / r.files["bitstream"]).stat().st_size > 0
    assert rep["timing"]["met"], rep["timing"]
    assert all(v["used"] <= v["available"] for v in rep["resources"].values() if v.get("available"))


@pytest.mark.slow
def test_arty_resource_estimate(tmp_path):
    from ttzo.boards.build import build
    from ttzo.boards.report import make_report
    rep = make_report(build("arty-a7-35", tmp_path), golden=None)
    assert rep["resources"]["dsp"]["used"] >= 1


def test_synth_overflow_names_each_resource_beyond_the_device():
    from ttzo.boards.build import synth_overflow
    stat = {"design": {"num_cells_by_type": {"SB_LUT4": 6000, "SB_DFFE": 3000, "SB_DFFR": 2500,
                                             "SB_RAM40_4K": 30, "SB_MAC16": 9}}}
    over = synth_overflow(get_profile("icebreaker"), stat)
    assert over == {"logic (LUT4)": (6000, 5280), "FF": (5500, 5280), "DSP": (9, 8)}
    assert synth_overflow(get_profile("ulx3s-85f"), {"design": {"num_cells_by_type": {"LUT4": 83640}}}) == {}
    # the 7-series estimate: LUT RAM counts as LUTs, a RAMB18 as half a RAMB36 (the Arty's full design with a
    # double-buffered batch: 54.5 of 50)
    arty = get_profile("arty-a7-35")
    xc7 = {"design": {"num_cells_by_type": {"LUT6": 20000, "RAM64M": 201, "RAMB36E1": 40, "RAMB18E1": 29,
                                            "DSP48E1": 61, "FDRE": 16000}}}
    assert synth_overflow(arty, xc7) == {"LUT1..6": (20804, 20800), "RAMB36E1 (+RAMB18E1/2)": (54.5, 50)}
    xc7["design"]["num_cells_by_type"].update(RAM64M=200, RAMB18E1=20)
    assert synth_overflow(arty, xc7) == {}


def test_batch_banks_per_board():
    """The Arty's full design keeps one batch bank (two do not fit its block RAM); the others double-buffer."""
    from ttzo.boards.design import board_params
    assert {b: board_params(get_profile(b), 6).batch_banks for b in PROFILES} == \
        {"icebreaker": 2, "ulx3s-85f": 2, "arty-a7-35": 1}
    from ttzo.boards.build import BuildResult
    from ttzo.boards.report import make_report, markdown
    rep = make_report(BuildResult(get_profile("arty-a7-35"), Path("."), 6, "full", True), None)
    perf = rep["performance"]
    assert rep["design"]["batch_banks"] == 1 and perf["epoch_overlapped_seconds"] == perf["epoch_seconds"]
    assert "not possible: one batch bank" in markdown(rep) and "Overlapped epoch" not in markdown(rep)


def test_build_script_splits_into_synthesis_and_pnr(tmp_path):
    from ttzo.boards.build import _split_script
    sh = tmp_path / "build_top.sh"
    sh.write_text('#!/bin/sh\nset -e\n: ${YOSYS:=yosys}\n"$YOSYS" -q top.ys\n"$NEXTPNR_ECP5" --json top.json\n'
                  '"$ECPPACK" top.config\n')
    a, b = _split_script(sh)
    syn, pnr = (tmp_path / a).read_text(), (tmp_path / b).read_text()
    assert '"$YOSYS"' in syn and "NEXTPNR" not in syn and ": ${YOSYS:=yosys}" in syn
    assert '"$YOSYS"' not in pnr and '"$NEXTPNR_ECP5"' in pnr and '"$ECPPACK"' in pnr and "set -e" in pnr


def test_full_design_on_the_up5k_is_refused_with_the_numbers(tmp_path):
    """Before any synthesis: state buffers vs all EBR + SPRAM width, and multipliers (docs/boards.md)."""
    from ttzo.boards.build import build
    with pytest.raises(ValueError) as exc:
        build("icebreaker", tmp_path, core="full", rank=6)
    msg = str(exc.value)
    assert f"{2 * 5376 * 20} bits" in msg and "30 block RAMs (122880 bits)" in msg
    assert "need 32 hard multipliers, the device has 8" in msg
    from ttzo.boards.design import board_params, structural_misfits
    assert structural_misfits(get_profile("ulx3s-85f"), board_params(get_profile("ulx3s-85f"), 6)) == []


def test_report_of_a_design_that_did_not_fit(tmp_path):
    """A build stopped after synthesis reports Yosys' counts against the device (no PnR, no Fmax)."""
    from ttzo.boards.build import BuildResult
    from ttzo.boards.report import make_report, markdown
    r = BuildResult(get_profile("icebreaker"), tmp_path, 6, "full", False)
    r.synth_stat = {"design": {"num_cells_by_type": {"SB_LUT4": 23545, "SB_DFFESR": 9798, "SB_DFF": 527,
                                                     "SB_MAC16": 89, "SB_RAM40_4K": 543}}}
    rep = make_report(r, None)
    assert rep["resources"]["logic"] == {"cell": "SB_LUT4 (Yosys)", "used": 23545, "available": 5280}
    assert rep["resources"]["ff"]["used"] == 10325 and rep["resources"]["bram"]["used"] == 543
    assert rep["lanes"] == 16 and rep["design"]["name"] == "ttzo-mnist-r6"
    assert "23545 / 5280" in markdown(rep)
