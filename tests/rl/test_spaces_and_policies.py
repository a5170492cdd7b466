import numpy as np
import pytest
import torch
from gymnasium import spaces

from gaelp.rl import HybridActionCodec, make_agent, resolve_device
from gaelp.rl.networks import AttentionHistoryEncoder
from gaelp.rl.normalization import NormalizationConfig, ObservationNormalizer

AD_SPACE = spaces.Dict(
    {
        "creative": spaces.Discrete(3),
        "audience": spaces.Discrete(4),
        "bid_strategy": spaces.Discrete(3, start=1),
        "daily_budget": spaces.Box(10.0, 200.0, (1,), np.float32),
        "bid": spaces.Box(0.5, 20.0, (1,), np.float32),
    }
)
OBS_SPACE = spaces.Box(-1.0, 1.0, (6,), np.float32)


def test_codec_round_trip_and_clipping() -> None:
    codec = HybridActionCodec(AD_SPACE)
    batch = {
        "creative": np.array([2, 0]),
        "audience": np.array([3, 1]),
        "bid_strategy": np.array([1, 3]),
        "daily_budget": np.array([[50.0], [10.0]]),
        "bid": np.array([[1.5], [20.0]]),
    }
    flat = codec.flatten(batch)
    assert flat.shape == (2, 5) and flat.dtype == np.float32
    back = codec.unflatten(flat)
    for key, value in batch.items():
        np.testing.assert_allclose(back[key], value)
    # gymnasium key-sorts a plain dict: audience, bid_strategy, creative; then bid, daily_budget
    assert [key for key, _ in codec.discrete] == ["audience", "bid_strategy", "creative"]
    clipped = codec.unflatten(np.array([[7.0, -1.0, 0.4, 500.0, 0.0]], np.float32))
    assert (clipped["audience"][0], clipped["bid_strategy"][0], clipped["creative"][0]) == (3, 1, 0)
    assert clipped["bid"][0, 0] == 20.0 and clipped["daily_budget"][0, 0] == 10.0


def test_ppo_hybrid_sampling_and_log_probs_agree() -> None:
    agent = make_agent("ppo", OBS_SPACE, AD_SPACE, device="cpu", seed=0)
    obs = np.random.default_rng(0).uniform(-1, 1, (64, 6)).astype(np.float32)
    actions, log_probs, values = agent.policy.act(obs)
    assert actions.shape == (64, 5) and log_probs.shape == (64,) and values.shape == (64,)
    assert set(np.unique(actions[:, 0])) <= {0.0, 1.0, 2.0, 3.0}  # audience indices
    evaluated, entropy, _ = agent.policy.evaluate(torch.as_tensor(obs), torch.as_tensor(actions))
    np.testing.assert_allclose(evaluated.detach().numpy(), log_probs, rtol=1e-5, atol=1e-5)
    # the discrete part is a proper distribution: probabilities over all 36 combinations sum to 1
    continuous = torch.as_tensor(actions[:1, 3:]).repeat(36, 1)
    grid = torch.tensor(
        [[a, s, c] for a in range(4) for s in range(3) for c in range(3)], dtype=torch.float32
    )
    joint, _, _ = agent.policy.evaluate(
        torch.as_tensor(obs[:1]).repeat(36, 1), torch.cat([grid, continuous], 1)
    )
    discrete_only = joint - (joint[0] - _discrete_log_prob(agent, obs[:1], grid[0]))
    assert torch.logsumexp(discrete_only, 0).item() == pytest.approx(0.0, abs=1e-5)
    assert torch.all(entropy > 0)


def _discrete_log_prob(agent, obs: np.ndarray, choice: torch.Tensor) -> torch.Tensor:
    logits, _, _ = agent.policy._forward(torch.as_tensor(obs))
    total = torch.zeros(())
    for head, chunk in enumerate(torch.split(logits[0], [4, 3, 3])):
        total = total + torch.log_softmax(chunk, -1)[int(choice[head])]
    return total


