"""A conjunction of features that names one product makes a pair a match whatever the model says
(`consumer.encoders.base.Support`, the title encoder's "identity" rule)."""

from __future__ import annotations

import numpy as np

from consumer.config import load_settings
from consumer.encoders.base import SupportRules
from consumer.encoders.title import TitleEncoder
from consumer.engine.comparison import Comparator
from consumer.engine.fusion import Fuser
from consumer.engine.records import Record


class Text:
    dim = 4

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 4), np.float32)


def _fuser() -> tuple[Fuser, TitleEncoder, tuple[str, ...]]:
    enc = TitleEncoder(Text(), "k")
    features = tuple(Comparator([enc]).features)
    fusion = load_settings(None).fusion
    rule = type(fusion)(**{**fusion.__dict__, "mode": "rule"})
    return Fuser(rule, None, [enc], features), enc, features


def test_the_listing_identity_rule_raises_a_pair_to_a_match_only_when_every_part_holds() -> None:
    fuser, _, features = _fuser()
    row = {"code_match": 1.0, "attr_agree": 1.0, "variant_agree": 1.0, "title_idf": 0.45}
    x = np.full((5, len(features)), np.nan, np.float32)
    for j, name in enumerate(features):
        x[:, j] = row.get(name, 0.0)
    x[1, features.index("code_match")] = 0.7  # a family code beside the variant's own
    x[2, features.index("variant_agree")] = np.nan  # no variant both titles state
    x[3, features.index("title_idf")] = 0.2  # titles sharing only common words
    x[4, features.index("attr_agree")] = 0.5  # an attribute differs
    fused, _ = fuser.score(x)
    assert fused[0] >= max(0.5, fuser.match_threshold)
    assert (fused[1:] < 0.5).all()  # rule fusion scores these on their own


def test_support_rules_leave_pairs_without_the_features_alone() -> None:
    _, enc, _ = _fuser()
    rules = SupportRules([enc], ("title_cos", "price"))  # a comparator without the rule's features
    fused = np.array([0.1, 0.2], np.float32)
    assert np.array_equal(rules.apply(np.ones((2, 2), np.float32), fused), fused)


def test_two_offers_of_one_product_in_two_languages_meet_the_identity_rule() -> None:
    enc = TitleEncoder(Text(), "k")
    recs = [Record(f"r{i}", "", "", (), "", "", (), (("title", t),)) for i, t in enumerate(
        ["Samsung Galaxy A55 5G 128GB Schwarz SM-A556B", "Galaxy A55 (Noir, 128 Go) Smartphone Samsung SM-A556B",
         "Samsung Galaxy A55 5G 256GB Schwarz SM-A556B"])]
    cols = enc.encode(recs)

    def feats(i: int, j: int) -> dict[str, float]:
        got = enc.compare({k: v[[i]] for k, v in cols.items()}, {k: v[[j]] for k, v in cols.items()})
        return {k: float(v[0]) for k, v in got.items()}

    same, sibling = feats(0, 1), feats(0, 2)
    assert same["code_match"] == 1.0 and same["attr_agree"] == 1.0 and same["variant_agree"] == 1.0
    assert sibling["variant_agree"] < 1.0  # 128GB / 256GB: another product
