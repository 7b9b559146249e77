"""One typed settings object, read from a TOML file and overridden by `DEDUP_*` environment variables.

Why one object: the batch runner, the Kafka service and the Helm chart all configure the same core, and a
single source of truth (with a stable `fingerprint()` stamped on every event) makes a run reproducible.

Environment overrides use `DEDUP_<SECTION>__<KEY>` (double underscore between section and key), e.g.
`DEDUP_FUSION__MODE=rule`, `DEDUP_INDEX__K=48`; top-level keys are `DEDUP_<KEY>`, e.g. `DEDUP_BATCH_SIZE`.
List values in the environment are comma-separated. How a TOML or environment value becomes a typed
setting (and `ConfigError`) lives in `consumer.config_values`.

Why this module is long: it is the one place every setting is declared, with the comment a user reads for
it (the settings reference in docs is checked against these dataclasses); splitting sections across
modules would scatter that reference.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomllib

from consumer.config_values import ConfigError, apply_values, flatten

__all__ = [
    "DEFAULT_HASH_KEY",
    "key_id",
    "ConfigError",
    "ProfileSettings",
    "FusionSettings",
    "IndexSettings",
    "EXACT_ROWS",
    "exact_rows",
    "ClusterSettings",
    "EncoderSettings",
    "LimitSettings",
    "ServiceSettings",
    "Settings",
    "load_settings",
    "known_encoding",
    "BUILTIN_PROFILES",
]



@dataclass
class ProfileSettings:
    """How input columns map to modalities. Defaults are the CRM paper's schema (`crm-signup`)."""

    name: str = "crm-signup"
    id_field: str = "customer_id"
    #: Person-name columns, joined with spaces in this order (e.g. ["given_name", "surname"]).
    name_fields: list[str] = field(default_factory=lambda: ["name"])
    #: Place columns, joined with spaces (e.g. ["suburb"] or ["city"]).
    city_fields: list[str] = field(default_factory=lambda: ["city"])
    #: Short identifying keys compared for (near-)equality, e.g. ["postcode"]; part of the text modality.
    key_fields: list[str] = field(default_factory=list)
    browser_field: str | None = "browser"
    os_field: str | None = "os"
    #: A JSON array (or Python-list string) of ISO timestamps; None when the input has no behaviour.
    login_times_field: str | None = "login_times"
    #: Further roles for plug-in encoders: role -> input column (e.g. {"postcode": "zip"}); read with
    #: `Record.role(role)`.
    roles: dict[str, str] = field(default_factory=dict)
    #: Encoders, in order: built-in names (text, names, behaviour, device) or plug-ins as
    #: "package.module:Class" (docs/extending.md). None = the built-ins.
    encoders: list[str] | None = None
    #: A file that joins sources (two shops' catalogues, two registers): the column naming each record's
    #: source. Set, records are linked only *across* sources (Splink's `link_only`): each source is taken
    #: to hold no duplicates of its own, so two records of one source are never candidates for each other.
    #: Records whose source is empty are compared with everyone. None = one file deduplicated in itself.
    source_field: str | None = None
    #: A regular expression with one group that cuts the source out of `source_field` (e.g. "^([^_]+)_"
    #: for ids written "a_123" / "b_456"); None = the whole value.
    source_pattern: str | None = None
    #: How an input file's bytes are text (`dedup batch`, `fit`, `label`, `eval`; `--encoding`): a Python codec
    #: name, e.g. "cp1252" for a file saved by Excel on Windows. UTF-8 (a byte-order mark skipped) unless said;
    #: a row that does not decode is a `bad_encoding` reject. Kafka messages are JSON, always UTF-8.
    encoding: str = "utf-8"


