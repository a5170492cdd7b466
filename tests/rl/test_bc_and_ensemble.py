from pathlib import Path

import numpy as np
import pytest
from toy_envs import HybridAdEnv, mean_return, vector_env

from gaelp.config import load_settings
from gaelp.rl import EnsembleAgent, EnsembleConfig, HybridActionCodec, behaviour_cloning, make_agent
from gaelp.rl.algorithms.base import Agent
from gaelp.rl.algorithms.bc import collect_demonstrations
from gaelp.sim import AdMarketVectorEnv
from gaelp.sim.market.policies import evaluate_policy, heuristic_policy, normalized_reward
from learner.service import LearnerService

CONFIG = {"n_steps": 64, "batch_size": 128, "n_epochs": 5, "learning_rate": 3e-4, "gamma": 0.5}


def _demonstrations(count: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    env = HybridAdEnv()
    codec = HybridActionCodec(env.action_space)
    obs_list, actions = [], []
    obs, _ = env.reset(seed=0)
    for _ in range(count):
        action = env.expert(obs)
        obs_list.append(obs)
        actions.append(codec.flatten({k: np.asarray(v)[None] for k, v in action.items()})[0])
        obs, _, _, truncated, _ = env.step(action)
        if truncated:
            obs, _ = env.reset()
    return np.stack(obs_list), np.stack(actions)


def _agent(seed: int) -> Agent:
    env = HybridAdEnv()
    return make_agent("ppo", env.observation_space, env.action_space, CONFIG, device="cpu", seed=seed)


def test_behaviour_cloning_then_rl_fine_tuning_of_the_same_network() -> None:
    agent = _agent(0)
    before = mean_return(agent, HybridAdEnv())
    obs, actions = _demonstrations()
    stats = behaviour_cloning(agent, obs, actions)
    assert stats["final_nll"] < stats["initial_nll"]
    cloned = mean_return(agent, HybridAdEnv())
    assert before < 5 and cloned > 8, (before, cloned)
    network = agent.policy
    agent.learn(vector_env(HybridAdEnv, 4), 2_000)
    assert agent.policy is network
    assert mean_return(agent, HybridAdEnv()) > 7  # RL starts from the clone instead of from scratch


def test_ensemble_weights_follow_recent_returns_and_vote() -> None:
    good, bad = _agent(0), _agent(1)
    obs, actions = _demonstrations()
    behaviour_cloning(good, obs, actions)
    ensemble = EnsembleAgent([bad, good], EnsembleConfig(temperature=1.0))
    np.testing.assert_allclose(ensemble.weights(), [0.5, 0.5])
    for member in (0, 1):
        ensemble.record_return(member, mean_return([bad, good][member], HybridAdEnv(), episodes=3))
    weights = ensemble.weights()
    assert weights[1] > 0.95
    probe = obs[:50]
    combined, log_prob, _ = ensemble.policy.act(probe)
    expected, _, _ = good.policy.act(probe, deterministic=True)
    # flat layout of HybridAdEnv: [creative index, bid]
    np.testing.assert_array_equal(combined[:, :1], expected[:, :1])  # discrete column: weighted vote
    bad_action, _, _ = bad.policy.act(probe, deterministic=True)
    np.testing.assert_allclose(
        combined[:, 1:], weights[0] * bad_action[:, 1:] + weights[1] * expected[:, 1:], rtol=1e-5
    )
    assert np.all(log_prob <= 0)
    assert mean_return(EnsembleView(ensemble, good), HybridAdEnv()) > 8


class EnsembleView:
    """Adapts the ensemble to the toy evaluation helper (policy.act + env_actions)."""

    def __init__(self, ensemble: EnsembleAgent, member: Agent) -> None:
        self.policy = ensemble.policy
        self.env_actions = member.env_actions


def test_ensemble_rejects_mismatched_members() -> None:
    env = HybridAdEnv()
    other = make_agent("ppo", env.observation_space, env.action_space["creative"], device="cpu")
    with pytest.raises(ValueError):
        EnsembleAgent([_agent(0), other])


def test_behaviour_cloning_of_the_market_heuristic_into_the_ppo_network() -> None:
    """Demonstrations of the sandbox market's heuristic, cloned into a PPO policy, score near the
    heuristic on the normalized-reward yardstick; the same network untrained does not."""
    level, envs = 1, 32

    def score(agent: Agent) -> float:
        def factory(env: AdMarketVectorEnv):  # type: ignore[no-untyped-def]
            return lambda obs, info: agent.env_actions(agent.act(obs, deterministic=True)[0])

        return evaluate_policy(factory, level, num_envs=envs, seed=7).mean_reward

    references = {name: evaluate_policy(name, level, num_envs=envs, seed=7).mean_reward
                  for name in ("random", "heuristic", "upper_bound")}

    def normalized(reward: float) -> float:
        return normalized_reward(reward, references["random"], references["upper_bound"])

    env = AdMarketVectorEnv(num_envs=64, level=level, seed=3)
    agent = make_agent("ppo", env.single_observation_space, env.single_action_space, CONFIG,
                       device="cpu", seed=0)
    untrained = normalized(score(agent))
    obs, actions = collect_demonstrations(agent, env, heuristic_policy(env), steps=192, seed=3)
    assert obs.shape == (192 * 64, agent.obs_dim) and actions.shape[0] == obs.shape[0]
    stats = behaviour_cloning(agent, obs, actions)
    assert stats["final_nll"] < stats["initial_nll"]
    cloned, heuristic = normalized(score(agent)), normalized(references["heuristic"])
    assert cloned > untrained + 0.3, (untrained, cloned)
    assert cloned > heuristic - 0.15, (cloned, heuristic)


def _heuristic_agreement(agent: Agent) -> float:
    """Share of fresh sandbox-market hours where the agent picks the heuristic's audience."""
    env = AdMarketVectorEnv(num_envs=64, level=0, seed=99)
    teacher = heuristic_policy(env)
    obs, info = env.reset(seed=99)
    agreed = []
    for _ in range(24):
        expected = teacher(obs, info)
        chosen = agent.env_actions(agent.act(obs, deterministic=True)[0])
        agreed.append(np.asarray(chosen["audience"]).reshape(-1) == expected["audience"])
        obs, _, _, _, info = env.step(expected)
    return float(np.mean(agreed))


def test_the_learner_publishes_its_first_policy_already_warm_started(tmp_path: Path) -> None:
    def service(enabled: bool) -> LearnerService:
        settings = load_settings(
            learner={"device": "cpu", "warm_start": {"enabled": enabled, "demo_steps": 6144, "envs": 32}},
            storage={"checkpoint_dir": str(tmp_path / "checkpoints"), "data_dir": str(tmp_path)},
        )
        return LearnerService(settings, producer=None)  # type: ignore[arg-type]  # run() sends nothing

    cold, warm = service(False), service(True)
    cold_trainer, warm_trainer = cold.run("run-a"), warm.run("run-a")
    assert warm.policies["run-a"].version == 0
    assert warm.policies["run-a"].weights == warm_trainer.agent.policy_state()
    cold_agreement = _heuristic_agreement(cold_trainer.agent)
    warm_agreement = _heuristic_agreement(warm_trainer.agent)
    assert warm_agreement > 0.9 and warm_agreement > cold_agreement + 0.3, (cold_agreement, warm_agreement)
