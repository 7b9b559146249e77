"""The chart's Milvus values (`index.backend`, `index.milvus.*`; issue 39) rendered by Helm's own engine.

`dedup run`, the only command the chart deploys, accepts `index.backend = "milvus"` (a shared collection per
store, docs/scale-out.md), and the chart renders it. Both sides are checked here, so neither can change alone:
the pod the chart describes, started with its own environment and arguments, gets as far as starting the
service. What the chart renders is checked too: the environment is fed to the real settings loader, the
credentials are Secret references, the CA is a read-only mount at the path the settings name, every manifest
validates, and every `milvus_*` setting can be reached from the values. Shared helpers come from
tests/test_helm_chart.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from consumer.config import ConfigError, IndexSettings, load_settings

helm = pytest.importorskip("helm_python", reason="helm-python-sdk not installed (pip install -e '.[test]')")
kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")

from test_helm_chart import CHART, K8S_VERSIONS, container, one, plain_env, pod_env, render  # noqa: E402

MILVUS_TOKEN_TLS: dict[str, Any] = {"index": {"backend": "milvus", "milvus": {
    "uri": "https://milvus.milvus.svc:19530", "collectionPrefix": "dedup_prod", "consistency": "Session",
    "freshSeconds": 12.5, "timeoutSeconds": 20,
    "auth": {"existingSecret": "milvus-auth", "tokenKey": "api-key"},
    "tls": {"enabled": True, "existingSecret": "milvus-ca", "caKey": "ca.pem"}}}}
MILVUS_USER_PLAIN: dict[str, Any] = {"index": {"backend": "milvus", "milvus": {
    "host": "milvus-proxy", "port": 19531, "auth": {"existingSecret": "milvus-auth", "type": "userPassword"}}}}


@pytest.fixture(scope="module")
def chart() -> Any:
    return helm.Chart.load(CHART)


def secret_refs(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container(docs).get("env", []) if "valueFrom" in e}


def test_milvus_renders_and_dedup_run_accepts_it(chart: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart renders the backend, and the pod it describes, started with its own environment and arguments,
    gets past every check to the service itself (stopped right there: no broker, Redis or Milvus here).
    User/password without TLS: a CA file named by the settings must exist at start, and only the pod mounts it."""
    docs = render(chart, MILVUS_USER_PLAIN)
    for name, value in pod_env(docs).items():
        monkeypatch.setenv(name, value)
    from consumer.cli import main

    started: list[Any] = []

    class Service:
        def __init__(self, settings: Any, **_kwargs: object) -> None:
            started.append(settings)

        def stop(self) -> None:
            pass

        def run(self) -> int:
            return 0

    monkeypatch.setattr("consumer.service.runner.Service", Service)
    assert main([*container(docs)["args"], "--insecure-default-key"]) == 0
    assert started and started[0].index.backend == "milvus"


def test_token_tls_and_ca_render_into_what_the_settings_read(chart: Any) -> None:
    docs = render(chart, MILVUS_TOKEN_TLS)
    env = plain_env(docs)
    assert {k: v for k, v in env.items() if k.startswith("DEDUP_INDEX__")} == {
        "DEDUP_INDEX__BACKEND": "milvus", "DEDUP_INDEX__MILVUS_URI": "https://milvus.milvus.svc:19530",
        "DEDUP_INDEX__MILVUS_COLLECTION_PREFIX": "dedup_prod", "DEDUP_INDEX__MILVUS_CONSISTENCY": "Session",
        "DEDUP_INDEX__MILVUS_FRESH_SECONDS": "12.5", "DEDUP_INDEX__MILVUS_TIMEOUT_SECONDS": "20",
        "DEDUP_INDEX__MILVUS_TLS": "true", "DEDUP_INDEX__MILVUS_CA_FILE": "/etc/dedup/milvus-tls/ca.pem"}
    s = load_settings(env=pod_env(docs)).index
    assert (s.backend, s.milvus_uri, s.milvus_collection_prefix, s.milvus_consistency, s.milvus_fresh_seconds,
            s.milvus_timeout_seconds, s.milvus_tls, s.milvus_token) == (
        "milvus", "https://milvus.milvus.svc:19530", "dedup_prod", "Session", 12.5, 20.0, True, "secret-placeholder")
    assert secret_refs(docs) == {"DEDUP_INDEX__MILVUS_TOKEN": {"name": "milvus-auth", "key": "api-key"}}
    assert not [k for k in one(docs, "ConfigMap")["data"] if "TOKEN" in k or "PASSWORD" in k]
    mount = next(m for m in container(docs)["volumeMounts"] if m["name"] == "milvus-tls")
    assert mount["readOnly"] and s.milvus_ca_file == f"{mount['mountPath']}/ca.pem"
    volume = next(v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == "milvus-tls")
    assert volume["secret"]["secretName"] == "milvus-ca"
    assert volume["secret"]["items"] == [{"key": "ca.pem", "path": "ca.pem"}]