@dataclass
class FusionSettings:
    """Late fusion: per-modality similarities -> one score -> match / possible / no match."""

    mode: Literal["rule", "learned"] = "learned"
    #: Rule-mode modality weights (the CRM paper's 0.4/0.35/0.25), renormalised over present modalities.
    weight_text: float = 0.4
    weight_behaviour: float = 0.35
    weight_device: float = 0.25
    match_threshold: float = 0.75
    possible_threshold: float = 0.65
    #: Learned mode: probability thresholds and the model file (None = the shipped default). A threshold
    #: left at None is the model's own operating point (`operating_point` in its manifest, chosen on
    #: final clusters of its training distribution: a model's probabilities, not a global constant, say
    #: where a pair becomes a match), else 0.5 / 0.25.
    learned_match: float | None = None
    learned_possible: float | None = None
    learned_model: str | None = None
    #: Where a pair becomes a match in a file linked across sources (`profile.source_field` set), for the
    #: shipped model and the weights fitted to the file alike; `learned_match` and a model fitted to the
    #: user's labels keep their own. Why lower: a model's operating point is chosen on one-pool files, where
    #: a candidate pair is a duplicate far more rarely than a listing's partner in the other shop, and
    #: linking already keeps one partner per source, the better one. None = the profile's default
    #: (`LINK_MATCH`), else the models' own operating points.
    link_match: float | None = None
    #: How weights are fitted to a file without labels: "em" (Fellegi-Sunter by EM), "reciprocal"
    #: (self-training on pairs that are each other's best), "auto" (reciprocal for listings, else EM).
    fit_method: Literal["auto", "em", "reciprocal"] = "auto"
    #: A shipped model on a file unlike its training data: "auto" fits weights to the file too and uses them
    #: when the two disagree on which pairs match (the summary says so); "always" uses the fit; "never"
    #: trusts the shipped model (one pass over the file less).
    adapt: Literal["auto", "always", "never"] = "auto"
    #: Listings: learn the file's variant words (finishes, colours, editions outside the built-in tables:
    #: words that stand in one another's place in otherwise identical titles, `consumer.learn.variants`)
    #: and read two of them as a conflicting attribute. A fitted model file carries the words it learned.
    learn_variants: bool = True
    #: Rule-mode score formulas' coefficients ("<score>.<coefficient>"), declared by the encoders that use
    #: them; set here so they are configurable and part of the fingerprint. A table in the TOML file
    #: overrides single entries. Plug-in encoders declare their own defaults (`Contribution.coefficients`).
    coefficients: dict[str, float] = field(default_factory=lambda: {
        "name.cov_max": 0.5, "name.cov_min": 0.2, "name.worst": 0.3,  # soft token alignment
        "semantic.floor": 0.5, "semantic.span": 0.45,  # unrelated short names already sit near 0.5
        "behaviour.hour_floor": 0.55, "behaviour.hour_span": 0.4,  # random people overlap ~0.5
        "behaviour.hour": 0.8, "behaviour.weekend": 0.2,
    })
    #: Weights of the parts of composite scores (the "text" score is name + semantic + city + keys).
    parts: dict[str, float] = field(default_factory=lambda: {"name": 0.55, "semantic": 0.2, "city": 0.25,
                                                              "keys": 0.25})
    #: Rule weights of top-level modalities other than text/behaviour/device (plug-in encoders).
    weights: dict[str, float] = field(default_factory=dict)


