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
