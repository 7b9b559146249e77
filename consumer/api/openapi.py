"""The OpenAPI 3.1 document of the /v1 API, built from the settings (served at /openapi.json).

Why built, not a static file: a record's fields are the configured profile's (its id field, its columns)
and the per-modality scores are the profile's encoders', so the document states what *this* server
accepts. `docs/api/openapi.json` is this document for the default profile (`dedup openapi`), and a test
keeps it equal to the generated one. Schemas are JSON Schema 2020-12 (OpenAPI 3.1), so tests validate
real responses against them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consumer.config import Settings

__all__ = ["openapi_document", "API_VERSION"]

API_VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    why = {400: "Malformed JSON, JSON nested deeper than 16 levels, wrong request shape, a field of the wrong "
                "type (`invalid_record`, `reason` wrong_type, the field named), another profile or a bad query "
                "parameter.",
           404: "No such record or cluster in the state store.",
           413: "Body or a record over the size limits (`limits.max_record_bytes`).",
           415: "Body not sent as application/json, or in a charset other than UTF-8.",
           422: "A record the profile rejects; `reason` is the stable reject code, `side` says which.",
           503: "The pipeline is loading, or the state store (Redis) is unreachable or not configured.",
           401: "No bearer token, or one the server does not accept (`api.auth = \"tokens\"`).",
           403: "The token's scope does not allow this request (a `read` token on a write or an erasure)."}
    return {str(c): _json(_ref("Error"), why[c]) for c in (*codes, 401, 403)}


def _record_schema(settings: Settings) -> dict[str, Any]:
    p = settings.profile
    columns = [*p.name_fields, *p.city_fields, *p.key_fields,
               *[f for f in (p.browser_field, p.os_field, p.login_times_field) if f], *p.roles.values()]
    return {
        "type": "object",
        "description": f"One input record of profile `{p.name}`, as in a JSONL line or a Kafka message. Validated "
                       "like every input (`consumer/engine/records.py`); unknown keys are ignored. Columns this "
                       "profile "
                       f"reads: {', '.join(sorted(set(columns))) or '(none)'}.",
        "required": [p.id_field],
        "properties": {p.id_field: {"type": ["string", "integer"], "description": "The record id."}},
        "additionalProperties": True,
    }


def openapi_document(settings: Settings, modalities: Sequence[str] | None = None) -> dict[str, Any]:
    """The document for `settings` (its profile); `modalities`: the fuser's reported score names, when a
    pipeline is loaded (they are listed in the score schema)."""
    score = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
    scores: dict[str, Any] = {
        "type": "object", "additionalProperties": score,
        "description": "Per-modality similarity in [0, 1]; null = the modality is absent on a side."}
    if modalities:
        scores["properties"] = {m: score for m in modalities}
        scores["required"] = list(modalities)
    member_list = {"type": "array", "items": {"type": "string"},
                   "description": "Member record ids in arrival order (at most `limit`)."}
    cluster_props: dict[str, Any] = {
        "cluster_id": {"type": "string", "description": "The cluster's id now (`cl_` + hash of its founder)."},
        "founder_id": {"type": ["string", "null"]},
        "canonical_id": {"type": ["string", "null"], "description": "The keeper (Q-SemDeDup canonical)."},
        "size": {"type": "integer", "minimum": 0},
        "members": member_list,
        "truncated": {"type": "boolean", "description": "More members exist than were listed."},
        "created": {"type": ["string", "null"], "description": "ISO time of the first write."},
        "updated": {"type": ["string", "null"], "description": "ISO time of the last change."},
    }
    limit = {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": settings.service.api_max_members},
             "description": "Most members to list (default and maximum: `service.api_max_members`)."}
    return {
        "openapi": "3.1.0",
        "info": {"title": "dedup-stream API", "version": API_VERSION,
                 "description": "Score a pair of records with the pipeline's own encoders and fusion, and read "
                                "cluster state from the service's Redis. Responses carry ids and scores only, "
                                "never field values. See docs/api.md."},
        "paths": {
            "/v1/score": {"post": {
                "operationId": "scorePair", "summary": "Fused and per-modality scores of two records",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ScoreRequest")}}},
                "responses": {"200": _json(_ref("ScoreResponse"), "The pair's scores and decision."),
                              **_errors(400, 413, 415, 422, 503)}}},
            "/v1/records/{record_id}/cluster": {"get": {
                "operationId": "recordCluster", "summary": "The cluster a record is in now",
                "parameters": [{"name": "record_id", "in": "path", "required": True, "schema": {"type": "string"}},
                               limit],
                "responses": {"200": _json(_ref("RecordCluster"), "The record's cluster."),
                              **_errors(400, 404, 503)}}},
            "/v1/clusters/{cluster_id}": {"get": {
                "operationId": "cluster", "summary": "A cluster's canonical record and members",
                "parameters": [{"name": "cluster_id", "in": "path", "required": True, "schema": {"type": "string"}},
                               limit],
                "responses": {"200": _json(_ref("Cluster"), "The cluster (an absorbed id answers for its "
                                                            "survivor: `merged_into`)."),
                              **_errors(400, 404, 503)}}},
            "/v1/records/{record_id}": {"delete": {
                "operationId": "eraseRecord", "summary": "Erase a record everywhere (GDPR Art. 17)",
                "description": "Redis forgets the record at once; every member's replica, the cluster re-check "
                               "(record.erased / cluster.split events) and the snapshots follow within "
                               "service.erasure_bound_seconds (docs/security.md, Erasure). 404 when the id is "
                               "not stored (never, or erased already): nothing changes.",
                "parameters": [{"name": "record_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json({"type": "object", "required": ["record_id", "erased"],
                                            "properties": {"record_id": {"type": "string"},
                                                           "erased": {"const": True}}}, "Erased."),
                              **_errors(400, 404, 503)}}},
            "/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document", "security": [],
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")}}},
        },
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "A token from `api.tokens_file` (docs/security.md); `read` scope for GET and "
                           "/v1/score, `write` for writes and erasure."}}, "schemas": {
            "Record": _record_schema(settings),
            "ScoreRequest": {
                "type": "object", "required": ["a", "b"], "additionalProperties": False,
                "properties": {"a": _ref("Record"), "b": _ref("Record"),
                               "explain": {"type": "boolean", "default": False,
                                           "description": "Also return the comparison features."},
                               "profile": {"type": "string",
                                           "description": "The profile the records follow; refused (400 "
                                                          "`unknown_profile`) unless it is the server's, "
                                                          f"`{settings.profile.name}`."}}},
            "ScoreResponse": {
                "type": "object", "additionalProperties": False,
                "required": ["profile", "a", "b", "fused", "decision", "scores", "fusion", "thresholds", "rarity"],
                "properties": {
                    "profile": {"type": "string"}, "a": {"type": "string"}, "b": {"type": "string"},
                    "fused": {"type": "number", "minimum": 0, "maximum": 1,
                              "description": "Fused score (probability in learned mode)."},
                    "decision": {"enum": ["match", "possible", "no_match"],
                                 "description": "fused >= thresholds.match: match; >= thresholds.possible: "
                                                "possible."},
                    "scores": scores,
                    "fusion": {"type": "string", "description": "Fusion mode and model/rule version."},
                    "thresholds": {"type": "object", "required": ["match", "possible"],
                                   "properties": {"match": {"type": "number"}, "possible": {"type": "number"}}},
                    "rarity": {"enum": ["stream", "state", "pair"],
                               "description": "Population of the term-frequency features: the running "
                                              "service's records (`stream`), the records stored in Redis "
                                              "when the server started (`state`), or the two (`pair`)."},
                    "answered": {"enum": ["yes", "no"],
                                 "description": "Present when the model's labels answered this pair (`dedup "
                                                "train --labels`): `fused` is then the answer's score."},
                    "features": {"type": "object", "additionalProperties": {"type": ["number", "null"]},
                                 "description": "Comparison features (with `explain`)."}}},
            "Cluster": {"type": "object", "required": ["requested_id", *cluster_props], "additionalProperties": False,
                        "properties": {"requested_id": {"type": "string"},
                                       "merged_into": {"type": ["string", "null"],
                                                       "description": "Set when the requested id was absorbed "
                                                                      "by a merge."},
                                       **cluster_props}},
            "RecordCluster": {"type": "object", "required": ["record_id", *cluster_props],
                              "additionalProperties": False,
                              "properties": {"record_id": {"type": "string"}, **cluster_props}},
            "Error": {"type": "object", "required": ["error", "message"],
                      "properties": {"error": {"type": "string", "description": "Stable error code."},
                                     "message": {"type": "string"},
                                     "reason": {"type": "string", "description": "Reject code (422)."},
                                     "side": {"type": ["string", "null"], "description": "a or b (422, 413)."}}},
        }},
    }
