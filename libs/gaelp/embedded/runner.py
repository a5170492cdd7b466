"""The embedded main job: phases 1 (simulation) to 4 (scaled deployment) on one machine.

A local Kafka-compatible broker, the five services as processes (SQLite and checkpoints under one
directory per run), one training run through the simulator's curriculum with a progress bar per
task; when the metrics service graduates phase 1, the orchestrator scores the policy on the
sandbox market's logs (phase 2), then runs phase 3's campaigns on the ad platform sandbox (its own
process; a demo operator approves the entry: gaelp.embedded.money_report) and, once phase 3
graduates, phase 4: the transfer test in the simulator, then several campaigns at once, their
budget step-ups approved by the demo operator. The report: episodes,
env steps, updates, the per-task table, per phase the criteria with values and the decision, the
transitions with times, the money phases' campaigns, approvals, transfer figures and reconciliation;
also report.json in the run directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import json_format
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from gaelp.bus.local_broker import LocalBroker, free_port
from gaelp.config import GaelpSettings, load_settings
from gaelp.config.settings import CONFIG_ENV_VAR
from gaelp.embedded.money_report import DemoApprover, MoneyStack, money_document, money_report
from gaelp.embedded.picture import write_picture
from gaelp.embedded.processes import ServiceProcess
from gaelp.embedded.pubsub_emulator import OperatorEventTap, PubSubEmulator
from gaelp.embedded.stop_drill import StopDrill
from gaelp.v1 import (
    common_pb2,
    events_pb2,
    learner_pb2,
    learner_pb2_grpc,
    metrics_pb2,
    metrics_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "development.yaml"
SERVICES = ("environment_registry", "safety_policy", "learner", "metrics", "orchestrator")
# Piped output (CI logs, files) gets a width that fits the report's table.
console = Console(width=None if sys.stdout.isatty() else 160)


@dataclass
class Services:
    processes: dict[str, ServiceProcess]
    dashboard_port: int

    def target(self, name: str) -> str:
        return self.processes[name].target

    def stop(self) -> dict[str, int | None]:
        # The orchestrator first (no new data), the learner last but one (it checkpoints on drain).
        return {name: self.processes[name].stop() for name in reversed(list(self.processes))}


@contextlib.contextmanager
def broker_for(settings: GaelpSettings, log_dir: Path) -> Iterator[str]:
    if settings.kafka.bootstrap:
        yield settings.kafka.bootstrap
        return
    with LocalBroker(log_path=log_dir / "broker.log") as broker:
        yield broker.bootstrap


def start_services(config: Path, bootstrap: str, run_dir: Path,
                   overrides: Mapping[str, str] | None = None, money: MoneyStack | None = None) -> Services:
    """overrides: settings as GAELP_* environment variables, for every service."""
    env = {
        CONFIG_ENV_VAR: str(config),
        "GAELP_KAFKA_BOOTSTRAP": bootstrap,
        "GAELP_STORAGE_DATA_DIR": str(run_dir),
        "GAELP_STORAGE_CHECKPOINT_DIR": str(run_dir / "checkpoints"),
        "GAELP_DATABASE_URL": f"sqlite:///{run_dir / 'gaelp.db'}",
        "GAELP_TELEMETRY_FILE_DIR": str(run_dir / "traces"),
    }
    env |= overrides or {}
    dashboard_port = free_port()
    log_dir = run_dir / "logs"
    processes: dict[str, ServiceProcess] = {}
    try:
        for name in SERVICES:
            extra: dict[str, str] = {}
            if name == "metrics":
                extra["GAELP_METRICS_HTTP_PORT"] = str(dashboard_port)
            if name == "orchestrator":
                extra["GAELP_ORCHESTRATOR_LEARNER_TARGET"] = processes["learner"].target
                extra["GAELP_ORCHESTRATOR_REGISTRY_TARGET"] = processes["environment_registry"].target
                extra["GAELP_ORCHESTRATOR_ENVIRONMENT_VERSION"] = "^1"
                extra |= money.orchestrator_env(processes["safety_policy"].target) if money else {}
            if name == "safety_policy":
                # Each service keeps its own SQLite file: one writer per database file.
                extra["GAELP_DATABASE_URL"] = f"sqlite:///{run_dir / 'ledger.db'}"
                extra |= money.safety_env() if money else {}
            if name == "environment_registry":
                extra["GAELP_DATABASE_URL"] = f"sqlite:///{run_dir / 'registry.db'}"
            processes[name] = ServiceProcess(name, {**env, **extra}, log_dir).start(wait_s=120)
    except Exception:
        Services(processes, dashboard_port).stop()
        raise
    return Services(processes, dashboard_port)


def _caught_up(metrics: metrics_pb2_grpc.MetricsStub, status: orchestrator_pb2.RunStatus) -> bool:
    summary = metrics.GetRunSummary(metrics_pb2.GetRunSummaryRequest(run_id=status.run_id), timeout=10)
    return summary.episodes >= status.episodes


def _assessment(metrics: metrics_pb2_grpc.MetricsStub, run_id: str,
                phase: int) -> events_pb2.GraduationAssessment | None:
    try:
        return metrics.GetAssessment(metrics_pb2.GetAssessmentRequest(run_id=run_id, phase=phase),  # type: ignore[arg-type]
                                     timeout=10)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def follow_run(control: orchestrator_pb2_grpc.OrchestratorStub, metrics: metrics_pb2_grpc.MetricsStub,
               run_id: str, consolidation_budget: int) -> orchestrator_pb2.RunStatus:
    """Progress bars per phase and curriculum task until the run completes or fails, or its phase's
    work is done and the metrics service, caught up with every episode, does not graduate it."""
    request = orchestrator_pb2.RunIdRequest(run_id=run_id)
    bars: dict[str, TaskID] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        while True:
            status = control.GetRunStatus(request, timeout=10)
            budget, steps = max(status.task_step_budget, 1), status.task_env_steps
            label = (f"phase 1 / {status.task}" if status.phase == common_pb2.PHASE_SIMULATION
                     else f"phase {status.phase} / {common_pb2.Phase.Name(status.phase).lower()}")
            if status.phase == common_pb2.PHASE_SIMULATION and status.consolidation_env_steps:
                label, steps = f"phase 1 / {status.task} (consolidating)", status.consolidation_env_steps
                budget = max(consolidation_budget, 1)
            if label not in bars:
                for name, bar in bars.items():
                    if name != label:
                        progress.update(bar, completed=progress.tasks[bar].total)
                bars[label] = progress.add_task(label, total=budget, info="")
            score = f"eval {status.window_mean:.2f}" if status.window_mean else "eval pending"
            progress.update(
                bars[label],
                completed=min(steps, budget),
                info=f"{steps:>7} steps  {score}  policy v{status.policy_version}",
            )
            if status.state in {"completed", "failed"}:
                return status
            if status.phase_work_done and _caught_up(metrics, status):
                # Re-read: a graduation may have landed between the two calls.
                latest = control.GetRunStatus(request, timeout=10)
                assessment = _assessment(metrics, run_id, latest.phase)
                if latest.phase == status.phase and latest.state == "running" and assessment is not None \
                        and not assessment.ready_to_graduate:
                    return latest
            time.sleep(0.5)


def graduated_last_phase(status: orchestrator_pb2.RunStatus) -> bool:
    """The run's last transition completed it: it graduated from the last phase enabled."""
    last = status.phase_history[-1].transition if status.phase_history else None
    return last is not None and last.to_phase == common_pb2.PHASE_UNSPECIFIED


