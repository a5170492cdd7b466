"""False alarms of the metrics anomaly rule on a healthy run: PPO trained through the curriculum.

    nice -n 10 .venv/bin/python -m benchmarks.anomaly_false_alarms --max-env-steps 540000 \
        --episodes-out var/healthy-episodes.bin --out benchmarks/results/anomaly_false_alarms.json
    .venv/bin/python -m benchmarks.anomaly_false_alarms --replay var/healthy-episodes*.bin --out FILE.json

A run as the default `make demo` makes it, in one process: the development preset's PPO and actor
shape (64 campaigns, 24-step chunks, one update per chunk), the orchestrator's curriculum scheduler
and evaluations (the same references and seeds), the consolidation training on the last task once
it is passed (up to the preset's budget), and every finished episode turned into the EpisodeSummary
the orchestrator publishes (orchestrator.messages.episode_summary). The episodes are then folded,
in order, into the metrics service's run state with the default settings
(metrics.state.apply_episode), and every anomaly alert raised is printed and counted: on a healthy
run each one is a false alarm. --episodes-out keeps the episodes (length-prefixed protobufs) so a
changed rule can be scored again on the same traffic with --replay.
"""

from __future__ import annotations

import argparse
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from gaelp.config import load_settings
from gaelp.rl import make_agent
from gaelp.rl.rollout import RolloutCollector
from gaelp.sim import CURRICULUM_LEVELS, make_ad_vector_env
from gaelp.v1 import events_pb2
from metrics.state import RunState, apply_episode
from orchestrator.curriculum import CurriculumScheduler
from orchestrator.evaluation import MarketEvaluation
from orchestrator.messages import episode_summary

PRESET = Path("configs/development.yaml")
RUN_ID = "healthy-run"


def train_episodes(max_env_steps: int, seed: int) -> Iterator[events_pb2.EpisodeSummary]:
    """The episodes of one PPO run through the curriculum, in the order they finished."""
    settings = load_settings(PRESET)
    orchestrator = settings.orchestrator
    curriculum = orchestrator.curriculum
    lanes = orchestrator.envs_per_actor
    scheduler = CurriculumScheduler(curriculum, [level.name for level in CURRICULUM_LEVELS])
    evaluation = MarketEvaluation()
    probe = make_ad_vector_env(lanes, curriculum.levels[0], seed)
    agent = make_agent(settings.training.algorithm, probe.single_observation_space, probe.single_action_space,
                       settings.training.algorithm_config(), device="cpu", seed=seed)
    probe.close()
    env_steps = updates = 0
    while env_steps < max_env_steps:
        task = scheduler.task
        refs = evaluation.reference_scores(task.level, curriculum.evaluation_envs)
        env_seed = seed + env_steps
        collector = RolloutCollector(make_ad_vector_env(lanes, task.level, env_seed), env_seed)
        decision = "stay"
        next_evaluation = curriculum.evaluation_every_steps
        while decision == "stay" and env_steps < max_env_steps:
            rollout = collector.collect(agent, orchestrator.chunk_steps)
            agent.add_rollout(rollout)
            agent.update()
            updates += 1
            env_steps += rollout.samples
            scheduler.record_steps(rollout.samples, len(rollout.episodes))
            for episode in rollout.episodes:
                yield episode_summary(
                    episode, RUN_ID, f"{RUN_ID}-actor-0", updates, task.name, refs,
                    curriculum_level=task.difficulty + 1,
                    curriculum_levels=len(scheduler.tasks),
                )
            if scheduler.state.steps_on_task >= next_evaluation:
                next_evaluation += curriculum.evaluation_every_steps
                score = evaluation.evaluate(agent, task.level, curriculum.evaluation_envs,
                                            refs["oracle_roas"])
                decision = scheduler.record_evaluation(score.fraction, refs["heuristic"])
                print(f"{env_steps:>8} steps  {task.name:<24} evaluation {score.fraction:6.3f}  {decision}",
                      flush=True)
        collector.env.close()
        if decision == "stopped_on_task_budget":
            return
        if decision == "complete":
            # As the run manager does: train on the last task while graduation is pending.
            yield from _consolidate(agent, task, refs, lanes, orchestrator.chunk_steps, seed + env_steps,
                                    min(curriculum.consolidation_env_steps, max_env_steps - env_steps),
                                    updates, len(scheduler.tasks))
            return


