"""Reinforcement-learning core: algorithms, policies, buffers, state processing, rewards, checkpoints.

Public entry points (see each module's docstring for the contracts):
    make_agent(algo, observation_space, action_space, config=None, device="auto", seed=0)
    resolve_device("auto" | "cpu" | "cuda") -> torch.device
    PPOAgent.train_on_rollout(RolloutBatch) -> dict[str, float]
    SACAgent / DQNAgent .add_transitions(obs, actions, rewards, dones, truncations, next_obs), .train_steps(n)
    agent.policy.act(obs, deterministic) -> (actions, log_probs, values)
    agent.policy_state() -> bytes, agent.load_policy_state(bytes)
    agent.save_checkpoint(path, extra), agent.load_checkpoint(path) -> extra
    HybridActionCodec(space).flatten(dict) -> [B, D], .unflatten([B, D]) -> dict
"""

from gaelp.rl.algorithms.base import Agent
from gaelp.rl.algorithms.bc import BehaviourCloningConfig, behaviour_cloning
from gaelp.rl.algorithms.dqn import DQNAgent, DQNConfig
from gaelp.rl.algorithms.ensemble import EnsembleAgent, EnsembleConfig
from gaelp.rl.algorithms.ppo import PPOAgent, PPOConfig
from gaelp.rl.algorithms.sac import SACAgent, SACConfig
from gaelp.rl.buffers import RolloutBatch, compute_gae
from gaelp.rl.device import configure_torch_threads, resolve_device
from gaelp.rl.factory import make_agent
from gaelp.rl.networks import AttentionHistoryEncoder, NetworkConfig
from gaelp.rl.normalization import NormalizationConfig, ObservationNormalizer
from gaelp.rl.reward import REWARD_COMPONENTS, RewardEngine, RewardWeights
from gaelp.rl.spaces import ActionLayout, HybridActionCodec

__all__ = [
    "REWARD_COMPONENTS",
    "ActionLayout",
    "Agent",
    "AttentionHistoryEncoder",
    "BehaviourCloningConfig",
    "DQNAgent",
    "DQNConfig",
    "EnsembleAgent",
    "EnsembleConfig",
    "HybridActionCodec",
    "NetworkConfig",
    "NormalizationConfig",
    "ObservationNormalizer",
    "PPOAgent",
    "PPOConfig",
    "RewardEngine",
    "RewardWeights",
    "RolloutBatch",
    "SACAgent",
    "SACConfig",
    "behaviour_cloning",
    "compute_gae",
    "configure_torch_threads",
    "make_agent",
    "resolve_device",
]
