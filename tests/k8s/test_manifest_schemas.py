"""Every rendered manifest validates offline against the Kubernetes schemas in strict mode."""

from __future__ import annotations

import copy
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml


def test_every_manifest_validates_strictly(overlay, rendered, kube) -> None:
    documents = rendered[overlay]
    assert documents, f"{overlay} renders nothing"
    for document in documents:
        kubernetes_validate.validate(document, kube.KUBERNETES_VERSION, strict=True)


def test_every_yaml_file_under_k8s_is_used_by_a_kustomization(kube) -> None:
    """A manifest no kustomization lists would be neither deployed nor validated."""
    referenced = set()
    for directory in kube.OVERLAY_DIRS.values():
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        referenced |= {(directory / item).resolve() for item in kustomization.get("resources", [])}
        referenced |= {(directory / patch["path"]).resolve() for patch in kustomization.get("patches", [])}
        referenced.add((directory / "kustomization.yaml").resolve())
    on_disk = {path.resolve() for path in kube.K8S_DIR.rglob("*.yaml")}
    assert on_disk - referenced == set()


def test_strict_validation_rejects_unknown_fields(rendered, kube) -> None:
    """Guards the check above: a misspelt field must not pass."""
    learner = copy.deepcopy(kube.find_object(rendered["base"], "Deployment", "learner"))
    learner["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 50053}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(learner, kube.KUBERNETES_VERSION, strict=True)


def test_names_are_unique_per_kind(overlay, rendered) -> None:
    keys = [(d["kind"], d["metadata"]["name"]) for d in rendered[overlay]]
    assert len(keys) == len(set(keys))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with built-in kustomize) not installed")
def test_python_rendering_matches_kubectl_kustomize(overlay, rendered, kube) -> None:
    """Where kubectl exists, the test renderer must agree with real kustomize."""
    output = subprocess.run(
        ["kubectl", "kustomize", str(kube.OVERLAY_DIRS[overlay])],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    by_key = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(output) if d}
    ours = {(d["kind"], d["metadata"]["name"]): d for d in rendered[overlay]}
    assert by_key == ours
