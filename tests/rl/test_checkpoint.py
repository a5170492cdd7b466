"""Checkpoint round trip and exact resume: N updates with a save/load in the middle must give the
same parameters as N uninterrupted updates (CPU, same seed, same incoming batches)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from gaelp.rl import RolloutBatch, make_agent
from gaelp.rl.algorithms.base import Agent

OBS = spaces.Box(-1.0, 1.0, (3,), np.float32)
SPACES = {
    "ppo": spaces.Discrete(2),
    "sac": spaces.Box(-1.0, 1.0, (2,), np.float32),
    "dqn": spaces.Discrete(3),
}
SMALL = {"network": {"hidden_sizes": (16, 16)}}
CONFIGS = {
    "ppo": {
        **SMALL,
        "n_epochs": 2,
        "batch_size": 8,
        "normalization": {"normalize_observations": True, "normalize_rewards": True},
    },
    "sac": {**SMALL, "batch_size": 8},
    "dqn": {**SMALL, "batch_size": 8, "n_step": 3, "target_update_interval": 2},
}


def _rollout(rng: np.random.Generator, steps: int = 8, lanes: int = 2) -> RolloutBatch:
    return RolloutBatch(
        obs=rng.normal(size=(steps, lanes, 3)).astype(np.float32),
        actions=rng.integers(0, 2, (steps, lanes)).astype(np.float32),
        rewards=rng.normal(size=(steps, lanes)),
        dones=rng.random((steps, lanes)) < 0.2,
        truncations=np.zeros((steps, lanes)),
        log_probs=np.full((steps, lanes), np.log(0.5)),
        values=rng.normal(size=(steps, lanes)),
        next_obs=rng.normal(size=(lanes, 3)).astype(np.float32),
    )


def _feed(agent: Agent, algo: str, rng: np.random.Generator) -> None:
    if algo == "ppo":
        agent.train_on_rollout(_rollout(rng))  # type: ignore[attr-defined]
        return
    steps, lanes = 6, 2
    actions = rng.uniform(-1, 1, (steps, lanes, 2)) if algo == "sac" else rng.integers(0, 3, (steps, lanes))
    agent.add_transitions(  # type: ignore[attr-defined]
        rng.normal(size=(steps, lanes, 3)),
        actions,
        rng.normal(size=(steps, lanes)),
        rng.random((steps, lanes)) < 0.2,
        np.zeros((steps, lanes)),
        rng.normal(size=(steps, lanes, 3)),
    )
    agent.train_steps(3)  # type: ignore[attr-defined]


def _make(algo: str) -> Agent:
    return make_agent(algo, OBS, SPACES[algo], CONFIGS[algo], device="cpu", seed=7)


@pytest.mark.parametrize("algo", ["ppo", "sac", "dqn"])
def test_resume_continues_exactly_like_an_uninterrupted_run(algo: str, tmp_path: Path) -> None:
    straight = _make(algo)
    rng = np.random.default_rng(0)
    for _ in range(4):
        _feed(straight, algo, rng)

    first = _make(algo)
    rng = np.random.default_rng(0)
    for _ in range(2):
        _feed(first, algo, rng)
    first.save_checkpoint(tmp_path / "ckpt.pt", extra={"offsets": {"gaelp.transitions.v1/0": 42}})
    torch.manual_seed(12345)  # disturb global RNG state; the checkpoint restores it
    resumed = _make(algo)
    extra = resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert extra == {"offsets": {"gaelp.transitions.v1/0": 42}}
    for _ in range(2):
        _feed(resumed, algo, rng)

    assert resumed.env_steps == straight.env_steps and resumed.updates == straight.updates
    for (name, expected), (_, actual) in zip(
        straight.policy.state_dict().items(), resumed.policy.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0, msg=name)
    obs = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(straight.policy.act(obs)[0], resumed.policy.act(obs)[0])


def test_checkpoint_is_written_atomically(tmp_path: Path) -> None:
    agent = _make("dqn")
    target = tmp_path / "sub" / "agent.pt"
    agent.save_checkpoint(target)
    agent.save_checkpoint(target, extra={"step": 2})
    assert target.exists() and not (tmp_path / "sub" / "agent.pt.tmp").exists()
    assert _make("dqn").load_checkpoint(target) == {"step": 2}
    with pytest.raises(ValueError, match="checkpoint is for"):
        _make("ppo").load_checkpoint(target)


def test_policy_weights_ship_as_bytes() -> None:
    trained = _make("ppo")
    _feed(trained, "ppo", np.random.default_rng(3))
    actor = _make("ppo")
    obs = np.random.default_rng(2).normal(size=(5, 3)).astype(np.float32)
    assert not np.allclose(actor.policy.act(obs, deterministic=True)[2], trained.policy.act(obs, True)[2])
    actor.load_policy_state(trained.policy_state())
    np.testing.assert_allclose(actor.policy.act(obs, True)[2], trained.policy.act(obs, True)[2])
    torch.testing.assert_close(actor.policy.normalizer.stats.mean, trained.policy.normalizer.stats.mean)
