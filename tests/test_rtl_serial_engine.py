"""Serial forward engine (rtl/serial_program.py, rtl/serial_engine.py) against golden forward_fixed.

The numpy emulation (the program's own addressing) and the Amaranth simulation of SerialEngine,
with single-port RAM models for bulk and the state buffers and a one-cycle-latency work memory,
must give golden's logits bit for bit; `cycles` must equal SerialProgram.cycles().
"""
from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from ttzo.golden.fixed import FormatError, QFormat
from ttzo.golden.formats import DEFAULT_CONFIG, FixedConfig
from ttzo.golden.network import LayerSpec, TTNet, mnist_tt
from ttzo.golden.tt import TTShape
from ttzo.rtl.descriptors import EngineParams
from ttzo.rtl.serial_engine import SerialEngine
from ttzo.rtl.serial_program import compile_serial, emulate, pack_pixels
from ttzo.rtl.spram import SinglePortRAM, SinglePortSignature
from ttzo.sim.random_nets import random_formats, random_net


class _Bulk(wiring.Component):
    """A single-port RAM model with initial contents (rdata one cycle after addr)."""

    def __init__(self, depth: int, init: list[int]) -> None:
        self.depth, self.init = depth, init
        super().__init__(SinglePortSignature(depth, 16).flip())

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.mem = mem = Memory(shape=unsigned(16), depth=self.depth, init=self.init)
        rp, wp = mem.read_port(), mem.write_port()
        m.d.comb += [rp.addr.eq(self.addr), wp.addr.eq(self.addr), wp.data.eq(self.wdata), wp.en.eq(self.we),
                     self.rdata.eq(rp.data)]
        return m


class _Top(wiring.Component):
    """SerialEngine with its memories: bulk (pixels at x_base), work (flat codes), state a and b."""

    def __init__(self, engine: SerialEngine, work: list[int], bulk: list[int]) -> None:
        self.engine, self.work, self.bulk_init = engine, work, bulk
        super().__init__({})

    def elaborate(self, platform) -> Module:
        m = Module()
        e = self.engine
        m.submodules.engine = e
        m.submodules.bulk = bulk = _Bulk(1 << 15, self.bulk_init)
        m.submodules.sa = sa = SinglePortRAM(e.program.state_depth)
        m.submodules.sb = sb = SinglePortRAM(e.program.state_depth)
        m.submodules.work = work = Memory(shape=unsigned(16), depth=e.program.n_params, init=self.work)
        rp = work.read_port()
        wiring.connect(m, e.bulk, bulk)
        wiring.connect(m, e.state_a, sa)
        wiring.connect(m, e.state_b, sb)
        m.d.comb += [rp.addr.eq(e.work_addr), e.work_data.eq(rp.data)]
        return m


def run_engine(net: TTNet, cfg: FixedConfig, flat: np.ndarray, xs: np.ndarray, x_base: int = 100,
               ready_every: int = 1) -> tuple[np.ndarray, list[int]]:
    """Simulate one forward per row of xs; returns logits (B, M) and the `cycles` of each."""
    prog = compile_serial(net, cfg)
    eng = SerialEngine(prog)
    xw = (prog.n_in + 1) // 2
    bulk = [0] * (1 << 15)
    for b, x in enumerate(xs):
        bulk[x_base + b * xw:x_base + (b + 1) * xw] = [int(v) for v in pack_pixels(x)]
    top = _Top(eng, [int(v) & 0xFFFF for v in flat], bulk)
    out: list[list[int]] = []
    cycles: list[int] = []

    async def bench(ctx):
        for b in range(len(xs)):
            ctx.set(eng.start, 1)
            ctx.set(eng.x_base, x_base + b * xw)
            await ctx.tick()
            ctx.set(eng.start, 0)
            assert ctx.get(eng.busy)
            ys: list[int] = []
            t = 0
            while ctx.get(eng.busy):
                ready = int(t % ready_every == 0)
                ctx.set(eng.o.ready, ready)
                if ready and ctx.get(eng.o.valid):
                    ys.append(ctx.get(eng.o.payload))
                await ctx.tick()
                t += 1
            out.append(ys)
            cycles.append(ctx.get(eng.cycles))

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array(out, dtype=np.int64), cycles


