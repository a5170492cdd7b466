"""The service Dockerfiles: repo-root paths that exist, the right module, non-root, torch pin."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    logical = re.sub(r"\\\n", " ", dockerfile.read_text())
    pairs = []
    for line in logical.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            instruction, _, arguments = stripped.partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def _dockerignore_excludes(path: str, rules: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for rule in rules:
        negated = rule.startswith("!")
        pattern = rule[1:] if negated else rule
        regex = re.escape(pattern.rstrip("/")).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


@pytest.fixture(scope="module")
def dockerignore_rules(kube) -> list[str]:
    lines = (kube.REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_dockerfile_builds_the_service_from_the_repo_root(service, kube, dockerignore_rules) -> None:
    dockerfile = kube.REPO_ROOT / "services" / service / "Dockerfile"
    instructions = _instructions(dockerfile)
    assert instructions[0] == ("FROM", "python:3.11-slim")
    copies = [arguments.split() for instruction, arguments in instructions if instruction == "COPY"]
    sources = [source for *sources, _ in copies for source in sources]
    assert {"pyproject.toml", "libs", f"services/{service}"} <= set(sources)
    for source in sources:
        assert (kube.REPO_ROOT / source).exists(), source
        assert not _dockerignore_excludes(source, dockerignore_rules), f".dockerignore drops {source}"
    # A service image carries no sibling service: services never import each other.
    assert not [s for s in sources if s.startswith("services/") and s != f"services/{service}"]
    entrypoints = [
        json.loads(arguments) for instruction, arguments in instructions if instruction == "ENTRYPOINT"
    ]
    assert entrypoints == [["python", "-m", service]]
    assert (kube.REPO_ROOT / "services" / service / "__main__.py").is_file(), "python -m needs __main__.py"


def test_dockerfile_user_and_ports_match_the_pod(service, kube, rendered) -> None:
    dockerfile = kube.REPO_ROOT / "services" / service / "Dockerfile"
    instructions = _instructions(dockerfile)
    users = [arguments for instruction, arguments in instructions if instruction == "USER"]
    assert users and users[-1].split(":")[0].isdigit(), "numeric USER lets runAsNonRoot verify it"
    dns_name, port = kube.SERVICES[service]
    (workload,) = [w for w in kube.workloads(rendered["base"]) if w["metadata"]["name"] == dns_name]
    pod_context = workload["spec"]["template"]["spec"]["securityContext"]
    assert int(users[-1].split(":")[0]) == pod_context["runAsUser"]
    exposed = {int(p) for i, a in instructions if i == "EXPOSE" for p in a.split()}
    container_ports = {
        p["containerPort"] for p in workload["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert port in exposed and exposed == container_ports


def test_dockerfile_torch_pin_matches_pyproject(service, kube) -> None:
    pyproject = tomllib.loads((kube.REPO_ROOT / "pyproject.toml").read_text())
    (torch_requirement,) = [d for d in pyproject["project"]["dependencies"] if re.match(r"torch\b", d)]
    pinned = torch_requirement.split("==")[1]
    instructions = _instructions(kube.REPO_ROOT / "services" / service / "Dockerfile")
    assert ("ARG", f"TORCH_VERSION={pinned}") in instructions


def test_dockerignore_keeps_local_state_out_of_the_context(dockerignore_rules) -> None:
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/k8s/conftest.py",
        "var/gaelp/gaelp.db",
        "libs/gaelp/__pycache__/x.cpython-311.pyc",
        "gaelp.egg-info/PKG-INFO",
    ):
        assert _dockerignore_excludes(path, dockerignore_rules), path
    for path in ("pyproject.toml", "libs/gaelp/__init__.py", "services/learner/__main__.py"):
        assert not _dockerignore_excludes(path, dockerignore_rules), path
