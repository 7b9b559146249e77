"""`dedup run`, `dedup export-clusters` and `dedup erase` (registered by `consumer.cli` when this module is present).

Service settings: built-in defaults <- --config TOML [service] <- DEDUP_SERVICE__* env <- flags.
Kafka client properties (security etc.): DEDUP_KAFKA_* env (io/kafka.py) and repeatable --kafka-property;
the flag wins over the environment for the same key.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Any

from consumer.cli.common import api_flags, apply_api_flags
from consumer.config import BUILTIN_PROFILES, ConfigError, load_settings
from consumer.io.kafka import normalize_properties, properties_from_env

__all__ = ["add_commands", "cmd_run", "cmd_export_clusters"]

log = logging.getLogger("dedup.service")


def _kafka_properties(pairs: list[str] | None) -> dict[str, Any]:
    """--kafka-property key=value pairs (the service layers them over DEDUP_KAFKA_* from the environment)."""
    props: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--kafka-property expects key=value, got {pair!r}")
        props[key.strip()] = value
    return normalize_properties(props)


def check_kafka_properties(props: dict[str, Any]) -> None:
    """Let librdkafka judge the properties now, so a typo is one clear line before anything connects.

    A throwaway producer without bootstrap servers validates names, values and files (ssl.ca.location)
    without touching the network; log_level 0 keeps its warnings (consumer-only keys) quiet.
    """
    from confluent_kafka import KafkaException, Producer

    merged = {**properties_from_env(), **props}
    config = {k: v for k, v in merged.items() if not callable(v) and k != "bootstrap.servers"}
    try:
        probe = Producer({**config, "log_level": 0})
    except KafkaException as exc:
        err = exc.args[0] if exc.args else exc
        raise ConfigError(f"Kafka client properties (--kafka-property / DEDUP_KAFKA_*): "
                          f"{getattr(err, 'str', lambda: str(err))()}") from None
    probe.flush(0)


def cmd_run(args: argparse.Namespace) -> int:
    from consumer.service.runner import Service

    s = load_settings(args.config, profile=args.profile)
    if args.fusion:
        s.fusion.mode = args.fusion
    svc = s.service
    for flag, attr in (("kafka", "kafka"), ("redis", "redis"), ("input_topic", "input_topics"),
                       ("events_topic", "events_topic"), ("group", "group"), ("dlq_topic", "dlq_topic"),
                       ("max_batch", "max_batch"), ("max_wait_ms", "max_wait_ms"), ("http_port", "http_port"),
                       ("http_host", "http_host"), ("redis_prefix", "redis_prefix")):
        value = getattr(args, flag)
        if value is not None:
            setattr(svc, attr, value)
    if args.insecure_default_key:
        svc.insecure_default_key = True
    apply_api_flags(args, s)
    if svc.max_batch < 1 or svc.max_wait_ms < 0:
        raise ConfigError("need --max-batch >= 1 and --max-wait-ms >= 0")
    if s.index.backend == "milvus":  # the group's shared collection (docs/scale-out.md): fail now without pymilvus
        from consumer.io.milvus_index import milvus_index_factory

        milvus_index_factory(s, recreate=False)
    props = _kafka_properties(args.kafka_property)
    check_kafka_properties(props)
    service = Service(s, kafka_properties=props,
                      shutdown_grace=args.shutdown_grace)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal received, finishing the current batch", extra={"signal": signum})
        service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return service.run()


def cmd_export_clusters(args: argparse.Namespace) -> int:
    from redis.exceptions import RedisError

    from consumer.io.files import JsonlWriter
    from consumer.store.redis import RedisStateStore

    svc = load_settings(args.config).service
    url = args.redis or svc.redis
    store = RedisStateStore(url, args.redis_prefix or svc.redis_prefix)
    try:
        # Written to a temporary file and renamed at the end: a failed export leaves an old one intact.
        with JsonlWriter(args.out) as out:
            for rid, cid in store.export_clusters():
                out.write({"record_id": rid, "cluster_id": cid})
    except RedisError as exc:
        print(f"error: cannot export clusters from Redis at {redact_url(url)}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    finally:
        store.close()
    print(json.dumps({"records": out.count, "out": args.out}),
          file=sys.stderr if args.out == "-" else sys.stdout)
    return 0


def redact_url(url: str) -> str:
    """redis://user:secret@host -> redis://user:***@host (URLs carry passwords)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def add_commands(sub: Any) -> None:
    p = sub.add_parser("run", help="consume records from Kafka, emit duplicate events, keep state in Redis")
    p.add_argument("--config", help="TOML settings file ([service] section and the engine's sections)")
    p.add_argument("--profile", choices=sorted(BUILTIN_PROFILES), help="built-in input profile")
    p.add_argument("--fusion", choices=["rule", "learned"], help="fusion mode (default: learned)")
    p.add_argument("--kafka", metavar="BOOTSTRAP", help="bootstrap.servers (env DEDUP_SERVICE__KAFKA)")
    p.add_argument("--redis", metavar="URL", help="redis://host:port/db (env DEDUP_SERVICE__REDIS)")
    p.add_argument("--input-topic", action="append", metavar="TOPIC",
                   help="input topic, repeatable (env DEDUP_SERVICE__INPUT_TOPICS=a,b)")
    p.add_argument("--events-topic", help="events topic (default duplicate-events)")
    p.add_argument("--group", help="consumer group id (default dedup-stream)")
    p.add_argument("--dlq-topic", help="one dead-letter topic for all inputs (default <input>.dlq)")
    p.add_argument("--max-batch", type=int, help="records per micro-batch at most")
    p.add_argument("--max-wait-ms", type=int, help="longest wait for a micro-batch to fill")
    p.add_argument("--http-host", help="address of /healthz, /readyz, /metrics (default 0.0.0.0)")
    p.add_argument("--http-port", type=int, help="port of /healthz, /readyz, /metrics (0 = any free port)")
    p.add_argument("--redis-prefix", help="key prefix in Redis (default dedup)")
    p.add_argument("--kafka-property", action="append", metavar="KEY=VALUE",
                   help="librdkafka property, repeatable, e.g. security.protocol=SASL_SSL "
                        "(also DEDUP_KAFKA_SECURITY_PROTOCOL=...)")
    p.add_argument("--insecure-default-key", action="store_true", default=None,
                   help="start even with the public default encoders.hash_key (demos/tests only; "
                        "env DEDUP_SERVICE__INSECURE_DEFAULT_KEY=true)")
    p.add_argument("--shutdown-grace", type=float, default=30.0,
                   help="seconds SIGTERM waits for an unreachable Redis/broker before exiting uncommitted")
    api_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("export-clusters", help="dump record_id, cluster_id for every record in Redis (JSONL)")
    p.add_argument("--redis", metavar="URL", help="as for `dedup run` (default from settings/env)")
    p.add_argument("--redis-prefix", help="key prefix used by `dedup run` (default dedup)")
    p.add_argument("--config", help="TOML settings file (for the [service] defaults)")
    p.add_argument("--out", required=True, help="output JSONL ('-' = stdout)")
    p.set_defaults(func=cmd_export_clusters)