def report(status: orchestrator_pb2.RunStatus, learner: learner_pb2_grpc.LearnerStub,
           metrics: metrics_pb2_grpc.MetricsStub, seconds: float) -> dict[str, object]:
    """Prints the run's report; returns report.json's keys so far (the money keys come after)."""
    stats = learner.GetLearnerStats(learner_pb2.GetLearnerStatsRequest(run_id=status.run_id), timeout=10)
    # Metrics consume asynchronously: wait until they have seen every episode of the run.
    summary = metrics_pb2.RunSummary()
    wait_started = time.monotonic()
    deadline = wait_started + 300
    with console.status("waiting for the metrics service to catch up") as waiting:
        while time.monotonic() < deadline:
            summary = metrics.GetRunSummary(metrics_pb2.GetRunSummaryRequest(run_id=status.run_id),
                                            timeout=10)
            if summary.episodes >= status.episodes:
                break
            waiting.update(f"waiting for the metrics service: {summary.episodes}/{status.episodes} episodes")
            time.sleep(0.5)
    metrics_wait_s = time.monotonic() - wait_started
    console.print()
    console.print(f"[bold]GAELP phase 1 (simulation) — run {status.run_id}[/bold]  ({status.state}"
                  f"{': ' + status.detail if status.detail else ''})")
    console.print(
        f"  {status.episodes} episodes, {status.env_steps} env steps in {seconds:.0f} s "
        f"({status.env_steps / max(seconds, 1e-9):.0f} steps/s end to end), "
        f"{status.batches_published} transition batches, {stats.policy_version} learner updates "
        f"(policy v{stats.policy_version}, {stats.trained_samples} samples trained, "
        f"{stats.dropped_stale_batches} stale batches dropped), {status.failed_episodes} failed episodes"
    )
    console.print(f"  metrics saw {summary.episodes} episodes; learner: {stats.algorithm}, last update "
                  f"{stats.samples_per_second:.0f} samples/s, policy lag max {stats.policy_lag_max}")
    table = Table(title="Per curriculum task (simulator, same seeds for every policy): normalized reward "
                        "(0 = random play, 1 = the upper-bound planner; the graduation figure) | mean "
                        "episode reward (the objective the agent is trained on)")
    for column in ("task", "agent normalized entry→exit", "random", "heuristic", "agent reward entry→exit",
                   "random", "heuristic", "planner", "steps", "decision"):
        table.add_column(column)
    beats = []
    for level in status.levels:
        beats.append(level.agent_end > level.heuristic)
        table.add_row(level.task, f"{level.agent_start:.2f}→{level.agent_end:.2f}", f"{level.random:.2f}",
                      f"{level.heuristic:.2f}",
                      f"{level.agent_reward_start:.0f}→{level.agent_reward_end:.0f}",
                      f"{level.random_reward:.0f}", f"{level.heuristic_reward:.0f}",
                      f"{level.oracle_reward:.0f}", str(level.env_steps), level.decision)
    console.print(table)
    improved = sum(level.agent_reward_end > level.agent_reward_start for level in status.levels)
    console.print(f"  reward improved during {improved}/{len(status.levels)} task visits; at exit the agent "
                  f"beat the heuristic on the graduation figure in {sum(beats)}/{len(beats)}")
    if status.consolidation_env_steps:
        console.print(f"  after the curriculum: {status.consolidation_env_steps} env steps of consolidation "
                      "on the last task while phase 1's graduation was decided")
    alerts = [{"phase": alert.phase, "metric": alert.metric, "episode_index": alert.episode_index,
               "message": alert.message} for alert in summary.alert_details]
    console.print(f"  anomaly alerts raised by the metrics service: {len(alerts)}")
    for alert in alerts:
        console.print(f"    phase {alert['phase']} episode {alert['episode_index']}: {alert['message']}")
    return phase_report(status, metrics, seconds, metrics_wait_s) | {"alerts": alerts}


