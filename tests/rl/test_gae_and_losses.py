import numpy as np
import pytest
import torch
from gymnasium import spaces

from gaelp.rl import make_agent
from gaelp.rl.algorithms.base import scheduled
from gaelp.rl.algorithms.dqn import q_learning_target, weighted_huber_loss
from gaelp.rl.algorithms.ppo import clipped_surrogate_loss, clipped_value_loss
from gaelp.rl.algorithms.sac import sac_actor_loss, soft_q_target, temperature_loss, twin_critic_loss
from gaelp.rl.buffers import compute_gae


def test_gae_matches_hand_computed_example() -> None:
    rewards = np.array([[1.0], [1.0], [1.0]])
    values = np.array([[0.5], [0.5], [0.5]])
    dones = np.array([[0.0], [0.0], [1.0]])
    advantages, returns = compute_gae(rewards, values, dones, np.array([0.7]), gamma=0.9, gae_lambda=0.8)
    # t=2 ends the episode: delta = 1 - 0.5; t=1: 1 + 0.9*0.5 - 0.5 = 0.95, plus 0.72 * 0.5; t=0 likewise
    expected = np.array([[0.95 + 0.72 * 1.31], [1.31], [0.5]])
    np.testing.assert_allclose(advantages, expected, rtol=1e-6)
    np.testing.assert_allclose(returns, expected + 0.5, rtol=1e-6)


def test_gae_bootstraps_from_next_values_and_truncation_values() -> None:
    rewards = np.zeros((2, 2))
    values = np.zeros((2, 2))
    dones = np.array([[0.0, 1.0], [0.0, 0.0]])
    truncations = np.array([[0.0, 1.0], [0.0, 0.0]])
    truncation_values = np.array([[0.0, 2.0], [0.0, 0.0]])
    advantages, _ = compute_gae(
        rewards, values, dones, np.array([1.0, 1.0]), 0.5, 1.0, truncations, truncation_values
    )
    np.testing.assert_allclose(advantages[:, 0], [0.25, 0.5])  # discounted next value, no episode end
    np.testing.assert_allclose(advantages[:, 1], [1.0, 0.5])  # gamma * truncation value, then restart


def test_ppo_clipped_surrogate_on_fixed_tensors() -> None:
    ratio = torch.tensor([0.5, 1.5, 1.0])
    advantages = torch.tensor([1.0, -1.0, 2.0])
    # per sample: max(-0.5, -0.8), max(1.5, 1.2), max(-2, -2)
    assert clipped_surrogate_loss(ratio, advantages, 0.2).item() == pytest.approx((-0.5 + 1.5 - 2.0) / 3)


def test_ppo_value_loss_with_and_without_clipping() -> None:
    value, old, returns = torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([2.0])
    assert clipped_value_loss(value, old, returns, None).item() == pytest.approx(0.5)
    assert clipped_value_loss(value, old, returns, 0.5).item() == pytest.approx(0.5 * 1.5**2)


def test_sac_losses_on_fixed_tensors() -> None:
    target = soft_q_target(
        torch.tensor([1.0]),
        torch.tensor([0.9]),
        torch.tensor([[2.0], [3.0]]),
        torch.tensor([[0.5]]),
        torch.tensor([0.2]),
    )
    assert target.item() == pytest.approx(1 + 0.9 * (2.0 - 0.1))
    assert twin_critic_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([2.0])).item() == pytest.approx(1.0)
    actor = sac_actor_loss(torch.tensor([[0.5, -1.0]]), torch.tensor([3.0]), torch.tensor([0.2, 0.1]))
    assert actor.item() == pytest.approx(0.1 - 0.1 - 3.0)


def test_sac_temperature_rises_when_entropy_is_below_target() -> None:
    log_alpha = torch.zeros(1, requires_grad=True)
    # log-prob 1.0 means entropy about -1, below a target entropy of 0
    temperature_loss(log_alpha, torch.tensor([[1.0]]), torch.tensor([0.0])).backward()
    assert log_alpha.grad is not None and log_alpha.grad.item() < 0  # gradient descent increases alpha


def test_dqn_double_target_lets_online_net_choose() -> None:
    rewards, discounts = torch.tensor([1.0]), torch.tensor([0.5])
    next_target = torch.tensor([[1.0, 5.0]])
    next_online = torch.tensor([[3.0, 2.0]])
    assert q_learning_target(rewards, discounts, next_target, next_online).item() == pytest.approx(1.5)
    assert q_learning_target(rewards, discounts, next_target, None).item() == pytest.approx(3.5)


def test_dqn_huber_loss_weights_samples() -> None:
    q, target = torch.tensor([0.0, 0.0]), torch.tensor([0.5, 3.0])
    loss = weighted_huber_loss(q, target, torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx(0.5 * 0.5**2 / 2)


def test_scheduled_learning_rate_decays_linearly_to_zero() -> None:
    assert scheduled(1e-3, "constant", 0.9) == 1e-3
    assert scheduled(1e-3, "linear", 0.25) == pytest.approx(7.5e-4)
    assert scheduled(1e-3, "linear", 1.5) == 0.0


def test_dqn_applies_its_learning_rate_schedule() -> None:
    agent = make_agent(
        "dqn",
        spaces.Box(-1, 1, (2,)),
        spaces.Discrete(2),
        {"lr_schedule": "linear", "learning_rate": 1e-3, "schedule_steps": 40, "batch_size": 4},
        "cpu",
    )
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(10, 1, 2)).astype(np.float32)
    zeros = np.zeros((10, 1), dtype=np.float32)
    agent.add_transitions(obs, rng.integers(0, 2, (10, 1)), zeros, zeros, zeros, obs)
    stats = agent.train_steps(1)
    assert stats["learning_rate"] == pytest.approx(7.5e-4)  # 10 of 40 schedule steps seen
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(7.5e-4)
