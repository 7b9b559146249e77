"""Observability shared by every adapter: Prometheus instruments on a dedicated registry (`metrics`) and
structured JSON logs that never carry a raw field value (`logs`). Imports nothing but the engine's stage
names and the event vocabulary.
"""
