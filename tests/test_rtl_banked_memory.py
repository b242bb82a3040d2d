"""rtl/banked_memory.BankedMemory against a Python list: flat writes, the 1-cycle read port and the pipelined read;
the ECP5 DP16KD instance version in Icarus with the behavioural model sim/models/ecp5_dp16kd.v."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from amaranth import Module, signed
from amaranth.back import verilog
from amaranth.sim import Simulator

from ttzo.rtl.banked_memory import BankedMemory, uses_ecp5_bram
from ttzo.sim.runner import have_icarus, icarus_output


@pytest.mark.parametrize("depth,bank_depth,write_group", [(50, 16, 0), (64, 16, 0), (7, 16, 0), (33, 1, 0),
                                                         (50, 16, 2), (33, 1, 8), (7, 16, 1), (64, 8, 3)])
def test_reads_follow_writes_across_banks(depth: int, bank_depth: int, write_group: int) -> None:
    """write_group > 0: each write lands one cycle later (registered per group of banks)."""
    rng = np.random.default_rng(depth * 100 + bank_depth)
    init = [int(v) for v in rng.integers(-256, 256, size=depth)]
    mem = BankedMemory(shape=signed(9), depth=depth, bank_depth=bank_depth, init=init, write_group=write_group)
    assert mem.n_banks == -(-depth // mem.bank_depth)
    wr, rd, prd = mem.write_port(), mem.read_port(transparent_for=()), mem.pipelined_read_port()
    m = Module()
    m.submodules.mem = mem
    model = list(init)
    ops = [(int(rng.integers(0, 2)), int(rng.integers(0, depth)), int(rng.integers(-256, 256)),
            int(rng.integers(0, depth)), int(rng.integers(0, depth)), int(rng.integers(0, 4) != 0))
           for _ in range(300)]
    seen = {"rd": 0, "prd": 0}

    async def bench(ctx):
        piped: list[int] = []      # expected pipelined data, LATENCY cycles behind
        last_rd = None
        pending = None             # a registered write, landing at the next tick
        for we, wa, wd, ra, pa, ren in ops:
            ctx.set(wr.en, we)
            ctx.set(wr.addr, wa)
            ctx.set(wr.data, wd)
            ctx.set(rd.addr, ra)
            ctx.set(rd.en, ren)
            ctx.set(prd.addr, pa)
            piped.append(model[pa])          # read before this cycle's write lands (non-transparent)
            want_rd = model[ra] if ren else last_rd
            await ctx.tick()
            if write_group:
                if pending:
                    model[pending[0]] = pending[1]
                pending = (wa, wd) if we else None
            elif we:
                model[wa] = wd
            if want_rd is not None:
                assert ctx.get(rd.data) == want_rd
                seen["rd"] += 1
            last_rd = want_rd
            if len(piped) > BankedMemory.LATENCY - 1:
                want = piped[-BankedMemory.LATENCY]
                # a write between the read and the data's arrival does not change it (block RAM timing)
                assert ctx.get(prd.data) == want
                seen["prd"] += 1

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen["rd"] > 200 and seen["prd"] > 200


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="power of two"):
        BankedMemory(shape=9, depth=10, bank_depth=6)
    with pytest.raises(ValueError, match="init has 11 words"):
        BankedMemory(shape=9, depth=10, init=range(11))
    with pytest.raises(ValueError, match="write_group must be >= 0"):
        BankedMemory(shape=9, depth=10, write_group=-1)


# --- the ECP5 instance (DP16KD with its output register) against the same list model, in Icarus -------------

class _Ecp5:
    """Just enough of an ECP5 platform for BankedMemory to pick the DP16KD instance."""
    family = "ecp5"


DP16KD_MODEL = Path(__file__).resolve().parents[1] / "sim" / "models" / "ecp5_dp16kd.v"


def test_platform_selects_the_block_ram_instance_only_where_it_fits() -> None:
    def verilog_of(platform, *, reads=0, init=(), shape=signed(9), bank_depth=16) -> str:
        mem = BankedMemory(shape=shape, depth=50, bank_depth=bank_depth, init=init, write_group=2)
        ports = [*_ports(mem.write_port()), *_ports(mem.pipelined_read_port())]
        for _ in range(reads):
            ports += _ports(mem.read_port())
        return verilog.convert(mem, ports=ports, platform=platform, emit_src=False)

    assert uses_ecp5_bram(_Ecp5()) and not uses_ecp5_bram(None)
    assert verilog_of(_Ecp5()).count("DP16KD ") == 4
    assert "DP16KD" not in verilog_of(None)
    assert "DP16KD" not in verilog_of(_Ecp5(), reads=1)              # a second read port: generic
    assert "DP16KD" not in verilog_of(_Ecp5(), init=[1] * 50)        # initial contents: generic
    assert "DP16KD" not in verilog_of(_Ecp5(), shape=signed(10))     # wider than one DP16KD x9 port
    assert verilog_of(_Ecp5(), init=[0] * 50).count("DP16KD ") == 4


def _ports(p) -> list:
    return [p.addr, p.data, p.en]


@pytest.mark.skipif(not have_icarus(), reason="needs Icarus Verilog (iverilog, vvp)")
@pytest.mark.parametrize("depth,bank_depth,write_group,signed_", [(50, 16, 2, True), (3000, 2048, 0, False),
                                                                  (40, 8, 1, True)])
def test_ecp5_instance_reads_follow_writes(tmp_path: Path, depth: int, bank_depth: int, write_group: int,
                                           signed_: bool) -> None:
    """Random writes and pipelined reads, never reading the word written at the same clock edge (the
    hardware leaves that undefined; the model returns X there, which would fail the comparison)."""
    bits = 9 if signed_ else 7
    shape = signed(bits) if signed_ else bits
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed_ else (0, 1 << bits)
    mem = BankedMemory(shape=shape, depth=depth, bank_depth=bank_depth, write_group=write_group)
    wr, prd = mem.write_port(), mem.pipelined_read_port()
    (tmp_path / "dut.v").write_text(verilog.convert(mem, name="dut", ports=[wr.addr, wr.data, wr.en, prd.addr,
                                                                            prd.data], platform=_Ecp5(),
                                                    emit_src=False))
    rng = np.random.default_rng(depth + write_group)
    model = [0] * depth
    n = 600
    stim, want = [], []
    pending = None                      # a registered write landing at the next edge
    hot = list(rng.integers(0, depth, size=4))      # a few addresses hit often (read after write)
    for t in range(n):
        we = int(rng.integers(0, 2))
        wa = int(hot[t % 4] if rng.random() < 0.5 else rng.integers(0, depth))
        wd = int(rng.integers(lo, hi))
        landing = (pending if write_group else ((wa, wd) if we else None))    # written at this edge
        pa = int(hot[(t + 1) % 4] if rng.random() < 0.5 else rng.integers(0, depth))
        while landing is not None and pa == landing[0]:
            pa = int(rng.integers(0, depth))
        want.append(model[pa])
        if landing is not None:
            model[landing[0]] = landing[1]
        if write_group:
            pending = (wa, wd) if we else None
        stim.append((we, wa, wd & 0x1FF, pa))
    (tmp_path / "stim.hex").write_text("".join(f"{we:01x}{wa:04x}{wd:03x}{pa:04x}\n" for we, wa, wd, pa in stim))
    (tmp_path / "tb.v").write_text(f"""