@dataclass
class IndexSettings:
    """HNSW candidate search. k/ef chosen by measured candidate recall (README)."""

    k: int = 32
    ef: int = 128
    m: int = 12
    ef_construction: int = 64
    seed: int = 42
    initial_capacity: int = 16384
    #: Threads per knn query batch; None = auto (1 when encoding runs on the other cores alongside, as in
    #: `dedup batch`, else every core). Queries are independent, so this changes speed only.
    query_threads: int | None = None
    #: Search width as the index grows (`blocking.search_width`): past `ef_from` indexed records ef is
    #: multiplied by (size / ef_from) ** `ef_growth`, past `k_from` records k by (size / k_from) ** `k_growth`,
    #: capped at `ef_max` / `k_max`. Why: with a fixed ef HNSW finds a smaller share of the exact top-k as the
    #: graph grows (held-out generator, 100k records: 0.941 of true pairs reached where exact search at the
    #: same k reaches 0.960), and with a fixed k more earlier strangers outrank an edited duplicate (exact
    #: search at k=32: 0.984 of true pairs at 10k records, 0.960 at 100k). A wider ef costs only search
    #: time; a larger k costs compare/fuse time on the deciding thread for every record, so it starts later.
    #: 0 growth = the fixed k/ef of before.
    ef_from: int = 20000
    ef_growth: float = 0.5
    ef_max: int = 1024
    k_from: int = 100000
    k_growth: float = 0.3
    k_max: int = 128
    #: Exact-key candidates (`consumer.engine.keys`): earlier records sharing a key an encoder declares
    #: (person profile: date of birth; two of postcode, street number, street) are candidates beside the
    #: index. A key held by more than `key_cap` records (a default date, a placeholder postcode) is too
    #: common to identify anyone and proposes nothing from then on, so a record gets at most `key_cap`
    #: extra candidates per key. 0 = off. Profiles whose encoders declare no key (CRM) pay nothing.
    key_cap: int = 8
    #: Searched exactly (a matrix product, `consumer.engine.exact_index`) while the index holds at most this many
    #: rows, then by HNSW, built once from every row held. Why: below ~50,000 rows of 256 floats a scan costs
    #: less than HNSW's insert plus search and finds the true top-k. None = the profile's default
    #: (`EXACT_ROWS`); 0 = HNSW from the first row. The embedded index only (Milvus is searched as it is).
    exact_rows: int | None = None
    #: Where the candidate vectors live: "hnswlib" (embedded in the process, the default) or "milvus" (a
    #: Milvus server shared by processes, `consumer.io.milvus_index`; needs the `milvus` extra). Why a
    #: choice: one machine's memory bounds the embedded index (docs/scale-out.md, *The Milvus backend*).
    backend: Literal["hnswlib", "milvus"] = "hnswlib"
    #: Milvus address: a URI ("http://host:19530", "https://..."), else `milvus_host`:`milvus_port`.
    milvus_uri: str = ""
    milvus_host: str = "127.0.0.1"
    milvus_port: int = 19530
    #: Collections are named <prefix>_<profile>_<key id>_d<dim>: one per profile, hash key and vector size.
    milvus_collection_prefix: str = "dedup"
    #: Consistency of searches. "Bounded" (default): a search sees every write older than the server's
    #: graceful time (5 s by default) without waiting, and the vectors this process wrote since are searched
    #: exactly in memory (`milvus_fresh_seconds`). "Strong" waits for every write (measured: ~215 ms per
    #: search call against ~3 ms Bounded); "Session" waits for this client's own writes only.
    milvus_consistency: Literal["Strong", "Bounded", "Session", "Eventually"] = "Bounded"
    #: How long this process also keeps what it inserted (and the rows it erased) in memory, searched exactly
    #: beside Milvus: must exceed the server's Bounded staleness (`common.gracefulTime`, 5 s) plus clock skew.
    milvus_fresh_seconds: float = 10.0
    #: Credentials (token = "user:password" or an API key; or user + password) and TLS; never logged.
    milvus_token: str = ""
    milvus_user: str = ""
    milvus_password: str = ""
    milvus_tls: bool = False
    #: A PEM file of the CA that signed the proxy's certificate (with `milvus_tls`); "" = the system's roots.
    #: Why a file, not the PEM text: the chart mounts it from a Secret, as it does Kafka's CA.
    milvus_ca_file: str = ""
    #: Seconds a Milvus call may take before it fails (the service then retries like any store outage).
    milvus_timeout_seconds: float = 30.0


