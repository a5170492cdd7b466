"""Pod hardening, probes, resources and shutdown budget of every workload in every overlay."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from gaelp.config import settings as gaelp_settings

# Third-party workloads that cannot take a read-only root file system, with the reason.
WRITABLE_ROOT_ALLOWED = {
    "kafka": "the apache/kafka start script renders its config into /opt/kafka/config in the image",
}
_VARIABLE_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _effective(container: dict[str, Any], pod: dict[str, Any], field: str) -> Any:
    """A container's securityContext field, falling back to the pod's (as the kubelet does)."""
    container_value = container.get("securityContext", {}).get(field)
    return container_value if container_value is not None else pod.get("securityContext", {}).get(field)


def test_every_container_is_hardened(overlay, rendered, kube) -> None:
    for workload in kube.workloads(rendered[overlay]):
        pod = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        assert pod.get("automountServiceAccountToken") is False, name
        for container in pod["containers"]:
            where = f"{overlay}: {name}/{container['name']}"
            context = container.get("securityContext", {})
            assert _effective(container, pod, "runAsNonRoot") is True, where
            run_as_user = _effective(container, pod, "runAsUser")
            assert isinstance(run_as_user, int) and run_as_user > 0, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not context.get("capabilities", {}).get("add"), where
            assert _effective(container, pod, "seccompProfile") == {"type": "RuntimeDefault"}, where
            if name in WRITABLE_ROOT_ALLOWED:
                assert context.get("readOnlyRootFilesystem") is False, where
            else:
                assert context.get("readOnlyRootFilesystem") is True, where
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where} {kind}"
            assert "readinessProbe" in container and "livenessProbe" in container, where


def _container_environment(
    container: dict[str, Any], documents: list[dict[str, Any]], kube: Any
) -> dict[str, str]:
    """The environment the kubelet would build: envFrom ConfigMaps, then env with $(VAR) expansion."""
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = kube.find_object(documents, "ConfigMap", source["configMapRef"]["name"])
        environment.update({key: str(value) for key, value in config_map["data"].items()})
    for variable in container.get("env", []):
        if "valueFrom" in variable:
            reference = variable["valueFrom"]["secretKeyRef"]
            secret = kube.find_object(documents, "Secret", reference["name"])
            environment[variable["name"]] = secret["stringData"][reference["key"]]
        else:
            environment[variable["name"]] = _VARIABLE_REFERENCE.sub(
                lambda match: environment.get(match.group(1), match.group(0)), variable["value"]
            )
    return environment


def _gaelp_workload(documents: list[dict[str, Any]], dns_name: str, kube: Any) -> dict[str, Any]:
    matches = [w for w in kube.workloads(documents) if w["metadata"]["name"] == dns_name]
    assert len(matches) == 1, f"expected one workload named {dns_name}"
    assert kube.is_gaelp_service(matches[0])
    return matches[0]


def test_service_pods_load_valid_settings(
    overlay, service, rendered, kube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod's environment and its mounted preset load into GaelpSettings as intended."""
    documents = rendered[overlay]
    dns_name, port = kube.SERVICES[service]
    workload = _gaelp_workload(documents, dns_name, kube)
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    environment = _container_environment(container, documents, kube)

    # Materialise the mounted ConfigMap the way the kubelet does, then point GAELP_CONFIG at it.
    (config_mount,) = [m for m in container["volumeMounts"] if m["name"] == "gaelp-config"]
    (config_volume,) = [v for v in pod["volumes"] if v["name"] == "gaelp-config"]
    config_map = kube.find_object(documents, "ConfigMap", config_volume["configMap"]["name"])
    preset_path = Path(environment["GAELP_CONFIG"])
    assert preset_path.parent == Path(config_mount["mountPath"])
    assert preset_path.name in config_map.get("data", {}), f"{preset_path.name} missing from gaelp-config"
    for file_name, text in config_map["data"].items():
        (tmp_path / file_name).write_text(text)
    environment["GAELP_CONFIG"] = str(tmp_path / preset_path.name)

    for key in [key for key in os.environ if key.upper().startswith("GAELP_")]:
        monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    loaded = gaelp_settings.load_settings()

    assert loaded.grpc.host == "0.0.0.0"
    assert loaded.grpc.port == port
    assert loaded.kafka.bootstrap == "kafka:9092"
    assert loaded.kafka.acks == "all" and loaded.kafka.enable_idempotence is True
    assert loaded.telemetry.exporter == "otlp"
    assert loaded.telemetry.otlp_endpoint == "http://otel-collector:4317"
    assert (
        loaded.database.url.startswith("postgresql://gaelp:")
        and "@postgres:5432/gaelp" in loaded.database.url
    )
    assert "$(" not in loaded.database.url
    # The kubelet waits terminationGracePeriodSeconds before SIGKILL: drain plus commit/checkpoint.
    assert pod["terminationGracePeriodSeconds"] >= loaded.grpc.grace_period_s + 10
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for directory in (loaded.storage.data_dir, loaded.storage.cache_dir, loaded.storage.checkpoint_dir):
        assert any(Path(directory).is_relative_to(mount) for mount in mounts - {"/etc/gaelp"}), directory


def test_service_probes_use_native_grpc_health(overlay, service, rendered, kube) -> None:
    dns_name, port = kube.SERVICES[service]
    workload = _gaelp_workload(rendered[overlay], dns_name, kube)
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"gaelp-{dns_name}"
    assert {"name": "grpc", "containerPort": port} in container["ports"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": port}, probe
    service_object = kube.find_object(rendered[overlay], "Service", dns_name)
    assert service_object["spec"]["selector"] == workload["spec"]["selector"]["matchLabels"]
    assert any(p["port"] == port and p["targetPort"] == "grpc" for p in service_object["spec"]["ports"])


def test_checkpoint_writers_keep_checkpoints_on_persistent_volumes(overlay, rendered, kube) -> None:
    documents = rendered[overlay]
    learner = kube.find_object(documents, "Deployment", "learner")
    assert learner["spec"]["replicas"] == 1 and learner["spec"]["strategy"]["type"] == "Recreate"
    (claim_volume,) = [
        v for v in learner["spec"]["template"]["spec"]["volumes"] if v["name"] == "checkpoints"
    ]
    kube.find_object(documents, "PersistentVolumeClaim", claim_volume["persistentVolumeClaim"]["claimName"])
    orchestrator = kube.find_object(documents, "StatefulSet", "orchestrator")
    claim_names = {claim["metadata"]["name"] for claim in orchestrator["spec"]["volumeClaimTemplates"]}
    assert "checkpoints" in claim_names
    for workload in (learner, orchestrator):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert {"name": "checkpoints", "mountPath": "/var/lib/gaelp/checkpoints"} in container["volumeMounts"]


def test_only_the_gpu_overlay_asks_for_a_gpu(overlay, rendered, kube) -> None:
    learner = kube.find_object(rendered[overlay], "Deployment", "learner")
    pod = learner["spec"]["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    for workload in kube.workloads(rendered[overlay]):
        if workload is not learner:
            for container in workload["spec"]["template"]["spec"]["containers"]:
                assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    if overlay == "gpu":
        assert limits["nvidia.com/gpu"] == 1
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    else:
        assert "nvidia.com/gpu" not in limits and "nodeSelector" not in pod
