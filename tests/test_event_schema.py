"""The duplicate-event JSON Schema: every event type validates, raw record fields never do.

Why: `additionalProperties: false` at every level is the contract that keeps names, cities and other raw
fields out of the events topic; this pins it down for each event type and for nested objects.
"""

from __future__ import annotations

import copy
import hashlib
import json
from importlib import resources
from typing import Any

import pytest
from jsonschema import Draft202012Validator


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    text = (resources.files("consumer") / "schemas" / "duplicate-event.v1.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def event_id(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def base(event_type: str) -> dict[str, Any]:
    return {
        "schema_version": "1",
        "event_id": event_id("signups", 0, 41, "r2", event_type, 0),
        "event_type": event_type,
        "record_id": "r2",
        "cluster_id": "c-7",
        "canonical_id": "r1",
        "scores": {"fused": 0.91, "text": 0.88, "name": 0.95, "city": 1.0, "behaviour": None, "device": 0.5},
        "matches": [{
            "record_id": "r1", "cluster_id": "c-7", "fused": 0.91, "decision": "match",
            "scores": {"text": 0.88, "name": 0.95, "city": 1.0, "behaviour": None, "device": 0.5},
        }],
        "model_version": "minilm-l6-int8@3f2a",
        "config_version": "9c1e04d2aa10",
        "source": {"topic": "signups", "partition": 0, "offset": 41},
        "event_time": "2025-01-02T03:04:05.123456Z",
        "record_time": "2025-01-02T03:04:05.001+00:00",
    }


def examples() -> dict[str, dict[str, Any]]:
    clustered = {**base("record.clustered"), "outcome": "joined"}
    new = {**base("record.clustered"), "outcome": "new", "cluster_id": "c-9", "canonical_id": "r2",
           "matches": [], "record_time": None,
           "scores": {k: None for k in ["fused", "text", "name", "city", "behaviour", "device"]}}
    merged = {**base("clusters.merged"), "surviving_cluster_id": "c-7", "merged_cluster_ids": ["c-3", "c-5"]}
    possible = {**base("duplicate.possible"), "candidate_record_id": "r8", "candidate_cluster_id": "c-2"}
    possible["matches"][0]["decision"] = "possible"
    return {"clustered": clustered, "new": new, "merged": merged, "possible": possible}


@pytest.mark.parametrize("name", list(examples()))
def test_good_events_validate(validator: Draft202012Validator, name: str) -> None:
    errors = [e.message for e in validator.iter_errors(examples()[name])]
    assert errors == []


def _mutations() -> dict[str, tuple[str, Any]]:
    """name -> (example, mutation); each must be rejected."""
    def top(field: str, value: Any) -> Any:
        return lambda e: e.__setitem__(field, value)

    return {
        "raw name at top level": ("clustered", top("name", "Ada Lovelace")),
        "raw city inside a match": ("clustered", lambda e: e["matches"][0].__setitem__("city", "London")),
        "extra score key": ("merged", lambda e: e["scores"].__setitem__("email", 1.0)),
        "extra source key": ("possible", lambda e: e["source"].__setitem__("value", "{...}")),
        "merge fields on clustered": ("clustered", top("merged_cluster_ids", ["c-1"])),
        "outcome on merged": ("merged", top("outcome", "new")),
        "possible without candidate": ("possible", lambda e: e.pop("candidate_cluster_id")),
        "clustered without outcome": ("clustered", lambda e: e.pop("outcome")),
        "unknown event type": ("clustered", top("event_type", "record.deleted")),
        "non-hex event id": ("clustered", top("event_id", "x" * 64)),
        "local time": ("clustered", top("event_time", "2025-01-02T03:04:05+02:00")),
        "score out of range": ("clustered", lambda e: e["scores"].__setitem__("fused", 1.5)),
        "wrong schema version": ("clustered", top("schema_version", "2")),
        "bad decision": ("clustered", lambda e: e["matches"][0].__setitem__("decision", "maybe")),
    }


@pytest.mark.parametrize("case", list(_mutations()))
def test_bad_events_are_rejected(validator: Draft202012Validator, case: str) -> None:
    example, mutate = _mutations()[case]
    event = copy.deepcopy(examples()[example])
    mutate(event)
    assert not validator.is_valid(event), case


@pytest.fixture(scope="module")
def validator_v2() -> Draft202012Validator:
    text = (resources.files("consumer") / "schemas" / "duplicate-event.v2.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _v2(event: dict[str, Any]) -> dict[str, Any]:
    from consumer.io.events import upgrade_event

    return upgrade_event(copy.deepcopy(event))


@pytest.mark.parametrize("name", list(examples()))
def test_v2_events_validate_and_carry_any_modality(validator_v2: Draft202012Validator, name: str) -> None:
    event = _v2(examples()[name])
    assert [e.message for e in validator_v2.iter_errors(event)] == []
    event["scores"]["postcode"] = 0.5  # a plug-in modality: the v2 map is open to score names
    assert validator_v2.is_valid(event)


@pytest.mark.parametrize("mutation", ["raw value as score", "field value as key", "raw field", "v1 version"])
def test_v2_still_keeps_raw_fields_out(validator_v2: Draft202012Validator, mutation: str) -> None:
    event = _v2(examples()["clustered"])
    if mutation == "raw value as score":
        event["scores"]["name"] = "Ada Lovelace"
    elif mutation == "field value as key":
        event["scores"]["Ada Lovelace"] = 1.0
    elif mutation == "raw field":
        event["matches"][0]["city"] = "London"
    else:
        event["schema_version"] = "1"
    assert not validator_v2.is_valid(event)


def _split_event() -> dict[str, Any]:
    from consumer.engine.pipeline import Decision, Match, Split
    from consumer.io.events import Source, build_events

    d = Decision("r9", "c-1", "r1", "joined", 9, [], [Match("r1", "c-1", 0.93, "match", {"name": 0.9, "city": 1.0})],
                 "c-1", [Split("c-4", "r4", "r4", ["r4", "r6"])])
    events = build_events(d, Source("signups", 0, 9, None), model_version="m", config_version="c", now=1.7e9)
    assert [e["event_type"] for e in events] == ["record.clustered", "cluster.split"]
    return events[1]


def test_v2_split_event_validates_and_carries_ids_only(validator_v2: Draft202012Validator) -> None:
    event = _split_event()
    assert [e.message for e in validator_v2.iter_errors(event)] == []
    assert event["split_cluster_id"] == "c-1"
    assert event["pieces"] == [{"cluster_id": "c-4", "canonical_id": "r4", "record_ids": ["r4", "r6"]}]
    for bad in ({"outcome": "joined"}, {"merged_cluster_ids": ["c-2"]}, {"pieces": []}):
        assert not validator_v2.is_valid({**event, **bad})
    raw = copy.deepcopy(event)
    raw["pieces"][0]["name"] = "Ada Lovelace"
    assert not validator_v2.is_valid(raw)
    for other in examples().values():  # split fields belong to cluster.split only
        assert not validator_v2.is_valid({**_v2(other), "split_cluster_id": "c-1"})
