"""Evaluation: ground truth, pairwise and B-cubed metrics, candidate recall.

Pairwise precision/recall/F1 count record pairs placed together (what a CRM merge acts on). B-cubed
averages per-record precision/recall of its cluster, so one giant chained cluster cannot hide behind many
correct small ones. Methods that output pairs rather than clusters (the string baseline, the paper's
thresholded scores) are scored on their pair sets for pairwise metrics and on the connected components of
those pairs for B-cubed.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Scores", "load_truth", "cluster_scores", "pair_scores", "true_pairs"]


@dataclass
class Scores:
    precision: float
    recall: float
    f1: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float
    predicted_pairs: int
    true_pairs: int
    largest_cluster: int

    def row(self) -> dict[str, float | int]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def load_truth(path: str | Path, id_field: str = "customer_id", entity_field: str = "entity_id"
               ) -> dict[str, str]:
    """record id -> entity from a truth file of one row per record. The columns: `id_field` (else `id`,
    else the first) and `entity_field` (else the first other column named like entity, cluster or group:
    the real-data files' `id,entity`). InputError, one line, for a file without such a column (a file of
    matching pairs is what `dedup label --oracle` takes; scoring needs every record's entity)."""
    from consumer.io.csv_separator import separator_of
    from consumer.io.files import InputError
    from consumer.io.labels import ENTITY_WORDS

    with open(path, encoding="utf-8-sig", newline="") as fh:
        first = fh.readline()
        fh.seek(0)
        rows = csv.reader(fh, delimiter=separator_of(first))
        header = [h.strip() for h in next(rows, [])]
        ids = [c for c in (id_field, "id") if c in header] or header[:1]
        ents = [c for c in (entity_field,) if c in header] or [
            c for c in header if c not in ids[:1] and any(w in c.lower() for w in ENTITY_WORDS)]
        if not ids or not ents:
            raise InputError(f"truth file {Path(path).name}: needs an id column and an entity column "
                             f"({id_field!r} and {entity_field!r}, or one named like entity, cluster or group); "
                             f"its columns: {', '.join(header) or 'none'}")
        i, e = header.index(ids[0]), header.index(ents[0])
        return {row[i]: row[e] for row in rows if len(row) > max(i, e)}


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def true_pairs(truth: Mapping[str, str]) -> set[tuple[str, str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for rid, ent in truth.items():
        groups[ent].append(rid)
    out: set[tuple[str, str]] = set()
    for members in groups.values():
        members.sort()
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                out.add((a, b))
    return out


def cluster_scores(pred: Mapping[str, str], truth: Mapping[str, str]) -> Scores:
    """Metrics of a clustering (record -> cluster) against the truth (record -> entity).

    Records absent from `pred` (e.g. rejected) count as singletons, so dropping rows cannot raise scores.
    """
    pred = {rid: pred.get(rid, f"__singleton__{rid}") for rid in truth}
    cells = Counter((pred[r], truth[r]) for r in truth)
    pred_sizes = Counter(pred.values())
    true_sizes = Counter(truth.values())
    tp = sum(_pairs(n) for n in cells.values())
    pp = sum(_pairs(n) for n in pred_sizes.values())
    tt = sum(_pairs(n) for n in true_sizes.values())
    precision = tp / pp if pp else 1.0
    recall = tp / tt if tt else 1.0
    bp = sum(cells[(pred[r], truth[r])] / pred_sizes[pred[r]] for r in truth) / len(truth)
    br = sum(cells[(pred[r], truth[r])] / true_sizes[truth[r]] for r in truth) / len(truth)
    return Scores(precision, recall, _f1(precision, recall), bp, br, _f1(bp, br), pp, tt,
                  max(pred_sizes.values(), default=0))


def pair_scores(pairs: np.ndarray, ids: Sequence[str], truth: Mapping[str, str]) -> Scores:
    """Pairwise metrics on a pair set ([n, 2] positions into `ids`); B-cubed on its connected components."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ent_codes: dict[str, int] = {}
    ent = np.array([ent_codes.setdefault(truth[r], len(ent_codes)) for r in ids], np.int64)
    pairs = np.unique(np.sort(pairs, axis=1), axis=0) if len(pairs) else pairs
    tp = int((ent[pairs[:, 0]] == ent[pairs[:, 1]]).sum()) if len(pairs) else 0
    gold = sum(_pairs(n) for n in Counter(truth[r] for r in ids).values())
    precision = tp / len(pairs) if len(pairs) else 1.0
    recall = tp / gold if gold else 1.0
    n = len(ids)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    comp = cluster_scores({r: str(labels[i]) for i, r in enumerate(ids)}, {r: truth[r] for r in ids})
    return Scores(precision, recall, _f1(precision, recall), comp.bcubed_precision, comp.bcubed_recall,
                  comp.bcubed_f1, len(pairs), gold, comp.largest_cluster)
