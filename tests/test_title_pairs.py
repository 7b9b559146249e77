"""The compiled listing comparisons (`consumer.encoders.title_pairs`) give the numpy forms' bits.

Why bit for bit: a speed change must change no decision (issue 38); an attribute agreement or a code level
that moved would move pairs across comparison levels."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.encoders import title, title_pairs
from consumer.encoders.title import MAX_VALUES, _attribute_agreement, _code_match


def _small(rng: np.random.Generator, shape: tuple[int, ...], high: int = 5) -> np.ndarray:
    """Values from a small range (0 = none), so equal values, absent values and partial overlaps are common."""
    return rng.integers(0, high, shape).astype(np.uint32)


def test_kernels_are_compiled() -> None:
    """numba is a dependency: without it the listing comparisons silently lose their speed."""
    assert title_pairs.ATTRIBUTES.get() is not None and title_pairs.CODES.get() is not None


@pytest.mark.parametrize("pairs", [0, 1, 7, 3000])
def test_attribute_agreement_equals_numpy(pairs: int) -> None:
    rng = np.random.default_rng(pairs)
    kinds = 12
    xa, xb = _small(rng, (pairs, kinds * MAX_VALUES)), _small(rng, (pairs, kinds * MAX_VALUES))
    xb[: pairs // 3] = xa[: pairs // 3]  # identical attributes too
    got = _attribute_agreement(xa, xb)
    with title_pairs.ATTRIBUTES.disabled():
        want = _attribute_agreement(xa, xb)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype == np.bool_ and g.shape == w.shape == (pairs, kinds)
        assert (g == w).all()
    if pairs == 3000:  # every outcome was met
        assert want[0].any() and (~want[0]).any() and (want[0] & want[1]).any() and (want[0] & ~want[1]).any()


def _codes(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    codes = _small(rng, (n, 4), 6)
    stems = np.where(rng.random((n, 4)) < 0.5, codes, _small(rng, (n, 4), 6))  # a bare code: its stem is itself
    return {"codes": codes, "code_stems": stems, "code_cuts": _small(rng, (n, 48), 40),
            "code_digits": rng.integers(0, 4, (n, 4)).astype(np.uint8)}


@pytest.mark.parametrize("pairs", [0, 1, 7, 5000])
def test_code_match_equals_numpy(pairs: int) -> None:
    rng = np.random.default_rng(100 + pairs)
    a, b = _codes(rng, pairs), _codes(rng, pairs)
    got = _code_match(a, b)
    with title_pairs.CODES.disabled():
        want = _code_match(a, b)
    assert got.dtype == want.dtype == np.float32 and got.shape == (pairs,)
    assert got.tobytes() == want.tobytes()
    if pairs == 5000:  # every level was met: none, clash/none shared, near, shared with extras, shared
        for level in (0.0, 0.4, 0.7, 1.0):
            assert (want == np.float32(level)).any(), level
        assert np.isnan(want).any()


def test_the_title_comparison_uses_them() -> None:
    """`TitleEncoder.compare` reaches the compiled forms (the module imports them by name)."""
    assert title.attribute_agreement is title_pairs.attribute_agreement
    assert title.code_match is title_pairs.code_match


@pytest.mark.parametrize("pairs", [0, 1, 2000])
def test_shared_tokens_equal_numpy(pairs: int) -> None:
    rng = np.random.default_rng(7 + pairs)
    ta, tb = _small(rng, (pairs, 16), 12), _small(rng, (pairs, 16), 12)
    got = title_pairs.shared_tokens(ta, tb)
    want = ((ta[:, :, None] == tb[:, None, :]) & (ta[:, :, None] != 0)).sum(axis=(1, 2))
    assert got is not None and got.dtype == want.dtype and (got == want).all()


def test_the_title_comparison_gives_the_numpy_bits() -> None:
    """`TitleEncoder.compare` with every kernel off gives the same features, bit for bit."""
    rng = np.random.default_rng(3)
    n = 500
    enc = title.TitleEncoder.__new__(title.TitleEncoder)
    title.TitleEncoder.__init__(enc, _Dim(), "k")
    cols = {"title_vec": rng.random((n, 4)).astype(np.float32), "title_tri": rng.random((n, 8)).astype(np.float32),
            "title_tok": _small(rng, (n, 16), 12), "title_attrs": _small(rng, (n, 12 * MAX_VALUES)),
            "listing_keys": _small(rng, (n, 3)), "price": rng.random(n).astype(np.float32),
            "idf_keys": _small(rng, (n, 24), 30), "part": rng.integers(0, 3, n).astype(np.uint8),
            **_codes(rng, n)}
    a = {k: v for k, v in cols.items()}
    b = {k: np.roll(v, 1, axis=0) for k, v in cols.items()}
    got = enc.compare(a, b)
    with title_pairs.ATTRIBUTES.disabled(), title_pairs.CODES.disabled(), title_pairs.TOKENS.disabled():
        want = enc.compare(a, b)
    assert got.keys() == want.keys()
    for k in got:
        assert np.asarray(got[k]).tobytes() == np.asarray(want[k]).tobytes(), k
    # State an older version wrote holds no "part" column: no part is known, nothing fails.
    older = {k: v for k, v in a.items() if k != "part"}
    assert np.isnan(enc.compare(older, b)["part_agree"]).all()


class _Dim:
    dim = 4
