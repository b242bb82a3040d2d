"""Board driver against the Python reference board: identify, regions, config, runs, retries, errors."""
from __future__ import annotations

import numpy as np
import pytest

from ttzo.host import protocol as P
from ttzo.host.board import Board, BoardAbsent, CommandError, VersionMismatch, bytes_to_words, words_to_bytes
from ttzo.host.transport import FakeXdmaDevice
from ttzo.sim.link_model import LinkModel, default_identify, serve


@pytest.fixture
def served():
    model = LinkModel(default_identify(max_payload=256))
    port, stop = serve(model)
    yield model, f"socket://127.0.0.1:{port}"
    stop()


def test_identify_and_regions(served):
    model, url = served
    with Board.open(url) as b:
        assert b.info == model.ident
        rng = np.random.default_rng(1)
        params = rng.integers(-2**15, 2**15, size=500)
        b.write_words(P.Region.PARAMS, params)               # several 256-byte frames
        assert np.array_equal(b.read_words(P.Region.PARAMS, 500), params)
        assert np.array_equal(bytes_to_words(bytes(model.mem[P.Region.PARAMS][:1000]), 16), params)
        pixels = rng.integers(0, 256, size=2048, dtype=np.uint8).tobytes()
        b.write_region(P.Region.BATCH, pixels)
        assert b.read_region(P.Region.BATCH) == pixels
        b.configure(3, [1, 0xFFFFFFFF, 7])
        assert b.read_config(2, 4) == [0, 1, 0xFFFFFFFF, 7]
        st = b.run_steps(5)
        assert not st.busy and st.last_op == P.Op.STEPS
        assert b.read_results(0, 3) == [P.Op.STEPS, 5, 1]
        b.reset()
        assert b.read_config() == [0] * model.ident.n_config
        assert b.status().rx_ok == 2          # counters cleared by RESET; then READ_CONFIG and this STATUS


def test_refusals_are_command_errors(served):
    _, url = served
    with Board.open(url) as b:
        with pytest.raises(CommandError, match="READ_ONLY"):
            b.request(P.Cmd.WRITE_REGION, P.WRITE_HDR.pack(P.Region.OUTPUTS, 0) + b"\0" * 4)
        with pytest.raises(CommandError, match="RANGE"):
            b.request(P.Cmd.READ_REGION, P.READ_REQ.pack(P.Region.LABELS, 60, 8))
        with pytest.raises(CommandError, match="COMMAND"):
            b.request(0x3F)
        with pytest.raises(ValueError, match="region labels"):
            b.read_region(P.Region.LABELS, 8, 60)            # checked on the host before sending


def test_words_bytes_round_trip():
    for width in (8, 16, 24, 32):
        codes = np.array([-(1 << (width - 1)), -1, 0, 1, (1 << (width - 1)) - 1])
        assert np.array_equal(bytes_to_words(words_to_bytes(codes, width), width), codes)


class Faulty:
    """The reference board behind an XDMA double, with faults injected per request number."""

    def __init__(self, drop=(), corrupt_reply=(), corrupt_request=()):
        self.model = LinkModel(default_identify(max_payload=256))
        self.n = 0
        self.drop, self.corrupt_reply, self.corrupt_request = set(drop), set(corrupt_reply), set(corrupt_request)

    def __call__(self, data: bytes) -> bytes:
        self.n += 1
        if self.n in self.corrupt_request:
            data = bytearray(data); data[4] ^= 0x10; data = bytes(data)
        reply = self.model.feed(data)
        if self.n in self.drop:
            return b""
        if self.n in self.corrupt_reply and reply:
            reply = bytearray(reply); reply[3] ^= 0x01; reply = bytes(reply)
        return reply


@pytest.mark.parametrize("fault", ["drop", "corrupt_reply", "corrupt_request"])
def test_retries_are_idempotent(fault):
    card = Faulty(**{fault: [3]})           # request 1 identify, 2 write, 3 RUN_STEPS
    dev = FakeXdmaDevice(card)
    try:
        with Board.open(dev.url, timeout=0.3) as b:
            b.write_region(P.Region.LABELS, bytes(range(64)))
            b.run_steps(4)
            assert b.stats.retransmits == 1
            assert b.read_results(0, 3) == [P.Op.STEPS, 4, 1]     # ran exactly once
            assert b.read_region(P.Region.LABELS) == bytes(range(64))
    finally:
        dev.close()


def test_absent_board_and_loopback():
    with pytest.raises(BoardAbsent, match="loopback"):
        Board.open("loop://", timeout=0.05, retries=1)
    dev = FakeXdmaDevice(lambda data: b"")        # card present but silent
    try:
        with pytest.raises(BoardAbsent, match="no reply to IDENTIFY after 2 attempts"):
            Board.open(dev.url, timeout=0.05, retries=1)
    finally:
        dev.close()


def test_version_mismatch_is_clear():
    def v2_board(data: bytes) -> bytes:
        out = b""
        for raw in P.FrameSplitter().feed(data):
            f = P.decode_body(P.slip_unescape(raw))
            out += P.Frame(f.command | P.REPLY_BIT, f.seq, b"", P.Status.VERSION, version=2).encode()
        return out
    dev = FakeXdmaDevice(v2_board)
    try:
        with pytest.raises(VersionMismatch, match="version 2"):
            Board.open(dev.url, timeout=0.2)
    finally:
        dev.close()


def test_cli_board_identify_json(capsys):
    import json
    from ttzo.host.cli import main
    assert main(["board", "identify", "--port", "model://", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["protocol_version"] == P.VERSION and info["formats"]["weight"] == "s16.13"
    assert {r["name"] for r in info["regions"]} >= {"params", "batch", "labels", "nodes", "colloc"}
    assert main(["board", "identify", "--port", "loop://", "--timeout", "0.2", "--retries", "0"]) == 2
    assert "loopback" in capsys.readouterr().err


def test_cli_bench_link_meets_goal(capsys):
    import json
    from ttzo.host.cli import main
    assert main(["bench", "link", "--json", "--baud", "9600", "--batch", "8"]) == 0
    rep = json.loads(capsys.readouterr().out)
    bt = rep["batch_transfer"]
    assert bt["payload_bytes"] == 8 * 784 + 8
    # line bytes >= payload + the fixed per-frame overhead of every frame sent
    frames = rep["batch"]["frames"] + rep["labels"]["frames"]
    assert bt["line_bytes"] >= bt["payload_bytes"] + frames * rep["frame_overhead_bytes"]
    assert bt["efficiency"] >= 0.90 and rep["meets_goal"]
    assert bt["seconds_at_baud"] == pytest.approx(bt["line_bytes"] * 10 / 9600, rel=1e-3)


def test_training_conveniences(served, mnist_dir):
    from ttzo.golden.mnist import load_mnist
    model, url = served
    m = load_mnist(mnist_dir)
    with Board.open(url) as b:
        b.load_batch(m.train_images[:2], m.train_labels[:2])        # 2 x 784 bytes fit the 2048-byte test region
        assert bytes(model.mem[P.Region.BATCH][:1568]) == m.train_images[:2].tobytes()
        assert bytes(model.mem[P.Region.LABELS][:2]) == m.train_labels[:2].tobytes()
        codes = np.arange(-100, 100)
        b.load_params(codes)
        assert np.array_equal(b.read_params(200), codes)
        b.load_table(P.Region.NODES, [-3, 0, 3])
        assert np.array_equal(b.read_words(P.Region.NODES, 3), [-3, 0, 3])
        with pytest.raises(ValueError, match="outside 16-bit"):
            b.load_params([1 << 16])
