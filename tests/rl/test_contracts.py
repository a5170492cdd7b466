"""The learner-facing contracts: columnar batches in, stats out, KL early stop."""

import numpy as np
import torch
from gymnasium import spaces

from gaelp.rl import RolloutBatch, make_agent

OBS = spaces.Box(-1.0, 1.0, (3,), np.float32)
AD = spaces.Dict({"creative": spaces.Discrete(3), "bid": spaces.Box(0.5, 20.0, (1,), np.float32)})


def _hybrid_batch(agent, steps: int = 16, lanes: int = 4) -> RolloutBatch:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(steps, lanes, 3)).astype(np.float32)
    actions, log_probs, values = agent.policy.act(obs.reshape(-1, 3))
    return RolloutBatch(
        obs=torch.as_tensor(obs),
        actions=torch.as_tensor(actions.reshape(steps, lanes, -1)),
        rewards=torch.as_tensor(rng.normal(size=(steps, lanes))),
        dones=torch.zeros(steps, lanes),
        truncations=torch.zeros(steps, lanes),
        log_probs=torch.as_tensor(log_probs.reshape(steps, lanes)),
        values=torch.as_tensor(values.reshape(steps, lanes)),
        next_obs=torch.zeros(lanes, 3),
        next_values=torch.zeros(lanes),
    )


def test_ppo_train_on_rollout_reports_the_contract_stats() -> None:
    agent = make_agent("ppo", OBS, AD, {"n_epochs": 3, "batch_size": 16}, device="cpu", seed=0)
    stats = agent.train_on_rollout(_hybrid_batch(agent))
    for key in ("policy_loss", "value_loss", "entropy", "approx_kl", "grad_norm", "clip_frac"):
        assert np.isfinite(stats[key]), key
    assert stats["epochs_run"] == 3 and agent.env_steps == 64 and agent.updates == 1


def test_ppo_kl_early_stop_ends_the_epochs() -> None:
    config = {"n_epochs": 10, "batch_size": 16, "learning_rate": 0.05, "target_kl": 1e-6}
    agent = make_agent("ppo", OBS, AD, config, device="cpu", seed=0)
    stats = agent.train_on_rollout(_hybrid_batch(agent))
    assert stats["epochs_run"] == 1


def test_off_policy_agents_take_columnar_transitions() -> None:
    rng = np.random.default_rng(0)
    steps, lanes = 5, 3
    for algo, action_space, actions in (
        (
            "sac",
            AD,
            np.concatenate(
                [rng.integers(0, 3, (steps, lanes, 1)), rng.uniform(0.5, 20, (steps, lanes, 1))], 2
            ),
        ),
        ("dqn", spaces.Discrete(2), rng.integers(0, 2, (steps, lanes))),
    ):
        agent = make_agent(algo, OBS, action_space, {"batch_size": 4}, device="cpu", seed=0)
        agent.add_transitions(
            rng.normal(size=(steps, lanes, 3)),
            actions,
            rng.normal(size=(steps, lanes)),
            np.zeros((steps, lanes)),
            np.zeros((steps, lanes)),
            rng.normal(size=(steps, lanes, 3)),
        )
        stats = agent.train_steps(2)
        assert agent.env_steps == steps * lanes and agent.updates == 2
        assert all(np.isfinite(v) for v in stats.values()), (algo, stats)
