"""Settings of the RL algorithms (PPO, SAC, DQN) and of their networks and normalization.

They live here, apart from the torch code in gaelp.rl, so that validating settings (every
service does it at start) never imports torch. gaelp.rl re-exports them under their usual names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Activation = Literal["tanh", "relu"]


class NetworkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden_sizes: tuple[int, ...] = Field((64, 64), description="hidden layer widths of each MLP")
    activation: Activation = Field("tanh", description="hidden activation")
    orthogonal_init: bool = Field(True, description="orthogonal weights (gain sqrt 2), zero biases")
    feature_extractor: Literal["flat", "attention"] = Field("flat", description="obs encoder")
    history_len: int = Field(0, ge=0, description="attention: number of history steps L")
    history_step_dim: int = Field(0, ge=0, description="attention: features per history step")
    attention_dim: int = Field(64, ge=8, description="attention: model width")
    attention_heads: int = Field(4, ge=1, description="attention: heads")
    attention_layers: int = Field(1, ge=1, description="attention: transformer encoder layers")


class NormalizationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    normalize_observations: bool = Field(False, description="running mean/std normalization of obs")
    clip: float = Field(10.0, gt=0, description="normalized observations are clipped to +-clip")
    outlier_sigma: float = Field(8.0, gt=0, description="winsorize updates beyond this many std")
    warmup: int = Field(100, ge=0, description="samples seen before winsorizing starts")
    normalize_rewards: bool = Field(False, description="scale rewards by the std of discounted returns")
    reward_clip: float = Field(10.0, gt=0, description="scaled rewards are clipped to +-reward_clip")


class PPOConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_steps: int = Field(2048, ge=1, description="env steps per lane per rollout (env loop)")
    batch_size: int = Field(64, ge=1, description="minibatch size")
    n_epochs: int = Field(10, ge=1, description="passes over each rollout")
    gamma: float = Field(0.99, gt=0, le=1, description="discount")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    learning_rate: float = Field(3e-4, gt=0, description="Adam step size")
    lr_schedule: Literal["constant", "linear"] = Field("constant", description="linear: decay to 0")
    clip_range: float = Field(0.2, gt=0, description="surrogate ratio clip")
    clip_schedule: Literal["constant", "linear"] = Field("constant", description="linear: decay to 0")
    schedule_steps: int = Field(1_000_000, ge=1, description="env steps over which schedules decay")
    clip_range_vf: float | None = Field(None, description="value clipping around old values; None = off")
    ent_coef: float = Field(0.0, ge=0, description="entropy bonus weight")
    vf_coef: float = Field(0.5, ge=0, description="value loss weight")
    max_grad_norm: float = Field(0.5, gt=0, description="global gradient norm clip")
    normalize_advantage: bool = Field(True, description="per-minibatch advantage normalization")
    target_kl: float | None = Field(None, description="stop the epochs once mean approx KL exceeds this")
    log_std_init: float = Field(0.0, description="initial log std of the Gaussian")
    adam_eps: float = Field(1e-5, gt=0, description="Adam epsilon")
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    normalization: NormalizationConfig = Field(default_factory=NormalizationConfig)


def _dqn_network() -> NetworkConfig:
    return NetworkConfig(hidden_sizes=(256, 256), activation="relu")


class DQNConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    buffer_size: int = Field(100_000, ge=1, description="replay capacity (transitions)")
    batch_size: int = Field(64, ge=1, description="minibatch size")
    learning_rate: float = Field(1e-4, gt=0, description="Adam step size")
    lr_schedule: Literal["constant", "linear"] = Field(
        "constant", description="linear: decay to 0 over schedule_steps (late updates cannot undo a policy)"
    )
    gamma: float = Field(0.99, gt=0, le=1, description="discount")
    n_step: int = Field(1, ge=1, description="n-step return length")
    double_q: bool = Field(True, description="online net picks the next action, target net scores it")
    dueling: bool = Field(True, description="value + centred advantage heads")
    prioritized: bool = Field(True, description="proportional prioritized replay")
    priority_alpha: float = Field(0.6, ge=0, description="priority exponent")
    priority_beta_start: float = Field(0.4, ge=0, le=1, description="IS exponent, annealed to 1")
    target_update_interval: int = Field(1000, ge=1, description="gradient steps between target syncs")
    tau: float = Field(1.0, gt=0, le=1, description="target update: 1 = hard copy, <1 Polyak")
    learning_starts: int = Field(1000, ge=0, description="env steps before training starts")
    train_freq: int = Field(4, ge=1, description="env loop: train every this many vector steps")
    gradient_steps: int = Field(1, ge=1, description="env loop: gradient steps per training round")
    exploration_initial_eps: float = Field(1.0, ge=0, le=1, description="epsilon at step 0")
    exploration_final_eps: float = Field(0.05, ge=0, le=1, description="epsilon after decay")
    exploration_fraction: float = Field(0.1, gt=0, le=1, description="share of schedule_steps to decay")
    schedule_steps: int = Field(
        1_000_000, ge=1, description="env steps over which epsilon, beta and the learning rate anneal"
    )
    max_grad_norm: float = Field(10.0, gt=0, description="global gradient norm clip")
    network: NetworkConfig = Field(default_factory=_dqn_network)
    normalization: NormalizationConfig = Field(default_factory=NormalizationConfig)


def _sac_network() -> NetworkConfig:
    return NetworkConfig(hidden_sizes=(256, 256), activation="relu", orthogonal_init=False)


class SACConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    buffer_size: int = Field(1_000_000, ge=1, description="replay capacity (transitions)")
    batch_size: int = Field(256, ge=1, description="minibatch size")
    learning_rate: float = Field(3e-4, gt=0, description="Adam step size for actor, critics and alpha")
    gamma: float = Field(0.99, gt=0, le=1, description="discount")
    tau: float = Field(0.005, gt=0, le=1, description="Polyak factor of the target critics")
    learning_starts: int = Field(100, ge=0, description="env steps of uniform random actions first")
    train_freq: int = Field(1, ge=1, description="env loop: train every this many vector steps")
    gradient_steps: int = Field(1, ge=1, description="env loop: gradient steps per training round")
    initial_alpha: float = Field(1.0, gt=0, description="initial entropy temperature")
    auto_alpha: bool = Field(True, description="tune the temperature towards the target entropy")
    discrete_entropy_fraction: float = Field(
        0.5, gt=0, le=1, description="hybrid: target share of max entropy"
    )
    network: NetworkConfig = Field(default_factory=_sac_network)
    normalization: NormalizationConfig = Field(default_factory=NormalizationConfig)


ALGORITHM_CONFIGS: dict[str, type[BaseModel]] = {"ppo": PPOConfig, "sac": SACConfig, "dqn": DQNConfig}
