"""The name and address encoders build a record's vectors and trigram bits from parts cached per token or
per address part (consumer/encoders/names.py, address.py). These tests pin those parts to the plain
definitions, computed record by record from the joined text: the same bits and the same float values,
whatever the batch, so candidates and decisions cannot move."""

from __future__ import annotations

import numpy as np

from consumer.encoders.address import ADDR_VEC, NORMALISE, VECTOR_ROLES, AddressEncoder
from consumer.encoders.base import KeyedHasher
from consumer.encoders.names import NAME_VEC, NAME_WORDS, NameEncoder
from consumer.encoders.person import PersonEncoder
from consumer.engine.normalize import name_tokens
from consumer.engine.records import Record

KEY = "test-key"
NAMES = ["Anna Piotrowska", "O'Brien, Katy", "a", "J. R. R. Tolkien", "Mary Ann Mary", "Zoë  de la Cruz", "", "x y"]
ADDRESSES = [("26", "ulica Długa", "", "Navigli", "20143"), ("", "", "", "", ""), ("7", "", "unit 4", "", ""),
             ("", "Victoria Ave", "", "Croix-Rousse", ""), ("160", "st kilda rd", "", "", "3004"),
             ("", "", "", "", "1")]


def _trigrams(text: str) -> list[str]:
    padded = f"  {text} "
    return [padded[i: i + 3] for i in range(len(padded) - 2)]


def _count_vec(hashes: list[int], dim: int) -> np.ndarray:
    v = np.bincount(np.array(hashes, np.int64) % dim, minlength=dim).astype(np.float32)
    return v / float(np.linalg.norm(v))


def _bits(hashes: list[int], words: int) -> np.ndarray:
    mask = 0
    for h in hashes:
        mask |= 1 << (h % (64 * words))
    return np.array([(mask >> (64 * w)) & 0xFFFFFFFFFFFFFFFF for w in range(words)], np.uint64)


def _person(i: int, name: str = "", address: tuple[str, ...] = ("",) * 5, dob: str = "", city: str = "") -> Record:
    extra = tuple(zip(VECTOR_ROLES, address)) + (("date_of_birth", dob), ("given_name", name.split(" ")[0]))
    return Record(record_id=f"r{i}", name=name, city=city, keys=(), browser="", os="", login_times=(), extra=extra)


def test_name_vector_and_bits_are_those_of_the_joined_name() -> None:
    h = KeyedHasher(KEY)
    records = [_person(i, name) for i, name in enumerate(NAMES)]
    cols = NameEncoder(KEY).encode(records)
    for i, rec in enumerate(records):
        tokens = sorted(name_tokens(rec.name)[:4])
        if not tokens:
            assert not cols["name_vec"][i].any() and not cols["name_bits"][i].any()
            continue
        grams = [h(f"v{n}:" + f"^{t}$"[j: j + n]) for t in tokens for n in (2, 3) for j in range(len(t) + 3 - n)]
        assert np.array_equal(cols["name_vec"][i], _count_vec(grams, NAME_VEC).astype(np.float16))
        expected = _bits([h("t:" + g) for g in _trigrams(" ".join(tokens))], NAME_WORDS)
        assert np.array_equal(cols["name_bits"][i], expected)


def test_address_vector_is_that_of_the_joined_address() -> None:
    h = KeyedHasher(KEY)
    records = [_person(i, address=a) for i, a in enumerate(ADDRESSES)]
    got = AddressEncoder(KEY).encode(records)["addr_vec"]
    for i, address in enumerate(ADDRESSES):
        text = " ".join(p for p in (NORMALISE[role](raw) for role, raw in zip(VECTOR_ROLES, address)) if p)
        v = _count_vec([h("av:" + g) for g in _trigrams(text)], ADDR_VEC) if text else np.zeros(ADDR_VEC, np.float32)
        assert np.array_equal(got[i], v.astype(np.float16)), ADDRESSES[i]


def test_encodings_do_not_depend_on_the_batch() -> None:
    """Cached signatures laid in for a whole batch: each record's columns are the same alone or in a batch."""
    records = [_person(i, n, a, d, c) for i, (n, a, d, c) in
               enumerate(zip(NAMES, ADDRESSES * 2, ["1980-02-29", "", "1975-13-01", "2001-01-01"] * 2,
                             ["Paris", "", "St. Louis", "nyc"] * 2))]
    for encoder in (NameEncoder(KEY), AddressEncoder(KEY), PersonEncoder(KEY)):
        whole = encoder.encode(records)
        for i, rec in enumerate(records):
            alone = type(encoder)(KEY).encode([rec])
            for col, values in whole.items():
                assert np.array_equal(values[i], alone[col][0]), (type(encoder).__name__, col, i)


def test_keyed_hash_is_the_keyed_blake2b_of_the_text() -> None:
    """The hasher copies a keyed state instead of keying each hash: the same 32-bit values, stored columns
    and Redis state included, as BLAKE2b keyed with the deployment key."""
    import hashlib

    key = hashlib.blake2b(KEY.encode("utf-8"), digest_size=32).digest()
    h = KeyedHasher(KEY)
    for text in ["", "a", "anna", "zoë", "  x ", "d:" + "long" * 80, *NAMES]:
        want = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=4, key=key).digest(), "little") or 1
        assert h(text) == h.once(text) == h.get(text) == want
