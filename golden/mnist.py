"""MNIST: find, optionally download, verify and load the four IDX files, all or nothing.

Where the files are (`resolve_data_dir`): an explicit directory (the CLI's --data), else the
TTZO_DATA environment variable, else the per-user cache ($XDG_CACHE_HOME/ttzo/mnist or
~/.cache/ttzo/mnist) when it holds the files, else the project's sibling
../shared/datasets/mnist when it exists, else the cache (where `download=True` puts them).

`load_mnist` reads the four files into one frozen `MNIST` record or raises `MNISTError`
naming the file and the defect (missing, truncated, bad gzip, wrong magic, wrong dims,
image/label count mismatch, label out of range, checksum mismatch): nothing is half-loaded.
Any dataset with the same layout (28x28 uint8 images, uint8 labels 0..9, any counts) loads.
Pixels stay uint8: the byte p is the input code of format u8.8 (value p/256).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .idx import IDXError, read_idx

#: Roles -> official file names.
FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
#: MD5 of the official .gz files (as published with the dataset).
OFFICIAL_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
#: Where the official files are served (tried in order; every file is MD5-verified).
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
#: Checksum lists recognised beside the data ("<hex digest>  <file name>" per line).
CHECKSUM_FILES: dict[str, str] = {"SHA256SUMS": "sha256", "sha256sums.txt": "sha256",
                                  "MD5SUMS": "md5", "md5sums.txt": "md5"}
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10
ENV_VAR = "TTZO_DATA"
SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"


class MNISTError(ValueError):
    """The MNIST files are missing, corrupt or inconsistent; the message names the file.

    A ValueError, so the `ttzo` command line reports it as a one-line error (no traceback).
    """


@dataclass(frozen=True)
class MNIST:
    """The dataset: images flattened row-major to (count, 784) uint8, labels (count,) uint8."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: Path

    def __post_init__(self) -> None:
        for name in ("train_images", "train_labels", "test_images", "test_labels"):
            getattr(self, name).setflags(write=False)

    def summary(self) -> dict:
        return {"source": str(self.source), "train": int(self.train_labels.size), "test": int(self.test_labels.size),
                "pixels": int(self.train_images.shape[1])}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ttzo" / "mnist"


def _has_files(d: Path) -> bool:
    return all(_find(d, f) is not None for f in FILES.values())


def resolve_data_dir(arg: str | Path | None = None) -> Path:
    """The MNIST directory: explicit arg, then $TTZO_DATA, then the cache / shared copy (module doc)."""
    if arg is not None and str(arg) != "":
        return Path(arg).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    cache = cache_dir()
    if not _has_files(cache) and _has_files(SHARED_DIR):
        return SHARED_DIR
    return cache


def _find(d: Path, name: str) -> Path | None:
    """`name` (.gz) or its uncompressed twin in `d`."""
    for cand in (d / name, d / name.removesuffix(".gz")):
        if cand.is_file():
            return cand
    return None


def file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checksums(d: Path) -> list[tuple[str, str, str, Path]]:
    """(algorithm, file name, digest, list file) for every entry of checksum lists found in `d`."""
    out = []
    for fname, algo in CHECKSUM_FILES.items():
        p = d / fname
        if not p.is_file():
            continue
        for lineno, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise MNISTError(f"{p}:{lineno}: cannot read checksum line {line!r}")
            digest, name = parts
            out.append((algo, name.lstrip("*").strip(), digest.lower(), p))
    return out


def verify_checksums(d: Path, paths: Iterable[Path]) -> int:
    """Check the files against the checksum lists beside them; returns how many were checked."""
    wanted = {p.name: p for p in paths}
    checked = 0
    for algo, name, digest, listfile in read_checksums(d):
        if name in wanted:
            got = file_digest(wanted[name], algo)
            if got != digest:
                raise MNISTError(f"{wanted[name]}: {algo} checksum mismatch: {got}, but {listfile.name} lists {digest} "
                                 "(corrupt or replaced file)")
            checked += 1
    return checked


def download_mnist(dest: str | Path | None = None, mirrors: Iterable[str] = MIRRORS,
                   md5: dict[str, str] | None = None, timeout: float = 60.0) -> Path:
    """Fetch the official files that `dest` (default: the cache) lacks, verifying each MD5.

    Each file goes to a temporary file in `dest` and is renamed into place only after its
    MD5 matches, so an interrupted or corrupted download never leaves a file behind.
    """
    dest = Path(dest) if dest is not None else cache_dir()
    md5 = OFFICIAL_MD5 if md5 is None else md5
    mirrors = list(mirrors)
    dest.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        if _find(dest, name) is not None:
            continue
        errors = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + name
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest)
            try:
                with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
                    shutil.copyfileobj(r, f)
                got = file_digest(Path(tmp), "md5")
                if got != md5[name]:
                    errors.append(f"{url}: MD5 {got}, expected {md5[name]}")
                    continue
                os.replace(tmp, dest / name)
                break
            except OSError as exc:  # URLError, HTTPError and socket timeouts are OSErrors
                errors.append(f"{url}: {exc}")
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            raise MNISTError(f"could not download {name} into {dest}: " + "; ".join(errors))
    return dest


def _check_images(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise MNISTError(f"{path}: images must be unsigned bytes (IDX type 0x08), found {arr.dtype}")
    if arr.ndim != 3 or arr.shape[1:] != IMAGE_SHAPE:
        raise MNISTError(f"{path}: image dimensions {arr.shape} are not (count, 28, 28)")
    return arr.reshape(arr.shape[0], -1)


def _check_labels(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise MNISTError(f"{path}: labels must be unsigned bytes (IDX type 0x08), found {arr.dtype}")
    if arr.ndim != 1:
        raise MNISTError(f"{path}: label dimensions {arr.shape} are not (count,)")
    if arr.size and int(arr.max()) >= N_CLASSES:
        bad = int(np.argmax(arr >= N_CLASSES))
        raise MNISTError(f"{path}: label {int(arr[bad])} at index {bad} is outside 0..{N_CLASSES - 1}")
    return arr


def load_mnist(data_dir: str | Path | None = None, download: bool = False) -> MNIST:
    """Load the four files from `resolve_data_dir(data_dir)`; download them first when asked."""
    d = resolve_data_dir(data_dir)
    if download:
        download_mnist(d)
    if not d.is_dir():
        raise MNISTError(f"MNIST directory {d} does not exist (give --data DIR, set {ENV_VAR}, "
                         f"or fetch the files into {cache_dir()} with `ttzo data --download`)")
    paths: dict[str, Path] = {}
    for role, name in FILES.items():
        p = _find(d, name)
        if p is None:
            raise MNISTError(f"{d / name}: file not found (need {', '.join(FILES.values())}; "
                             f"give --data DIR, set {ENV_VAR}, or run `ttzo data --download`)")
        paths[role] = p
    verify_checksums(d, paths.values())
    arrays: dict[str, np.ndarray] = {}
    for role, p in paths.items():
        try:
            arr = read_idx(p)
        except IDXError as exc:
            raise MNISTError(str(exc)) from None
        arrays[role] = _check_images(arr, p) if role.endswith("images") else _check_labels(arr, p)
    for split in ("train", "test"):
        ni, nl = arrays[f"{split}_images"].shape[0], arrays[f"{split}_labels"].shape[0]
        if ni != nl:
            raise MNISTError(f"{paths[f'{split}_labels']}: {nl} labels but {paths[f'{split}_images'].name} "
                             f"has {ni} images")
    return MNIST(source=d, **arrays)
