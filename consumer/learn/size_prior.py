"""How often a file's duplicates come in threes, estimated from its candidate pairs without labels.

A pairwise model scores each pair on its own, with one prior for every pair. But a record that already has a
duplicate is not, in every file, as likely to have another as a record is to have its first: in files whose
duplicates come in pairs (RLdata10000: each person at most twice; two shops' catalogues), a third record that
scores a match with both members of a pair is usually a namesake ("JUERGEN MUELLER 1964-05-02" beside the pair
"JUERGEN MUELLER 1964-05-24" / "JUERGEQN MUELLER 1964-05-24"), while in files built from several noisy copies
of one original (FEBRL2/3, CRM signups) it is another copy. Microclustering models of entity resolution put a
prior on cluster sizes for this reason; here the file says which kind it is.

From the fitted model's match probabilities of the candidate pairs, a record's *partners* are its candidates
more likely a match than not (p >= 0.5). Over the file:

    share_first  = records with >= 1 partner / records              (how often a record has a duplicate)
    share_second = (records with >= 2 partners + 1) / (... >= 1 + 1) (how often a duplicated record has two)

`penalty = log(share_first / share_second)` (nats, >= 0, capped) is how much less likely a third member is
than a second: the clustering's re-check asks that much more log-odds of a group that would grow to three
or more (`consumer.engine.clustering`, `Guards.size_penalty`). Files whose duplicated records often have
two partners get none, and so does a file whose penalty is under `MIN_PENALTY` (no prior that assumes a
file of pairs unless the file shows it).

Why counts of likely partners, not expected counts: a fit on a sample of a large file keeps a record's
partner with the sample's share of the file, so both shares shrink alike and their ratio holds; but the
sum over the many unlikely candidates (p ~0.001 each) does not shrink, and with expected counts the penalty
on RLdata10000 fell from 2.95 to 1.98 and 0.71 when fitted on 5,000 and 2,500 of its records (counts: 3.16,
2.59, 1.80). The `+ 1` keeps a sample with no record of two partners from claiming an infinite penalty: a
small sample gets a smaller one, the safe side.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LIKELY", "MAX_PENALTY", "MIN_PENALTY", "estimate"]

#: A candidate more likely a match than not counts as a partner.
LIKELY = 0.5
#: Never more than this (nats): a large file of pairs would otherwise ask near-certainty of any third record.
MAX_PENALTY = 4.0
#: Below this (nats) the file shows no pairs: a duplicated record is at least half as likely as any record to
#: have another, and the prior is 0. Why not any positive value: the prior also makes every join that leaves
#: three or more records re-check its group, and the re-check splits groups whose members were corrupted
#: unevenly; a file of large groups whose estimate is a little above 0 by chance lost its groups to it
#: (fake-1000, groups up to 8: penalty 0.011 nats, recall 0.65 -> 0.58). The files measured sit far on either
#: side (0 to 0.04 for files of groups, 3.2 to the cap for files of pairs), so the cut is ln 2, the meaning of
#: "pairs", not a value read off a file.
MIN_PENALTY = float(np.log(2.0))


def estimate(p: np.ndarray, left: np.ndarray, right: np.ndarray, records: int) -> dict[str, float]:
    """The size prior of a file from its candidate pairs (`left[i]`, `right[i]`, rows < `records`) and their
    match probabilities `p`; each pair counted once."""
    if records <= 0 or not len(p):
        return {"share_first": 0.0, "share_second": 0.0, "penalty": 0.0}
    a, b = np.minimum(left, right), np.maximum(left, right)
    _, first = np.unique(a.astype(np.int64) * records + b, return_index=True)
    likely = p[first] >= LIKELY
    partners = np.bincount(np.concatenate([a[first][likely], b[first][likely]]), minlength=records)
    d1, d2 = int((partners >= 1).sum()), int((partners >= 2).sum())
    share_first = d1 / records
    share_second = (d2 + 1) / (d1 + 1)
    penalty = float(np.clip(np.log(share_first / share_second), 0.0, MAX_PENALTY)) if d1 else 0.0
    if penalty < MIN_PENALTY:
        penalty = 0.0
    return {"share_first": round(share_first, 5), "share_second": round(share_second, 5),
            "penalty": round(penalty, 4)}
