"""The hardware PRNG: known-answer vectors from an independent plain-Python reference and literature."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttzo.golden import prng


# --- independent reference (written from the definitions, not from golden/prng.py) ---------------
def ref_xorshift32(y: int) -> int:
    y ^= y << 13
    y &= 0xFFFFFFFF
    y ^= y >> 17
    y ^= y << 5
    return y & 0xFFFFFFFF


def ref_fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) % 2**32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) % 2**32
    return h ^ (h >> 16)


def ref_stream(seed: int, step: int, query: int, n: int) -> list[int]:
    s = ref_fmix32((seed ^ (step * 4096 + query)) % 2**32) or 1
    out = []
    for _ in range(n):
        s = ref_xorshift32(s)
        out.append(s)
    return out


def test_literal_xorshift32_vectors() -> None:
    # Marsaglia (2003), "Xorshift RNGs": xor32 with y = 2463534242 first returns 723471715
    assert int(prng.words_sequential(2463534242, 1)[0]) == 723471715
    # from state 1: 1 ^ 1<<13 = 8193; ^ (8193 << 5) = 270369, ...
    assert prng.words_sequential(1, 3).tolist() == [270369, 67634689, 2647435461]
    assert prng.fmix32(0) == 0 and prng.fmix32(1) == 0x514E28B7  # MurmurHash3 fmix32


@settings(deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_step_functions_match_reference(x: int) -> None:
    assert prng.xorshift32(x) == ref_xorshift32(x)
    assert prng.fmix32(x) == ref_fmix32(x)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 5000), st.integers(0, 4095))
def test_streams_match_reference(seed: int, step: int, query: int) -> None:
    s0 = prng.stream_seed(seed, step, query)
    assert s0 != 0
    ref = ref_stream(seed, step, query, 40)
    assert prng.words_sequential(s0, 40).tolist() == ref
    assert prng.words([s0], 40)[0].tolist() == ref          # the vectorised jump-table path
    assert prng.words([s0], 10, offset=30)[0].tolist() == ref[30:]


def test_words_vectorised_many_streams() -> None:
    states = [prng.stream_seed(7, 3, q) for q in range(6)] + [1, 0xFFFFFFFF]
    w = prng.words(states, 3000)
    for i, s in enumerate(states):
        assert w[i].tolist() == prng.words_sequential(s, 3000).tolist()


def test_rademacher_and_gaussian_words() -> None:
    w = np.array([0x00000000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x01020304], dtype=np.uint32)
    assert prng.rademacher(w).tolist() == [1, 1, -1, -1, 1]
    assert prng.gaussian(w).tolist() == [-510, (127 + 255 + 255 + 255) - 510, 128 - 510, 510, (1 + 2 + 3 + 4) - 510]


def test_perturbation_statistics_and_layout() -> None:
    xi = prng.perturbations(1234, 0, 4, 20000)
    assert xi.shape == (4, 20000) and set(np.unique(xi)) == {-1, 1}
    assert abs(xi.mean()) < 0.02
    g = prng.perturbations(1234, 0, 2, 20000, kind="gaussian")
    assert g.min() >= -510 and g.max() <= 510
    std = g.std() / 2**prng.GAUSS_FRAC
    assert std == pytest.approx(np.sqrt(4 * (256**2 - 1) / 12) / 128, rel=0.03)  # Irwin-Hall of 4 bytes: 1.155
    # deterministic, queries independent of how many are drawn at once
    assert np.array_equal(prng.perturbations(1234, 0, 4, 50), prng.perturbations(1234, 0, 4, 50))
    assert np.array_equal(prng.perturbations(1234, 0, 3, 50, first_query=2)[0], prng.perturbations(1234, 0, 5, 50)[2])
    assert not np.array_equal(prng.perturbations(1234, 1, 1, 50), prng.perturbations(1234, 0, 1, 50))
    # element p of stream q is word p: Rademacher from the bit 31 of the reference words
    ref = ref_stream(1234, 0, 1, 50)
    assert prng.perturbations(1234, 0, 2, 50)[1].tolist() == [1 - 2 * (w >> 31) for w in ref]


def test_stream_seed_errors() -> None:
    with pytest.raises(ValueError, match="query index"):
        prng.stream_seed(0, 0, 4096)
    with pytest.raises(ValueError, match="step"):
        prng.stream_seed(0, -1, 0)
    with pytest.raises(ValueError, match="unknown perturbation kind"):
        prng.perturbations(0, 0, 1, 4, kind="uniform")
