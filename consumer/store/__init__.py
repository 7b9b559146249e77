"""Where cluster state lives: the in-memory signature store of the engine (`memory`), the record state
format shared by every store (`record_state`), and Redis for the service (`redis`: records, payloads,
clusters, merges and the changelog, written by one Lua script per batch).

Imports nothing from the rest of the package (`tests/test_architecture.py`): the engine and the service
both use it, so it must not use them.
"""
