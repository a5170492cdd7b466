"""Building the bus messages an actor's chunk turns into."""

from __future__ import annotations

import uuid

from google.protobuf.timestamp_pb2 import Timestamp

from gaelp.bus.tensors import to_tensor
from gaelp.sim.market.policies import normalized_reward
from gaelp.v1 import common_pb2, events_pb2
from orchestrator.actor import Chunk, FinishedEpisode


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def transition_batch(
    chunk: Chunk, run_id: str, actor_id: str, batch_id: str, policy_version: int, task: str,
    phase: int = common_pb2.PHASE_SIMULATION,
) -> events_pb2.TransitionBatch:
    """Columnar T x N tensors. next_observations is [T, N, D] so off-policy learners can use it;
    next_values bootstraps the last step for on-policy GAE."""
    return events_pb2.TransitionBatch(
        run_id=run_id,
        actor_id=actor_id,
        batch_id=batch_id,
        policy_version=policy_version,
        task=task,
        observations=to_tensor(chunk.obs),
        actions=to_tensor(chunk.actions),
        rewards=to_tensor(chunk.rewards),
        dones=to_tensor(chunk.dones),
        truncations=to_tensor(chunk.truncations),
        log_probs=to_tensor(chunk.log_probs),
        values=to_tensor(chunk.values),
        next_observations=to_tensor(chunk.next_obs),
        next_values=to_tensor(chunk.bootstrap_values),
        created_at=_now(),
        phase=phase,  # type: ignore[arg-type]
    )


def episode_summary(
    episode: FinishedEpisode,
    run_id: str,
    actor_id: str,
    policy_version: int,
    task: str,
    references: dict[str, float],
    curriculum_level: int = 0,
    curriculum_levels: int = 0,
    phase: int = common_pb2.PHASE_SIMULATION,
) -> events_pb2.EpisodeSummary:
    """references: the task's mean episode rewards of random play ("random_reward") and of the upper
    reference ("oracle_reward"), and the random and heuristic policies on the normalized scale;
    normalized_reward is this episode's reward on that same scale (gaelp.sim.market.policies)."""
    metrics = episode.metrics
    roas = metrics.get("roas", 0.0)
    return events_pb2.EpisodeSummary(
        run_id=run_id,
        episode_id=uuid.uuid4().hex,
        phase=phase,  # type: ignore[arg-type]
        task=task,
        policy_version=policy_version,
        steps=episode.steps,
        total_reward=episode.total_reward,
        normalized_reward=normalized_reward(episode.total_reward, references["random_reward"],
                                            references["oracle_reward"]),
        spend=metrics.get("spend", 0.0),
        revenue=metrics.get("revenue", 0.0),
        roas=roas,
        ctr=metrics.get("ctr", 0.0),
        impressions=int(metrics.get("impressions", 0)),
        clicks=int(metrics.get("clicks", 0)),
        conversions=int(metrics.get("conversions", 0)),
        reward_components=episode.reward_components,
        success=bool(metrics.get("success", 0.0)),
        actor_id=actor_id,
        finished_at=_now(),
        budget=metrics.get("budget", 0.0),
        curriculum_level=curriculum_level,
        curriculum_levels=curriculum_levels,
        reference_rewards={
            "random": references["random"], "heuristic": references["heuristic"], "oracle": 1.0
        },
    )

