"""Test harness: real Kafka-protocol broker (tansu or $KAFKA_BOOTSTRAP) and real Redis, never fakes.

Why real servers: the service's guarantees (commit only after acknowledged output, DLQ headers, rebalance
and outage behaviour, Redis AOF durability) live in the wire protocol and the servers' semantics, which a
fake would only restate. Everything here is bounded by timeouts so a broken server fails a test quickly
instead of hanging the suite.

Import as `from harness.kafka import ...` / `from harness.redis import ...` (tests/ is on sys.path via
the rootdir conftest).
"""
