"""The pure engine: records in, decisions out, no I/O.

Owns the stages every runner shares (`pipeline`: encode -> block -> compare -> fuse -> cluster -> keeper):
records and their validation (`records`), text normalisation (`normalize`, `titles`), candidate search
(`blocking`, `index`), comparison and rarity (`comparison`, `frequencies`), late fusion (`fusion`, `forest`),
incremental clustering and the keeper (`clustering`, `keeper`), a labelled model's kept answers
(`answers`), the answer types (`decisions`) and the pipeline's state as bytes (`pipeline_state`, `state`).

May import: `consumer.config`, `consumer.config_values`, `consumer.encoders` (the modality plug-ins) and
the pure stores `consumer.store.memory` / `consumer.store.record_state`. Never Kafka, Redis, HTTP, files,
the CLI, or any adapter package (`io`, `service`, `api`, `cli`, `learn`, `evaluation`):
`tests/test_architecture.py` enforces it.
"""
