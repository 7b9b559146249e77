"""`dedup serve`, `dedup score` and `dedup openapi` (registered by `consumer.cli`).

`dedup score A.json B.json` and `POST /v1/score` call the same `consumer.api.scoring.score_pair` on a pipeline
built the same way (`build_pipeline`), so the CLI answers exactly what the server answers for a pair.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import orjson

from consumer.cli.common import api_flags, apply_api_flags, settings_from_args
from consumer.config import ConfigError, Settings

__all__ = ["add_commands"]

log = logging.getLogger("dedup.api")


def _read_record(path: str, settings: Settings) -> Any:
    """One JSON object from a file (size-capped like any input record)."""
    limit = settings.limits.max_record_bytes
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except FileNotFoundError:
        raise ConfigError(f"record file not found: {path}") from None
    if len(raw) > limit:
        raise ConfigError(f"{path}: record exceeds limits.max_record_bytes ({limit})")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (at byte {exc.pos})") from None


def cmd_score(args: argparse.Namespace) -> int:
    from consumer.api.scoring import parse_pair, score_pair
    from consumer.engine.records import RejectError
    from consumer.io.artifacts import build_pipeline

    s = settings_from_args(args)
    rows = _read_record(args.a, s), _read_record(args.b, s)
    with build_pipeline(s) as pipe:
        try:
            a, b = parse_pair(*rows, s)
        except RejectError as exc:
            print(f"error: {exc.detail} (reason {exc.reason})", file=sys.stderr)
            return 2
        result = score_pair(pipe, a, b)
    print(json.dumps({"profile": s.profile.name, "a": a.record_id, "b": b.record_id,
                      **result.to_dict(with_features=args.explain)}))
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    from consumer.api.openapi import openapi_document
    from consumer.io.artifacts import build_pipeline

    s = settings_from_args(args)
    with build_pipeline(s) as pipe:
        doc = openapi_document(s, list(pipe.fuser.modalities))
    text = json.dumps(doc, indent=2) + "\n"
    if args.out in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
    return 0


def _population(pipe: Any, store: Any) -> Any:
    """Term-frequency counts of the records in Redis, refusing state another profile or hash key wrote
    (its columns or keyed hashes would not be this pipeline's: every value would look unseen)."""
    from redis.exceptions import RedisError

    from consumer.api.scoring import population
    from consumer.config import key_id

    try:
        meta = store.get_meta()
        if meta.get("config_version") not in (None, pipe.config_version):
            raise ConfigError(f"Redis state was written with config {meta['config_version']}, this server runs "
                              f"{pipe.config_version}: use the service's profile and settings, or drop "
                              "--rarity-from-redis")
        if meta.get("key_id") not in (None, key_id(pipe.settings.encoders.hash_key)):
            raise ConfigError("Redis state was written with another encoders.hash_key: set the service's key, "
                              "or drop --rarity-from-redis")
        table, ids = population(pipe, store.load_states())
    except RedisError as exc:
        raise ConfigError(f"--rarity-from-redis: cannot read the state from Redis ({type(exc).__name__})") from None
    log.info("rarity counts loaded from redis", extra={"records": table.records})
    return table, ids


def cmd_serve(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from consumer.api.app import ApiContext, api_routes
    from consumer.api.health import HealthState, listeners
    from consumer.io.artifacts import build_pipeline
    from consumer.store.redis import RedisStateStore
    from consumer.telemetry.metrics import ApiMetrics

    s = settings_from_args(args)
    svc = s.service
    for flag, attr in (("host", "http_host"), ("port", "http_port"), ("redis", "redis"),
                       ("redis_prefix", "redis_prefix")):
        value = getattr(args, flag)
        if value is not None:
            setattr(svc, attr, value)
    apply_api_flags(args, s)
    if args.rarity_from_redis and args.no_redis:
        raise ConfigError("--rarity-from-redis needs a state store (drop --no-redis)")
    pipe = build_pipeline(s)
    store = None if args.no_redis else RedisStateStore(svc.redis, svc.redis_prefix)
    try:
        # No poll loop to stall and no partitions: alive while serving, ready once the models are loaded.
        health = HealthState(float("inf"))
        health.set_assigned(True)
        health.set_index_loaded(True)
        table, ids = _population(pipe, store) if args.rarity_from_redis else (None, set())
        registry = CollectorRegistry()
        ctx = ApiContext(s, lambda: pipe, lambda: table, "state", lambda: ids, store=store, health=health,
                         metrics=ApiMetrics(registry))
        server, management = listeners(health, registry, s, routes=[api_routes(ctx)])
        stop = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("signal received, stopping", extra={"signal": signum})
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        server.start()
        if management is not None:
            management.start()
        try:
            # One line a supervisor (or a test with --port 0) can read the address from.
            print(json.dumps({"url": server.url, "profile": s.profile.name, "fusion": pipe.fuser.version,
                              "state_store": store is not None, "rarity": "state" if table is not None else "pair"}),
                  flush=True)
            log.info("serving", extra={"port": server.port, "profile": s.profile.name})
            stop.wait()
        finally:
            server.stop(grace=5.0)  # in-flight requests finish before the pipeline and Redis close
            if management is not None:
                management.stop(grace=1.0)
    finally:
        pipe.close()
        if store is not None:
            store.close()
    return 0


def add_commands(sub: Any, common: Any) -> None:
    """Register the three subcommands; `common` adds the engine flags (--config, --profile, ...)."""
    p = sub.add_parser("serve", help="HTTP API: score pairs (POST /v1/score), read clusters from Redis")
    p.add_argument("--host", help="listen address (default service.http_host, 0.0.0.0)")
    p.add_argument("--port", type=int, help="listen port (default service.http_port, 8000; 0 = any free port)")
    p.add_argument("--redis", metavar="URL", help="Redis of `dedup run` for cluster look-ups (service.redis)")
    p.add_argument("--redis-prefix", help="its key prefix (service.redis_prefix, default dedup)")
    p.add_argument("--no-redis", action="store_true", help="scoring only: cluster look-ups answer 503")
    p.add_argument("--rarity-from-redis", action="store_true",
                   help="judge pairs against the records stored in Redis at start-up (rarity \"state\"), "
                        "not the pair alone; needs the service's profile, settings and hash key")
    p.add_argument("--model", help="learned fusion model file (default: the shipped one)")
    api_flags(p)
    common(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("score", help="score two records (JSON files) as POST /v1/score does")
    p.add_argument("a", help="JSON file with one record (the earlier one)")
    p.add_argument("b", help="JSON file with one record (scored against A)")
    p.add_argument("--explain", action="store_true", help="also print the comparison features")
    p.add_argument("--model", help="learned fusion model file (default: the shipped one)")
    common(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("openapi", help="print the API's OpenAPI document for the settings' profile")
    p.add_argument("--out", help="write it here instead of stdout")
    common(p)
    p.set_defaults(func=cmd_openapi)
