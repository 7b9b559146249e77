"""Acceptance check at full size: the same generated CRM stream through `dedup batch` and through
`dedup run` + `dedup export-clusters` must give the same pairwise F1 (within 0.005).

    python loadtest/stream_vs_batch.py --records 10000

Every step is the real CLI in its own process (batch, run, export-clusters) against a real broker and Redis
(see loadtest/common.py). Prints one JSON object; exits 1 when the F1 gap is larger than --tolerance.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import ROOT, ServiceRun, crm_file, hk, read_rows, servers


def clusters(path: Path) -> dict[str, str]:
    """record id -> final cluster id, from `export-clusters` output or from `dedup batch` decisions.

    A batch decision names the record's cluster *when it was decided*; a later record may bridge that
    cluster into an older one (its `merged_cluster_ids`), so merges are followed to the surviving cluster."""
    survivor: dict[str, str] = {}

    def final(cluster: str) -> str:
        while cluster in survivor:
            cluster = survivor[cluster]
        return cluster

    assigned: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for d in map(json.loads, fh):
            assigned[d["record_id"]] = d["cluster_id"]
            for merged in d.get("merged_cluster_ids", []):
                if final(merged) != final(d["cluster_id"]):
                    survivor[final(merged)] = final(d["cluster_id"])
    return {rid: final(c) for rid, c in assigned.items()}



def batch_baseline(data: Path, truth: dict[str, str], workdir: Path,
                   extra: Sequence[str] = ()) -> tuple[Any, float]:
    """`dedup batch` on the same file (`extra`: more flags, e.g. the profile), scored on its final clusters:
    the figure a stream must match. Returns (Scores, seconds)."""
    from consumer.evaluation.evaluate import cluster_scores

    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "consumer.cli", "batch", str(data), "--out", str(workdir / "batch.jsonl"),
                    "-q", *extra], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    seconds = time.monotonic() - t0
    return cluster_scores(clusters(workdir / "batch.jsonl"), truth), seconds

def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--tolerance", type=float, default=0.005)
    ap.add_argument("--workdir", help="keep files here (default: a temp dir)")
    args = ap.parse_args()

    from consumer.config import load_settings
    from consumer.evaluation.evaluate import cluster_scores, load_truth

    fingerprint = load_settings().fingerprint()  # both runs must use the same settings (checked at the end)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="dedup-f1-"))
    workdir.mkdir(parents=True, exist_ok=True)
    data, truth_path = crm_file(args.records, args.seed, workdir)
    truth = load_truth(truth_path)
    cli = [sys.executable, "-m", "consumer.cli"]

    batch, batch_seconds = batch_baseline(data, truth, workdir)

    with servers(workdir) as (bootstrap, redis_url):
        topic = hk.unique_topic("crm")
        hk.create_topics(bootstrap, [topic])
        hk.produce_json(bootstrap, topic, read_rows(data), key="customer_id", timeout=60)
        with ServiceRun(bootstrap, redis_url, topic, workdir) as svc:
            t0 = time.monotonic()
            svc.wait_committed(args.records, timeout=1800)
            stream_seconds = time.monotonic() - t0
            out = workdir / "stream.jsonl"
            subprocess.run([*cli, "export-clusters", "--redis", redis_url, "--redis-prefix", svc.prefix,
                            "--out", str(out)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    same_config = load_settings().fingerprint() == fingerprint
    exported = clusters(out)
    stream = cluster_scores(exported, truth)
    gap = abs(stream.f1 - batch.f1)
    ok = gap <= args.tolerance and len(exported) == args.records and same_config
    print(json.dumps({
        "records": args.records, "seed": args.seed, "exported": len(exported),
        "batch": {"f1": round(batch.f1, 4), "precision": round(batch.precision, 4),
                  "recall": round(batch.recall, 4), "seconds": round(batch_seconds, 1)},
        "stream": {"f1": round(stream.f1, 4), "precision": round(stream.precision, 4),
                   "recall": round(stream.recall, 4), "seconds_incl_startup": round(stream_seconds, 1)},
        "f1_gap": round(gap, 4), "tolerance": args.tolerance, "config_version": fingerprint,
        "config_unchanged_during_run": same_config,
        "ok": ok,
    }, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
