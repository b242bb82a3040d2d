"""Virtual board: unchanged host driver over socket:// to the simulated link design (Verilator)."""
from __future__ import annotations

import numpy as np
import pytest

from ttzo.host import protocol as P
from ttzo.host.board import Board
from ttzo.sim import verilator_env
from ttzo.sim.link_model import default_identify

pytestmark = pytest.mark.skipif(not verilator_env.available(), reason="Verilator not available")


def _session(url: str, ident: P.Identify, timeout: float) -> None:
    rng = np.random.default_rng(5)
    with Board.open(url, timeout=timeout) as b:
        assert b.info == ident
        params = rng.integers(-2**15, 2**15, size=300)
        b.write_words(P.Region.PARAMS, params)
        assert np.array_equal(b.read_words(P.Region.PARAMS, 300), params)
        labels = rng.integers(0, 10, size=64, dtype=np.uint8).tobytes()
        b.write_region(P.Region.LABELS, labels)
        assert b.read_region(P.Region.LABELS) == labels
        b.configure(0, [7, 8, 9])
        assert b.read_config(0, 3) == [7, 8, 9]
        st = b.run_steps(1000)                       # the stub engine is busy 1001 cycles
        assert st.op_cycles == 1001 and st.last_op == P.Op.STEPS
        assert b.read_results(0, 3) == [P.Op.STEPS, 1000, 1]
        b.reset()
        assert b.read_config(0, 3) == [0, 0, 0]


def test_virtual_board_stream_path():
    from ttzo.sim.virtual_board import start
    ident = default_identify(max_payload=256)
    port, stop = start(ident, phy="stream", connections=1)
    try:
        _session(f"socket://127.0.0.1:{port}", ident, timeout=2.0)
    finally:
        stop()


@pytest.mark.slow
def test_virtual_board_uart_path():
    from ttzo.sim.virtual_board import start
    ident = default_identify(max_payload=256, uart_divisor=8)
    port, stop = start(ident, phy="uart", connections=1)
    try:
        _session(f"socket://127.0.0.1:{port}", ident, timeout=20.0)
    finally:
        stop()
