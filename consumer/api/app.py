"""The /v1 HTTP API: score a pair, look up a record's or a cluster's state; thin routes over the core.

    POST /v1/score                    two records in -> fused + per-modality scores + decision
    GET  /v1/records/{id}/cluster     the record's cluster now: id, canonical record, members (Redis)
    GET  /v1/clusters/{id}            a cluster: canonical record, members (an absorbed id answers for its survivor)
    DELETE /v1/records/{id}           erase a record everywhere (GDPR Art. 17; docs/security.md, *Erasure*)
    GET  /openapi.json                the OpenAPI 3.1 document of all of the above

Served by `dedup serve` and beside `dedup run` on its HTTP port (`consumer.api.health` hosts the routes).
Scoring is `consumer.api.scoring.score_pair`, the pipeline's own encoders, comparator and fuser, so nothing
here knows a modality or a profile: records are validated by the configured profile (`parse_record`).

Errors a client can fix are 4xx with `{"error": code, "message": text}`: 400 malformed JSON or request
shape, a field of the wrong type (named) or JSON nested deeper than `MAX_DEPTH`, 404 unknown
record/cluster, 413 body too large, 415 not JSON or not UTF-8, 422 a record the profile rejects (with its
reason code). 503 when the state store or the pipeline is not available. Messages name fields,
never their values, and nothing here logs a request body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from typing import Any

import falcon
import orjson

from consumer.api.auth import authenticator
from consumer.api.health import HealthState, json_response
from consumer.api.openapi import openapi_document
from consumer.api.scoring import parse_pair, score_pair
from consumer.config import Settings
from consumer.engine.frequencies import FrequencyTable
from consumer.engine.pipeline import Pipeline
from consumer.engine.records import RejectError
from consumer.io.events import utc_iso
from consumer.store.erasure import id_hash
from consumer.store.redis import RETRYABLE as REDIS_ERRORS
from consumer.store.redis import RedisStateStore
from consumer.telemetry.metrics import API_ROUTES, ApiMetrics

__all__ = ["ApiContext", "api_routes"]

log = logging.getLogger("dedup.api")


@dataclass
class ApiContext:
    """What the routes read, supplied by the runner. Callables, because a service replaces its pipeline
    on a state reload: the API must use the current one."""

    settings: Settings
    #: The pipeline lending its encoders, comparator and fuser (None while it is loading -> 503).
    pipeline: Callable[[], Pipeline | None]
    #: The population for rarity features (a running service's counts), None = the pair itself.
    frequencies: Callable[[], FrequencyTable | None] = lambda: None
    #: What `frequencies` is, in answers: "stream" (a running service's) or "state" (loaded from Redis).
    rarity_source: str = "stream"
    #: Ids `frequencies` already counts (a pair's record among them is not counted again).
    known: Callable[[], Container[str]] = lambda: ()
    store: RedisStateStore | None = None
    #: Where Redis reachability is reported (readiness of `dedup serve`).
    health: HealthState | None = None
    #: Request counts and times per route (None: not measured).
    metrics: ApiMetrics | None = None
    #: Served beside `dedup run`: a member follows each erasure (re-check, events, stored-events scrub).
    erasure_follows: bool = False


#: Deepest JSON nesting a request may have (a stated limit: the body plus two records whose deepest field
#: is a list of login times is 3 levels). Checked before anything walks or re-serialises the body: orjson
#: serialises at most 254 levels, and a size check that did so turned deeper bodies into 500s.
MAX_DEPTH = 16


def _depth_over(value: Any, limit: int) -> bool:
    """Whether `value` nests containers deeper than `limit` (iterative: no recursion limit to hit)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def _charset(params: str) -> str | None:
    """The `charset` parameter of a Content-Type's parameters, lower-cased, or None."""
    for part in params.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def _err(status: int, code: str, message: str, **extra: Any) -> falcon.HTTPError:
    exc = falcon.HTTPError(falcon.code_to_http_status(status), title=code, description=message)
    exc.extra = extra  # type: ignore[attr-defined]
    return exc


