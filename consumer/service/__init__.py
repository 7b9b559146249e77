"""The Kafka service (`dedup run`): the batch state machine (`runner`), writing a batch to Redis and
the event topic (`batch`), dependency outages (`deps`), poison and overload guards (`guard`), the replica of
the group's state fed by the Redis changelog (`changelog`, `replica`, `sync`), state loading (`state`) and
snapshots on a volume (`snapshot`).

May import the engine, the encoders, `consumer.store`, `consumer.io` (Kafka, events, artifacts),
`consumer.api` (the HTTP probes and API served beside it) and `consumer.telemetry`; never the CLI.
"""
