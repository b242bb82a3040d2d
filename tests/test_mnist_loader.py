"""MNIST loader: synthetic IDX files in tmp_path (never a copy of the real data) and the shared real copy."""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from ttzo.golden import mnist as M
from ttzo.golden.idx import IDXError, encode_idx, parse_idx, read_idx, write_idx


def make_dataset(d: Path, n_train: int = 12, n_test: int = 5, gz: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8)}
    d.mkdir(parents=True, exist_ok=True)
    for role, name in M.FILES.items():
        write_idx(d / (name if gz else name.removesuffix(".gz")), arrays[role])
    return arrays


def test_loads_any_counts_gzip_or_raw(tmp_path: Path) -> None:
    for gz in (True, False):
        d = tmp_path / f"gz{gz}"
        arrays = make_dataset(d, gz=gz)
        m = M.load_mnist(d)
        assert m.train_images.shape == (12, 784) and m.test_images.shape == (5, 784)
        assert m.train_images.dtype == np.uint8 and m.test_labels.dtype == np.uint8
        assert np.array_equal(m.train_images, arrays["train_images"].reshape(12, 784))   # row-major flatten
        assert np.array_equal(m.test_labels, arrays["test_labels"])
        assert not m.train_images.flags.writeable
        assert m.summary()["train"] == 12


def test_idx_roundtrip_all_types() -> None:
    for dt in ("u1", "i1", ">i2", ">i4", ">f4", ">f8"):
        a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dt)
        assert np.array_equal(parse_idx(encode_idx(a)), a)
    with pytest.raises(IDXError, match="no IDX type code"):
        encode_idx(np.zeros(3, dtype=np.uint16))


def _corrupt(tmp_path: Path, role: str, data: bytes, raw: bool = False) -> Path:
    d = tmp_path / "data"
    make_dataset(d)
    name = M.FILES[role]
    p = d / name
    p.write_bytes(data if raw else gzip.compress(data))
    return p


def _idx(a: np.ndarray) -> bytes:
    return encode_idx(a)


@pytest.mark.parametrize("role, make, message", [
    ("train_images", lambda: _idx(np.zeros((12, 28, 28), np.uint8))[:-100], "truncated"),
    ("test_labels", lambda: _idx(np.zeros(5, np.uint8))[:6], "truncated header"),
    ("train_labels", lambda: b"\x00\x01\x08\x01" + _idx(np.zeros(12, np.uint8))[4:], "wrong magic"),
    ("train_labels", lambda: b"\x08\x00\x00\x01" + _idx(np.zeros(12, np.uint8))[4:], "wrong magic"),
    ("test_images", lambda: b"\x00\x00\x07\x03" + _idx(np.zeros((5, 28, 28), np.uint8))[4:], "unknown IDX type"),
    ("test_images", lambda: _idx(np.zeros((5, 27, 28), np.uint8)), r"not \(count, 28, 28\)"),
    ("test_images", lambda: _idx(np.zeros((5, 784), np.uint8)), r"not \(count, 28, 28\)"),
    ("test_images", lambda: _idx(np.zeros((5, 28, 28), np.int16)), "unsigned bytes"),
    ("train_labels", lambda: _idx(np.array([0, 1, 10] + [0] * 9, np.uint8)), "label 10 at index 2"),
    ("train_labels", lambda: _idx(np.zeros(11, np.uint8)), "11 labels but train-images-idx3-ubyte.gz has 12"),
    ("train_labels", lambda: _idx(np.zeros(12, np.uint8)) + b"\x00", "unexpected bytes"),
])
def test_rejects_corrupt_files(tmp_path: Path, role: str, make, message: str) -> None:
    p = _corrupt(tmp_path, role, make())
    with pytest.raises(M.MNISTError, match=message) as exc:
        M.load_mnist(p.parent)
    assert p.name in str(exc.value)           # the error names the file