class _Score:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        limits = ctx.settings.limits
        # Two records at their size limit plus the envelope.
        self.max_body = 2 * limits.max_record_bytes + 4096

    def _body(self, req: falcon.Request) -> Any:
        ctype, _, params = (req.content_type or "application/json").partition(";")
        ctype = ctype.strip().lower()
        if ctype != "application/json" and not ctype.endswith("+json"):
            raise _err(415, "unsupported_media_type", "send the request as application/json")
        charset = _charset(params)
        if charset is not None and charset not in ("utf-8", "utf8"):
            # JSON on the wire is UTF-8 (RFC 8259): decoding latin-1 bytes as UTF-8 would change the text
            raise _err(415, "unsupported_charset", f"charset {charset!r}: send the JSON body as UTF-8")
        length = req.content_length
        if length is not None and length > self.max_body:
            raise _err(413, "body_too_large", f"request body of {length} bytes exceeds {self.max_body}")
        raw = req.bounded_stream.read(self.max_body + 1)
        if len(raw) > self.max_body:
            raise _err(413, "body_too_large", f"request body exceeds {self.max_body} bytes")
        if not raw:
            raise _err(400, "empty_body", 'send {"a": {...}, "b": {...}}: two records as JSON objects')
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _err(400, "invalid_json", f"body is not valid JSON (at byte {exc.pos})") from None
        if _depth_over(body, MAX_DEPTH):
            raise _err(400, "too_deep", f"JSON nested deeper than {MAX_DEPTH} levels: a record is a flat object "
                       "of fields (lists of login times at most)")
        return body

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = self._body(req)
        if not isinstance(body, dict) or "a" not in body or "b" not in body:
            raise _err(400, "bad_request", 'expected a JSON object {"a": {...}, "b": {...}} with two records')
        unknown = sorted(set(body) - {"a", "b", "explain", "profile"})
        if unknown:
            raise _err(400, "bad_request", f"unknown request keys {unknown} (known: a, b, explain, profile)")
        profile = self.ctx.settings.profile.name
        if "profile" in body and body["profile"] != profile:  # as the Kafka path's dedup.profile header
            raise _err(400, "unknown_profile", f"this server scores profile {profile!r} only")
        explain = body.get("explain", False)
        if not isinstance(explain, bool):
            raise _err(400, "bad_request", "explain must be true or false")
        limits = self.ctx.settings.limits
        for side in ("a", "b"):
            if isinstance(body[side], dict) and len(orjson.dumps(body[side])) > limits.max_record_bytes:
                raise _err(413, "oversized_record", f"record {side} exceeds limits.max_record_bytes "
                           f"({limits.max_record_bytes})", side=side)
        pipe = self.ctx.pipeline()
        if pipe is None:
            raise _err(503, "not_ready", "the pipeline is still loading; retry shortly")
        try:
            # images as base64 only: a path in a request must not read the server's files
            a, b = parse_pair(body["a"], body["b"], pipe.settings, image_paths=False)
        except RejectError as exc:
            # a field of the wrong type is a malformed request (400, the field named); anything else the
            # profile rejects is a well-formed request for a record it cannot use (422)
            raise _err(400 if exc.reason == "wrong_type" else 422, "invalid_record", exc.detail, reason=exc.reason,
                       side=getattr(exc, "side", None)) from None
        result = score_pair(pipe, a, b, self.ctx.frequencies(), self.ctx.rarity_source, self.ctx.known())
        json_response(resp, 200, {"profile": pipe.settings.profile.name, "a": a.record_id, "b": b.record_id,
                                  **result.to_dict(with_features=explain)})


def _limit(req: falcon.Request, ctx: ApiContext) -> int:
    cap = ctx.settings.service.api_max_members
    raw = req.get_param("limit")
    if raw is None:
        return cap
    try:
        value = int(raw)
    except ValueError:
        raise _err(400, "bad_request", "limit must be an integer") from None
    if not 1 <= value <= cap:
        raise _err(400, "bad_request", f"limit must be between 1 and {cap} (service.api_max_members)")
    return value


class _StoreRoute:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def _call(self, fn: Callable[[RedisStateStore], Any]) -> Any:
        store = self.ctx.store
        if store is None:
            raise _err(503, "no_state_store", "this server has no state store (Redis) configured")
        try:
            out = fn(store)
        except REDIS_ERRORS as exc:
            self._report(False, type(exc).__name__)
            raise _err(503, "state_store_unavailable", f"Redis did not answer ({type(exc).__name__}); "
                       "retry shortly") from None
        self._report(True)
        return out

    def _report(self, ok: bool, detail: str = "") -> None:
        if self.ctx.health is not None:
            self.ctx.health.set_dependency("redis", ok, detail)