@dataclass
class ClusterSettings:
    """Incremental clustering guards and the keeper (canonical record) rule."""

    #: A merge of two existing clusters needs fused evidence this much above the match threshold.
    merge_margin: float = 0.3
    #: Joining a cluster of >= 2 members needs the mean score over its scored members >= this share
    #: of the match threshold (a chaining guard). 0.8, not 1.0: a true member of a large cluster often
    #: scores low against one heavily edited sibling; 0.8 kept the largest cluster and raised final F1
    #: 0.15-0.35 points at 200k-400k records (benchmarks/cluster_sweep.py, default generator, seed 21).
    join_support: float = 0.8
    #: Average linkage: cluster members scored per side when a record joins or bridges clusters (members
    #: its candidate search missed are scored on demand); 0 = only the candidates (the pre-issue-11 rule).
    link_members: int = 8
    #: Bridging two clusters needs the mean score between their members >= this share of the match
    #: threshold (conflicting evidence, e.g. two different people behind one ambiguous record, vetoes it).
    merge_support: float = 0.5
    #: Split a cluster (re-clustered from its member pairs) when a record that joins it disagrees with some
    #: of its members; the pieces are announced as `cluster.split` events.
    split: bool = True
    #: "average": the split above; "partner": reciprocal best partners, re-checked on every join (one true
    #: partner among near-identical siblings, e.g. two shops' listings; `consumer.engine.clustering`);
    #: "auto": partner for the listing profile, average for the rest. `partner_margin`: how far (fused
    #: score) below both ends' best partner a pair still counts as near-reciprocal.
    recheck: Literal["auto", "average", "partner"] = "auto"
    partner_margin: float = 0.1
    #: "auto": a model fitted without labels carries how much rarer a third record of one person is than a
    #: second in its file (`consumer.learn.size_prior`), and the re-check asks a group growing past two for
    #: that much more evidence (RLdata10000, duplicates in pairs); "off": every group size alike.
    size_prior: Literal["auto", "off"] = "auto"
    keeper_alpha: float = 0.7


#: The built-in `encoders.hash_key`: public, so it protects nothing (see EncoderSettings.hash_key).
DEFAULT_HASH_KEY = "dedup-stream-default-key"


def key_id(hash_key: str) -> str:
    """A keyed identifier of the hash key (HMAC of a constant): tells two keys apart in Redis meta without
    revealing the key to anyone who does not already hold it."""
    import hmac

    return hmac.new(hash_key.encode(), b"dedup-stream key id v1", hashlib.sha256).hexdigest()[:16]


@dataclass
class EncoderSettings:
    text_dim: int = 64  # measured: same F1 as 128 and 384 (README), least memory
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: Text model: the MiniLM transformer (ONNX), its static distillation (token table, numpy), or "auto"
    #: (= static on every host; consumer/encoders/static_text.py says why, docs/benchmarks.md, *Speed and
    #: memory*, shows the numbers).
    text_backend: Literal["auto", "transformer", "static"] = "auto"
    threads: int | None = None
    model_dir: str | None = None
    static_model_dir: str | None = None
    #: Key for hashing name/city fragments: stored signatures hold keyed hashes, never raw values. The
    #: default is public (anyone can hash a name list with it): `dedup run` refuses it unless told
    #: `--insecure-default-key`, `dedup batch` warns (docs/security.md: choosing and rotating the key).
    hash_key: str = DEFAULT_HASH_KEY
    #: `dedup batch`: encode in a second process (`consumer.io.encode_process`), so encoding and deciding do
    #: not take turns on one interpreter. The same columns either way. None = where it was measured to pay
    #: (the person profile); false = in a thread of the run's process.
    batch_process: bool | None = None


@dataclass
class LimitSettings:
    """Input guards: anything past these is rejected with a reason, never processed or crashed on."""

    max_field_chars: int = 512
    max_record_bytes: int = 65536
    max_logins: int = 5000
    #: Largest image file (or decoded base64 image) a listing may carry; larger ones make the image modality
    #: absent with a warning (consumer/io/listing.py). A base64 image in a message must also fit
    #: `max_record_bytes`.
    max_image_bytes: int = 10_000_000