def test_user_password_and_host_port_without_tls(chart: Any) -> None:
    docs = render(chart, MILVUS_USER_PLAIN)
    env = plain_env(docs)
    assert "DEDUP_INDEX__MILVUS_URI" not in env and "DEDUP_INDEX__MILVUS_CA_FILE" not in env
    s = load_settings(env=pod_env(docs)).index
    assert (s.milvus_host, s.milvus_port, s.milvus_tls, s.milvus_uri, s.milvus_collection_prefix,
            s.milvus_consistency) == ("milvus-proxy", 19531, False, "", "dedup", "Bounded")
    assert (s.milvus_user, s.milvus_password, s.milvus_token) == ("secret-placeholder", "secret-placeholder", "")
    assert secret_refs(docs) == {"DEDUP_INDEX__MILVUS_USER": {"name": "milvus-auth", "key": "username"},
                                 "DEDUP_INDEX__MILVUS_PASSWORD": {"name": "milvus-auth", "key": "password"}}
    assert "milvus-tls" not in [v["name"] for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]]


def test_every_milvus_setting_is_reachable_from_the_chart(chart: Any) -> None:
    """Each `index.milvus_*` setting is rendered by some values (a setting added to consumer/config.py
    without a chart value fails here)."""
    rendered = set()
    for values in (MILVUS_TOKEN_TLS, MILVUS_USER_PLAIN):
        rendered |= {k for k in pod_env(render(chart, values)) if k.startswith("DEDUP_INDEX__")}
    fields = {f.name for f in dataclasses.fields(IndexSettings) if f.name == "backend" or f.name.startswith("milvus_")}
    assert rendered == {f"DEDUP_INDEX__{f.upper()}" for f in fields}


@pytest.mark.parametrize("name", ["token+tls", "user+plain"])
def test_milvus_manifests_validate_and_lint(chart: Any, name: str) -> None:
    values = MILVUS_TOKEN_TLS if name == "token+tls" else MILVUS_USER_PLAIN
    for doc in render(chart, values):
        for version in K8S_VERSIONS:
            kv.validate(doc, version, strict=True)
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{K8S_VERSIONS[0]}.0")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


def test_hnswlib_ignores_the_milvus_values(chart: Any) -> None:
    """Milvus values left in place with the embedded backend reference no Secret (a missing one would keep
    the pod from starting) and set nothing but the backend."""
    values = {"index": {**MILVUS_TOKEN_TLS["index"], "backend": "hnswlib"}}
    docs = render(chart, values)
    assert [k for k in plain_env(docs) if k.startswith("DEDUP_INDEX__")] == ["DEDUP_INDEX__BACKEND"]
    assert load_settings(env=pod_env(docs)).index.backend == "hnswlib"
    assert "milvus" not in str(one(docs, "Deployment")).lower()


@pytest.mark.parametrize(("values", "message"), [
    ({"tls": {"existingSecret": "milvus-ca"}}, "set index.milvus.tls.enabled"),
    ({"host": ""}, "set index.milvus.uri or index.milvus.host"),
])
def test_milvus_guards(chart: Any, values: dict[str, Any], message: str) -> None:
    """Milvus values that cannot work fail at render time, saying which value to set."""
    with pytest.raises(helm.HelmRenderError, match=message):
        chart.render({"index": {"backend": "milvus", "milvus": values}}, name="dd", namespace="dedup")


@pytest.mark.parametrize("milvus", [
    {"uri": "http://root:Milvus@milvus:19530"},   # credentials in the URI: use auth.existingSecret
    {"uri": "milvus:19530"},                      # not a URI: host and port are separate values
    {"consistency": "strong"},                    # Milvus's names are capitalised
    {"collectionPrefix": "dedup-prod"},           # not a Milvus collection name
    {"auth": {"type": "apiKey"}},
    {"tls": {"ca": "ca.crt"}},                    # typo (caKey)
])
def test_schema_rejects_bad_milvus_values(chart: Any, milvus: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.render({"index": {"milvus": milvus}}, name="dd", namespace="dedup")


def test_the_ca_file_is_checked_before_any_connection() -> None:
    """The CA path the chart renders means nothing without TLS: refused when the settings load."""
    with pytest.raises(ConfigError, match="TLS is off"):
        load_settings(env={"DEDUP_INDEX__MILVUS_CA_FILE": "/etc/dedup/milvus-tls/ca.crt"})