def test_rejects_truncated_and_bad_gzip(tmp_path: Path) -> None:
    d = tmp_path / "data"
    make_dataset(d)
    p = d / M.FILES["test_images"]
    full = p.read_bytes()
    p.write_bytes(full[: len(full) // 2])
    with pytest.raises(M.MNISTError, match=r"t10k-images-idx3-ubyte\.gz: truncated gzip"):
        M.load_mnist(d)
    p.write_bytes(full[:10] + bytes(b ^ 0x55 for b in full[10:]))
    with pytest.raises(M.MNISTError, match=r"t10k-images-idx3-ubyte\.gz: corrupt gzip"):
        M.load_mnist(d)
    # the uncompressed file, truncated
    p.unlink()
    (d / "t10k-images-idx3-ubyte").write_bytes(_idx(np.zeros((5, 28, 28), np.uint8))[:500])
    with pytest.raises(M.MNISTError, match=r"t10k-images-idx3-ubyte: truncated"):
        M.load_mnist(d)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(M.MNISTError, match="does not exist"):
        M.load_mnist(tmp_path / "nowhere")
    d = tmp_path / "data"
    make_dataset(d)
    (d / M.FILES["test_labels"]).unlink()
    with pytest.raises(M.MNISTError, match="t10k-labels-idx1-ubyte.gz: file not found"):
        M.load_mnist(d)
    with pytest.raises(IDXError, match="file not found"):
        read_idx(d / "nope.gz")


def test_checksum_files_are_verified(tmp_path: Path) -> None:
    d = tmp_path / "data"
    make_dataset(d)
    lines = [f"{hashlib.sha256((d / n).read_bytes()).hexdigest()}  {n}" for n in M.FILES.values()]
    (d / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    M.load_mnist(d)
    md5 = hashlib.md5((d / M.FILES["train_labels"]).read_bytes()).hexdigest()
    (d / "MD5SUMS").write_text(f"{md5} *{M.FILES['train_labels']}\n")
    M.load_mnist(d)
    write_idx(d / M.FILES["train_labels"], np.zeros(12, np.uint8))   # valid IDX, but not the listed file
    with pytest.raises(M.MNISTError, match=r"train-labels-idx1-ubyte\.gz: sha256 checksum mismatch"):
        M.load_mnist(d)


def test_resolve_data_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TTZO_DATA", str(tmp_path / "env"))
    assert M.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert M.resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("TTZO_DATA")
    assert M.cache_dir() == tmp_path / "cache" / "ttzo" / "mnist"
    make_dataset(M.cache_dir())
    assert M.resolve_data_dir() == M.cache_dir()
    monkeypatch.setattr(M, "SHARED_DIR", tmp_path / "no-shared")
    (M.cache_dir() / M.FILES["test_labels"]).unlink()
    assert M.resolve_data_dir() == M.cache_dir()      # nothing else: the cache, where download puts the files
    monkeypatch.setattr(M, "SHARED_DIR", tmp_path / "shared")
    make_dataset(tmp_path / "shared")
    assert M.resolve_data_dir() == tmp_path / "shared"


def test_download_verifies_md5_and_moves_only_verified_files(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    make_dataset(mirror)
    good = {n: hashlib.md5((mirror / n).read_bytes()).hexdigest() for n in M.FILES.values()}
    bad = dict(good, **{M.FILES["test_images"]: "0" * 32})
    dest = tmp_path / "dest"
    with pytest.raises(M.MNISTError, match="could not download t10k-images-idx3-ubyte.gz.*MD5"):
        M.download_mnist(dest, mirrors=[mirror.as_uri() + "/"], md5=bad)
    assert not (dest / M.FILES["test_images"]).exists()
    assert not list(dest.glob("*.part"))                  # no half-written temporaries
    M.download_mnist(dest, mirrors=[(tmp_path / "empty").as_uri(), mirror.as_uri()], md5=good)
    assert {p.name for p in dest.iterdir()} == set(M.FILES.values())
    assert M.load_mnist(dest).test_labels.size == 5


def test_real_mnist(mnist_dir: Path) -> None:
    m = M.load_mnist(mnist_dir)
    assert m.train_images.shape == (60000, 784) and m.test_images.shape == (10000, 784)
    assert m.train_labels.shape == (60000,) and m.test_labels.shape == (10000,)
    assert np.bincount(m.test_labels).tolist()[:3] == [980, 1135, 1032]   # the well-known test class counts
    assert m.test_labels[:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]
    paths = [mnist_dir / n for n in M.FILES.values()]
    assert M.verify_checksums(mnist_dir, paths) == (4 if (mnist_dir / "SHA256SUMS").exists() else 0)
    assert M.OFFICIAL_MD5["t10k-labels-idx1-ubyte.gz"] == M.file_digest(paths[3], "md5")