class _RecordCluster(_StoreRoute):
    def on_get(self, req: falcon.Request, resp: falcon.Response, record_id: str) -> None:
        limit = _limit(req, self.ctx)

        def lookup(store: RedisStateStore) -> dict[str, Any] | None:
            cid = store.record_cluster(record_id)
            return None if cid is None else store.cluster_info(cid, limit)

        info = self._call(lookup)
        if info is None:
            raise _err(404, "not_found", "no record with this id in the state store")
        info.pop("merged_into", None)
        json_response(resp, 200, {"record_id": record_id, **info})


class _Cluster(_StoreRoute):
    def on_get(self, req: falcon.Request, resp: falcon.Response, cluster_id: str) -> None:
        limit = _limit(req, self.ctx)
        info = self._call(lambda store: store.cluster_info(cluster_id, limit))
        if info is None:
            raise _err(404, "not_found", "no cluster with this id in the state store")
        json_response(resp, 200, {"requested_id": cluster_id, **info})


class _Record(_StoreRoute):
    """DELETE: the erasure door of the API (the CLI's `dedup erase` and the erasure topic are the others).
    Redis forgets the record at once; every member's replica, the cluster re-check, the events and the
    snapshots follow through the changelog (consumer/store/erasure.py). A write-scope token guards it
    where the API authenticates (every non-GET request but /v1/score needs write)."""

    def on_delete(self, _req: falcon.Request, resp: falcon.Response, record_id: str) -> None:
        if not record_id or len(record_id) > self.ctx.settings.limits.max_field_chars:
            raise _err(400, "bad_request", "record id missing or too long")
        key = self.ctx.settings.encoders.hash_key
        # Inside `dedup run` the member that re-checks the erasure deletes other records' stored events
        # naming it (batched); `dedup serve` has no member, so it does that here.
        done = self._call(lambda store: store.erase([record_id], door="api", hash_key=key,
                                                    now_iso=utc_iso(time.time()),
                                                    scrub=not self.ctx.erasure_follows))
        if not done.get(record_id):
            raise _err(404, "not_found", "no record with this id in the state store (never stored, or "
                       "erased already)")
        log.info("record erased", extra={"door": "api", "id_hash": id_hash(key, record_id)})
        json_response(resp, 200, {"record_id": record_id, "erased": True})


class _OpenApi:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        pipe = self.ctx.pipeline()
        modalities = list(pipe.fuser.modalities) if pipe is not None else None
        json_response(resp, 200, openapi_document(self.ctx.settings, modalities))


class _Measure:
    """Counts and times the API's requests (errors included) by route template; probes are left alone."""

    def __init__(self, metrics: ApiMetrics) -> None:
        self.metrics = metrics

    def process_request(self, req: falcon.Request, _resp: falcon.Response) -> None:
        req.context.api_started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, _resource: Any,
                         _req_succeeded: bool) -> None:
        route, started = req.uri_template, getattr(req.context, "api_started", None)
        if route in API_ROUTES and started is not None:  # None: refused before routing (no token)
            self.metrics.observe(route, resp.status_code, time.perf_counter() - started)


def api_routes(ctx: ApiContext) -> Callable[[falcon.App], Iterable[str]]:
    """A route adder for `consumer.api.health.HealthServer(routes=[...])`. Raises ConfigError when the
    settings ask for tokens and name no usable tokens file (at start, not at the first request)."""
    resources = (_Score(ctx), _RecordCluster(ctx), _Cluster(ctx), _OpenApi(ctx), _Record(ctx))
    auth = authenticator(ctx.settings.api)

    def add(app: falcon.App) -> list[str]:
        if auth is not None:
            app.add_middleware(auth)
        for route, resource in zip(API_ROUTES, resources):
            app.add_route(route, resource)
        if ctx.metrics is not None:
            app.add_middleware(_Measure(ctx.metrics))
        return list(API_ROUTES)

    return add


def service_routes(settings: Settings, pipe: Callable[[], Pipeline | None], store: RedisStateStore,
                   metrics: Any) -> Callable[[falcon.App], Iterable[str]]:
    """The /v1 API of a `dedup run` member (on its health port): pairs are scored with the member's current
    pipeline and its term frequencies (the population it has seen), clusters read from its Redis (docs/api.md).
    `metrics`: the member's `Metrics` (the API's series go into its registry)."""

    def frequencies() -> FrequencyTable | None:
        current = pipe()
        return current.frequencies if current is not None else None

    def known() -> Container[str]:
        current = pipe()
        return current.store.row_of if current is not None else ()

    return api_routes(ApiContext(settings, pipe, frequencies, known=known, store=store,
                                 metrics=ApiMetrics(metrics.registry), erasure_follows=True))
