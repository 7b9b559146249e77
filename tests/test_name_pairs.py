"""The compiled token-pair table (`consumer.encoders.name_pairs`) gives the numpy reference's bits.

Why bit for bit: a name feature that moved in its last float32 bit could move a pair across a tree split,
and a speed change must change no decision (issue 38)."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.encoders import name_pairs
from consumer.encoders.names import MAX_TOKENS, N_DEL, N_KEYS, TOKEN_WORDS, NameEncoder, token_pair_best
from consumer.engine.keycounts import ADD_KERNEL, LOOKUP_KERNEL
from consumer.engine.records import Record


def _token_columns(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Token columns with tiny value ranges, so that keys, phonetic codes, initials, gram bits and deletion
    variants collide often and every branch of the table is taken (zeros included: empty slots)."""
    tok_len = rng.integers(0, 4, (n, MAX_TOKENS)).astype(np.uint8)
    bits = rng.integers(0, 2**63, (n, MAX_TOKENS, TOKEN_WORDS), dtype=np.uint64)
    bits &= rng.choice(np.array([0, 0xFF, 0xF0F0, 2**64 - 1], np.uint64), (n, MAX_TOKENS, TOKEN_WORDS))
    return {
        "tok_len": tok_len,
        "tok_keys": rng.integers(0, 4, (n, MAX_TOKENS, N_KEYS)).astype(np.uint32),
        "tok_phon": rng.integers(0, 3, (n, MAX_TOKENS, 2)).astype(np.uint32),
        "tok_init": rng.integers(0, 3, (n, MAX_TOKENS)).astype(np.uint32),
        "tok_bits": bits,
        "tok_nbits": np.bitwise_count(bits).sum(axis=-1).astype(np.int32),
        "tok_dels": rng.integers(0, 6, (n, MAX_TOKENS, N_DEL)).astype(np.uint16),
    }


def test_numba_is_installed_and_used() -> None:
    """numba is a dependency: without it the service silently loses its name-comparison speed."""
    assert name_pairs.compiled()


@pytest.mark.parametrize("pairs", [0, 1, 7, 500])
@pytest.mark.parametrize("used", [1, 2, 3, MAX_TOKENS])
def test_compiled_table_equals_numpy_bit_for_bit(pairs: int, used: int) -> None:
    rng = np.random.default_rng(pairs * 10 + used)
    a, b = _token_columns(rng, pairs), _token_columns(rng, pairs)
    got = name_pairs.best_counterparts(used, a, b, token_pair_best)
    want = token_pair_best(used, a, b)
    for g, w in zip(got, want):
        assert g.dtype == np.float32 and g.shape == (pairs, used)
        assert g.tobytes() == w.astype(np.float32).tobytes()


def test_compiled_table_reads_non_contiguous_columns() -> None:
    """Columns gathered or sliced elsewhere may be views; the result must not depend on the layout."""
    rng = np.random.default_rng(5)
    a, b = _token_columns(rng, 60), _token_columns(rng, 60)
    a_view = {k: v[::2] for k, v in a.items()}
    b_view = {k: v[::2] for k, v in b.items()}
    got = name_pairs.best_counterparts(MAX_TOKENS, a_view, b_view, token_pair_best)
    want = token_pair_best(MAX_TOKENS, {k: v.copy() for k, v in a_view.items()},
                           {k: v.copy() for k, v in b_view.items()})
    assert all(g.tobytes() == w.tobytes() for g, w in zip(got, want))


NAMES = ["Robert Smith", "Bob Smith", "Rob Smyth", "R. Smith", "Robert J. Smith", "Smith Robert", "Roberta Smith",
         "Katherine O'Neil", "Kathy ONeil", "Catherine O Neil", "K. O'Neill", "Mary Ann Lee", "Maryann Lee",
         "Jon Snow", "John Snow", "Jhon Snow", "", "Ng", "Zoë Ångström", "Zoe Angstrom", "李小龙", "Li Xiaolong",
         "Dr. William Henry Gates III", "Bill Gates", "Wm Gates"]


def test_compare_gives_the_same_features_with_and_without_the_kernel() -> None:
    """Through the encoder, on real names (nicknames, typos, initials, order, merged tokens, empty)."""
    enc = NameEncoder("key")
    cols = enc.encode([Record(str(i), name, "Springfield", (), "", "", ()) for i, name in enumerate(NAMES)])
    left, right = np.repeat(np.arange(len(NAMES)), len(NAMES)), np.tile(np.arange(len(NAMES)), len(NAMES))
    a = {k: v[left] for k, v in cols.items()}
    b = {k: v[right] for k, v in cols.items()}
    fast = enc.compare(a, b)
    with name_pairs.KERNEL.disabled():
        slow = enc.compare(a, b)
    assert fast.keys() == slow.keys()
    for key in fast:
        assert fast[key].tobytes() == slow[key].tobytes(), key
    # And the comparison still says what it should: a nickname is near, another person is not.
    i, j, k = NAMES.index("Robert Smith"), NAMES.index("Bob Smith"), NAMES.index("Jon Snow")
    assert fast["name_cov_max"][i * len(NAMES) + j] == 1.0
    assert fast["name_cov_max"][i * len(NAMES) + k] < 0.5


@pytest.mark.parametrize("profile", ["crm-signup", "listing"])
def test_service_warm_up_runs_compare_and_fuse_on_every_profile(profile: str) -> None:
    """A member loads its kernels before it reports ready (`warm_kernels`): the made-up record must go
    through every profile's encoders, comparator and fuser without an error (a failure is only logged)."""
    from consumer.config import load_settings
    from consumer.engine import forest
    from consumer.io.artifacts import build_pipeline, warm_kernels

    pipe = build_pipeline(load_settings(env={}, profile=profile))
    cols = pipe.encode([Record("warm-up", "Ann Lee", "Oslo", (), "", "", ())], timed=False)
    feats = pipe.comparator.compare(cols, cols)
    assert pipe.fuser.score(feats)[0].shape == (1,)
    warm_kernels(pipe)
    assert name_pairs.compiled() and forest._KERNEL.get() is not None
    assert ADD_KERNEL._tried and LOOKUP_KERNEL._tried  # the frequency table's loops too
    if profile == "listing":  # the title comparison's loops (`consumer.encoders.title_pairs`)
        from consumer.encoders import title_pairs

        assert all(k._tried and k.get() is not None for k in (title_pairs.ATTRIBUTES, title_pairs.CODES,
                                                               title_pairs.TOKENS))
    assert len(pipe.store) == 0  # nothing was decided or stored
    assert pipe.frequencies.records == 0 and all(len(c) == 0 for c in pipe.frequencies.counts.values())
