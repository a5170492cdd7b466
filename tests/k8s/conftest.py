"""Shared fixtures for the Kubernetes checks: rendered overlays, skaffold.yaml, JSON patches.

The kustomize binary is not assumed to exist, so the overlays are rendered here. The manifests use
only the kustomize features this renderer implements (resources, JSON6902 patches with a target);
a kustomization that uses anything else fails loudly instead of being rendered wrongly.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "k8s"
# Kubernetes version the manifests are validated for (schemas ship with kubernetes-validate).
KUBERNETES_VERSION = "1.33.0"
OVERLAY_DIRS = {
    "base": K8S_DIR / "base",
    "dev": K8S_DIR / "overlays" / "dev",
    "gpu": K8S_DIR / "overlays" / "gpu",
}
# Python package -> DNS name (Kubernetes objects, images) -> gRPC port of each GAELP service.
SERVICES: dict[str, tuple[str, int]] = {
    "orchestrator": ("orchestrator", 50051),
    "environment_registry": ("environment-registry", 50052),
    "learner": ("learner", 50053),
    "safety_policy": ("safety-policy", 50054),
    "metrics": ("metrics", 50055),
}
SUPPORTED_KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "patches"}

Manifest = dict[str, Any]


def load_yaml_documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _pointer_tokens(pointer: str) -> list[str]:
    if not pointer.startswith("/"):
        raise ValueError(f"JSON pointer must start with '/': {pointer!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def apply_json_patch(document: Manifest, operations: list[dict[str, Any]]) -> Manifest:
    """RFC 6902 add / replace / remove, enough for the overlays and skaffold profile patches."""
    patched = copy.deepcopy(document)
    for operation in operations:
        op, tokens = operation["op"], _pointer_tokens(operation["path"])
        parent: Any = patched
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        if op == "add":
            value = copy.deepcopy(operation["value"])
            if isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), value)
            else:
                parent[last] = value
        elif op == "replace":
            index: Any = int(last) if isinstance(parent, list) else last
            if not isinstance(parent, list) and last not in parent:
                raise KeyError(f"replace of a missing member {operation['path']}")
            parent[index] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        else:
            raise ValueError(f"unsupported JSON patch op {op!r}")
    return patched


def render_kustomization(directory: Path) -> list[Manifest]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED_KUSTOMIZATION_KEYS
    if unsupported:
        raise ValueError(f"{directory}: the test renderer does not implement {sorted(unsupported)}")
    documents: list[Manifest] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        documents += render_kustomization(path) if path.is_dir() else load_yaml_documents(path)
    for patch in kustomization.get("patches", []):
        operations = yaml.safe_load((directory / patch["path"]).read_text())
        target = patch["target"]
        matches = [
            index
            for index, doc in enumerate(documents)
            if doc["kind"] == target["kind"] and doc["metadata"]["name"] == target["name"]
        ]
        if len(matches) != 1:
            raise ValueError(f"{directory}: patch target {target} matched {len(matches)} objects")
        documents[matches[0]] = apply_json_patch(documents[matches[0]], operations)
    return documents


def load_module_from_path(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def find_object(documents: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def workloads(documents: list[Manifest]) -> list[Manifest]:
    return [d for d in documents if d["kind"] in {"Deployment", "StatefulSet"}]


def is_gaelp_service(workload: Manifest) -> bool:
    """Our own workloads run an image built by skaffold (gaelp-<service>)."""
    containers = workload["spec"]["template"]["spec"]["containers"]
    return any(container["image"].startswith("gaelp-") for container in containers)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`overlay` runs a test once per kustomization, `service` once per GAELP service package."""
    if "overlay" in metafunc.fixturenames:
        metafunc.parametrize("overlay", list(OVERLAY_DIRS))
    if "service" in metafunc.fixturenames:
        metafunc.parametrize("service", list(SERVICES))


@pytest.fixture(scope="session")
def kube() -> SimpleNamespace:
    """The helpers and constants above, for test modules (conftest is not importable by name)."""
    return SimpleNamespace(
        REPO_ROOT=REPO_ROOT,
        K8S_DIR=K8S_DIR,
        KUBERNETES_VERSION=KUBERNETES_VERSION,
        OVERLAY_DIRS=OVERLAY_DIRS,
        SERVICES=SERVICES,
        apply_json_patch=apply_json_patch,
        render_kustomization=render_kustomization,
        load_yaml_documents=load_yaml_documents,
        load_module_from_path=load_module_from_path,
        find_object=find_object,
        workloads=workloads,
        is_gaelp_service=is_gaelp_service,
    )


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Manifest]]:
    return {name: render_kustomization(directory) for name, directory in OVERLAY_DIRS.items()}


@pytest.fixture(scope="session")
def skaffold_config() -> Manifest:
    return yaml.safe_load((REPO_ROOT / "skaffold.yaml").read_text())
