"""Reinforcement-learning core: algorithms, policies, buffers, state processing, rewards, checkpoints.

Public entry points (see each module's docstring for the contracts):
    make_agent(algo | "module:Class", observation_space, action_space, config=None, device="auto", seed=0)
    Agent: the contract of learner, actors and learn() (algorithms/base.py): explore/act,
        rollout_steps/add_rollout/update, policy_state/load_policy_state, checkpoints
    RolloutCollector(env, seed).collect(agent, steps) -> Rollout   # the one collector
    resolve_device("auto" | "cpu" | "cuda") -> torch.device
    PPOAgent.train_on_rollout(RolloutBatch) -> dict[str, float]
    SACAgent / DQNAgent .add_transitions(obs, actions, rewards, dones, truncations, next_obs), .train_steps(n)
    agent.save_checkpoint(path, extra), agent.load_checkpoint(path) -> extra
    HybridActionCodec(space).flatten(dict) -> [B, D], .unflatten([B, D]) -> dict
"""

from gaelp.config.sections.algorithms import (
    DQNConfig,
    NetworkConfig,
    NormalizationConfig,
    PPOConfig,
    SACConfig,
)
from gaelp.rl.algorithms.base import Agent, ReplayAgent
from gaelp.rl.algorithms.bc import BehaviourCloningConfig, behaviour_cloning
from gaelp.rl.algorithms.dqn import DQNAgent
from gaelp.rl.algorithms.ensemble import EnsembleAgent, EnsembleConfig
from gaelp.rl.algorithms.ppo import PPOAgent
from gaelp.rl.algorithms.sac import SACAgent
from gaelp.rl.buffers import RolloutBatch, compute_gae
from gaelp.rl.device import configure_torch_threads, resolve_device
from gaelp.rl.factory import make_agent
from gaelp.rl.networks import AttentionHistoryEncoder
from gaelp.rl.normalization import ObservationNormalizer
from gaelp.rl.reward import REWARD_COMPONENTS, RewardEngine, RewardWeights
from gaelp.rl.rollout import FinishedEpisode, Rollout, RolloutCollector, make_vector_env
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
    "FinishedEpisode",
    "HybridActionCodec",
    "NetworkConfig",
    "NormalizationConfig",
    "ObservationNormalizer",
    "PPOAgent",
    "PPOConfig",
    "ReplayAgent",
    "RewardEngine",
    "RewardWeights",
    "Rollout",
    "RolloutBatch",
    "RolloutCollector",
    "SACAgent",
    "SACConfig",
    "behaviour_cloning",
    "compute_gae",
    "configure_torch_threads",
    "make_agent",
    "make_vector_env",
    "resolve_device",
]
