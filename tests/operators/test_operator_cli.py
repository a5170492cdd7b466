"""An operator's view of a run through the `gaelp` CLI, against real service processes.

Learner, orchestrator and metrics run as processes over the test broker, with the 'file' span
exporter and TensorBoard on; the CLI runs as its own process, as an operator would call it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dataplane_support import learner_env, orchestrator_env, wait_until
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gaelp.bus.local_broker import free_port
from gaelp.embedded.processes import ServiceProcess, start_together

RUN_ID = "operator-run"
MAX_ENV_STEPS = 960  # ten rounds of 96 transitions: several learner updates, dozens of episodes


@dataclass
class Cluster:
    bootstrap: str
    data_dir: Path
    traces: Path
    orchestrator: ServiceProcess
    safety_policy: ServiceProcess

    def gaelp(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gaelp.cli.main", *args], capture_output=True, text=True,
                              timeout=timeout_s, env=_cli_env(self))


def _cli_env(cluster: Cluster) -> dict[str, str]:
    import os

    env = {key: value for key, value in os.environ.items() if not key.startswith("GAELP_")}
    env["GAELP_KAFKA_BOOTSTRAP"] = cluster.bootstrap
    env["GAELP_STORAGE_DATA_DIR"] = str(cluster.data_dir)
    env["GAELP_TELEMETRY_FILE_DIR"] = str(cluster.traces)
    return env


@pytest.fixture(scope="module")
def cluster(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("operators")
    data_dir, traces, logs = work / "data", work / "traces", work / "logs"
    telemetry = {"GAELP_TELEMETRY_EXPORTER": "file", "GAELP_TELEMETRY_FILE_DIR": str(traces),
                 "GAELP_STORAGE_DATA_DIR": str(data_dir)}
    learner = ServiceProcess("learner", {**learner_env(kafka_bootstrap, work / "checkpoints",
                                                       f"learner-{work.name}"), **telemetry}, logs)
    metrics = ServiceProcess("metrics", {
        "GAELP_KAFKA_BOOTSTRAP": kafka_bootstrap, "GAELP_KAFKA_ENABLE_IDEMPOTENCE": "false",
        "GAELP_KAFKA_ACKS": "1", "GAELP_METRICS_GROUP_ID": f"metrics-{work.name}",
        "GAELP_METRICS_HTTP_PORT": str(free_port()), **telemetry,
    }, logs)
    safety = ServiceProcess("safety_policy", {
        "GAELP_KAFKA_BOOTSTRAP": kafka_bootstrap, "GAELP_KAFKA_ENABLE_IDEMPOTENCE": "false",
        "GAELP_KAFKA_ACKS": "1", "GAELP_DATABASE_URL": f"sqlite:///{work / 'ledger.db'}", **telemetry,
    }, logs)
    orchestrator = ServiceProcess("orchestrator", {
        **orchestrator_env(kafka_bootstrap, work / "runs.db", learner.target), **telemetry,
    }, logs)
    processes = [learner, metrics, safety, orchestrator]
    try:
        start_together(*processes, wait_s=120)
        yield Cluster(kafka_bootstrap, data_dir, traces, orchestrator, safety)
    finally:
        for process in reversed(processes):
            process.stop()


@pytest.fixture(scope="module")
def finished_run(cluster: Cluster) -> dict[str, object]:
    started = cluster.gaelp("runs", "start", "--run", RUN_ID, "--max-env-steps", str(MAX_ENV_STEPS),
                            "--wait", "600", "--json", "--orchestrator", cluster.orchestrator.target,
                            timeout_s=700)
    assert started.returncode == 0, started.stderr
    status = json.loads(started.stdout)
    assert status["state"] == "completed", status
    return dict(status)


def test_status_and_list(cluster: Cluster, finished_run: dict[str, object]) -> None:
    shown = cluster.gaelp("runs", "status", RUN_ID, "--json", "--orchestrator", cluster.orchestrator.target)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["run_id"] == RUN_ID and status["env_steps"] >= MAX_ENV_STEPS
    assert status["phase"] == "PHASE_SIMULATION"
    listed = cluster.gaelp("runs", "list", "--json", "--orchestrator", cluster.orchestrator.target)
    assert listed.returncode == 0, listed.stderr
    assert [run["run_id"] for run in json.loads(listed.stdout)] == [RUN_ID]
    text = cluster.gaelp("runs", "list", "--state", "running", "--orchestrator", cluster.orchestrator.target)
    assert text.returncode == 0 and text.stdout == ""


def test_errors_are_one_line_and_non_zero(cluster: Cluster, finished_run: dict[str, object]) -> None:
    missing = cluster.gaelp("runs", "status", "no-such-run", "--orchestrator", cluster.orchestrator.target)
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "not_found" in missing.stderr, missing.stderr
    again = cluster.gaelp("runs", "start", "--run", RUN_ID, "--orchestrator", cluster.orchestrator.target)
    assert again.returncode == 1 and "failed_precondition" in again.stderr, again.stderr
    nobody = cluster.gaelp("runs", "status", RUN_ID, "--orchestrator", f"127.0.0.1:{free_port()}",
                           "--deadline", "2")
    assert nobody.returncode == 1 and nobody.stderr.startswith("error: GetRunStatus at 127.0.0.1:")
    bad = cluster.gaelp("runs", "pause", "bad id!", "--orchestrator", cluster.orchestrator.target)
    assert bad.returncode == 1 and "invalid_argument" in bad.stderr, bad.stderr


def test_budget_status(cluster: Cluster) -> None:
    shown = cluster.gaelp("budget", "status", "--campaign", "operator-campaign", "--json",
                          "--safety-policy", cluster.safety_policy.target)
    if shown.returncode != 0:
        # An unregistered campaign is refused with a typed error, still one line.
        assert shown.stderr.count("\n") == 1, shown.stderr
        assert shown.stderr.startswith("error: GetBudgetStatus"), shown.stderr
        return
    budget = json.loads(shown.stdout)
    assert budget["campaign_id"] == "operator-campaign" and budget["phase"] == "PHASE_REAL_TESTING"


def test_episodes_tail_prints_every_episode_of_the_run(cluster: Cluster,
                                                       finished_run: dict[str, object]) -> None:
    tail = cluster.gaelp("episodes", "tail", "--run", RUN_ID, "--phase", "simulation")
    assert tail.returncode == 0, tail.stderr
    episodes = [json.loads(line) for line in tail.stdout.splitlines()]
    assert len(episodes) == finished_run["episodes"]
    assert len({episode["episode_id"] for episode in episodes}) == len(episodes)
    assert all(episode["run_id"] == RUN_ID and episode["phase"] == "PHASE_SIMULATION" for episode in episodes)
    last = cluster.gaelp("episodes", "tail", "--run", RUN_ID, "--last", "3")
    assert [json.loads(line) for line in last.stdout.splitlines()] == episodes[-3:]


def _trace_spans(cluster: Cluster, episode_id: str = "") -> list[dict[str, object]]:
    args = ["traces", "show", "--run", RUN_ID, "--json", *(["--episode", episode_id] if episode_id else [])]
    shown = cluster.gaelp(*args)
    return [json.loads(line) for line in shown.stdout.splitlines()] if shown.returncode == 0 else []


def test_an_episode_trace_spans_three_services(cluster: Cluster, finished_run: dict[str, object]) -> None:
    # The exporters write in the background: wait for the learner's and the metrics' spans.
    def three_services() -> list[dict[str, object]] | None:
        spans = _trace_spans(cluster)
        return spans if len({span["service"] for span in spans}) >= 3 else None

    spans = wait_until(three_services, timeout_s=120, what="a trace with spans of three services")
    services = {span["service"] for span in spans}
    assert {"orchestrator", "learner", "metrics"} <= services
    by_name: dict[str, list[dict]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    publish = by_name["publish gaelp.episodes.v1"][0]
    attributes = publish["attributes"]
    assert publish["service"] == "orchestrator"
    assert attributes["messaging.system"] == "kafka"
    assert attributes["messaging.destination.name"] == "gaelp.episodes.v1"
    assert attributes["messaging.kafka.message.key"] == RUN_ID
    processed = by_name["process gaelp.episodes.v1"][0]
    assert processed["service"] == "metrics"
    assert processed["attributes"]["messaging.consumer.group.name"].startswith("metrics-")
    assert int(processed["attributes"]["messaging.destination.partition.id"]) >= 0
    assert processed["attributes"]["messaging.kafka.message.offset"] >= 0
    received = by_name["receive gaelp.transitions.v1"][0]
    assert received["service"] == "learner"
    assert received["attributes"]["messaging.consumer.group.name"].startswith("learner-")
    # One episode's view: the tree names every service and leaves the round's other episodes out.
    episode_id = str(attributes["gaelp.episode_id"])
    tree = cluster.gaelp("traces", "show", "--run", RUN_ID, "--episode", episode_id)
    assert tree.returncode == 0, tree.stderr
    assert "rollout round" in tree.stdout and episode_id in tree.stdout
    assert tree.stdout.count("publish gaelp.episodes.v1") == 1
    unknown = cluster.gaelp("traces", "show", "--run", RUN_ID, "--episode", "no-such-episode")
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1


def test_tensorboard_event_files_hold_the_learner_statistics(cluster: Cluster,
                                                             finished_run: dict[str, object]) -> None:
    logdir = cluster.data_dir / "tensorboard" / RUN_ID / "learner"
    wait_until(lambda: list(logdir.glob("events.out.tfevents.*")), timeout_s=60,
               what="TensorBoard event files")
    accumulator = EventAccumulator(str(logdir))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"train/entropy", "train/approx_kl", "train/grad_norm", "throughput/samples_per_second",
            "policy_lag/mean", "policy_lag/max"} <= tags
    assert any(tag.startswith("losses/") for tag in tags)
    grad_norm = accumulator.Scalars("train/grad_norm")
    steps = [event.step for event in grad_norm]
    assert len(steps) >= 2 and steps == sorted(steps) and steps[0] >= 1
    assert all(event.value > 0 for event in grad_norm)
