"""The peers `benchmarks/real_data.py` runs beside dedup-stream, on the same files in the same run.

- **Splink 5** (DuckDB backend), configured as its tutorials configure a deduplication of such columns:
  comparisons chosen per column kind, term-frequency adjustments on names, lambda from deterministic
  rules, u by random sampling, m by EM on two blocking rules, then connected components at a match
  probability of 0.5. Nothing is tuned on the truth.
- **TF-IDF baseline**: scikit-learn's TfidfVectorizer (character 2-4-grams within words) over all text
  fields joined, the 10 nearest neighbours by cosine, pairs at cosine >= 0.8, connected components.

Both return record id -> cluster label. Benchmark code only: neither is a runtime dependency.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

__all__ = ["splink_clusters", "tfidf_clusters", "TFIDF_THRESHOLD"]

#: Cosine at or above which the TF-IDF baseline links two records (fixed, never fitted to a truth file).
TFIDF_THRESHOLD = 0.8


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def tfidf_clusters(ids: Sequence[str], texts: Sequence[str], threshold: float = TFIDF_THRESHOLD,
                   k: int = 10, sources: Sequence[str] | None = None) -> dict[str, str]:
    """Clusters of the TF-IDF baseline (see the module docstring). `sources`: each record's source, for a
    file that joins sources: only pairs across sources link (as every method is run on such a file)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import NearestNeighbors

    x = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=1).fit_transform(
        [t.lower() for t in texts])
    k = min(k + 1, len(ids))
    dist, nb = NearestNeighbors(n_neighbors=k, metric="cosine").fit(x).kneighbors(x)
    rows = np.repeat(np.arange(len(ids)), k)
    keep = (1.0 - dist.ravel() >= threshold) & (nb.ravel() != rows)
    if sources is not None:
        src = np.asarray(sources)
        keep &= src[rows] != src[nb.ravel()]
    labels = _components(len(ids), np.stack([rows[keep], nb.ravel()[keep]], axis=1))
    return {rid: str(labels[i]) for i, rid in enumerate(ids)}


def _person_settings(columns: Sequence[str], dob_format: str | None):  # noqa: ANN202 - a SettingsCreator
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    comparisons = [cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
                   cl.NameComparison("surname").configure(term_frequency_adjustments=True)]
    blocking = [block_on("surname"), block_on("given_name")]
    if "date_of_birth" in columns:
        comparisons.append(cl.DateOfBirthComparison("date_of_birth", input_is_string=True,
                                                    datetime_format=dob_format))
        blocking += [block_on("date_of_birth"), block_on("substr(given_name, 1, 2)", "substr(surname, 1, 2)")]
    for col in ("street_number", "postcode"):
        if col in columns:
            comparisons.append(cl.ExactMatch(col))
    for col in ("address_1", "suburb"):
        if col in columns:
            comparisons.append(cl.JaroWinklerAtThresholds(col, [0.9, 0.7]))
    if "postcode" in columns:
        blocking.append(block_on("postcode"))
    return SettingsCreator(link_type="dedupe_only", comparisons=comparisons,
                           blocking_rules_to_generate_predictions=blocking)


def _listing_settings(columns: Sequence[str]):  # noqa: ANN202
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    comparisons = [cl.JaroWinklerAtThresholds("title", [0.95, 0.88, 0.75]),
                   cl.ArrayIntersectAtSizes("title_tokens", [4, 2, 1])]
    if "brand" in columns:
        comparisons.append(cl.ExactMatch("brand").configure(term_frequency_adjustments=True))
    if "price" in columns:
        comparisons.append(cl.ExactMatch("price"))
    blocking = [block_on("first_word"), block_on("last_word"), block_on("substr(title, 1, 6)")]
    return SettingsCreator(link_type="dedupe_only", comparisons=comparisons,
                           blocking_rules_to_generate_predictions=blocking)


def _linking(settings, sources: Sequence[str] | None):  # noqa: ANN001, ANN202
    """The settings as a link across sources (Splink's `link_only`) when the file joins sources."""
    return settings if sources is None else dataclasses.replace(settings, link_type="link_only")


def splink_clusters(rows: list[dict[str, str]], id_field: str, kind: str, threshold: float = 0.5,
                    sources: Sequence[str] | None = None) -> dict[str, str]:
    """Clusters Splink 5 finds, EM-trained without labels as its tutorials train a deduplication model.
    `kind`: "person" or "listing" (which comparisons fit the columns). `sources`: each row's source, for a
    file that joins sources: Splink then links them (`link_only`, one table per source)."""
    import pandas as pd
    from splink import DuckDBAPI, Linker, block_on

    logging.getLogger("splink").setLevel(logging.ERROR)
    df = pd.DataFrame(rows).rename(columns={id_field: "unique_id"}).fillna("")
    df = df.replace({"": None})
    columns = [c for c in df.columns if c != "unique_id" and df[c].notna().any()]
    if kind == "listing":
        title = df["title"].fillna("").str.lower().str.replace(r"[^a-z0-9 ]", " ", regex=True)
        words = title.str.split()
        df["title"] = title
        df["title_tokens"] = words
        df["first_word"] = words.str[0]
        df["last_word"] = words.str[-1]
        settings = _listing_settings(columns)
        rules = [block_on("first_word"), block_on("last_word")]
        deterministic = ["l.title = r.title", block_on("last_word")]
    else:
        dob = df["date_of_birth"].dropna() if "date_of_birth" in df else pd.Series([], dtype=str)
        settings = _person_settings(columns, "%Y%m%d" if len(dob) and dob.str.fullmatch(r"\d{8}").mean() > 0.5
                                    else "%Y-%m-%d")
        rules = [block_on("surname"), block_on("given_name")]
        # Rules that admit very few false positives, as the tutorials pick them: a typo in one field still
        # leaves two others equal (a rule on all three finds almost no duplicate of a file with typos).
        deterministic = ([block_on("given_name", "surname", "date_of_birth"), block_on("surname", "date_of_birth"),
                          block_on("given_name", "date_of_birth")] if "date_of_birth" in columns
                         else [block_on("given_name", "surname")])
    db = DuckDBAPI()
    if sources is None:
        linker = Linker(db.register(df), settings)
    else:
        df["_source"] = list(sources)
        tables = [db.register(part.drop(columns="_source"), dataset_display_name=f"source_{name}")
                  for name, part in df.groupby("_source", sort=True)]
        linker = Linker(tables, _linking(settings, sources))
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    for rule in rules:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    pred = linker.inference.predict(threshold_match_probability=0.1)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold)
    out = clusters.as_pandas_dataframe()
    return {str(r): str(c) for r, c in zip(out["unique_id"], out["cluster_id"])}
