"""Policy networks (nn.Modules only; losses and updates live in the algorithms).

Each policy takes raw observations, normalizes them with its own `ObservationNormalizer` (so the
statistics ship with the weights), and exposes the actors' entry point

    policy.act(obs: np.ndarray [B, obs_dim], deterministic: bool) -> (actions, log_probs [B], values [B])

where actions are int64 `[B]` for Discrete spaces and float32 `[B, D]` (flat encoding, env units, see
`spaces.py`) otherwise. Sampling draws from `policy.generator` (the agent's seeded generator) so a
checkpoint captures it. `policy_state()` / `load_policy_state()` move just the weights as bytes.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gaelp.rl.networks import MLP, EnsembleMLP, NetworkConfig, build_feature_extractor, init_layer
from gaelp.rl.normalization import NormalizationConfig, ObservationNormalizer
from gaelp.rl.spaces import ActionLayout

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class Policy(nn.Module):
    """Common plumbing: numpy entry point, weight export, continuous-bound scaling."""

    center: torch.Tensor
    half_range: torch.Tensor

    def __init__(self, obs_dim: int, layout: ActionLayout, normalization: NormalizationConfig) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.layout = layout
        self.generator: torch.Generator | None = None
        self.normalizer = ObservationNormalizer(obs_dim, normalization)
        low, high = layout.continuous_low, layout.continuous_high
        finite = np.isfinite(low) & np.isfinite(high)
        center = np.where(finite, (high + low) / 2, 0.0)
        half = np.where(finite, (high - low) / 2, 1.0)
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32))
        self.register_buffer("half_range", torch.as_tensor(half, dtype=torch.float32))

    @property
    def device(self) -> torch.device:
        return self.center.device

    def sample(
        self, obs: torch.Tensor, deterministic: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw obs `[B, obs_dim]` -> (flat actions `[B, D]`, log_probs `[B]`, values `[B]`)."""
        raise NotImplementedError

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Log-likelihood `[B]` of flat actions `[B, D]` (what behaviour cloning maximizes)."""
        raise NotImplementedError

    def act(self, obs: np.ndarray, deterministic: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.inference_mode():
            obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
            actions, log_probs, values = self.sample(obs_t.reshape(obs_t.shape[0], -1), deterministic)
            actions_np = actions.cpu().numpy()
            if self.layout.kind == "discrete":
                actions_np = actions_np[:, 0].astype(np.int64)
            return actions_np, log_probs.cpu().numpy(), values.cpu().numpy()

    def policy_state(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in self.state_dict().items()}, buffer)
        return buffer.getvalue()

    def load_policy_state(self, blob: bytes) -> None:
        state = torch.load(io.BytesIO(blob), map_location=self.device, weights_only=True)
        self.load_state_dict(state)

    def _uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=self.device).clamp_(1e-9, 1 - 1e-9)

    def _normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)

    def _gumbel(self, shape: tuple[int, ...]) -> torch.Tensor:
        return -torch.log(-torch.log(self._uniform(shape)))


def categorical_log_probs(logits: torch.Tensor, sizes: tuple[int, ...]) -> list[torch.Tensor]:
    return [F.log_softmax(chunk, dim=-1) for chunk in torch.split(logits, list(sizes), dim=-1)]


class ActorCriticPolicy(Policy):
    """PPO's policy: Gaussian (state-independent std, in [-1, 1]-normalized units for bounded boxes)
    for continuous dims, one categorical per discrete entry, and a separate value MLP; the feature
    extractor (flat or attention) is shared by both."""

    def __init__(
        self,
        obs_dim: int,
        layout: ActionLayout,
        network: NetworkConfig,
        normalization: NormalizationConfig,
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__(obs_dim, layout, normalization)
        ortho = network.orthogonal_init
        self.extractor = build_feature_extractor(obs_dim, network)
        features = self.extractor.out_dim
        self.actor = MLP(features, network.hidden_sizes, None, network.activation, orthogonal=ortho)
        self.critic = MLP(features, network.hidden_sizes, 1, network.activation, 1.0, ortho)
        width = self.actor.out_dim
        self.logits_head = (
            init_layer(nn.Linear(width, sum(layout.discrete_sizes)), 0.01, ortho)
            if layout.n_discrete
            else None
        )
        self.mean_head = (
            init_layer(nn.Linear(width, layout.n_continuous), 0.01, ortho) if layout.n_continuous else None
        )
        self.log_std = nn.Parameter(torch.full((layout.n_continuous,), float(log_std_init)))

    def _forward(self, obs: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        features = self.extractor(self.normalizer(obs))
        hidden = self.actor(features)
        logits = self.logits_head(hidden) if self.logits_head is not None else None
        mean = self.mean_head(hidden) if self.mean_head is not None else None
        return logits, mean, self.critic(features).squeeze(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.extractor(self.normalizer(obs))).squeeze(-1)

    def evaluate(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log_prob `[B]`, entropy `[B]`, value `[B]`) of flat actions `[B, D]` under the current policy."""
        logits, mean, value = self._forward(obs)
        log_prob = torch.zeros_like(value)
        entropy = torch.zeros_like(value)
        n_disc = self.layout.n_discrete
        if logits is not None:
            indices = actions[:, :n_disc].long()
            for head, log_p in enumerate(categorical_log_probs(logits, self.layout.discrete_sizes)):
                log_prob = log_prob + log_p.gather(1, indices[:, head : head + 1]).squeeze(1)
                entropy = entropy - (log_p.exp() * log_p).sum(-1)
        if mean is not None:
            unit = (actions[:, n_disc:] - self.center) / self.half_range
            z = (unit - mean) / self.log_std.exp()
            log_prob = log_prob + (-0.5 * z.pow(2) - self.log_std - LOG_SQRT_2PI).sum(-1)
            entropy = entropy + (0.5 + LOG_SQRT_2PI + self.log_std).sum()
        return log_prob, entropy, value

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.evaluate(obs, actions)[0]

    def sample(
        self, obs: torch.Tensor, deterministic: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, mean, value = self._forward(obs)
        parts: list[torch.Tensor] = []
        log_prob = torch.zeros_like(value)
        if logits is not None:
            for log_p in categorical_log_probs(logits, self.layout.discrete_sizes):
                scores = log_p if deterministic else log_p + self._gumbel(tuple(log_p.shape))
                index = scores.argmax(-1, keepdim=True)
                log_prob = log_prob + log_p.gather(1, index).squeeze(1)
                parts.append(index.to(torch.float32))
        if mean is not None:
            std = self.log_std.exp()
            noise = torch.zeros_like(mean) if deterministic else self._normal(tuple(mean.shape))
            unit = mean + std * noise
            log_prob = log_prob + (-0.5 * noise.pow(2) - self.log_std - LOG_SQRT_2PI).sum(-1)
            parts.append(self.center + self.half_range * unit)
        return torch.cat(parts, dim=1), log_prob, value


class SACPolicy(Policy):
    """SAC's actor (tanh-squashed Gaussian; straight-through Gumbel-softmax for hybrid discrete entries)
    plus twin Q critics evaluated as one batched ensemble. The critic sees actions as
    `[one-hot per discrete entry, continuous in [-1, 1]]`."""

    LOG_STD_MIN = -5.0
    LOG_STD_MAX = 2.0

    def __init__(
        self, obs_dim: int, layout: ActionLayout, network: NetworkConfig, normalization: NormalizationConfig
    ) -> None:
        super().__init__(obs_dim, layout, normalization)
        if layout.n_continuous and not (
            np.isfinite(layout.continuous_low).all() and np.isfinite(layout.continuous_high).all()
        ):
            raise ValueError("SAC needs finite Box bounds to squash actions")
        ortho = network.orthogonal_init
        self.actor_extractor = build_feature_extractor(obs_dim, network)
        self.critic_extractor = build_feature_extractor(obs_dim, network)
        self.actor = MLP(
            self.actor_extractor.out_dim, network.hidden_sizes, None, network.activation, orthogonal=ortho
        )
        width = self.actor.out_dim
        n_cont = layout.n_continuous
        self.gaussian_head = nn.Linear(width, 2 * n_cont) if n_cont else None
        self.logits_head = nn.Linear(width, sum(layout.discrete_sizes)) if layout.n_discrete else None
        self.critic = EnsembleMLP(
            2, self.critic_extractor.out_dim + layout.one_hot_dim, network.hidden_sizes, network.activation
        )
        self.n_entropy_parts = int(n_cont > 0) + int(layout.n_discrete > 0)

    def actor_parameters(self) -> list[nn.Parameter]:
        modules = [self.actor_extractor, self.actor, self.gaussian_head, self.logits_head]
        return [p for m in modules if m is not None for p in m.parameters()]

    def critic_parameters(self) -> list[nn.Parameter]:
        return [*self.critic_extractor.parameters(), *self.critic.parameters()]

    def actor_sample(
        self, obs: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (critic action `[B, one_hot_dim]`, flat env action `[B, D]`, log-prob parts `[B, P]`).

        Parts are (continuous, discrete) in that order, each present only if the space has it; the
        discrete part is the exact expected log-prob (minus entropy) of the categorical heads.
        """
        hidden = self.actor(self.actor_extractor(self.normalizer(obs)))
        critic_parts: list[torch.Tensor] = []
        flat_disc: list[torch.Tensor] = []
        logp_parts: list[torch.Tensor] = []
        flat_cont: list[torch.Tensor] = []
        if self.logits_head is not None:
            expected = torch.zeros(obs.shape[0], device=obs.device)
            for log_p in categorical_log_probs(self.logits_head(hidden), self.layout.discrete_sizes):
                probs = log_p.exp()
                expected = expected + (probs * log_p).sum(-1)
                scores = log_p if deterministic else log_p + self._gumbel(tuple(log_p.shape))
                index = scores.argmax(-1, keepdim=True)
                hard = torch.zeros_like(probs).scatter_(1, index, 1.0)
                soft = F.softmax(scores, dim=-1)
                critic_parts.append(hard - soft.detach() + soft)
                flat_disc.append(index.to(torch.float32))
            logp_parts.append(expected)
        if self.gaussian_head is not None:
            mean, log_std = self.gaussian_head(hidden).chunk(2, dim=-1)
            log_std = log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)
            noise = torch.zeros_like(mean) if deterministic else self._normal(tuple(mean.shape))
            pre_tanh = mean + log_std.exp() * noise
            unit = torch.tanh(pre_tanh)
            gaussian_logp = (-0.5 * noise.pow(2) - log_std - LOG_SQRT_2PI).sum(-1)
            # log(1 - tanh(x)^2) in a numerically stable form
            squash = (2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)
            logp_parts.insert(0, gaussian_logp - squash)
            critic_parts.append(unit)
            flat_cont.append(self.center + self.half_range * unit)
        flat = torch.cat(flat_disc + flat_cont, dim=1)
        return torch.cat(critic_parts, dim=1), flat, torch.stack(logp_parts, dim=1)

    def critic_action(self, flat: torch.Tensor) -> torch.Tensor:
        """Stored flat env actions -> critic input (one-hot discrete, continuous rescaled to [-1, 1])."""
        parts: list[torch.Tensor] = []
        n_disc = self.layout.n_discrete
        for head, size in enumerate(self.layout.discrete_sizes):
            parts.append(F.one_hot(flat[:, head].long(), size).to(flat.dtype))
        if self.layout.n_continuous:
            parts.append(((flat[:, n_disc:] - self.center) / self.half_range).clamp(-1.0, 1.0))
        return torch.cat(parts, dim=1)

    def q_values(self, obs: torch.Tensor, critic_action: torch.Tensor) -> torch.Tensor:
        """-> `[2, B]` twin Q estimates."""
        features = self.critic_extractor(self.normalizer(obs))
        return self.critic(torch.cat([features, critic_action], dim=1))

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of flat env actions (behaviour cloning): categorical + squashed Gaussian."""
        hidden = self.actor(self.actor_extractor(self.normalizer(obs)))
        total = torch.zeros(obs.shape[0], device=obs.device)
        n_disc = self.layout.n_discrete
        if self.logits_head is not None:
            indices = actions[:, :n_disc].long()
            for head, log_p in enumerate(
                categorical_log_probs(self.logits_head(hidden), self.layout.discrete_sizes)
            ):
                total = total + log_p.gather(1, indices[:, head : head + 1]).squeeze(1)
        if self.gaussian_head is not None:
            mean, log_std = self.gaussian_head(hidden).chunk(2, dim=-1)
            log_std = log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)
            unit = ((actions[:, n_disc:] - self.center) / self.half_range).clamp(-0.999, 0.999)
            pre_tanh = torch.atanh(unit)
            z = (pre_tanh - mean) / log_std.exp()
            squash = torch.log1p(-unit.pow(2)).sum(-1)
            total = total + (-0.5 * z.pow(2) - log_std - LOG_SQRT_2PI).sum(-1) - squash
        return total

    def sample(
        self, obs: torch.Tensor, deterministic: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        critic_action, flat, logp_parts = self.actor_sample(obs, deterministic)
        values = self.q_values(obs, critic_action).min(0).values
        return flat, logp_parts.sum(1), values


class QPolicy(Policy):
    """DQN's Q network (optionally dueling) with epsilon-greedy acting; Discrete actions only."""

    def __init__(
        self,
        obs_dim: int,
        layout: ActionLayout,
        network: NetworkConfig,
        normalization: NormalizationConfig,
        dueling: bool = True,
    ) -> None:
        super().__init__(obs_dim, layout, normalization)
        if layout.kind != "discrete":
            raise TypeError("DQN supports Discrete action spaces only")
        n_actions = layout.discrete_sizes[0]
        ortho = network.orthogonal_init
        self.extractor = build_feature_extractor(obs_dim, network)
        self.trunk = MLP(
            self.extractor.out_dim, network.hidden_sizes, None, network.activation, orthogonal=ortho
        )
        width = self.trunk.out_dim
        self.dueling = dueling
        self.advantage_head = init_layer(nn.Linear(width, n_actions), 1.0, ortho)
        self.value_head = init_layer(nn.Linear(width, 1), 1.0, ortho) if dueling else None
        self.epsilon = 0.0

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        hidden = self.trunk(self.extractor(self.normalizer(obs)))
        advantage = self.advantage_head(hidden)
        if self.value_head is None:
            return advantage
        return self.value_head(hidden) + advantage - advantage.mean(-1, keepdim=True)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Softmax over Q values read as logits: what behaviour cloning maximizes for DQN."""
        return F.log_softmax(self.q_values(obs), -1).gather(1, actions[:, :1].long()).squeeze(1)

    def sample(
        self, obs: torch.Tensor, deterministic: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = self.q_values(obs)
        value, greedy = q.max(-1)
        n_actions = q.shape[1]
        epsilon = 0.0 if deterministic else self.epsilon
        if epsilon > 0:
            explore = self._uniform((q.shape[0],)) < epsilon
            random_action = (self._uniform((q.shape[0],)) * n_actions).long().clamp_(max=n_actions - 1)
            action = torch.where(explore, random_action, greedy)
        else:
            action = greedy
        prob = epsilon / n_actions + (1.0 - epsilon) * (action == greedy).to(q.dtype)
        return action.unsqueeze(1).to(torch.float32), prob.log(), value