def test_ppo_deterministic_hybrid_action_is_the_mode() -> None:
    agent = make_agent("ppo", OBS_SPACE, AD_SPACE, device="cpu", seed=1)
    obs = np.zeros((3, 6), np.float32)
    first, _, _ = agent.policy.act(obs, deterministic=True)
    second, _, _ = agent.policy.act(obs, deterministic=True)
    np.testing.assert_array_equal(first, second)
    # initial means are ~0 in normalized units: the centre of each bounded range
    np.testing.assert_allclose(first[:, 3], 10.25, atol=0.5)  # bid in [0.5, 20]
    np.testing.assert_allclose(first[:, 4], 105.0, atol=5.0)  # daily budget in [10, 200]


def test_sac_hybrid_actions_in_bounds_and_log_prob_matches_sample() -> None:
    agent = make_agent("sac", OBS_SPACE, AD_SPACE, device="cpu", seed=0)
    obs = torch.as_tensor(np.random.default_rng(1).uniform(-1, 1, (32, 6)).astype(np.float32))
    critic_action, flat, parts = agent.policy.actor_sample(obs)
    assert critic_action.shape == (32, 3 + 4 + 3 + 2) and parts.shape == (32, 2)
    assert torch.all((flat[:, 3] >= 0.5) & (flat[:, 3] <= 20)) and torch.all(
        (flat[:, 4] >= 10) & (flat[:, 4] <= 200)
    )
    box = spaces.Box(-2.0, 2.0, (2,), np.float32)
    continuous = make_agent("sac", OBS_SPACE, box, device="cpu", seed=0)
    _, flat, parts = continuous.policy.actor_sample(obs)
    recomputed = continuous.policy.log_prob(obs, flat)
    np.testing.assert_allclose(
        recomputed.detach().numpy(), parts[:, 0].detach().numpy(), rtol=1e-3, atol=1e-3
    )


def test_attention_encoder_ignores_padding_and_handles_empty_history() -> None:
    encoder = AttentionHistoryEncoder(history_len=4, step_dim=3, dim=16, heads=2, layers=1)
    values = torch.randn(2, 12)
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    out = encoder(torch.cat([values, mask], 1))
    changed = values.clone()
    changed[0, 6:] = 99.0  # padded steps 2 and 3 of row 0
    out_changed = encoder(torch.cat([changed, mask], 1))
    torch.testing.assert_close(out[0], out_changed[0])
    assert torch.all(out[1] == 0) and torch.isfinite(out).all()
    out[0].pow(2).sum().backward()  # (a plain sum of a LayerNorm output has zero gradient)
    assert encoder.embed.weight.grad is not None and encoder.embed.weight.grad.abs().sum() > 0


def test_attention_encoder_as_policy_feature_extractor() -> None:
    obs_space = spaces.Box(-5, 5, (4 * 3 + 4,), np.float32)
    config = {
        "network": {
            "feature_extractor": "attention",
            "history_len": 4,
            "history_step_dim": 3,
            "attention_dim": 16,
            "attention_heads": 2,
        }
    }
    agent = make_agent("ppo", obs_space, AD_SPACE, config, device="cpu", seed=0)
    actions, log_probs, values = agent.policy.act(
        np.random.default_rng(0).uniform(-1, 1, (5, 16)).astype(np.float32)
    )
    assert actions.shape == (5, 5) and np.isfinite(log_probs).all() and np.isfinite(values).all()


def test_observation_normalizer_is_robust_to_nan_and_outliers() -> None:
    normalizer = ObservationNormalizer(2, NormalizationConfig(normalize_observations=True, warmup=50))
    rng = np.random.default_rng(0)
    data = torch.as_tensor(rng.normal([3.0, -2.0], [2.0, 0.5], (2000, 2)), dtype=torch.float32)
    for chunk in data.split(100):
        normalizer.update(chunk)
    np.testing.assert_allclose(normalizer.stats.mean.numpy(), data.mean(0).numpy(), atol=1e-3)
    np.testing.assert_allclose(normalizer.stats.var.numpy(), data.var(0, unbiased=False).numpy(), rtol=1e-3)
    mean_before = normalizer.stats.mean.clone()
    normalizer.update(torch.tensor([[float("nan"), 1e9], [float("inf"), -2.0]]))
    assert torch.isfinite(normalizer.stats.mean).all()
    assert abs(normalizer.stats.mean[1].item() - mean_before[1].item()) < 0.1  # the 1e9 outlier winsorized
    out = normalizer(torch.tensor([[float("nan"), 1e9]]))
    assert out[0, 0].item() == 0.0 and out[0, 1].item() == 10.0


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):
            resolve_device("cuda")
