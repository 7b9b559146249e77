"""The compiled field similarity (`consumer.encoders.field_pairs`) gives the numpy reference's bits.

Why bit for bit: a field similarity that moved in its last float32 bit could move a pair across a comparison
level, and a speed change must change no decision (issue 38)."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.encoders import field_pairs
from consumer.encoders.base import KeyedHasher
from consumer.encoders.fields import BIT_WORDS, N_DEL, FieldCodec, field_similarity


def _columns(rng: np.random.Generator, n: int, distinct: bool) -> dict[str, np.ndarray]:
    """One field's columns with small value ranges, so that equal values, missing values (0), near-equal gram
    bits and shared deletion hashes are all common and every branch is taken. `distinct`: each row's
    deletion hashes distinct, non-zero first (as `deletion_hashes` makes them); else anything, zeros between."""
    h = rng.integers(0, 5, n).astype(np.uint32)
    bits = rng.integers(0, 2**63, (n, BIT_WORDS), dtype=np.uint64)
    bits &= rng.choice(np.array([0, 0xFF, 0xF0F0, 0xFFFF_FFFF, 2**64 - 1], np.uint64), (n, BIT_WORDS))
    if distinct:
        dels = np.zeros((n, N_DEL), np.uint16)
        for i in range(n):
            k = int(rng.integers(0, N_DEL + 1))
            dels[i, :k] = np.sort(rng.choice(np.arange(1, 80, dtype=np.uint16), k, replace=False))
    else:
        dels = rng.integers(0, 40, (n, N_DEL)).astype(np.uint16)
    return {"f_h": h, "f_bits": bits, "f_dels": dels}


def _reference(a: dict[str, np.ndarray], b: dict[str, np.ndarray], code: bool) -> np.ndarray:
    with field_pairs.KERNEL.disabled():
        return field_similarity(a, b, "f", code)


def test_numba_is_installed_and_used() -> None:
    """numba is a dependency: without it the person and address comparisons silently lose their speed."""
    assert field_pairs.KERNEL.get() is not None


@pytest.mark.parametrize("pairs", [0, 1, 9, 2000])
@pytest.mark.parametrize("code", [False, True])
@pytest.mark.parametrize("distinct", [True, False])
def test_compiled_similarity_equals_numpy_bit_for_bit(pairs: int, code: bool, distinct: bool) -> None:
    rng = np.random.default_rng(pairs * 4 + 2 * code + distinct)
    a, b = _columns(rng, pairs, distinct), _columns(rng, pairs, distinct)
    if pairs > 1:  # near twins: one gram bit flipped, so the one-edit test runs often
        flip = np.uint64(1) << rng.integers(0, 64, (pairs // 2, BIT_WORDS)).astype(np.uint64)
        b["f_bits"][: pairs // 2] = a["f_bits"][: pairs // 2] ^ flip
    got = field_similarity(a, b, "f", code)
    want = _reference(a, b, code)
    assert got.dtype == np.float32 and got.shape == (pairs,)
    assert got.tobytes() == want.tobytes()
    if pairs == 2000:  # every outcome was met
        assert np.isnan(want).any() and (want == 1.0).any() and (want == np.float32(0.9)).any()


def test_compiled_similarity_on_encoded_values_and_views() -> None:
    """Real signatures (typos, swaps, short codes), read through strided views of the columns."""
    codec = FieldCodec(KeyedHasher("k"))
    pairs = [("smith", "smiht"), ("smith", "smyth"), ("smith", "jones"), ("", "li"), ("li", "il"),
             ("mcdonald", "macdonald"), ("2000", "2001"), ("12", "21"), ("jones", "jones"), ("li", "")]
    left = [pairs[i % len(pairs)][0] for i in range(300)]
    right = [pairs[i % len(pairs)][1] for i in range(300)]
    a = codec.encode(left, "f", str.lower)
    b = codec.encode(right, "f", str.lower)
    a_view = {k: np.concatenate([v, v])[::2] for k, v in a.items()}
    b_view = {k: np.concatenate([v, v])[::2] for k, v in b.items()}
    for code in (False, True):
        got = field_similarity(a_view, b_view, "f", code)
        want = _reference({k: v.copy() for k, v in a_view.items()}, {k: v.copy() for k, v in b_view.items()}, code)
        assert got.tobytes() == want.tobytes()
        assert (want == np.float32(0.9)).any()
