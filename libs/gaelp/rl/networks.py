"""Networks: orthogonally initialised MLPs, a twin-critic ensemble layer, and an attention encoder
over a variable-length (masked) history of campaign steps usable as a policy's feature extractor.

History observations are flat vectors laid out as `[history_len * step_dim values, history_len mask]`
(mask 1 = real step, 0 = padding), so they fit a gymnasium Box and the columnar transition batches.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gaelp.config.sections.algorithms import Activation, NetworkConfig

__all__ = ["Activation", "NetworkConfig"]  # the settings, re-exported next to the networks they size

def _activation(name: Activation) -> type[nn.Module]:
    return nn.Tanh if name == "tanh" else nn.ReLU


def init_layer(layer: nn.Linear, gain: float, orthogonal: bool = True) -> nn.Linear:
    if orthogonal:
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Sequential):
    """Linear/activation stack; the output layer gets its own gain (small for policy heads)."""

    def __init__(
        self,
        in_dim: int,
        hidden_sizes: tuple[int, ...],
        out_dim: int | None,
        activation: Activation = "tanh",
        out_gain: float = 1.0,
        orthogonal: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        width = in_dim
        for hidden in hidden_sizes:
            layers += [
                init_layer(nn.Linear(width, hidden), math.sqrt(2), orthogonal),
                _activation(activation)(),
            ]
            width = hidden
        if out_dim is not None:
            layers.append(init_layer(nn.Linear(width, out_dim), out_gain, orthogonal))
            width = out_dim
        super().__init__(*layers)
        self.out_dim = width


class EnsembleLinear(nn.Module):
    """`members` independent linear layers evaluated in one batched matmul ([M, B, in] -> [M, B, out])."""

    def __init__(self, members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """`members` MLPs with identical shapes run together; used for SAC's twin critics."""

    def __init__(
        self, members: int, in_dim: int, hidden_sizes: tuple[int, ...], activation: Activation
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for hidden in hidden_sizes:
            layers += [EnsembleLinear(members, width, hidden), _activation(activation)()]
            width = hidden
        layers.append(EnsembleLinear(members, width, 1))
        self.net = nn.Sequential(*layers)
        self.members = members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in] -> [members, B]."""
        return self.net(x.unsqueeze(0).expand(self.members, -1, -1)).squeeze(-1)


class FlatFeatures(nn.Module):
    """Identity extractor for plain vector observations."""

    def __init__(self, obs_dim: int) -> None:
        super().__init__()
        self.out_dim = obs_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs


class AttentionHistoryEncoder(nn.Module):
    """Masked transformer encoder over `L` history steps, mean-pooled over the real (unmasked) steps.

    Input: flat `[B, L * step_dim + L]` (values then mask). Output: `[B, attention_dim]`.
    A row with no real step encodes to zeros.
    """

    def __init__(self, history_len: int, step_dim: int, dim: int, heads: int, layers: int) -> None:
        super().__init__()
        if history_len < 1 or step_dim < 1:
            raise ValueError("attention encoder needs history_len >= 1 and history_step_dim >= 1")
        self.history_len = history_len
        self.step_dim = step_dim
        self.embed = nn.Linear(step_dim, dim)
        self.position = nn.Parameter(torch.zeros(history_len, dim))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_dim = dim

    @property
    def input_dim(self) -> int:
        return self.history_len * (self.step_dim + 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        values_end = self.history_len * self.step_dim
        steps = obs[:, :values_end].reshape(-1, self.history_len, self.step_dim)
        mask = obs[:, values_end : values_end + self.history_len] > 0.5
        any_valid = mask.any(dim=1, keepdim=True)
        # A fully padded row would give NaN attention; let it attend to slot 0 and zero it when pooling.
        attend = mask.clone()
        attend[:, :1] |= ~any_valid
        hidden = self.encoder(self.embed(steps) + self.position, src_key_padding_mask=~attend)
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def build_feature_extractor(obs_dim: int, config: NetworkConfig) -> FlatFeatures | AttentionHistoryEncoder:
    if config.feature_extractor == "flat":
        return FlatFeatures(obs_dim)
    encoder = AttentionHistoryEncoder(
        config.history_len,
        config.history_step_dim,
        config.attention_dim,
        config.attention_heads,
        config.attention_layers,
    )
    if encoder.input_dim != obs_dim:
        raise ValueError(f"history layout needs obs_dim {encoder.input_dim}, space has {obs_dim}")
    return encoder