module tb;
  reg clk = 0, rst, we;
  reg [15:0] wa, pa;
  reg [8:0] wd;
  wire [{bits - 1}:0] q;
  reg [47:0] mem [0:{n - 1}];
  integer i;
  dut u (.clk(clk), .rst(rst), .wr0_en(we), .wr0_addr(wa[{(depth - 1).bit_length() - 1}:0]), .wr0_data(wd),
         .prd0_addr(pa[{(depth - 1).bit_length() - 1}:0]), .prd0_data(q));
  initial begin
    $readmemh("stim.hex", mem);
    #1 rst = 1; we = 0; wa = 0; wd = 0; pa = 0;     // after time 0: the combinational blocks see events
    #1 clk = 1; #1 clk = 0; rst = 0;
    for (i = 0; i < {n}; i = i + 1) begin
      we = mem[i][44]; wa = mem[i][43:28]; wd = mem[i][24:16]; pa = mem[i][15:0];
      #1 clk = 1; #1 clk = 0;
      $display("%b", q);
    end
    $finish;
  end
endmodule
""")
    out = icarus_output(tmp_path, ["tb.v", "dut.v", DP16KD_MODEL])
    lines = [x for x in out.split() if set(x) <= set("01xz")]
    assert len(lines) == n
    lat = BankedMemory.LATENCY
    got = lines[lat - 1:]
    assert all(set(x) <= set("01") for x in got), "X/Z from the block RAM model (collision or bad wiring)"
    vals = [int(x, 2) - ((1 << bits) if signed_ and x[0] == "1" else 0) for x in got]
    assert vals == want[:n - lat + 1]
