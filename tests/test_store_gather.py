"""SignatureStore's gathering shortcuts give exactly what plain indexing gives.

Why: scoring reads every pair's columns through `gather`/`gather_repeated`; an all-zero column served as
fresh zeros must stop being one the moment a record fills it (and a -0.0 is not a 0.0), and a repeated
gather must equal indexing the repeated rows, or decisions change silently.
"""

from __future__ import annotations

import numpy as np

from consumer.store.memory import SignatureStore


def _plain(store: SignatureStore, rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: store._cols[name][rows] for name in store.column_names()}


def _equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a)


def test_gathers_equal_plain_indexing_as_columns_fill() -> None:
    rng = np.random.default_rng(1)
    store = SignatureStore(capacity=4)
    for batch in range(6):
        n = int(rng.integers(1, 7))
        image = np.zeros((n, 3), np.float32)
        if batch == 3:
            image[0, 1] = 0.5  # the photo column stops being all zeros here
        price = np.zeros(n, np.float32)
        if batch == 4:
            price[-1] = -0.0  # a sign bit: not a zero to gather as +0.0
        store.append([f"r{batch}_{i}" for i in range(n)], {"image": image, "price": price,
                                                          "keys": rng.integers(0, 9, (n, 2)).astype(np.uint32)},
                     np.zeros(n, np.float32), np.zeros(n))
        rows = rng.integers(0, len(store), 20)
        assert _equal(store.gather(rows), _plain(store, rows))
        assert _equal(store.gather(rows, skip={"keys"}), {k: v for k, v in _plain(store, rows).items() if k != "keys"})
        q = np.unique(rng.integers(0, len(store), 5))
        counts = rng.integers(0, 4, len(q))
        assert _equal(store.gather_repeated(q, counts), _plain(store, np.repeat(q, counts)))
    assert np.signbit(store.gather(np.arange(len(store)))["price"]).any()


def test_a_ring_keeps_the_dropped_columns_of_the_newest_rows_only() -> None:
    """A `dedup run` member on a shared Milvus collection drops the index-only columns but keeps the newest
    rows' in a ring: those rows gather every column, in the encoders' order (a payload's layout); older
    rows, rows loaded without them and erased rows do not claim to have them."""
    rng = np.random.default_rng(2)
    store = SignatureStore(capacity=4, drop={"name_vec"}, recent=5)
    full: list[np.ndarray] = []
    for batch in range(4):
        n = 3
        vec = rng.random((n, 2)).astype(np.float16)
        full.append(vec)
        store.append([f"r{batch}_{i}" for i in range(n)],
                     {"text": rng.random((n, 2)).astype(np.float32), "name_vec": vec,
                      "keys": rng.integers(0, 9, (n, 1)).astype(np.uint32)}, np.zeros(n, np.float32), np.zeros(n))
    every = np.concatenate(full)
    assert store.column_names() == ["text", "keys"] and store.persisted_columns() == ["text", "name_vec", "keys"]
    assert store.holds(np.arange(12)).tolist() == [False] * 7 + [True] * 5
    recent = np.array([11, 7, 9])
    got = store.gather(recent)
    assert list(got) == ["text", "name_vec", "keys"]
    assert got["name_vec"].tobytes() == every[recent].tobytes()
    assert "name_vec" not in store.gather(np.array([6, 11]))  # one row outside the ring: none of them
    assert "name_vec" not in store.gather(recent, skip={"name_vec"})
    store.erase(9)
    assert not store.holds(np.array([9]))[0] and store.holds(np.array([10]))[0]
    # Rows loaded without the dropped column (a snapshot) are not held; a later full batch is again.
    store.append(["s0"], {"text": np.zeros((1, 2), np.float32), "keys": np.zeros((1, 1), np.uint32)},
                 np.zeros(1, np.float32), np.zeros(1))
    assert not store.holds(np.array([12]))[0]
    cols = {"text": np.zeros((1, 2), np.float32), "name_vec": np.ones((1, 2), np.float16),
            "keys": np.zeros((1, 1), np.uint32)}
    assert list(store.persisted(cols)) == ["text", "name_vec", "keys"]
    store.append(["s1"], cols, np.zeros(1, np.float32), np.zeros(1))
    assert store.holds(np.array([13]))[0] and store.gather(np.array([13]))["name_vec"].tolist() == [[1.0, 1.0]]
    # Without a ring (`dedup batch`) nothing dropped is held, and payloads carry the kept columns only.
    plain = SignatureStore(drop={"name_vec"})
    plain.append(["a"], cols, np.zeros(1, np.float32), np.zeros(1))
    assert not plain.holds(np.array([0]))[0] and list(plain.persisted(cols)) == ["text", "keys"]
