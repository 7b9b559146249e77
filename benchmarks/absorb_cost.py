"""Per-member cost of applying the other members' records (the replica's absorb), in CPU seconds per record.

    python benchmarks/absorb_cost.py --records 6000 --run 50

Decides a generated CRM file on one pipeline (the "other members"), then absorbs its states into a second
pipeline in runs of --run records (one changelog sync's worth at 500 records/s split over 3 members), with
late-link scoring against --pending own records, as `Replica.apply` does. No Redis: the fetch is one
pipelined HMGET per sync in the service and is not counted here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=6000)
    ap.add_argument("--run", type=int, default=50)
    ap.add_argument("--pending", type=int, default=50)
    args = ap.parse_args()
    from consumer.config import load_settings
    from consumer.engine.records import Record
    from consumer.generate import write_crm
    from consumer.io.artifacts import build_pipeline
    from consumer.io.batch import iter_records
    from consumer.service.changelog import Replica

    work = Path(tempfile.mkdtemp(prefix="absorb-"))
    write_crm(work / "crm.csv", work / "truth.csv", args.records, 5)
    s = load_settings(env={})
    recs = [r for _, r in iter_records(work / "crm.csv", s) if isinstance(r, Record)]
    other = build_pipeline(s)
    t0 = time.process_time()
    for i in range(0, len(recs), 500):
        other.process(recs[i: i + 500])
    decide_cpu = time.process_time() - t0
    states = other.snapshot(range(len(other.store)))
    me = build_pipeline(s, text_encoder=other.text)
    half = len(states) // 2
    me.absorb(states[:half])  # a replica already holding half the stream
    me.blocker.settle()
    replica = Replica()
    own = list(range(max(0, half - args.pending), half))
    cpu = links = 0.0
    for i in range(half, len(states), args.run):
        run = states[i: i + args.run]
        replica.pending_own = set(own)
        t0 = time.process_time()
        res = replica.apply(me, [f"r{st.record_id}" for st in run], {st.record_id: st for st in run})
        me.blocker.settle()
        cpu += time.process_time() - t0
        links += len(res.links)
    n = len(states) - half
    print(json.dumps({"absorbed": n, "run": args.run, "pending_own": args.pending,
                      "absorb_cpu_ms_per_record": round(1000 * cpu / n, 3),
                      "decide_cpu_ms_per_record": round(1000 * decide_cpu / len(recs), 3),
                      "late_links_found": links}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
