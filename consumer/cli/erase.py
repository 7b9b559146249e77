"""`dedup erase ID... [--from-file F]`: the command-line door of erasure (GDPR Art. 17), against Redis.

Why against Redis and not through Kafka: an operator answering a deletion request needs it done and
confirmed now, whether or not the service runs. Redis forgets the record at once (record, payload, stored
events, membership, keyed hashes; consumer/store/erasure.py); the running members follow through the
changelog: each forgets it in its replica and index, one re-checks its cluster and emits `record.erased`
(and `cluster.split` when the cluster fell apart), and snapshots and the changelog drop it within
`service.erasure_bound_seconds`. Unknown ids are reported as not found and change nothing; they do not
fail the others. Ids are printed back only to the operator who typed them; logs carry a keyed hash.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from consumer.config import load_settings

__all__ = ["add_command", "cmd_erase"]


def _ids(args: argparse.Namespace) -> list[str]:
    ids = [i for i in args.ids if i.strip()]
    if args.from_file:
        with (sys.stdin if args.from_file == "-" else open(args.from_file, encoding="utf-8")) as fh:
            ids.extend(line.strip() for line in fh if line.strip())
    return ids


def cmd_erase(args: argparse.Namespace) -> int:
    from redis.exceptions import RedisError

    from consumer.cli.service import redact_url
    from consumer.io.events import utc_iso
    from consumer.store.redis import RedisStateStore

    settings = load_settings(args.config)
    svc = settings.service
    try:
        ids = _ids(args)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.from_file}: {type(exc).__name__}", file=sys.stderr)
        return 2
    if not ids:
        print("error: no record ids given (arguments or --from-file)", file=sys.stderr)
        return 2
    too_long = [i for i in ids if len(i) > settings.limits.max_field_chars]
    ids = [i for i in ids if len(i) <= settings.limits.max_field_chars]
    url = args.redis or svc.redis
    store = RedisStateStore(url, args.redis_prefix or svc.redis_prefix)
    t0 = time.perf_counter()
    try:
        done = store.erase(ids, door="cli", hash_key=settings.encoders.hash_key, now_iso=utc_iso(time.time()))
    except RedisError as exc:
        print(f"error: cannot erase in Redis at {redact_url(url)}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    missing = [i for i in ids if not done.get(i)] + too_long
    for rid in missing:
        print(f"not found: {rid}", file=sys.stderr)
    print(json.dumps({"erased": sum(done.values()), "not_found": len(missing),
                      "seconds": round(time.perf_counter() - t0, 3)}))
    return 0


def add_command(sub: Any) -> None:
    p = sub.add_parser("erase", help="erase records everywhere (GDPR Art. 17): Redis now, replicas, snapshots "
                                     "and the changelog within service.erasure_bound_seconds")
    p.add_argument("ids", nargs="*", metavar="ID", help="record ids to erase")
    p.add_argument("--from-file", metavar="F", help="more ids, one per line ('-' = stdin)")
    p.add_argument("--redis", metavar="URL", help="as for `dedup run` (default from settings/env)")
    p.add_argument("--redis-prefix", help="key prefix used by `dedup run` (default dedup)")
    p.add_argument("--config", help="TOML settings file (for the [service] defaults and the hash key)")
    p.set_defaults(func=cmd_erase)