def _case(net: TTNet, cfg: FixedConfig, seed: int, batch: int = 2, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    params = net.init(rng)
    params = [([c * scale for c in cores], rng.normal(0, 0.5, b.shape)) for cores, b in params]
    codes = net.quantize(params, cfg)
    x = rng.integers(0, 256, (batch, net.in_features))
    return codes, net.flatten(codes).astype(np.int64), x


def small_nets() -> list[TTNet]:
    """Small nets covering first/left/right steps, every order of a 3-core layer, 1-3 layers."""
    nets = []
    s3 = TTShape((2, 3, 2), (3, 2, 2), (1, 2, 3, 1))
    for order in s3.orders():
        nets.append(TTNet((LayerSpec(s3, "relu", order), LayerSpec(TTShape((12,), (5,), (1, 1)), "identity"))))
    nets.append(TTNet((LayerSpec(TTShape((3, 4), (2, 3), (1, 2, 1)), "relu"),
                       LayerSpec(TTShape((2, 3), (2, 2), (1, 3, 1)), "relu", (1, 0)),
                       LayerSpec(TTShape((4,), (3,), (1, 1)), "identity"))))
    nets.append(TTNet((LayerSpec(TTShape((5,), (4,), (1, 1)), "identity"),)))
    nets.append(TTNet((LayerSpec(TTShape((2, 2, 2, 2), (2, 1, 3, 2), (1, 2, 2, 3, 1)), "relu"),
                       LayerSpec(TTShape((3, 4), (2, 3), (1, 2, 1)), "identity", (1, 0)))))
    return nets


CFGS = [DEFAULT_CONFIG,
        DEFAULT_CONFIG.with_(weight="s12.9", bias="s10.4", state="s14.7", act="s12.5"),
        DEFAULT_CONFIG.with_(weight="s16.15", bias="s16.2", state="s16.14", act="s16.9")]   # bias shift > 14


@pytest.mark.parametrize("ci", range(len(CFGS)))
@pytest.mark.parametrize("ni", range(len(small_nets())))
def test_emulate_small(ni: int, ci: int) -> None:
    net, cfg = small_nets()[ni], CFGS[ci]
    for scale in (1.0, 8.0):   # 8x: many saturations
        codes, flat, x = _case(net, cfg, 10 * ni + ci, batch=4, scale=scale)
        np.testing.assert_array_equal(emulate(compile_serial(net, cfg), flat, x), net.forward_fixed(codes, x, cfg))


def _random(seed: int) -> tuple[TTNet, FixedConfig]:
    """sim/random_nets draws with sine replaced by ReLU, 16-bit signed formats and u8.8 input."""
    rng = np.random.default_rng(seed)
    net = random_net(rng)
    net = TTNet(tuple(LayerSpec(l.shape, "relu" if l.activation == "sine" else l.activation, l.order)
                      for l in net.layers))
    cfg = random_formats(rng, EngineParams(data_bits=16, weight_bits=16, bias_bits=16))
    return net, cfg.with_(input=QFormat(8, 8, signed=False))


@pytest.mark.parametrize("seed", range(40))
def test_emulate_random(seed: int) -> None:
    net, cfg = _random(seed)
    codes, flat, x = _case(net, cfg, seed, batch=3, scale=2.0)
    np.testing.assert_array_equal(emulate(compile_serial(net, cfg), flat, x), net.forward_fixed(codes, x, cfg))


@pytest.mark.parametrize("seed", range(4))
def test_engine_random(seed: int) -> None:
    net, cfg = _random(100 + seed)
    codes, flat, x = _case(net, cfg, seed, batch=2, scale=2.0)
    y, cycles = run_engine(net, cfg, flat, x, x_base=1 + seed)
    np.testing.assert_array_equal(y, net.forward_fixed(codes, x, cfg))
    assert cycles == [compile_serial(net, cfg).cycles()] * len(x)


def test_emulate_mnist() -> None:
    net = mnist_tt(6)
    prog = compile_serial(net, DEFAULT_CONFIG)
    assert prog.macs == net.macs() == 366_048
    assert prog.state_depth == 5376 and prog.n_params == 3962 and prog.out_features == 10
    for seed in range(2):
        codes, flat, x = _case(net, DEFAULT_CONFIG, seed, batch=3)
        np.testing.assert_array_equal(emulate(prog, flat, x), net.forward_fixed(codes, x, DEFAULT_CONFIG))


def test_program_layout() -> None:
    """Bias and core addresses are flat-order indices; the last step streams m row-major."""
    net = mnist_tt(6)
    prog = compile_serial(net, DEFAULT_CONFIG)
    offs = np.cumsum([0] + net.param_sizes())
    assert [s.w_base for s in prog.steps] == [int(offs[i]) for i in (0, 1, 2, 3, 8, 7, 6, 5)]
    assert {s.b_base for s in prog.steps if s.last} == {int(offs[4]), int(offs[9])}
    assert [s.src for s in prog.steps] == ["pixels", "a", "b", "a", "b", "a", "b", "a"]
    assert prog.steps[-1].dst == "out"


@pytest.mark.parametrize("bad, what", [
    (dict(input="s8.8"), "input format"), (dict(input="u16.8"), "input format"),
    (dict(state="s18.10"), "state format"), (dict(weight="u8.8"), "weight format"),
])
def test_refuses_formats(bad: dict, what: str) -> None:
    with pytest.raises(FormatError, match=what):
        compile_serial(mnist_tt(6), DEFAULT_CONFIG.with_(**bad))


def test_refuses_sine() -> None:
    with pytest.raises(FormatError, match="activation 'sine'"):
        compile_serial(mnist_tt(6, hidden_activation="sine"), DEFAULT_CONFIG)


@pytest.mark.parametrize("ni, ci", [(0, 0), (1, 1), (2, 2), (3, 0), (4, 1), (5, 2), (6, 0)])
def test_engine_small(ni: int, ci: int) -> None:
    net, cfg = small_nets()[ni], CFGS[ci]
    codes, flat, x = _case(net, cfg, ni, batch=2, scale=4.0)
    y, cycles = run_engine(net, cfg, flat, x)
    np.testing.assert_array_equal(y, net.forward_fixed(codes, x, cfg))
    assert cycles == [compile_serial(net, cfg).cycles()] * len(x)


def test_engine_backpressure() -> None:
    """o.ready low most cycles: same logits, no logit lost or repeated."""
    net = small_nets()[4]
    codes, flat, x = _case(net, DEFAULT_CONFIG, 3, batch=1)
    y, _ = run_engine(net, DEFAULT_CONFIG, flat, x, x_base=7, ready_every=3)
    np.testing.assert_array_equal(y, net.forward_fixed(codes, x, DEFAULT_CONFIG))


@pytest.mark.slow
def test_engine_mnist() -> None:
    net = mnist_tt(6)
    codes, flat, x = _case(net, DEFAULT_CONFIG, 5, batch=1)
    y, cycles = run_engine(net, DEFAULT_CONFIG, flat, x, x_base=392 * 3)
    np.testing.assert_array_equal(y, net.forward_fixed(codes, x, DEFAULT_CONFIG))
    assert cycles == [compile_serial(net, DEFAULT_CONFIG).cycles()]


def test_engine_timing() -> None:
    """busy from the cycle after start; first bulk address x_base two cycles after start, bulk read
    only during the first step and never written; busy low the cycle after the last logit's accept."""
    net = small_nets()[0]
    prog = compile_serial(net, DEFAULT_CONFIG)
    codes, flat, x = _case(net, DEFAULT_CONFIG, 1, batch=1)
    eng = SerialEngine(prog)
    bulk = [0] * (1 << 15)
    bulk[40:40 + len(pack_pixels(x[0]))] = [int(v) for v in pack_pixels(x[0])]
    top = _Top(eng, [int(v) & 0xFFFF for v in flat], bulk)
    trace: list[tuple[int, int, int, int]] = []

    async def bench(ctx):
        ctx.set(eng.o.ready, 1)
        ctx.set(eng.x_base, 40)
        ctx.set(eng.start, 1)
        trace.append((ctx.get(eng.busy), ctx.get(eng.bulk.addr), ctx.get(eng.bulk.we), 0))
        await ctx.tick()
        ctx.set(eng.start, 0)
        for _ in range(prog.cycles() + 3):
            trace.append((ctx.get(eng.busy), ctx.get(eng.bulk.addr), ctx.get(eng.bulk.we),
                          ctx.get(eng.o.valid) & ctx.get(eng.o.ready)))
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    busy = [t[0] for t in trace]
    assert busy[0] == 0 and busy[1] == 1 and sum(busy) == prog.cycles()
    accepts = [i for i, t in enumerate(trace) if t[3]]
    assert len(accepts) == prog.out_features and busy[accepts[-1]] == 1 and busy[accepts[-1] + 1] == 0
    assert trace[2][1] == 40 and not any(t[2] for t in trace)
    first = prog.steps[0]
    xw = (prog.n_in + 1) // 2
    assert all(40 <= t[1] < 40 + xw for t in trace[2:2 + first.n_out * first.k_len])