@dataclass
class ServiceSettings:
    """The Kafka service (`dedup run`)."""

    kafka: str = "127.0.0.1:9092"
    redis: str = "redis://127.0.0.1:6379/0"
    input_topics: list[str] = field(default_factory=lambda: ["signups"])
    events_topic: str = "duplicate-events"
    dlq_topic: str | None = None
    group: str = "dedup-stream"
    max_batch: int = 500
    #: How long a micro-batch that starts on an idle member may wait to fill after its first record (records
    #: already queued are taken without it). Small on purpose: under load batches
    #: fill by themselves while the previous one is processed, so waiting only adds latency: at 300 records/s
    #: 200 ms doubled p50 latency (765 vs 353 ms, loadtest/bench_service.py), and at 500 records/s 5 ms gave a
    #: lower p99 than 20 ms at the same max rate (docs/benchmarks.md).
    max_wait_ms: int = 5
    #: Before deciding a batch, wait at most this long for the batches other members polled earlier and have
    #: not written yet, so a twin polled a moment after its original on another member is decided with it
    #: (one event instead of a late link; consumer/store/inflight.py). 0 = never wait: the late-link rule
    #: alone joins such twins, tens of milliseconds later. A lone member never waits.
    freshness_wait_ms: int = 200
    http_host: str = "0.0.0.0"
    http_port: int = 8000
    redis_prefix: str = "dedup"
    stall_seconds: float = 30.0
    #: Duplicate-event schema emitted: "2" (per-modality score map); "1" for one more release, for
    #: subscribers that have not migrated (docs/streaming-service.md, "Event schema v2").
    event_schema: Literal["1", "2"] = "2"
    #: Start even with the public default `encoders.hash_key` (demos and tests only; docs/security.md).
    insecure_default_key: bool = False
    #: Serve the /v1 API (pair scoring, cluster look-ups, /openapi.json) beside /healthz on `http_port`
    #: (docs/api.md). Off by default: it needs `api.tokens_file` (or `api.auth = "off"` for local use), and a
    #: stream consumer should not open a port nobody asked for. `dedup serve` always serves it; on `dedup
    #: run`, `--tokens-file` or `--no-auth` turn it on.
    api: bool = False
    #: Most members a cluster look-up lists (`limit` may ask for fewer; `truncated` says when cut).
    api_max_members: int = 1000
    #: Folder for replica snapshots (a volume; "" = none): a starting member loads the newest one plus the
    #: changelog tail instead of rebuilding from Redis (docs/scale-out.md). Shared by members is fine.
    snapshot_dir: str = ""
    #: Seconds between snapshots while running (one is also written at a clean shutdown).
    snapshot_interval_seconds: float = 300.0
    #: How long Redis keeps a record's stored event bytes (`ev:<id>`), in seconds; 0 = forever. They are
    #: only re-sent when a batch is replayed (written to Redis, not yet committed in Kafka) or a record id
    #: arrives again; keep it well above the time an operator might rewind the input (docs/scale-out.md,
    #: "Redis bytes per record"). A replay older than this re-sends no event for the record (logged).
    replay_events_ttl_seconds: int = 86400
    #: Erasure requests (GDPR Art. 17), one record id per message, consumed beside the input ("" = none);
    #: within `erasure_bound_seconds` no snapshot or changelog entry holds an erased record (docs/security.md).
    erasure_topic: str = ""
    erasure_bound_seconds: float = 3600.0


@dataclass
class ApiSettings:
    """The HTTP server of `dedup serve` and `dedup run` (docs/api.md) and who may call /v1 (docs/security.md)."""

    #: "tokens": every /v1 request needs `Authorization: Bearer <token>` from `tokens_file`; "off" serves /v1
    #: to anyone who reaches the port, for a laptop only (a warning at start).
    auth: Literal["tokens", "off"] = "tokens"
    #: Lines `<scope> <token> [<label>]`, scope read or write (docs/security.md). Re-read when it changes, so a
    #: token is rotated by adding the new one, moving clients, then removing the old one: no restart.
    tokens_file: str = ""
    #: Worker threads answering requests. Connections do not hold threads: slow or idle clients wait in the
    #: server's event loop, and a request reaches a thread only once it has fully arrived.
    threads: int = 8
    #: Open connections at most; beyond it new ones wait in the listen backlog.
    connection_limit: int = 1000
    #: A connection with no request in progress is closed after this many idle seconds.
    idle_timeout_seconds: int = 30
    #: A request's headers and body must arrive within this many seconds of its first byte (slow clients).
    request_timeout_seconds: int = 10
    #: Largest request head (request line plus headers); larger is answered 431/400 before any body is read.
    max_header_bytes: int = 16384
    #: Port of a second listener that serves only /healthz, /readyz and /metrics, with threads of its own so
    #: probes answer while the API is saturated (the chart uses it); 0 = none (everything on http_port).
    management_port: int = 0


