"""`kingpost k8s`: manifests that validate offline, follow config.yaml field by field, and never vary."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from conftest import bundle_path

VERSIONS = ("1.29.0", "1.37.0")  # the oldest and newest kubernetes-validate ships schemas for, near enough
KSERVE = json.loads((Path(__file__).parent / "schemas" / "kserve-v1beta1.json").read_text())["models"]


def run_k8s(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kingpost", "k8s", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def edit(bundle: Path, **config: Any) -> Path:
    """Set top-level keys of the bundle's config.yaml (the copy's), return the bundle."""
    path = bundle / "config.yaml"
    path.write_text(yaml.safe_dump({**(yaml.safe_load(path.read_text()) or {}), **config}, sort_keys=False))
    return bundle


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def test_manifests_pass_strict_validation_for_two_kubernetes_versions(tmp_path: Path) -> None:
    out = tmp_path / "echo.yaml"
    result = run_k8s(str(bundle_path("echo")), "--image", "registry.example/echo:1", "-o", str(out))
    assert result.returncode == 0, result.stderr
    docs = docs_of(out.read_text())
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
    for version in VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)  # raises on any unknown or mistyped field
        check = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "-k", version,
                                str(out)], capture_output=True, text=True, timeout=60, check=False)
        assert check.returncode == 0, check.stdout + check.stderr

    deployment = docs[0]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example/echo:1"
    assert container["livenessProbe"]["httpGet"]["path"] == "/"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/model"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # the default load allowance
    assert pod["terminationGracePeriodSeconds"] > 30  # above the server's drain period
    args = container["args"]
    assert args[args.index("--grace-period") + 1] == "30"
    assert pod["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "secrets", "mountPath": "/secrets", "readOnly": True} in container["volumeMounts"]
    assert pod["volumes"] == [{"name": "secrets", "secret": {"secretName": "echo-secrets", "optional": True}}]
    assert all(d["kind"] != "Secret" for d in docs)
    assert docs[2]["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_queue_depth_autoscaling_and_gpus_validate(copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    bundle = copy_bundle("echo", resources={"accelerator": "A10G:2", "cpu": "4", "memory": "16Gi"})
    result = run_k8s(str(bundle), "--autoscale-on", "queue", "--max-replicas", "8")
    assert result.returncode == 0, result.stderr
    docs = docs_of(result.stdout)
    for version in VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 2}
    metric = docs[2]["spec"]["metrics"][0]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "kingpost_queue_depth"
    assert docs[2]["spec"]["maxReplicas"] == 8


def test_output_is_deterministic() -> None:
    first = run_k8s(str(bundle_path("echo")))
    second = run_k8s(str(bundle_path("echo")))
    assert first.returncode == 0 and first.stdout == second.stdout and first.stdout


def fields(bundle: Path) -> dict[str, Any]:
    """The manifests of ``bundle`` (image img:1) as flat {dotted path: value}."""
    result = run_k8s(str(bundle), "--image", "img:1")
    assert result.returncode == 0, result.stderr
    return flatten(docs_of(result.stdout))


def test_changing_config_changes_exactly_the_fields_it_should(copy_bundle: Callable[..., Path]) -> None:
    bundle = copy_bundle("echo")
    base = fields(bundle)
    resized = fields(edit(bundle, resources={"cpu": "3", "memory": "6Gi"}))
    changed = {k for k in base.keys() | resized.keys() if base.get(k) != resized.get(k)}
    pre = "[0].spec.template.spec.containers[0].resources"
    assert changed == {f"{pre}.requests.cpu", f"{pre}.requests.memory", f"{pre}.limits.memory"}
    assert resized[f"{pre}.requests.cpu"] == "3" and resized[f"{pre}.limits.memory"] == "6Gi"


def test_changing_the_model_name_renames_everything_and_nothing_else(copy_bundle: Callable[..., Path]) -> None:
    bundle = copy_bundle("echo")
    base = fields(bundle)
    renamed = fields(edit(bundle, model_name="Other Model"))
    changed = {k for k in base.keys() | renamed.keys() if base.get(k) != renamed.get(k)}
    assert changed and all(base[k] in ("echo", "echo-secrets") for k in changed)
    assert {renamed[k] for k in changed} == {"other-model", "other-model-secrets"}


def test_a_gpu_adds_the_gpu_fields_only(copy_bundle: Callable[..., Path]) -> None:
    bundle = copy_bundle("echo")
    base = fields(bundle)
    gpu = fields(edit(bundle, resources={"use_gpu": True}))
    changed = {k for k in base.keys() | gpu.keys() if base.get(k) != gpu.get(k)}
    pre = "[0].spec.template.spec"
    assert changed == {f"{pre}.containers[0].resources.requests.nvidia.com/gpu",
                       f"{pre}.containers[0].resources.limits.nvidia.com/gpu",
                       f"{pre}.tolerations[0].key", f"{pre}.tolerations[0].operator", f"{pre}.tolerations[0].effect"}


def test_kserve_inference_service_matches_the_kserve_api(copy_bundle: Callable[..., Path]) -> None:
    bundle = copy_bundle("echo", resources={"accelerator": "T4", "memory": "8Gi"})
    result = run_k8s(str(bundle), "--kserve", "--image", "img:2")
    assert result.returncode == 0, result.stderr
    docs = docs_of(result.stdout)
    assert len(docs) == 1
    service = docs[0]
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    kubernetes_parts: list[tuple[str, Any]] = []
    check_kserve(service, "V1beta1InferenceService", "InferenceService", kubernetes_parts)
    predictor = service["spec"]["predictor"]
    assert predictor["containers"][0]["name"] == "kserve-container"
    assert predictor["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    # The Kubernetes types inside (ObjectMeta, Container, Volume, ...) against Kubernetes' own schemas:
    pod_fields = {k: v for k, v in predictor.items() if k not in KSERVE_ONLY}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": service["metadata"], "spec": pod_fields}
    assert {t for t, _ in kubernetes_parts} >= {"V1ObjectMeta", "V1Container", "V1Volume", "V1PodSecurityContext"}
    for version in VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)


def test_a_wrong_option_is_one_sentence() -> None:
    result = run_k8s(str(bundle_path("echo")), "--min-replicas", "5", "--max-replicas", "2")
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "--min-replicas" in result.stderr


KSERVE_ONLY = {"minReplicas", "maxReplicas"}


def check_kserve(value: Any, kind: str, where: str, kubernetes_parts: list[tuple[str, Any]]) -> None:
    """``value`` against KServe's field map for ``kind`` (strict: no unknown field, types as declared);
    the Kubernetes types it reaches are collected for kubernetes-validate."""
    if kind.startswith("list["):
        assert isinstance(value, list), f"{where}: expected a list"
        for i, item in enumerate(value):
            check_kserve(item, kind[5:-1], f"{where}[{i}]", kubernetes_parts)
    elif kind.startswith("dict("):
        assert isinstance(value, dict), f"{where}: expected a mapping"
        inner = kind[kind.index(",") + 1:-1].strip()
        for key, item in value.items():
            check_kserve(item, inner, f"{where}.{key}", kubernetes_parts)
    elif kind in KSERVE:
        assert isinstance(value, dict), f"{where}: expected a mapping for {kind}"
        unknown = set(value) - set(KSERVE[kind])
        assert not unknown, f"{where}: {sorted(unknown)} are not fields of {kind}"
        for key, item in value.items():
            check_kserve(item, KSERVE[kind][key], f"{where}.{key}", kubernetes_parts)
    elif kind in ("str", "int", "bool"):
        expected = {"str": str, "int": int, "bool": bool}[kind]
        assert isinstance(value, expected), f"{where}: expected {kind}, found {value!r}"
    else:
        assert kind.startswith("V1"), f"{where}: unexpected type {kind}"
        kubernetes_parts.append((kind, value))