def phase_report(status: orchestrator_pb2.RunStatus, metrics: metrics_pb2_grpc.MetricsStub, seconds: float,
                 metrics_wait_s: float) -> dict[str, object]:
    """Per phase entered: the metrics' criteria and decision; the transitions with their times."""
    phases = [common_pb2.PHASE_SIMULATION] + [entry.transition.to_phase for entry in status.phase_history
                                              if entry.transition.to_phase != common_pb2.PHASE_UNSPECIFIED]
    transitions = [{
        "from": entry.transition.from_phase, "to": entry.transition.to_phase,
        "reason": entry.transition.reason, "time": entry.at.ToJsonString(),
        "policy_version": entry.transition.policy_version,
    } for entry in status.phase_history]
    criteria: dict[str, list[dict[str, object]]] = {}
    decisions: dict[str, str] = {}
    for phase in dict.fromkeys(phases):
        assessment = _assessment(metrics, status.run_id, phase)
        name = common_pb2.Phase.Name(phase)  # type: ignore[arg-type]
        left = [t for t in transitions if t["from"] == phase]
        if assessment is None:
            decisions[name] = "no assessment from the metrics service"
        elif left:
            decisions[name] = f"left the phase: {left[-1]['reason']}"
        else:
            decisions[name] = ("READY to graduate" if assessment.ready_to_graduate else "not graduated") + \
                f" ({assessment.reason})"
        # A phase the run left is shown with the figures that decided it, not later assessments.
        decided = [entry.transition for entry in status.phase_history if entry.transition.from_phase == phase]
        shown = decided[-1].criteria if decided and decided[-1].criteria else (
            assessment.criteria if assessment is not None else [])
        criteria[name] = [{"name": c.name, "value": c.value, "threshold": c.threshold,
                           "comparison": c.comparison, "passed": c.passed} for c in shown]
        console.print(f"  [bold]{name}[/bold]: {decisions[name]}")
        for c in criteria[name]:
            console.print(f"    {c['name']:<24} {c['value']:10.3f} {c['comparison']} {c['threshold']:<8g} "
                          f"{'pass' if c['passed'] else 'fail'}")
    historical = dict(status.historical)
    if historical:
        console.print("  phase 2 on the sandbox market's logs (clicks per campaign-hour; estimate "
                      "[95% interval])")
        for policy in ("agent", "heuristic", "random"):
            if f"simulator_{policy}" not in historical:
                continue
            estimates = "  ".join(
                f"{name} {historical[f'{name}_{policy}']:.2f} [{historical[f'{name}_{policy}_ci_low']:.2f}, "
                f"{historical[f'{name}_{policy}_ci_high']:.2f}]"
                for name in ("ipw", "snipw", "dm", "dr") if f"{name}_{policy}" in historical)
            console.print(f"    {policy:<10} simulator {historical[f'simulator_{policy}']:.2f}  {estimates}")
    for t in transitions:
        console.print(f"  transition {t['time']}: phase {t['from']} → {t['to'] or 'run completed'} "
                      f"({t['reason']}, policy v{t['policy_version']})")
    if graduated_last_phase(status):
        console.print(f"  stopped after phase {status.phase_history[-1].transition.from_phase}, the last"
                      " phase enabled (orchestrator.phases.last_phase)")
    else:
        console.print(f"  stopped in phase {status.phase}: it did not graduate (see its criteria above)")
    return {
        "run_id": status.run_id, "state": status.state, "detail": status.detail,
        "phases": phases, "transitions": transitions, "criteria": criteria, "decisions": decisions,
        "levels": [json_format.MessageToDict(level, preserving_proto_field_name=True,
                                             always_print_fields_with_no_presence=True)
                   for level in status.levels],
        "historical": historical, "wall_s": seconds, "metrics_wait_s": metrics_wait_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gaelp.embedded", description=__doc__)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML preset")
    parser.add_argument("--algorithm", choices=("ppo", "sac"), default=None,
                        help="override the preset's training.algorithm")
    parser.add_argument("--max-env-steps", type=int, default=0, help="stop the run after this many steps")
    parser.add_argument("--seed", type=int, default=None, help="override the preset's training.seed")
    parser.add_argument("--pubsub", action="store_true",
                        help="start the Pub/Sub emulator and publish operator events to it")
    parser.add_argument("--stop-drill", action="store_true",
                        help="once a sandbox campaign is live, the demo operator runs the emergency stop,"
                        " times it and approves the resume")
    args = parser.parse_args(argv)
    config = args.config.resolve()
    settings = load_settings(config)
    run_id = f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    run_dir = (Path(settings.storage.data_dir) / "runs" / run_id).resolve()
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    seed = settings.training.seed if args.seed is None else args.seed
    console.print(f"GAELP embedded run {run_id}: preset {settings.preset}, seed {seed}, environment: "
                  f"ad-market simulator (simulated market), files in {run_dir}")
    overrides = {"GAELP_TRAINING_SEED": str(seed)}
    if args.algorithm:
        overrides["GAELP_TRAINING_ALGORITHM"] = args.algorithm
    with contextlib.ExitStack() as stack:
        bootstrap = stack.enter_context(broker_for(settings, run_dir / "logs"))
        console.print(f"broker: {bootstrap}" + ("" if settings.kafka.bootstrap else " (local Tansu, memory)"))
        tap = None
        if args.pubsub:
            emulator = stack.enter_context(PubSubEmulator(run_dir / "logs" / "pubsub-emulator.log"))
            os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host  # this process's own subscriber
            overrides |= {"GAELP_PUBSUB_ENABLED": "true", "GAELP_PUBSUB_EMULATOR_HOST": emulator.host}
            tap = OperatorEventTap(settings.pubsub.project_id, settings.pubsub.topics.model_dump())
            stack.callback(tap.close)
            console.print(f"Pub/Sub: emulator at {emulator.host}, project {settings.pubsub.project_id}")
        money = MoneyStack.start(settings, run_dir / "logs", seed)
        stack.callback(money.stop)
        console.print(f"ad platform sandbox: {money.sandbox.url} (its own process)")
        services = start_services(config, bootstrap, run_dir, overrides, money)
        codes: dict[str, int | None] = {}
        try:
            for name, process in services.processes.items():
                console.print(f"  {name:<22} gRPC {process.target}")
            console.print(f"  dashboard              http://127.0.0.1:{services.dashboard_port}/")
            console.print(f"  traces                 {run_dir / 'traces'}  tensorboard --logdir {run_dir}")
            with grpc.insecure_channel(services.target("orchestrator")) as channel_o, \
                    grpc.insecure_channel(services.target("learner")) as channel_l, \
                    grpc.insecure_channel(services.target("metrics")) as channel_m:
                control = orchestrator_pb2_grpc.OrchestratorStub(channel_o)
                started = time.monotonic()
                control.StartRun(orchestrator_pb2.StartRunRequest(
                    run_id=run_id, config_json=json.dumps({"max_env_steps": args.max_env_steps}),
                ), timeout=30)
                metrics = metrics_pb2_grpc.MetricsStub(channel_m)
                safety = services.target("safety_policy")
                drill = StopDrill(safety, services.target("orchestrator"), money.token, run_id, money.sandbox,
                                  console.print)
                with DemoApprover(safety, money.token, run_id, console.print) as demo, \
                        drill if args.stop_drill else contextlib.nullcontext():
                    status = follow_run(control, metrics, run_id,
                                        settings.orchestrator.curriculum.consolidation_env_steps)
                keys = report(status, learner_pb2_grpc.LearnerStub(channel_l), metrics,
                              time.monotonic() - started)
                # Success is a run that graduated from the last phase enabled, not one that merely ended.
                ok = status.state == "completed" and graduated_last_phase(status)
                document = money_document(services.target("orchestrator"), run_id)
                keys |= money_report(document, demo.approved, console.print,
                                     drill.outcome.latency_s if drill.outcome else None)
                picture = write_picture(run_dir, f"http://127.0.0.1:{services.dashboard_port}", run_id,
                                        document)
                report_path = run_dir / "report.json"
                report_path.write_text(json.dumps(keys | {"picture": str(picture)}, indent=2))
                console.print(f"  report: {report_path}")
                console.print(f"  picture: {picture} (learning curves by phase, sandbox spend over time)")
        finally:
            codes = services.stop()
        if tap is not None:
            received = tap.drain()
            console.print("  Pub/Sub operator events received by a demo subscription (de-duplicated): " +
                          "; ".join(f"{kind} {sum(by_type.values())}" +
                                    (f" ({', '.join(f'{t} {n}' for t, n in sorted(by_type.items()))})"
                                     if by_type else "")
                                    for kind, by_type in received.items()))
    clean = all(code == 0 for code in codes.values())
    console.print(f"  services stopped: {codes}" + ("" if clean else " (a service did not exit cleanly)"))
    return 0 if ok and clean else 1