@dataclass
class Settings:
    profile: ProfileSettings = field(default_factory=ProfileSettings)
    fusion: FusionSettings = field(default_factory=FusionSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    clustering: ClusterSettings = field(default_factory=ClusterSettings)
    encoders: EncoderSettings = field(default_factory=EncoderSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    batch_size: int = 256

    def fingerprint(self) -> str:
        """Short stable hash of every setting that changes decisions (stamped on events).

        Secrets are left out: the hash is public (every event carries it), and a short unsalted hash over
        the key would let anyone brute-force a weak key from one event. The key's identity is checked
        through Redis meta instead (`key_id`)."""
        data = dataclasses.asdict(self)
        data.pop("service", None)
        data.pop("api", None)
        data["encoders"].pop("hash_key", None)
        data["encoders"].pop("batch_process", None)  # where columns are computed, not what they are
        data["profile"].pop("encoding", None)  # how a file's bytes become the text: the text decides
        # Where the index lives and how to reach it decide nothing (and hold secrets); the embedded default
        # leaves the hash as it was before the Milvus backend, so old snapshots and events still match.
        index = data["index"]
        if index["exact_rows"] is None:  # the profile's default (in the hash through the profile's name)
            index.pop("exact_rows")
        if data["fusion"]["link_match"] is None:  # likewise (its name and source field), so old hashes hold
            data["fusion"].pop("link_match")
        milvus = index["backend"] == "milvus"
        for name in [k for k in index if k.startswith("milvus_") or k == "backend"]:
            if not milvus or name not in ("backend", "milvus_consistency", "milvus_fresh_seconds"):
                index.pop(name)
        return hashlib.sha256(repr(sorted(flatten(data).items())).encode()).hexdigest()[:12]


BUILTIN_PROFILES: dict[str, ProfileSettings] = {
    "crm-signup": ProfileSettings(),
    # FEBRL-style person files. The whole name feeds the index and the name score; the person and address
    # plug-ins compare each field on its own (what fitting without labels needs, consumer/learn/unsupervised.py).
    # date_of_birth and phone are used when the file has them, never required.
    "person": ProfileSettings(
        name="person", id_field="id", name_fields=["given_name", "surname"], city_fields=[],
        key_fields=[], browser_field=None, os_field=None, login_times_field=None,
        roles={r: r for r in ("given_name", "surname", "date_of_birth", "phone", "street_number", "address_1",
                              "address_2", "suburb", "postcode", "state")},
        encoders=["text", "names", "consumer.encoders.person:PersonEncoder",
                  "consumer.encoders.address:AddressEncoder"],
    ),
    # Product listings (docs/listings.md): title/brand/category/price through the title encoder, the
    # photo (a file path or base64 bytes) through the ONNX image encoder.
    "listing": ProfileSettings(
        name="listing", id_field="listing_id", name_fields=[], city_fields=[], key_fields=[],
        browser_field=None, os_field=None, login_times_field=None,
        roles={"title": "title", "description": "description", "brand": "brand", "price": "price",
               "currency": "currency", "category": "category", "seller_id": "seller_id", "image": "image"},
        encoders=["title", "image"],
    ),
}


#: `index.exact_rows` where a profile leaves it unset: person files scan up to 50,000 rows (measured side by side,
#: docs/benchmarks.md); the others keep HNSW from the first row.
EXACT_ROWS: dict[str, int] = {"person": 50_000}


#: `fusion.link_match` where a profile leaves it unset: listings 0.05, chosen by leaving one linked file out
#: and checked with most listings left without a partner (docs/benchmarks.md, *Linked files match at a point of
#: their own*); person files keep their operating point (no linked person file has been measured).
LINK_MATCH: dict[str, float] = {"listing": 0.05}


def link_match(settings: Settings) -> float | None:
    """The match probability of a linked file (`FusionSettings.link_match`); None for a file deduplicated in
    itself, or where the profile has no default and none is set."""
    if settings.profile.source_field is None:
        return None
    if settings.fusion.link_match is not None:
        return settings.fusion.link_match
    return LINK_MATCH.get(settings.profile.name)


def exact_rows(settings: Settings) -> int:
    """The rows searched exactly before the switch to HNSW (`IndexSettings.exact_rows`)."""
    if settings.index.exact_rows is not None:
        return settings.index.exact_rows
    return EXACT_ROWS.get(settings.profile.name, 0)


#: DEDUP_* variables read elsewhere (librdkafka properties, the model folder, the load-test scripts).
FOREIGN_ENV_PREFIXES = ("DEDUP_KAFKA_", "DEDUP_BENCH_")
FOREIGN_ENV_NAMES = frozenset({"DEDUP_MODEL_DIR", "DEDUP_STATIC_MODEL_DIR"})


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """DEDUP_<SECTION>__<KEY> / DEDUP_<KEY> -> nested values; a name nobody reads is an error (a typo)."""
    known = {f.name for f in dataclasses.fields(Settings)}
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith("DEDUP_") or name in FOREIGN_ENV_NAMES or name.startswith(FOREIGN_ENV_PREFIXES):
            continue
        rest = name[len("DEDUP_"):].lower()
        section, _, key = rest.partition("__")
        if section not in known:
            raise ConfigError(f"unknown environment variable {name} (DEDUP_<SECTION>__<KEY> with a section of "
                              f"{', '.join(sorted(known))}, or DEDUP_KAFKA_<PROPERTY>)")
        if key:
            out.setdefault(section, {})[key] = value
        else:
            out[section] = value
    return out


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    profile: str | None = None,
) -> Settings:
    """Defaults <- built-in profile (if named) <- TOML file <- DEDUP_* environment variables."""
    settings = Settings()
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {p}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
    base = profile or data.get("profile", {}).get("name")
    if base in BUILTIN_PROFILES:
        settings.profile = dataclasses.replace(BUILTIN_PROFILES[base])
    elif profile is not None:
        raise ConfigError(f"unknown profile {profile!r} (built in: {', '.join(BUILTIN_PROFILES)})")
    apply_values(settings, data, "")
    # Other DEDUP_* variables (DEDUP_KAFKA_* client properties, DEDUP_[STATIC_]MODEL_DIR) belong to other readers.
    apply_values(settings, _env_overrides(os.environ if env is None else env), "DEDUP_ ", from_env=True)
    _validate(settings)
    return settings


#: Ranges (inclusive; None = unbounded) of numeric settings. Out-of-range values would crash a library
#: (hnswlib segfaults on m = 0) or silently mean nothing, so they are refused at load time.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "batch_size": (1, None),
    "fusion.link_match": (0, 1),
    "fusion.weight_text": (0, None), "fusion.weight_behaviour": (0, None), "fusion.weight_device": (0, None),
    "index.k": (1, 4096), "index.ef": (1, 65536), "index.m": (2, 256), "index.ef_construction": (1, 65536),
    "index.seed": (0, 2**63 - 1), "index.initial_capacity": (1, 2**31 - 1), "index.query_threads": (1, 4096),
    "index.ef_from": (1, None), "index.exact_rows": (0, None), "index.ef_growth": (0, 4), "index.ef_max": (1, 65536),
    "index.k_from": (1, None), "index.k_growth": (0, 4), "index.k_max": (1, 4096),
    "index.key_cap": (0, 4096),
    "index.milvus_port": (1, 65535), "index.milvus_fresh_seconds": (0, 86_400),
    "index.milvus_timeout_seconds": (0.001, None),
    "clustering.merge_margin": (0, None), "clustering.join_support": (0, None),
    "clustering.link_members": (0, 4096), "clustering.merge_support": (0, None),
    "clustering.keeper_alpha": (0, 1), "clustering.partner_margin": (0, 1),
    "encoders.text_dim": (1, 4096), "encoders.threads": (1, 4096),
    "limits.max_field_chars": (1, None), "limits.max_record_bytes": (1, None), "limits.max_logins": (0, None),
    "limits.max_image_bytes": (1, None),
    "service.max_batch": (1, None), "service.max_wait_ms": (0, None), "service.http_port": (0, 65535),
    "service.stall_seconds": (0.001, None), "service.api_max_members": (1, 100_000),
    "api.threads": (1, 256), "api.connection_limit": (1, 100_000), "api.idle_timeout_seconds": (1, 86_400),
    "api.request_timeout_seconds": (1, 3_600), "api.max_header_bytes": (1024, 1_048_576),
    "api.management_port": (0, 65535),
    "service.erasure_bound_seconds": (1, None), "service.freshness_wait_ms": (0, 10_000),
}


