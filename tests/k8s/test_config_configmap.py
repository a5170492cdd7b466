"""The gaelp-config ConfigMap is generated from configs/*.yaml and must stay in sync with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="module")
def sync_configmap(kube):
    return kube.load_module_from_path("gaelp_k8s_sync_configmap", kube.K8S_DIR / "sync_configmap.py")


def test_committed_configmap_matches_configs(sync_configmap) -> None:
    committed = sync_configmap.CONFIGMAP_PATH.read_text()
    assert committed == sync_configmap.render_configmap(), "run: python k8s/sync_configmap.py"


def test_rendering_carries_each_preset_byte_for_byte(sync_configmap, tmp_path: Path) -> None:
    presets = {
        "production.yaml": "preset: production\nkafka:\n  linger_ms: 20\n",
        "debug.yaml": 'preset: debug   \nnote: "a\\tb"\n',  # trailing spaces: not literal-block safe
        "empty.yaml": "",
    }
    for name, text in presets.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "market.yaml").write_text("ignored: true\n")
    manifest = yaml.safe_load(sync_configmap.render_configmap(tmp_path))
    assert manifest["kind"] == "ConfigMap" and manifest["metadata"]["name"] == "gaelp-config"
    assert manifest["data"] == presets


def test_rendering_refuses_invalid_yaml(sync_configmap, tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("key: [unclosed\n")
    with pytest.raises(yaml.YAMLError):
        sync_configmap.render_configmap(tmp_path)


def test_check_mode_reports_drift(sync_configmap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "production.yaml").write_text("preset: production\n")
    target = tmp_path / "gaelp-config.yaml"
    monkeypatch.setattr(sync_configmap, "CONFIGS_DIR", configs)
    monkeypatch.setattr(sync_configmap, "CONFIGMAP_PATH", target)
    monkeypatch.setattr(sync_configmap, "REPO_ROOT", tmp_path)
    assert sync_configmap.main(["--check"]) == 1
    assert sync_configmap.main([]) == 0
    assert sync_configmap.main(["--check"]) == 0
    (configs / "production.yaml").write_text("preset: production\nkafka:\n  acks: all\n")
    assert sync_configmap.main(["--check"]) == 1


def test_every_preset_a_pod_names_is_in_the_configmap(rendered, kube) -> None:
    for overlay, documents in rendered.items():
        data = kube.find_object(documents, "ConfigMap", "gaelp-config").get("data") or {}
        named = {kube.find_object(documents, "ConfigMap", "gaelp-env")["data"]["GAELP_CONFIG"]}
        for workload in kube.workloads(documents):
            for container in workload["spec"]["template"]["spec"]["containers"]:
                named |= {v["value"] for v in container.get("env", []) if v["name"] == "GAELP_CONFIG"}
        for path in named:
            assert Path(path).name in data, f"{overlay}: {path} is not in configs/ (or not synced)"
