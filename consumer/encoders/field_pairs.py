"""Field similarity of aligned pairs, compiled: `consumer.encoders.fields.field_similarity` in one loop.

Why compiled: the numpy form makes ~15 passes over the pairs (popcounts of the trigram bits, the Dice, the
masks of where a one-edit test can change the answer) and sorts the deletion hashes of the pairs it tests.
A person pair compares five to eight fields this way (names, date parts, street, suburb, postcode), in the
fit's sample of ~200,000 pairs and in every batch: 15% of the deciding thread of a 50,000-person
`dedup batch`. One pass per pair does the same tests without the temporaries, and without the GIL.

Exact: the same integer tests and the same float operations as the numpy form (the reference, and the path
where numba is not installed): the Dice is `2.0 * shared / total` in float64, rounded to float32 once; the
one-edit test is "some non-zero deletion hash occurs twice among the pair's two rows", which is what sorting
both rows together and comparing neighbours finds. `tests/test_field_pairs.py` checks both forms give the
same bits.

Compiled on first use and cached on disk (`consumer.engine.compiled`).
"""

from __future__ import annotations

import numpy as np

from consumer.engine.compiled import POP_H01 as _H01
from consumer.engine.compiled import POP_M1 as _M1
from consumer.engine.compiled import POP_M2 as _M2
from consumer.engine.compiled import POP_M4 as _M4
from consumer.engine.compiled import POP_S1 as _S1
from consumer.engine.compiled import POP_S2 as _S2
from consumer.engine.compiled import POP_S4 as _S4
from consumer.engine.compiled import POP_S56 as _S56
from consumer.engine.compiled import Kernel

__all__ = ["KERNEL", "similarity"]

_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
_NAN = np.float32(np.nan)


def _kernel(ha, hb, ba, bb, da, db, code, one_edit, max_edit_grams, out):  # pragma: no cover - compiled
    n_words, n_del = ba.shape[1], da.shape[1]
    one_edit32 = np.float32(one_edit)
    filled = np.empty(2 * n_del, da.dtype)  # the pair's non-zero deletion hashes, both rows
    for p in range(ha.shape[0]):
        if ha[p] == 0 or hb[p] == 0:
            out[p] = _NAN
            continue
        if ha[p] == hb[p]:
            out[p] = _ONE
            continue
        inter = 0
        na = 0
        nb = 0
        for w in range(n_words):  # popcounts (SWAR, as np.bitwise_count counts) of the shared and own bits
            for k in range(3):
                x = ba[p, w] & bb[p, w] if k == 0 else (ba[p, w] if k == 1 else bb[p, w])
                x = x - ((x >> _S1) & _M1)
                x = (x & _M2) + ((x >> _S2) & _M2)
                x = (x + (x >> _S4)) & _M4
                bits = int((x * _H01) >> _S56)
                if k == 0:
                    inter += bits
                elif k == 1:
                    na += bits
                else:
                    nb += bits
        total = na + nb
        dice = 2.0 * inter / total if total > 0 else 0.0
        sim = _ZERO if code else np.float32(dice)
        if (code or min(na, nb) - inter <= max_edit_grams) and dice < one_edit:
            # A non-zero hash twice among both rows. The zeros (padding) are left out first: a short code
            # fills ~6 of 24 slots a row, and testing every slot against every other was most of the time.
            m = 0
            for i in range(n_del):
                if da[p, i] != 0:
                    filled[m] = da[p, i]
                    m += 1
            for i in range(n_del):
                if db[p, i] != 0:
                    filled[m] = db[p, i]
                    m += 1
            hit = False
            for i in range(m):
                v = filled[i]
                for j in range(i + 1, m):
                    if v == filled[j]:
                        hit = True
                        break
                if hit:
                    break
            if hit:
                sim = one_edit32
        out[p] = sim


KERNEL = Kernel(_kernel)


def similarity(ha: np.ndarray, hb: np.ndarray, ba: np.ndarray, bb: np.ndarray, da: np.ndarray, db: np.ndarray,
               code: bool, one_edit: float, max_edit_grams: int) -> np.ndarray | None:
    """The compiled form of `field_similarity` over the columns of one field (float32, one per pair), or None
    where the kernel is not compiled (the caller runs the numpy form)."""
    jit = KERNEL.get()
    if jit is None:
        return None
    out = np.empty(len(ha), np.float32)
    c = np.ascontiguousarray
    jit(c(ha), c(hb), c(ba), c(bb), c(da), c(db), bool(code), float(one_edit), int(max_edit_grams), out)
    return out
