"""Stream drivers for Amaranth's own simulator, shared by the ZO blocks' unit tests.

The cocotb benches (sim/tb_zo_*.py) prove the generated Verilog; these drive the same blocks
in ``amaranth.sim`` where a fast, dependency-free check is enough.  A transfer happens at a
clock edge where valid and ready are both high; ``until`` samples exactly that edge.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable

from amaranth.sim import Simulator


async def send(ctx: Any, port: Any, payloads: Iterable[Any]) -> None:
    """Drive a lib.stream input with each payload in turn, honouring ready."""
    for p in payloads:
        ctx.set(port.valid, 1)
        ctx.set(port.payload, p)
        await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


async def recv(ctx: Any, port: Any, n: int) -> list[Any]:
    """Accept n payloads from a lib.stream output (ready held high)."""
    ctx.set(port.ready, 1)
    out = []
    for _ in range(n):
        (v,) = await ctx.tick().sample(port.payload).until(port.valid)
        out.append(v)
    ctx.set(port.ready, 0)
    return out


def run(dut: Any, *benches: Callable[[Any], Awaitable[None]], vcd: str | None = None) -> None:
    """Simulate `dut` with a 1 MHz clock until every testbench returns."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for b in benches:
        sim.add_testbench(b)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
