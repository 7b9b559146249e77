"""The Helm chart (deploy/helm/dedup-stream) rendered by Helm's own engine, linted, and schema-validated.

Helm's Go engine comes from the `helm-python-sdk` wheel (libhelm_c over ctypes: no helm binary, no cluster).
Core objects are validated with `kubernetes-validate` (strict: unknown fields fail) against the newest
Kubernetes it ships and an older supported one. ServiceMonitor, ScaledObject and TriggerAuthentication are
CRDs with no schema there: they are checked structurally (apiVersion, kind, name, the spec fields the operator
needs). The environment the chart produces is fed to the real settings loader, so a renamed setting fails here.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumer.cli import build_parser
from consumer.config import IndexSettings, Settings, load_settings
from consumer.io.kafka import properties_from_env

helm = pytest.importorskip("helm_python", reason="helm-python-sdk not installed (pip install -e '.[test]')")
kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")

CHART = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "dedup-stream"
#: The newest Kubernetes whose schemas kubernetes-validate ships, and an older one still in support.
K8S_VERSIONS = (kv.latest_version(), "1.31")
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication")}

SECRETS = {
    "kafka": {"securityProtocol": "SASL_SSL", "saslMechanism": "SCRAM-SHA-512",
              "sasl": {"existingSecret": "kafka-sasl"},
              "tls": {"existingSecret": "kafka-ca", "certKey": "tls.crt", "keyKey": "tls.key"}},
    "redis": {"url": "rediss://redis.example:6380/2", "auth": {"existingSecret": "redis-auth"}},
    "hashKey": {"existingSecret": "dedup-hash-key"},
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "gpu": {"gpu": {"enabled": True, "nodeSelector": {"nvidia.com/gpu.present": "true"},
                    "runtimeClassName": "nvidia"}},
    "keda+servicemonitor+secrets": {
        **SECRETS, "replicaCount": 2,
        "kafka": {**SECRETS["kafka"], "partitions": 6, "inputTopics": ["signups", "listings"]},
        "keda": {"enabled": True, "maxReplicaCount": 6, "sasl": "scram_sha512", "tls": True},
        "serviceMonitor": {"enabled": True}, "metricsService": {"apiPort": 8080},
        "service": {"api": True}, "api": {"tokens": {"existingSecret": "dedup-api-tokens"}},
        "networkPolicy": {"enabled": True,
                          "apiNamespaceSelectors": [{"matchLabels": {"dedup-stream/api-client": "true"}}],
                          "metricsNamespaceSelectors": [
                              {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}]},
    },
    "hpa+pvc": {"kafka": {"partitions": 3}, "hpa": {"enabled": True, "maxReplicas": 3},
                "snapshots": {"type": "persistentVolumeClaim", "accessModes": ["ReadWriteMany"]}},
}


@pytest.fixture(scope="module")
def chart() -> Any:
    return helm.Chart.load(CHART)


def render(chart: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rendered object (NOTES.txt and empty templates left out)."""
    out = chart.render(values, name="dd", namespace="dedup", is_install=True)
    docs = [d for name, text in sorted(out.items()) if name.endswith(".yaml")
            for d in yaml.safe_load_all(text) if d]
    assert docs, "chart rendered nothing"
    return docs


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def plain_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The environment a pod sees, as far as it is not a Secret: ConfigMap data plus literal `env` values."""
    env = dict(one(docs, "ConfigMap")["data"])
    env.update({e["name"]: e["value"] for e in container(docs).get("env", []) if "value" in e})
    return env


def pod_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Every variable the pod gets, Secret-backed ones as placeholders: all must be names the service accepts
    (it refuses unknown DEDUP_* names)."""
    env = {e["name"]: "secret-placeholder" for e in container(docs).get("env", [])}
    env.update(plain_env(docs))
    return env


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_is_clean(name: str) -> None:
    report = helm.lint(CHART, VALUE_SETS[name], strict=True, kube_version=f"v{K8S_VERSIONS[0]}.0")
    assert report["errors"] == []
    # Severity 1 is informational ("icon is recommended"); warnings (2) and errors (3) must not occur.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def check_crd(doc: dict[str, Any]) -> None:
    """Structural check for the CRDs kubernetes-validate has no schema for."""
    assert doc["metadata"]["name"] and doc["metadata"]["namespace"] == "dedup"
    spec = doc["spec"]
    if doc["kind"] == "ServiceMonitor":
        assert spec["selector"]["matchLabels"] and spec["endpoints"][0]["port"] == "metrics"
    elif doc["kind"] == "ScaledObject":
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "dd-dedup-stream"}
        assert spec["triggers"] and all(t["type"] == "kafka" for t in spec["triggers"])
        for t in spec["triggers"]:
            assert set(t["metadata"]) >= {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"}
            assert all(isinstance(v, str) for v in t["metadata"].values()), "KEDA metadata values are strings"
    else:
        refs = spec["secretTargetRef"]
        assert refs and all(set(r) == {"parameter", "name", "key"} for r in refs)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_manifest_validates(chart: Any, name: str) -> None:
    for doc in render(chart, VALUE_SETS[name]):
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "dedup-stream"
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            check_crd(doc)
            continue
        for version in K8S_VERSIONS:
            kv.validate(doc, version, strict=True)


def test_default_values_render_the_core_objects(chart: Any) -> None:
    docs = render(chart, {})
    assert kinds(docs) == {"ConfigMap", "Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"}
    assert one(docs, "Deployment")["spec"]["replicas"] == 1
    assert "nvidia.com/gpu" not in json.dumps(docs)
    assert container(docs)["args"] == ["run", "--shutdown-grace", "30"]
    assert "env" not in container(docs)


def test_environment_is_what_the_service_reads(chart: Any) -> None:
    """ConfigMap + literal env, loaded by consumer.config and consumer.io.kafka exactly as `dedup run` does."""
    values = {**SECRETS, "kafka": {**SECRETS["kafka"], "inputTopics": ["a", "b"], "group": "g1",
                                   "properties": {"client.rack": "az1"}},
              "service": {"maxBatch": 250, "httpPort": 9100},
              "settings": {"fusion": {"mode": "rule", "match_threshold": 0.8,
                                      "weights": {"postcode": 0.2}}, "index": {"k": 48, "ef": 128,
                           "initial_capacity": 1000000}, "profile": {"key_fields": ["postcode", "dob"]},
                           "encoders": {"threads": None}, "batch_size": 512}}
    docs = render(chart, values)
    env = plain_env(docs)
    load_settings(env=pod_env(docs))  # Secret-backed names (Redis password, hash key, SASL) are accepted too
    s = load_settings(env=env)
    assert (s.fusion.mode, s.fusion.match_threshold, s.index.k, s.index.initial_capacity) == ("rule", 0.8, 48,
                                                                                                1000000)
    assert s.fusion.weights == {"postcode": 0.2}  # a table travels as DEDUP_FUSION__WEIGHTS="postcode=0.2"
    assert s.profile.key_fields == ["postcode", "dob"] and s.batch_size == 512 and s.encoders.threads is None
    svc = s.service
    assert (svc.kafka, svc.input_topics, svc.group, svc.max_batch, svc.http_port, svc.http_host) == (
        "kafka:9092", ["a", "b"], "g1", 250, 9100, "0.0.0.0")
    # The Redis URL carries the password only as a reference that Kubernetes expands from the Secret.
    assert svc.redis == "rediss://:$(REDIS_PASSWORD)@redis.example:6380/2"
    props = properties_from_env(env)
    assert props["security.protocol"] == "SASL_SSL" and props["sasl.mechanism"] == "SCRAM-SHA-512"
    assert props["ssl.ca.location"] == "/etc/dedup/kafka-tls/ca.crt" and props["client.rack"] == "az1"
    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    assert ports == {"metrics": 8001}  # probes and /metrics on the management port; the API is off by default
    assert (s.api.auth, s.api.management_port) == ("tokens", 8001)


def test_secrets_are_references_never_configmap_values(chart: Any) -> None:
    docs = render(chart, SECRETS)
    data = one(docs, "ConfigMap")["data"]
    assert not [k for k in data if any(w in k for w in ("PASSWORD", "USERNAME", "HASH_KEY"))]
    assert "DEDUP_SERVICE__REDIS" not in data
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container(docs)["env"] if "valueFrom" in e}
    assert refs == {
        "DEDUP_KAFKA_SASL_USERNAME": {"name": "kafka-sasl", "key": "username"},
        "DEDUP_KAFKA_SASL_PASSWORD": {"name": "kafka-sasl", "key": "password"},
        "REDIS_PASSWORD": {"name": "redis-auth", "key": "password"},
        "DEDUP_ENCODERS__HASH_KEY": {"name": "dedup-hash-key", "key": "hash-key"},
    }
    names = [e["name"] for e in container(docs)["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("DEDUP_SERVICE__REDIS"), "$(VAR) needs it defined first"
    assert "Secret" not in kinds(docs), "the chart references existing Secrets, it never creates them"
    tls = [v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "kafka-tls"]
    assert tls[0]["secret"]["secretName"] == "kafka-ca"


def test_container_args_parse_as_dedup_run(chart: Any) -> None:
    """The image's ENTRYPOINT is `dedup`; the chart's args must be a valid `dedup run` command line."""
    c = container(render(chart, {"run": {"profile": "person", "shutdownGraceSeconds": 45,
                                         "extraArgs": ["--fusion", "rule"]}}))
    args = build_parser().parse_args(c["args"])
    assert (args.func.__name__, args.profile, args.shutdown_grace, args.fusion) == ("cmd_run", "person", 45.0, "rule")


def test_notes_warn_about_the_development_hash_key(chart: Any) -> None:
    def notes(values: dict[str, Any]) -> str:
        return chart.render(values, name="dd", namespace="dedup")["dedup-stream/templates/NOTES.txt"]

    assert "WARNING: hashKey.existingSecret is empty" in notes({})
    assert "WARNING" not in notes(SECRETS)
    several = notes({"replicaCount": 2, "kafka": {"partitions": 2}})  # snapshots are on by default
    assert "full copy of the state" in several and "Enable snapshots" not in several
    assert "Enable snapshots.enabled" in notes({"replicaCount": 2, "kafka": {"partitions": 2},
                                                "snapshots": {"enabled": False}})


def test_restricted_security_context_and_writable_tmp(chart: Any) -> None:
    docs = render(chart, {})
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = container(docs)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    mounts = {m["name"]: m["mountPath"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["tmp"] == "/tmp" and "emptyDir" in volumes["tmp"]
    assert mounts["snapshots"] == "/var/lib/dedup/snapshots" and "emptyDir" in volumes["snapshots"]


def test_probes_hit_healthz_and_readyz_on_the_metrics_port(chart: Any) -> None:
    c = container(render(chart, {}))
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {"name": "metrics", "containerPort": 8001, "protocol": "TCP"} in c["ports"]  # api.managementPort
    shared = container(render(chart, {"api": {"managementPort": 0}}))
    assert shared["ports"] == [{"name": "metrics", "containerPort": 8000, "protocol": "TCP"}]


def test_gpu_scheduling_only_when_enabled(chart: Any) -> None:
    docs = render(chart, VALUE_SETS["gpu"])
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["resources"]["requests"]["cpu"] == "2", "GPU limit added to, not replacing, the resources"
    assert c["image"] == "dedup-stream:0.1.0-cuda"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"} and pod["runtimeClassName"] == "nvidia"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    plain = render(chart, {"gpu": {"enabled": False, "runtimeClassName": "nvidia"}})
    assert "nvidia" not in json.dumps(plain)


def test_keda_and_hpa_are_alternatives(chart: Any) -> None:
    keda = render(chart, VALUE_SETS["keda+servicemonitor+secrets"])
    assert {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"} <= kinds(keda)
    assert "HorizontalPodAutoscaler" not in kinds(keda)
    assert "replicas" not in one(keda, "Deployment")["spec"], "the autoscaler owns replicas"
    so = one(keda, "ScaledObject")["spec"]
    assert [t["metadata"]["topic"] for t in so["triggers"]] == ["signups", "listings"]
    assert so["maxReplicaCount"] == 6
    svc_ports = {p["name"]: p["port"] for p in one(keda, "Service")["spec"]["ports"]}
    assert svc_ports == {"metrics": 8000, "api": 8080}
    # The API has its own container port; probes and /metrics the management port.
    assert {p["name"]: p["targetPort"] for p in one(keda, "Service")["spec"]["ports"]} == {"metrics": "metrics",
                                                                                          "api": "api"}
    assert [p["name"] for p in one(keda, "Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"]] == [
        "metrics", "api"]
    assert one(keda, "ConfigMap")["data"]["DEDUP_SERVICE__API"] == "true"
    hpa = render(chart, VALUE_SETS["hpa+pvc"])
    assert "HorizontalPodAutoscaler" in kinds(hpa) and "ScaledObject" not in kinds(hpa)
    assert one(hpa, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] == 3
    assert one(hpa, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize(("values", "message"), [
    ({"replicaCount": 3}, r"replicaCount \(3\) > kafka.partitions \(1\)"),
    ({"kafka": {"partitions": 4}, "keda": {"enabled": True, "maxReplicaCount": 5}}, "keda.maxReplicaCount"),
    ({"kafka": {"partitions": 2}, "hpa": {"enabled": True, "maxReplicas": 3}}, "hpa.maxReplicas"),
    ({"keda": {"enabled": True}, "hpa": {"enabled": True}}, "exclusive"),
    ({"replicaCount": 2, "kafka": {"partitions": 2}, "snapshots": {"type": "persistentVolumeClaim"}},
     "ReadWriteOnce"),
    ({"kafka": {"sasl": {"existingSecret": "s"}}}, "SASL_SSL"),
    ({"kafka": {"securityProtocol": "SASL_PLAINTEXT", "tls": {"existingSecret": "ca"}}}, "SSL or SASL_SSL"),
    ({"kafka": {"securityProtocol": "SSL", "tls": {"existingSecret": "ca", "certKey": "tls.crt"}}}, "keyKey"),
    ({"service": {"api": True}}, "api.tokens.existingSecret"),
    ({"api": {"managementPort": 8000}}, "equals service.httpPort"),
    ({"index": {"backend": "milvus", "milvus": {"host": ""}}}, "set index.milvus.uri or index.milvus.host"),
])
def test_render_time_guards(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        chart.render(values, name="dd", namespace="dedup")


@pytest.mark.parametrize("values", [
    {"replicaCont": 1},                                     # typo at the top level
    {"kafka": {"bootstrapServers": "x:9092"}},              # typo in a section
    {"settings": {"fusion": {"mdoe": "rule"}}},             # typo in an engine setting
    {"settings": {"encoders": {"hash_key": "plain"}}},      # a secret as a plain value
    {"redis": {"url": "redis://:hunter2@redis:6379/0"}},   # a password inside the URL
    {"settings": {"fusion": {"mode": "fuzzy"}}},            # not one of the allowed values
    {"index": {"backend": "faiss"}},                        # not an index backend
    {"settings": {"index": {"backend": "milvus"}}},         # owned by index.backend, not settings
    {"settings": {"index": {"milvus_token": "plain"}}},     # a secret as a plain value
])
def test_schema_rejects_typos_and_plain_secrets(chart: Any, values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.render(values, name="dd", namespace="dedup")


#: Settings that are not `settings.*` values: secrets (a Secret supplies them, like the hash key) and where the
#: index lives (the chart's own `index` values: backend, address, credentials, CA mount).
CHART_OWNED_SETTINGS = {"encoders": {"hash_key"},
                        "index": {f.name for f in dataclasses.fields(IndexSettings)
                                  if f.name == "backend" or f.name.startswith("milvus_")}}


def test_schema_settings_match_consumer_config() -> None:
    """values.schema.json's `settings` lists exactly the engine's settings (minus the service, the secret and
    the index backend's, which have values of their own)."""
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["settings"]["properties"]
    hints = typing.get_type_hints(Settings)
    expected: dict[str, set[str] | None] = {}
    for f in dataclasses.fields(Settings):
        if f.name in ("service", "api"):  # the chart's own `service` and `api` values set these
            continue
        tp = hints[f.name]
        expected[f.name] = ({g.name for g in dataclasses.fields(tp)} - CHART_OWNED_SETTINGS.get(f.name, set())
                            if dataclasses.is_dataclass(tp) else None)
    got = {k: set(v["properties"]) if "properties" in v else None for k, v in schema.items()}
    assert got == expected, "update deploy/helm/dedup-stream/values.schema.json `settings` to match consumer/config.py"


def test_api_tokens_come_from_a_mounted_secret_and_the_api_has_its_own_port(chart: Any) -> None:
    """service.api with a token Secret: the tokens file is a read-only directory mount (so a Secret update
    rotates tokens), the service reads it from where it is mounted, the API and the probes have separate
    ports, and the NetworkPolicy admits the API port only from the labelled namespaces."""
    docs = render(chart, VALUE_SETS["keda+servicemonitor+secrets"])
    s = load_settings(env=pod_env(docs))
    c = container(docs)
    mount = next(m for m in c["volumeMounts"] if m["name"] == "api-tokens")
    assert mount["readOnly"] and "subPath" not in mount
    assert s.api.tokens_file == mount["mountPath"] + "/tokens" and s.api.auth == "tokens" and s.service.api
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    volume = next(v for v in volumes if v["name"] == "api-tokens")
    assert volume["secret"]["secretName"] == "dedup-api-tokens"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": 8001, "api": 8000}
    ports = {p["name"]: p["targetPort"] for p in one(docs, "Service")["spec"]["ports"]}
    assert ports == {"metrics": "metrics", "api": "api"}
    rules = one(docs, "NetworkPolicy")["spec"]["ingress"]
    by_port = {r["ports"][0]["port"]: r["from"] for r in rules}
    assert by_port["api"] == [{"namespaceSelector": {"matchLabels": {"dedup-stream/api-client": "true"}}}]
    monitoring = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    assert by_port["metrics"] == [{"namespaceSelector": monitoring}]
    assert "Secret" not in kinds(docs)


def test_redis_cluster_seed_nodes_become_a_cluster_url(chart: Any) -> None:
    """`redis.clusterNodes` turns the one Redis setting into a `redis+cluster://` URL (TLS kept from
    `redis.url`), with the password still only a reference to the Secret."""
    from consumer.store.connect import parse_cluster_url

    nodes = ["redis-0.redis:6379", "redis-1.redis:6379"]
    env = plain_env(render(chart, {"redis": {"clusterNodes": nodes}}))
    assert env["DEDUP_SERVICE__REDIS"] == "redis+cluster://redis-0.redis:6379,redis-1.redis:6379"
    assert parse_cluster_url(env["DEDUP_SERVICE__REDIS"]).nodes == (("redis-0.redis", 6379), ("redis-1.redis", 6379))
    docs = render(chart, {**SECRETS, "redis": {**SECRETS["redis"], "clusterNodes": nodes}})
    value = {e["name"]: e.get("value") for e in container(docs)["env"]}["DEDUP_SERVICE__REDIS"]
    assert value == "rediss+cluster://:$(REDIS_PASSWORD)@redis-0.redis:6379,redis-1.redis:6379"
    with pytest.raises(helm.HelmValuesError, match="clusterNodes"):
        render(chart, {"redis": {"clusterNodes": ["no-port"]}})
