"""HTTP: the probes (`/healthz`, `/readyz`, `/metrics`) and the server they run on (`health`), the `/v1`
API (`app`), its OpenAPI document (`openapi`) and on-demand pair scoring (`scoring`).

May import the engine, the encoders, `consumer.store` (reads from Redis), `consumer.io` and
`consumer.telemetry`; never the service loop or the CLI.
"""
