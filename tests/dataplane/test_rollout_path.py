"""The service path trains like `Agent.learn`: truncated episodes are bootstrapped on the learner
(checked against a hand-computed case), and DQN actors' epsilon follows the schedule."""

from __future__ import annotations

import asyncio
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from gaelp.config.sections.learner import LearnerSettings
from gaelp.config.sections.training import TrainingSettings
from gaelp.rl import PPOAgent, make_agent
from gaelp.rl.buffers import RolloutBatch, compute_gae
from gaelp.rl.rollout import RolloutCollector
from gaelp.rl.spaces import ActionLayout
from gaelp.v1 import events_pb2
from learner.batches import decode_batch
from learner.trainer import RunTrainer
from orchestrator.messages import transition_batch
from orchestrator.policy import PolicyHolder

GAMMA = 0.5
CRITIC_VALUE = 4.0


class TimeLimitedEnv(gym.Env[np.ndarray, np.int64]):
    """Reward 1 every step; never terminates, truncated by its time limit after 3 steps."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        return np.full(1, self.t / 10, np.float32), 1.0, False, self.t == 3, {}


def _constant_critic(agent: PPOAgent) -> None:
    """V(s) = CRITIC_VALUE for every s, so the expected returns can be worked out by hand."""
    last = [m for m in agent.policy.critic.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(CRITIC_VALUE)


def test_the_learner_bootstraps_truncated_steps_from_the_final_observation() -> None:
    env = gym.vector.SyncVectorEnv([TimeLimitedEnv] * 2, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    config = {"n_steps": 3, "gamma": GAMMA, "gae_lambda": 1.0, "batch_size": 6, "n_epochs": 1}
    actor_agent = make_agent("ppo", env.single_observation_space, env.single_action_space, config, "cpu")
    learner_agent = make_agent("ppo", env.single_observation_space, env.single_action_space, config, "cpu")
    assert isinstance(actor_agent, PPOAgent) and isinstance(learner_agent, PPOAgent)
    _constant_critic(actor_agent)
    _constant_critic(learner_agent)

    chunk = RolloutCollector(env, seed=0).collect(actor_agent, 3)
    np.testing.assert_array_equal(chunk.truncations[:, 0], [0, 0, 1])
    message = transition_batch(chunk, "run", "run-actor-0", "run:0:0", 0, "task")
    raw = message.SerializeToString()
    batch = decode_batch(events_pb2.TransitionBatch.FromString(raw), 1,
                         ActionLayout.from_space(env.single_action_space), raw)

    trained: list[RolloutBatch] = []
    train_on_rollout = learner_agent.train_on_rollout

    def recording(rollout: RolloutBatch) -> dict[str, float]:  # a spy: the real update still runs
        trained.append(rollout)
        return train_on_rollout(rollout)

    learner_agent.train_on_rollout = recording  # type: ignore[method-assign]
    trainer = RunTrainer("run", learner_agent, LearnerSettings(rollout_samples=1))
    assert trainer.add(batch) is None and trainer.ready()
    trainer.update()

    (rollout,) = trained
    np.testing.assert_allclose(np.asarray(rollout.truncation_values)[:, 0], [0.0, 0.0, CRITIC_VALUE])
    _, returns = compute_gae(np.asarray(rollout.rewards), np.asarray(rollout.values),
                             np.asarray(rollout.dones), np.asarray(rollout.next_values), GAMMA, 1.0,
                             np.asarray(rollout.truncations), np.asarray(rollout.truncation_values))
    # G2 = 1 + 0.5 * V(final obs) = 3; G1 = 1 + 0.5 * G2 = 2.5; G0 = 1 + 0.5 * G1 = 2.25
    # (without the bootstrap G2 would be 1: the time limit would look like the end of the task)
    np.testing.assert_allclose(returns[:, 0], [2.25, 2.5, 3.0], rtol=1e-6)


def test_dqn_actors_follow_the_epsilon_schedule_between_policy_versions() -> None:
    env = gym.vector.SyncVectorEnv([TimeLimitedEnv] * 4, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    schedule = {"exploration_initial_eps": 1.0, "exploration_final_eps": 0.0, "exploration_fraction": 0.5,
                "schedule_steps": 1_000, "learning_starts": 10_000, "buffer_size": 1_000}
    training = TrainingSettings.model_validate(
        {"algorithm": "dqn", "space_entry_point": f"{__name__}:TimeLimitedEnv",
         "hyperparameters": {"dqn": schedule}}
    )
    learner_agent = make_agent("dqn", env.single_observation_space, env.single_action_space, schedule, "cpu")
    learner_agent.add_rollout(RolloutCollector(env, seed=1).collect(learner_agent, 50))  # 200 env steps
    assert learner_agent.env_steps == 200

    holder = PolicyHolder(training, env.single_observation_space, env.single_action_space)
    asyncio.run(holder.offer(events_pb2.PolicyUpdate(run_id="run", version=1,
                                                      weights=learner_agent.policy_state())))
    assert holder.apply_offer()
    collector = RolloutCollector(env, seed=2)
    seen = []
    for _ in range(5):
        collector.collect(holder.agent, 1)
        seen.append(holder.agent.policy.epsilon)  # type: ignore[attr-defined]
    # epsilon = 1 - steps / 500, at the learner's 200 steps plus the 4 lanes' steps acted since
    assert seen == pytest.approx([1 - (200 + 4 * k) / 500 for k in range(5)])


def test_the_learner_trains_each_phase_with_its_own_settings() -> None:
    """Phase 3's settings (training.phases): an update waits for 8 finished episodes, runs 2 epochs
    at a tenth of the learning rate; phase 1 trains as the algorithm's settings say."""
    env = gym.vector.SyncVectorEnv([TimeLimitedEnv] * 2, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    config = {"n_steps": 3, "batch_size": 6, "n_epochs": 5, "learning_rate": 0.01, "target_kl": None}
    learner_agent = make_agent("ppo", env.single_observation_space, env.single_action_space, config, "cpu")
    layout = ActionLayout.from_space(env.single_action_space)
    collector = RolloutCollector(env, seed=0)
    trainer = RunTrainer("run", learner_agent, LearnerSettings(rollout_samples=1),
                         phases=TrainingSettings().phases)

    def batch(index: int, phase: int) -> Any:
        message = transition_batch(collector.collect(learner_agent, 3), "run", "run-actor-0",
                                   f"run:0:{index}", trainer.version, "task", phase)
        raw = message.SerializeToString()
        return decode_batch(events_pb2.TransitionBatch.FromString(raw), 1, layout, raw)

    assert trainer.add(batch(0, 1)) is None and trainer.ready()
    stats = trainer.update().losses
    assert stats["epochs_run"] == 5 and stats["learning_rate"] == pytest.approx(0.01)
    for index in range(1, 4):  # 2 lanes truncated every 3 steps: 2 episodes per batch
        assert trainer.add(batch(index, 3)) is None
        assert not trainer.ready(), f"{2 * index} episodes < 8"
    assert trainer.add(batch(4, 3)) is None and trainer.ready()
    stats = trainer.update().losses
    assert stats["epochs_run"] == 2 and stats["learning_rate"] == pytest.approx(0.001)
