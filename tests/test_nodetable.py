"""Node tables: documented binary layout, float/fixed round trips, validation errors."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from ttzo.golden import nodetable as nt
from ttzo.golden.fixed import FormatError, QFormat
from ttzo.golden.sparse_grid import smolyak_gauss_hermite
from ttzo.golden.stein import sparse_grid_factors, stein_with_factors


@pytest.fixture(scope="module")
def table21() -> nt.NodeTable:
    return nt.sparse_grid_table(21, 3, 0.1, lap_dims=20)


def test_header_layout_by_hand(table21: nt.NodeTable) -> None:
    """Parse the header with the offsets of the documented layout, independently of the reader."""
    data = nt.encode(table21)
    assert data[0:4] == b"TTSG"
    assert struct.unpack_from("<H", data, 4)[0] == 1          # version
    assert data[6] == 0 and data[7] == 1                       # float, symmetric
    assert struct.unpack_from("<HHI", data, 8) == (21, 20, 925)
    assert struct.unpack_from("<H", data, 16)[0] == 3          # level
    assert struct.unpack_from("<d", data, 20)[0] == 0.1
    assert data[36:60] == b"\0" * 24
    assert struct.unpack_from("<I", data, 60)[0] == zlib.crc32(data[:60] + data[64:])
    assert len(data) == 64 + 925 * (2 * 21 + 2) * 8
    # first record: the origin, weight 204, a = 0
    rec0 = np.frombuffer(data[64:64 + 44 * 8], dtype="<f8")
    assert not rec0[:21].any() and rec0[21] == pytest.approx(204.0) and not rec0[22:43].any()


def test_float_round_trip_exact(table21: nt.NodeTable, tmp_path: Path) -> None:
    p = tmp_path / "sg.bin"
    nt.write(p, table21)
    back, fmts = nt.read(p)
    assert fmts is None
    assert np.array_equal(back.records(), table21.records())
    assert (back.dim, back.count, back.lap_dims, back.level, back.symmetric) == (21, 925, 20, 3, True)


def test_fixed_round_trip_half_lsb(table21: nt.NodeTable, tmp_path: Path) -> None:
    p = tmp_path / "sg_fixed.bin"
    fm = nt.DEFAULT_TABLE_FORMATS
    nt.write(p, table21, fm)
    back, fmts = nt.read(p)
    assert fmts == fm
    for name, got, want in (("delta", back.deltas, table21.deltas), ("weight", back.weights, table21.weights),
                            ("a", back.a, table21.a), ("b", back.b, table21.b)):
        assert np.abs(got - want).max() <= fm[name].lsb / 2 + 1e-15, name
    codes = nt.codes(table21, fm)
    assert np.array_equal(fm["a"].quantize(back.a), codes["a"])
    assert p.stat().st_size == 64 + 925 * 44 * 4


def test_table_drives_the_estimator(table21: nt.NodeTable, tmp_path: Path) -> None:
    """Stein estimates from a table read back from disk equal those from the rule itself."""
    p = tmp_path / "t.bin"
    nt.write(p, table21)
    back, _ = nt.read(p)
    f = lambda y: np.sin(y @ np.linspace(-1, 1, 21)) + y[..., 0] ** 3  # noqa: E731
    x = np.random.default_rng(0).uniform(0, 1, (3, 21))
    g1, l1 = stein_with_factors(f, x, back.factors())
    g2, l2 = stein_with_factors(f, x, sparse_grid_factors(smolyak_gauss_hermite(21, 3), 0.1, lap_dims=20))
    assert np.array_equal(g1, g2) and np.array_equal(l1, l2)


def test_corrupt_files_rejected(table21: nt.NodeTable, tmp_path: Path) -> None:
    good = nt.encode(table21)
    cases = {
        "magic": b"XXXX" + good[4:],
        "version": good[:4] + struct.pack("<H", 9) + good[6:],
        "crc32": good[:100] + bytes([good[100] ^ 1]) + good[101:],
        "body has": good[:-8],
        "shorter than": good[:10],
    }
    for what, data in cases.items():
        p = tmp_path / f"bad_{what.replace(' ', '_')}.bin"
        p.write_bytes(data)
        with pytest.raises(nt.NodeTableError, match=what) as exc:
            nt.read(p)
        assert str(p) in str(exc.value)
    with pytest.raises(nt.NodeTableError, match="cannot read"):
        nt.read(tmp_path / "missing.bin")


def test_fixed_refuses_saturation(table21: nt.NodeTable) -> None:
    narrow = dict(nt.DEFAULT_TABLE_FORMATS, b=QFormat(16, 4))
    with pytest.raises(FormatError, match="b values"):
        nt.encode(table21, narrow)
    with pytest.raises(nt.NodeTableError, match="signed int32"):
        nt.encode(table21, dict(nt.DEFAULT_TABLE_FORMATS, a=QFormat(40, 8)))


def test_small_grid_values() -> None:
    """D = 2, level 2: origin weight -1, +-e_i weight 1/2; a = w z / sigma, b = w (|z|^2 - 2) / sigma^2."""
    t = nt.sparse_grid_table(2, 2, 0.5)
    assert t.count == 5
    assert t.weights[0] == pytest.approx(-1.0)
    assert np.allclose(t.weights[1:], 0.5)
    assert np.allclose(t.a[1:], 0.5 * t.deltas[1:] / 0.5 / 0.5)
    assert np.allclose(t.b[1:], 0.5 * (1 - 2) / 0.25)
    assert t.b.sum() == pytest.approx(0.0, abs=1e-12)
