"""The token-pair table of two names, compiled: each token's best counterpart on the other side.

Why compiled: `NameEncoder.compare` builds [pairs, tokens, tokens] arrays in ~40 numpy steps. At the sizes the
service decides (a micro-batch of a dozen records is ~400 pairs; the clustering's on-demand checks are 1-30
pairs) each step's fixed cost is most of the time: ~1 ms a call whatever the size, about half of comparing a
CRM pair. One loop over the pairs does the same tests in ~1/20 of that, without the GIL, so the encoder
thread runs beside it.

Exact: the same integer tests and the same float32 operations in the same order as the numpy form
(`consumer.encoders.names.token_pair_best`, the reference, and the path where numba is not installed): a
similarity is the maximum of the hits' float32 weights and `float32(dice) * float32(0.9)`, dice being
`2.0 * shared / total` in float64 rounded to float32 once, as `_dice_bits` does. `tests/test_name_pairs.py`
checks both forms give the same bits. The sums and minima over tokens stay in numpy (its float32 sum order
is the reference's).

Compiled on first use and cached on disk (`consumer.engine.compiled`).
"""

from __future__ import annotations

from collections.abc import Callable

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

__all__ = ["KERNEL", "best_counterparts", "compiled"]

_ONE = np.float32(1.0)
_ED1 = np.float32(0.92)
_PHON = np.float32(0.88)
_INIT = np.float32(0.85)
_DICE = np.float32(0.9)
_ZERO = np.float32(0.0)


def _kernel(used, la, lb, ka, kb, pa, pb, ia, ib, bits_a, bits_b, nb_a, nb_b,
            del_a, del_b, best_a, best_b):  # pragma: no cover - compiled; the tests of `token_pair_best`
    n_keys, n_phon, n_words, n_del = ka.shape[2], pa.shape[2], bits_a.shape[2], del_a.shape[2]
    for p in range(la.shape[0]):
        for i in range(used):
            best_a[p, i] = _ZERO
        for j in range(used):
            best_b[p, j] = _ZERO
        for i in range(used):
            li = la[p, i]
            if li == 0:
                continue
            for j in range(used):
                lj = lb[p, j]
                if lj == 0:
                    continue
                # Nickname keys: a's token among b's keys, b's token among a's, equal primary canonicals.
                key = False
                a0, b0 = ka[p, i, 0], kb[p, j, 0]
                for k in range(n_keys):
                    if a0 == kb[p, j, k] or ka[p, i, k] == b0:
                        key = True
                        break
                if not key and ka[p, i, 1] == kb[p, j, 1] and ka[p, i, 1] != 0:
                    key = True
                long_enough = li >= 3 and lj >= 3
                phon = False
                if long_enough:
                    for c in range(n_phon):
                        if pa[p, i, c] == pb[p, j, c] and pa[p, i, c] != 0:
                            phon = True
                            break
                init = ia[p, i] == ib[p, j] and (li == 1 or lj == 1)
                shared = 0
                for w in range(n_words):  # popcount of the shared bits (SWAR, as np.bitwise_count counts)
                    x = bits_a[p, i, w] & bits_b[p, j, w]
                    x = x - ((x >> _S1) & _M1)
                    x = (x & _M2) + ((x >> _S2) & _M2)
                    x = (x + (x >> _S4)) & _M4
                    shared += int((x * _H01) >> _S56)
                total = int(nb_a[p, i]) + int(nb_b[p, j])
                dice = np.float32(2.0 * shared / total) if total > 0 else _ZERO
                ed1 = False
                if not key and dice >= 0.25 and long_enough:
                    for x in range(n_del):
                        d = del_a[p, i, x]
                        if d != 0:
                            for y in range(n_del):
                                if d == del_b[p, j, y]:
                                    ed1 = True
                                    break
                        if ed1:
                            break
                sim = _ONE if key else _ZERO
                if ed1 and _ED1 > sim:
                    sim = _ED1
                if phon and _PHON > sim:
                    sim = _PHON
                if init and _INIT > sim:
                    sim = _INIT
                scaled = dice * _DICE
                if scaled > sim:
                    sim = scaled
                if sim > best_a[p, i]:
                    best_a[p, i] = sim
                if sim > best_b[p, j]:
                    best_b[p, j] = sim


KERNEL = Kernel(_kernel)


def compiled() -> bool:
    """Whether the compiled kernel is in use (else the numpy form)."""
    return KERNEL.get() is not None


def best_counterparts(used: int, a: dict[str, np.ndarray], b: dict[str, np.ndarray],
                      reference: Callable[[int, dict[str, np.ndarray], dict[str, np.ndarray]],
                                          tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """[pairs, used] float32: each of a's first `used` token slots' best similarity among b's tokens, and
    b's among a's (0 for an empty slot), from the token columns of `NameEncoder`. `reference`: the numpy
    form (`consumer.encoders.names.token_pair_best`), run where the kernel is not compiled."""
    jit = KERNEL.get()
    if jit is None:
        return reference(used, a, b)
    p = len(a["tok_len"])
    best_a = np.empty((p, used), np.float32)
    best_b = np.empty((p, used), np.float32)
    c = np.ascontiguousarray
    jit(used, c(a["tok_len"]), c(b["tok_len"]), c(a["tok_keys"]), c(b["tok_keys"]), c(a["tok_phon"]),
        c(b["tok_phon"]), c(a["tok_init"]), c(b["tok_init"]), c(a["tok_bits"]), c(b["tok_bits"]),
        c(a["tok_nbits"]), c(b["tok_nbits"]), c(a["tok_dels"]), c(b["tok_dels"]), best_a, best_b)
    return best_a, best_b