def _consolidate(agent: Any, task: Any, refs: dict[str, float], lanes: int, chunk_steps: int, seed: int,
                 budget: int, updates: int, levels: int) -> Iterator[events_pb2.EpisodeSummary]:
    collector = RolloutCollector(make_ad_vector_env(lanes, task.level, seed), seed)
    steps = 0
    while steps < budget:
        rollout = collector.collect(agent, chunk_steps)
        agent.add_rollout(rollout)
        agent.update()
        updates += 1
        steps += rollout.samples
        for episode in rollout.episodes:
            yield episode_summary(episode, RUN_ID, f"{RUN_ID}-actor-0", updates, task.name, refs,
                                  curriculum_level=task.difficulty + 1, curriculum_levels=levels)
    print(f"consolidation: {steps} steps on {task.name}", flush=True)
    collector.env.close()


def write_episodes(path: Path, episodes: list[events_pb2.EpisodeSummary]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for episode in episodes:
            data = episode.SerializeToString()
            out.write(struct.pack("<I", len(data)))
            out.write(data)


def read_episodes(path: Path) -> list[events_pb2.EpisodeSummary]:
    data = path.read_bytes()
    episodes, at = [], 0
    while at < len(data):
        (size,) = struct.unpack_from("<I", data, at)
        episodes.append(events_pb2.EpisodeSummary.FromString(data[at + 4:at + 4 + size]))
        at += 4 + size
    return episodes


def score(episodes: list[events_pb2.EpisodeSummary]) -> dict[str, Any]:
    """Fold the episodes into a run with the default metrics settings; the alerts they raise."""
    metrics = load_settings(PRESET).metrics
    run = RunState(run_id=RUN_ID)
    alerts = []
    for offset, episode in enumerate(episodes):
        alerts += apply_episode(run, episode, 0, offset, metrics)
    tasks: dict[str, int] = {}
    for episode in episodes:
        tasks[episode.task] = tasks.get(episode.task, 0) + 1
    return {
        "episodes": len(episodes), "episodes_per_task": tasks, "alerts": len(alerts),
        "alert_messages": [alert.message for alert in alerts],
        "anomaly_settings": metrics.anomaly.model_dump(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-env-steps", type=int, default=540_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes-out", type=Path, default=None, help="keep the episodes here")
    parser.add_argument("--replay", type=Path, nargs="+", default=None,
                        help="score the episodes kept by --episodes-out (one file per run)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.monotonic()
    runs: list[tuple[str, list[events_pb2.EpisodeSummary]]] = []
    if args.replay is not None:
        runs = [(str(path), read_episodes(path)) for path in args.replay]
    else:
        episodes = list(train_episodes(args.max_env_steps, args.seed))
        if args.episodes_out is not None:
            write_episodes(args.episodes_out, episodes)
        runs = [(f"PPO, {args.max_env_steps} env steps, seed {args.seed}", episodes)]
    results = []
    for source, episodes in runs:
        result = {"source": source, **score(episodes)}
        for message in result["alert_messages"]:
            print("alert:", message)
        print(f"{source}: {result['episodes']} episodes {result['episodes_per_task']}: "
              f"{result['alerts']} alerts")
        results.append(result)
    if args.out is not None:
        summary = {"runs": results, "alerts": sum(r["alerts"] for r in results),
                   "episodes": sum(r["episodes"] for r in results),
                   "wall_s": round(time.monotonic() - started, 1)}
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