def check_ranges(s: Settings) -> None:
    """Every numeric setting within `RANGES` (a None value, where allowed, means 'auto')."""
    for dotted, (lo, hi) in RANGES.items():
        obj: Any = s
        for part in dotted.split("."):
            obj = getattr(obj, part, None)
        if obj is None:
            continue
        if (lo is not None and obj < lo) or (hi is not None and obj > hi):
            bounds = f">= {lo}" if hi is None else f"between {lo} and {hi}"
            raise ConfigError(f"{dotted} = {obj!r} is out of range: must be {bounds}")


def known_encoding(name: str) -> str:
    """`name` when Python has a codec of that name (`profile.encoding`, `--encoding`), else ConfigError."""
    try:
        codecs.lookup(name)
    except LookupError:
        raise ConfigError(f"profile.encoding {name!r} is not a known encoding (e.g. utf-8, cp1252, latin-1)") from None
    return name


def _validate(s: Settings) -> None:
    check_ranges(s)
    f = s.fusion
    if not 0 <= f.possible_threshold <= f.match_threshold <= 1:
        raise ConfigError("fusion: need 0 <= possible_threshold <= match_threshold <= 1")
    lm, lp = f.learned_match, f.learned_possible
    if not 0 <= (0 if lp is None else lp) <= (1 if lm is None else lm) <= 1:
        raise ConfigError("fusion: need 0 <= learned_possible <= learned_match <= 1")
    if min(f.weight_text, f.weight_behaviour, f.weight_device, *f.weights.values(), *f.parts.values()) < 0:
        raise ConfigError("fusion: weights must be >= 0")
    if s.index.k < 1 or s.index.ef < s.index.k:
        raise ConfigError("index: need k >= 1 and ef >= k")
    if s.batch_size < 1:
        raise ConfigError("batch_size must be >= 1")
    if s.index.milvus_ca_file and not (s.index.milvus_tls or s.index.milvus_uri.startswith("https://")):
        raise ConfigError("index.milvus_ca_file is set but TLS is off: set index.milvus_tls = true (or an "
                          "https:// index.milvus_uri)")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", s.index.milvus_collection_prefix):
        raise ConfigError("index.milvus_collection_prefix: letters, digits and _ only (a Milvus collection "
                          "name), not starting with a digit, at most 64 characters")
    p = s.profile
    known_encoding(p.encoding)
    if not (p.name_fields or p.city_fields or p.key_fields or p.login_times_field or p.browser_field
            or p.os_field or p.roles):
        raise ConfigError("profile maps no column to any modality")
    if p.source_pattern is not None:
        try:
            groups = re.compile(p.source_pattern).groups
        except re.error as exc:
            raise ConfigError(f"profile.source_pattern is not a regular expression: {exc}") from None
        if groups != 1:
            raise ConfigError("profile.source_pattern needs exactly one group (the source), e.g. \"^([^_]+)_\"")
        if p.source_field is None:
            raise ConfigError("profile.source_pattern is set without profile.source_field")
