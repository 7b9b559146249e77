"""Measuring the engine: pairwise and B-cubed scores of final clusters (`evaluate`), the four-method
report with baselines (`report`, `baselines`), and quality against file size (`scale_eval`).

May import the engine, `consumer.learn`, `consumer.io` and the generators; never the service, the API or
the CLI (which calls it).
"""
