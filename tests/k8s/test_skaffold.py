"""skaffold.yaml: schema version, one artifact per service, paths that exist, dev and gpu profiles."""

from __future__ import annotations

import re

import yaml

MINIMUM_V4_BETA = 13  # skaffold/v4beta13 is the oldest schema the issue accepts


def test_schema_version_is_current(skaffold_config) -> None:
    match = re.fullmatch(r"skaffold/v(\d+)(?:beta(\d+))?", skaffold_config["apiVersion"])
    assert match, skaffold_config["apiVersion"]
    major, beta = int(match.group(1)), match.group(2)
    assert major > 4 or (major == 4 and (beta is None or int(beta) >= MINIMUM_V4_BETA))
    assert skaffold_config["kind"] == "Config"


def test_one_artifact_per_service_built_from_the_repo_root(skaffold_config, kube) -> None:
    artifacts = skaffold_config["build"]["artifacts"]
    expected = {
        f"gaelp-{dns_name}": f"services/{package}/Dockerfile"
        for package, (dns_name, _) in kube.SERVICES.items()
    }
    assert {a["image"]: a["docker"]["dockerfile"] for a in artifacts} == expected
    for artifact in artifacts:
        assert artifact["context"] == "."
        assert (kube.REPO_ROOT / artifact["context"] / artifact["docker"]["dockerfile"]).is_file()


def _kustomize_paths(config: dict) -> list[str]:
    return config.get("manifests", {}).get("kustomize", {}).get("paths", [])


def test_every_manifest_path_exists_and_is_a_kustomization(skaffold_config, kube) -> None:
    profiles = {p["name"]: p for p in skaffold_config["profiles"]}
    assert {"dev", "gpu"} <= set(profiles)
    paths = _kustomize_paths(skaffold_config) + [
        path for profile in profiles.values() for path in _kustomize_paths(profile)
    ]
    assert paths
    for path in paths:
        assert (kube.REPO_ROOT / path / "kustomization.yaml").is_file(), path
    assert _kustomize_paths(skaffold_config) == ["k8s/base"]
    assert _kustomize_paths(profiles["dev"]) == ["k8s/overlays/dev"]
    assert _kustomize_paths(profiles["gpu"]) == ["k8s/overlays/gpu"]


def test_deployed_images_are_exactly_the_artifacts(skaffold_config, rendered, kube) -> None:
    artifact_images = {a["image"] for a in skaffold_config["build"]["artifacts"]}
    for documents in rendered.values():
        our_images = {
            container["image"]
            for workload in kube.workloads(documents)
            for container in workload["spec"]["template"]["spec"]["containers"]
            if kube.is_gaelp_service(workload)
        }
        assert our_images == artifact_images


def test_port_forwards_name_existing_service_ports(skaffold_config, rendered, kube) -> None:
    for forward in skaffold_config.get("portForward", []):
        assert forward["resourceType"] == "service"
        service = kube.find_object(rendered["base"], "Service", forward["resourceName"])
        assert forward["port"] in {port["port"] for port in service["spec"]["ports"]}


def test_gpu_profile_builds_the_learner_with_cuda_torch(skaffold_config, kube) -> None:
    (gpu,) = [p for p in skaffold_config["profiles"] if p["name"] == "gpu"]
    patched = kube.apply_json_patch(skaffold_config, gpu["patches"])
    changed = [
        (before["image"], after["docker"].get("buildArgs", {}))
        for before, after in zip(
            skaffold_config["build"]["artifacts"], patched["build"]["artifacts"], strict=True
        )
        if before != after
    ]
    assert len(changed) == 1
    image, build_args = changed[0]
    assert image == "gaelp-learner"
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", build_args["TORCH_INDEX_URL"])
    learner_dockerfile = (kube.REPO_ROOT / "services/learner/Dockerfile").read_text()
    assert re.search(r"^ARG TORCH_INDEX_URL=", learner_dockerfile, re.MULTILINE)


def test_gpu_profile_manifests_request_a_gpu_for_the_learner(skaffold_config, kube) -> None:
    (gpu,) = [p for p in skaffold_config["profiles"] if p["name"] == "gpu"]
    (path,) = _kustomize_paths(gpu)
    documents = kube.render_kustomization(kube.REPO_ROOT / path)
    learner = kube.find_object(documents, "Deployment", "learner")
    assert learner["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_skaffold_yaml_is_a_single_document(kube) -> None:
    documents = [d for d in yaml.safe_load_all((kube.REPO_ROOT / "skaffold.yaml").read_text()) if d]
    assert len(documents) == 1
