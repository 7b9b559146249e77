"""Listing comparisons of aligned pairs, compiled: attribute agreement, product-code match, shared tokens.

Why compiled: the numpy forms (`consumer.encoders.title._attribute_agreement`, `_code_match`, the shared
core tokens in `TitleEncoder.compare`) compare every value of one side with every value of the other as
[pairs, kinds, 4, 4], [pairs, 4, 4] and [pairs, 16, 16] boolean tensors, a dozen temporaries each: of the
title comparison of 300,000 pairs of CD records (1.42 s), the attribute agreement took 0.87 s, the code match
0.27 s and the shared tokens 0.12 s. One loop per pair does the same tests without the temporaries, and
without the GIL (0.17 s for all of the comparison); a listing file's fit compares every candidate pair with
them.

Exact: the same boolean tests, and the code match's levels written as the numpy form's float64 constants
rounded to float32 (`tests/test_title_pairs.py` checks both forms give the same bits). The numpy forms stay
the reference and the path where numba is not installed.

Compiled on first use and cached on disk (`consumer.engine.compiled`).
"""

from __future__ import annotations

import numpy as np

from consumer.engine.compiled import Kernel

__all__ = ["ATTRIBUTES", "CODES", "TOKENS", "attribute_agreement", "code_match", "shared_tokens"]

_ONE = np.float32(1.0)
_SHARED_EXTRA = np.float32(0.7)
_NEAR = np.float32(0.4)
_ZERO = np.float32(0.0)
_NAN = np.float32(np.nan)


def _attributes(a, b, shared, same):  # pragma: no cover - compiled
    n_kinds, n_values = a.shape[1], a.shape[2]
    for p in range(a.shape[0]):
        for k in range(n_kinds):
            stated_a = stated_b = False
            all_in_b = all_in_a = True  # every value a states is among b's; every value b states among a's
            for side in range(2):
                this, other = (a, b) if side == 0 else (b, a)
                stated = False
                all_in = True
                for i in range(n_values):
                    v = this[p, k, i]
                    if v == 0:
                        continue
                    stated = True
                    found = False
                    for j in range(n_values):
                        if other[p, k, j] == v:
                            found = True
                            break
                    if not found:
                        all_in = False
                if side == 0:
                    stated_a, all_in_b = stated, all_in
                else:
                    stated_b, all_in_a = stated, all_in
            shared[p, k] = stated_a and stated_b
            same[p, k] = all_in_b or all_in_a


def _codes(ca, cb, sa, sb, cuts_a, cuts_b, da, db, out):  # pragma: no cover - compiled
    n_codes, n_cuts = ca.shape[1], cuts_a.shape[1]
    only_a = np.empty(n_codes, np.bool_)
    only_b = np.empty(n_codes, np.bool_)
    for p in range(ca.shape[0]):
        has_a = False
        has_b = False
        for i in range(n_codes):
            if ca[p, i] != 0:
                has_a = True
            if cb[p, i] != 0:
                has_b = True
        if not (has_a and has_b):
            out[p] = _NAN
            continue
        shared = False
        for i in range(n_codes):
            only_a[i] = ca[p, i] != 0
            only_b[i] = cb[p, i] != 0
        for i in range(n_codes):
            x = ca[p, i]
            if x == 0:
                continue
            for j in range(n_codes):
                if cb[p, j] == x:
                    shared = True
                    only_a[i] = False
                    only_b[j] = False
        extra_a = False
        extra_b = False
        for i in range(n_codes):
            if only_a[i]:
                extra_a = True
            if only_b[i]:
                extra_b = True
        clash = False
        for i in range(n_codes):
            if not only_a[i] or da[p, i] == 0:
                continue
            for j in range(n_codes):
                if only_b[j] and da[p, i] == db[p, j]:
                    clash = True
                    break
            if clash:
                break
        if clash:
            out[p] = _ZERO
            continue
        if shared:
            out[p] = _SHARED_EXTRA if (extra_a and extra_b) else _ONE
            continue
        near = False
        for i in range(n_codes):  # a shared stem where one side is bare (its stem is the code itself)
            s = sa[p, i]
            if s == 0:
                continue
            for j in range(n_codes):
                if sb[p, j] == s and (s == ca[p, i] or sb[p, j] == cb[p, j]):
                    near = True
                    break
            if near:
                break
        if not near:  # a code of one side among the other's cut-short forms
            for i in range(n_codes):
                x = ca[p, i]
                y = cb[p, i]
                for j in range(n_cuts):
                    if (x != 0 and cuts_b[p, j] == x) or (y != 0 and cuts_a[p, j] == y):
                        near = True
                        break
                if near:
                    break
        out[p] = _NEAR if near else _ZERO


def _shared_tokens(ta, tb, out):  # pragma: no cover - compiled
    n_tok = ta.shape[1]
    for p in range(ta.shape[0]):
        count = 0
        for i in range(n_tok):
            x = ta[p, i]
            if x == 0:
                continue
            for j in range(n_tok):
                if tb[p, j] == x:
                    count += 1
        out[p] = count


ATTRIBUTES = Kernel(_attributes)
CODES = Kernel(_codes)
TOKENS = Kernel(_shared_tokens)


def attribute_agreement(xa: np.ndarray, xb: np.ndarray, max_values: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The compiled `_attribute_agreement` ((shared, same) per pair and kind), or None where the kernel is
    not compiled (the caller runs the numpy form)."""
    jit = ATTRIBUTES.get()
    if jit is None:
        return None
    n = len(xa)
    kinds = xa.shape[1] // max_values
    shared = np.empty((n, kinds), np.bool_)
    same = np.empty((n, kinds), np.bool_)
    a = np.ascontiguousarray(xa).reshape(n, kinds, max_values)
    b = np.ascontiguousarray(xb).reshape(n, kinds, max_values)
    jit(a, b, shared, same)
    return shared, same


def shared_tokens(ta: np.ndarray, tb: np.ndarray) -> np.ndarray | None:
    """The compiled count of (token of a, equal token of b) pairs per pair of rows, 0 tokens left out (int64,
    as the numpy form's sum), or None where the kernel is not compiled."""
    jit = TOKENS.get()
    if jit is None:
        return None
    out = np.empty(len(ta), np.int64)
    jit(np.ascontiguousarray(ta), np.ascontiguousarray(tb), out)
    return out


def code_match(ca: np.ndarray, cb: np.ndarray, sa: np.ndarray, sb: np.ndarray, cuts_a: np.ndarray,
               cuts_b: np.ndarray, da: np.ndarray, db: np.ndarray) -> np.ndarray | None:
    """The compiled `_code_match` (float32, NaN where a side has no code), or None where the kernel is not
    compiled."""
    jit = CODES.get()
    if jit is None:
        return None
    out = np.empty(len(ca), np.float32)
    c = np.ascontiguousarray
    jit(c(ca), c(cb), c(sa), c(sb), c(cuts_a), c(cuts_b), c(da), c(db), out)
    return out
