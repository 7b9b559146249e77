"""Which true pairs does candidate generation miss at scale, and why (issue 11)?

Exact (brute-force) search over the same composite index vectors the engine uses, in arrival order: for
every record with an earlier true partner, the rank of each partner among *all earlier records* under the
composite query (rank 0 = nearest). An exact top-k is what HNSW approximates, so recall@k here is the
ceiling of the engine's candidate recall at that k. It also measures alternative policies by rank alone
(no per-policy search): a larger k, and a second, re-weighted probe (the query vector's modality segments
scaled, searched against the same stored vectors), where a pair is reached if either probe ranks it < k.

For the misses at k=32 it prints per-modality cosines of (record, true partner) against (record, best
stranger), and how many earlier strangers share the exact name vector.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/candidate_misses.py --n 100000 --variant heldout --seed 11 \
        --workdir /tmp/ev
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

KS = (16, 32, 48, 64, 96, 128)
#: Second-probe segment scalings tried (modality column -> factor; others 1).
PROBES: dict[str, dict[str, float]] = {
    "city+beh x2": {"city_vec": 2.0, "hour": 2.0},
    "city x3 beh x3": {"city_vec": 3.0, "hour": 3.0},
    "name x0.5": {"name_vec": 0.5},
}


def load(n: int, variant: str, seed: int, workdir: Path):
    from consumer.config import load_settings
    from consumer.engine.records import Record
    from consumer.evaluation.evaluate import load_truth
    from consumer.generate import write_crm
    from consumer.io.artifacts import build_pipeline, load_text_encoder
    from consumer.io.batch import iter_records

    settings = load_settings(None)
    data, truth_path = workdir / f"crm-{variant}-s{seed}-{n}.csv", workdir / f"crm-{variant}-s{seed}-{n}.truth.csv"
    if not (data.exists() and truth_path.exists()):
        write_crm(data, truth_path, n, seed, variant)
    records = [r for _, r in iter_records(data, settings) if isinstance(r, Record)]
    truth = load_truth(truth_path, settings.profile.id_field)
    records = [r for r in records if r.record_id in truth]
    pipe = build_pipeline(settings, text_encoder=load_text_encoder(settings))
    cols: dict[str, list[np.ndarray]] = defaultdict(list)
    for s in range(0, len(records), 1000):
        for k, v in pipe.encode(records[s: s + 1000]).items():
            if any(k == iv.column for iv in pipe.blocker.spec):
                cols[k].append(np.asarray(v, np.float32))
    full = {k: np.concatenate(v) for k, v in cols.items()}
    return records, truth, pipe.blocker.spec, full


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--variant", default="heldout")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--workdir", default="/tmp/ev")
    ap.add_argument("--block", type=int, default=384)
    ap.add_argument("--sample", type=float, default=1.0, help="share of query records searched (random)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    records, truth, spec, cols = load(args.n, args.variant, args.seed, Path(args.workdir))
    from consumer.engine.blocking import index_vectors

    V = index_vectors(cols, spec)  # stored vectors (normalised composite)
    segs, off = {}, 0
    for iv in spec:
        segs[iv.column] = slice(off, off + iv.size)
        off += iv.size
    # per-modality unit vectors for the diagnosis
    unit = {c: cols[c] / np.maximum(np.linalg.norm(cols[c], axis=1, keepdims=True), 1e-9) for c in segs}
    probes = {}
    for name, scale in PROBES.items():
        Q = V.copy()
        for c, f in scale.items():
            Q[:, segs[c]] *= f
        probes[name] = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-9)
    print(f"loaded+encoded {len(records)} records in {time.perf_counter() - t0:.0f}s; dims "
          + ", ".join(f"{c}={s.stop - s.start}" for c, s in segs.items()), flush=True)

    ent = np.array([truth[r.record_id] for r in records])
    _, ent_id = np.unique(ent, return_inverse=True)
    members: dict[int, list[int]] = defaultdict(list)
    for i, e in enumerate(ent_id.tolist()):
        members[e].append(i)
    # queries: records with an earlier true partner
    qs = [j for j in range(len(records)) if members[ent_id[j]][0] < j]
    if args.sample < 1:
        rng = np.random.default_rng(0)
        qs = sorted(rng.choice(qs, int(len(qs) * args.sample), replace=False).tolist())
    pairs_q, pairs_p = [], []
    ranks, prank = [], {p: [] for p in probes}
    diag = []
    t1 = time.perf_counter()
    for s in range(0, len(qs), args.block):
        js = np.array(qs[s: s + args.block])
        hi = int(js.max())
        S = V[js] @ V[:hi].T
        mask = np.arange(hi)[None, :] >= js[:, None]
        S[mask] = -np.inf
        Sp = {}
        for name, Q in probes.items():
            X = Q[js] @ V[:hi].T
            X[mask] = -np.inf
            Sp[name] = X
        for r, j in enumerate(js.tolist()):
            part = [i for i in members[ent_id[j]] if i < j]
            row = S[r].copy()
            for i in part:
                rk = int((row > row[i]).sum())
                pairs_q.append(j)
                pairs_p.append(i)
                ranks.append(rk)
                for name in probes:
                    prank[name].append(int((Sp[name][r] > Sp[name][r][i]).sum()))
            row[part] = -np.inf
            best = int(np.argmax(row))
            # the 32nd stranger's score (what a partner has to beat at k=32)
            kth = np.partition(row, -32)[-32] if hi > 32 else -np.inf
            for i in part:
                diag.append((j, i, best, float(S[r][i]), float(kth)))
        if s // args.block % 40 == 0:
            print(f"  {s}/{len(qs)} queries, {time.perf_counter() - t1:.0f}s", flush=True)
    ranks_a = np.array(ranks)
    pq, pp = np.array(pairs_q), np.array(pairs_p)
    print(f"\n{len(ranks_a)} true (later, earlier) pairs, {len(qs)} query records; "
          f"search {time.perf_counter() - t1:.0f}s")
    print("exact composite recall@k:", "  ".join(f"k={k}: {(ranks_a < k).mean():.4f}" for k in KS))

    def reach(ok: np.ndarray) -> float:
        """Share of query records that reach at least one earlier true partner (what a final cluster needs)."""
        got = defaultdict(bool)
        for q, o in zip(pq.tolist(), ok.tolist()):
            got[q] |= o
        return sum(got.values()) / len(got)

    print("exact composite reach@k (>=1 earlier partner):",
          "  ".join(f"k={k}: {reach(ranks_a < k):.4f}" for k in KS))
    for name in probes:
        pr = np.array(prank[name])
        alone = "  ".join(f"k={k}: {(pr < k).mean():.4f}" for k in (32, 64))
        union = "  ".join(f"32+{k2}: {((ranks_a < 32) | (pr < k2)).mean():.4f}/{reach((ranks_a < 32) | (pr < k2)):.4f}"
                          for k2 in (8, 16, 32))
        print(f"probe [{name}] alone {alone} | union pair/reach {union}")

    # diagnosis of misses at k=32
    miss = ranks_a >= 32
    print(f"\nmisses at k=32: {miss.sum()} pairs; rank quantiles (50/75/90/99): "
          f"{np.percentile(ranks_a[miss], [50, 75, 90, 99]).round().tolist() if miss.any() else []}")
    rows = []
    for (j, i, best, s_true, s_kth), m in zip(diag, miss.tolist()):
        cos_t = {c: float(unit[c][j] @ unit[c][i]) for c in segs}
        cos_b = {c: float(unit[c][j] @ unit[c][best]) for c in segs}
        rows.append((m, cos_t, cos_b, s_true, s_kth))
    for label, sel in (("missed", True), ("reached", False)):
        rs = [r for r in rows if r[0] is sel]
        if not rs:
            continue
        print(f"{label} pairs ({len(rs)}): mean cosine true partner vs best stranger per modality")
        for c in segs:
            t = np.mean([r[1][c] for r in rs])
            b = np.mean([r[2][c] for r in rs])
            print(f"   {c:9s} partner {t:.3f}  best stranger {b:.3f}")
        print(f"   composite partner {np.mean([r[3] for r in rs]):.3f}  "
              f"32nd stranger {np.mean([r[4] for r in rs]):.3f}")
    # same-name crowding: how many earlier strangers have (nearly) the same name vector as the missed query
    sample = [d for d, m in zip(diag, miss.tolist()) if m][:2000]
    if sample:
        nm = unit["name_vec"]
        cnt = []
        exact_name_partner = 0
        for j, i, *_ in sample:
            sims = nm[:j] @ nm[j]
            c = int((sims > 0.999).sum()) - int(sims[i] > 0.999)
            cnt.append(c)
            exact_name_partner += int(sims[i] > 0.999)
        cnt_a = np.array(cnt)
        print(f"\nmissed sample {len(sample)}: earlier strangers with the same name vector: "
              f"median {np.median(cnt_a):.0f}, "
              f"mean {cnt_a.mean():.1f}, >=32: {(cnt_a >= 32).mean():.3f}; partner has the same name vector: "
              f"{exact_name_partner / len(sample):.3f}")
        nm_t = np.array([float(nm[j] @ nm[i]) for j, i, *_ in sample])
        q = np.percentile(nm_t, [10, 50, 90]).round(3).tolist()
        print(f"name-vector cosine of missed partner: quantiles 10/50/90 {q}")
    print(f"total {time.perf_counter() - t0:.0f}s")
    np.savez(Path(args.workdir) / f"misses-{args.variant}-{args.n}.npz", q=pq, p=pp, rank=ranks_a,
             **{f"probe_{k.replace(' ', '_')}": np.array(v) for k, v in prank.items()})


if __name__ == "__main__":
    main()
