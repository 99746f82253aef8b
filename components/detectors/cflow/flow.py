"""A conditional normalizing flow over feature vectors (CFLOW-AD's decoder, written here).

Affine coupling blocks: each keeps half the channels and moves the other half by a
scale and shift that a small MLP computes from the kept half and the condition (the
position's encoding). Fixed random channel permutations between blocks let every channel
be moved; they are buffers, so a saved flow is the same flow.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def positional_encoding(dims: int, height: int, width: int) -> torch.Tensor:
    """(height·width)×dims sinusoidal codes of each cell, row-major: the first half of the
    dims encodes the column, the second the row (sin and cos at geometric frequencies)."""
    if dims % 4 or dims < 4:
        raise ValueError(f"condition_dims must be a positive multiple of 4, got {dims}")
    columns = _axis_codes(width, dims // 4)[None].expand(height, width, -1)
    rows = _axis_codes(height, dims // 4)[:, None].expand(height, width, -1)
    return torch.cat([columns, rows], -1).reshape(height * width, dims).float()


def _axis_codes(length: int, frequencies: int) -> torch.Tensor:
    """length×(2·frequencies): sin and cos of each index at geometric frequencies."""
    rates = torch.exp(torch.arange(frequencies, dtype=torch.float64) * -math.log(1e4) / frequencies)
    angle = torch.arange(length, dtype=torch.float64)[:, None] * rates
    return torch.stack([angle.sin(), angle.cos()], -1).reshape(length, 2 * frequencies)


class CouplingBlock(nn.Module):
    """y = [a, b·exp(s) + t], (s, t) = MLP(a, condition), s soft-clamped to ±clamp."""

    def __init__(self, channels: int, condition_dims: int, clamp: float) -> None:
        super().__init__()
        self.kept = channels // 2
        moved = channels - self.kept
        hidden = 2 * (self.kept + condition_dims)  # the paper's subnet: twice its input
        self.clamp = clamp
        self.features_in = nn.Linear(self.kept, hidden)
        # The condition's share of the first layer, apart: in the exported graph it runs
        # once per position for the whole batch (the same codes for every image).
        self.condition_in = nn.Linear(condition_dims, hidden, bias=False)
        self.out = nn.Linear(hidden, 2 * moved)

    def reset(self, generator: torch.Generator) -> None:
        """Seeded init; the last layer at zero, so every block starts as the identity."""
        for layer in (self.features_in, self.condition_in):
            bound = 1 / math.sqrt(layer.in_features)  # torch's default range for Linear
            nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
        bound = 1 / math.sqrt(self.features_in.in_features)
        nn.init.uniform_(self.features_in.bias, -bound, bound, generator=generator)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, x: torch.Tensor, condition: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x …×C, condition broadcastable to …×D → (y …×C, log|det| …)."""
        kept, moved = x[..., : self.kept], x[..., self.kept :]
        hidden = F.relu(self.features_in(kept) + self.condition_in(condition))
        log_scale, shift = self.out(hidden).chunk(2, dim=-1)
        log_scale = self.clamp * torch.tanh(log_scale / self.clamp)
        return torch.cat([kept, moved * torch.exp(log_scale) + shift], -1), log_scale.sum(-1)


class ConditionalFlow(nn.Module):
    """One scale's flow: standardised features → Gaussian, conditioned on position.

    `log_likelihood` is per dimension (nats / channel): scales of different widths then
    weigh alike, as in the paper. The standardisation's log-det is left out: it is a
    constant per scale, and the anomaly map subtracts a per-scale shift anyway.
    """

    def __init__(self, channels: int, size: tuple[int, int], condition_dims: int,
                 blocks: int, clamp: float, generator: torch.Generator) -> None:  # fmt: skip
        super().__init__()
        if blocks < 1:
            raise ValueError(f"coupling_blocks must be at least 1, got {blocks}")
        self.channels = channels
        self.size = tuple(size)
        self.blocks = nn.ModuleList(
            CouplingBlock(channels, condition_dims, clamp) for _ in range(blocks)
        )
        self.register_buffer("condition", positional_encoding(condition_dims, *size))
        self.register_buffer("permutations", torch.zeros(blocks - 1, channels, dtype=torch.long))
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))
        self.register_buffer("shift", torch.zeros(()))  # max per-dim log-likelihood in training
        self.reset(generator)

    def reset(self, generator: torch.Generator) -> None:
        """Fresh weights and permutations from GENERATOR (a refit must not start from
        weights that saw the images it is meant not to know)."""
        for index, block in enumerate(self.blocks):
            block.reset(generator)
            if index < len(self.blocks) - 1:
                self.permutations[index] = torch.randperm(self.channels, generator=generator)

    def standardise_from(self, positions: torch.Tensor) -> None:
        """Per-channel mean and spread of training feature vectors (…×C)."""
        flat = positions.reshape(-1, self.channels)
        self.mean = flat.mean(0)
        self.std = flat.std(0).clamp_min(1e-6)

    def log_likelihood(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Per-dimension log-likelihood of feature vectors x (…×C) at their positions."""
        z = (x - self.mean) / self.std
        log_det = torch.zeros((), device=x.device)
        for index, block in enumerate(self.blocks):
            z, block_log_det = block(z, condition)
            log_det = log_det + block_log_det
            if index < len(self.blocks) - 1:
                z = z.index_select(-1, self.permutations[index])
        return (log_det - 0.5 * (z * z).sum(-1)) / self.channels - HALF_LOG_2PI

    def map(self, features: torch.Tensor) -> torch.Tensor:
        """N×C×h×w feature maps → N×1×h×w per-dimension log-likelihoods."""
        n, _, h, w = features.shape
        positions = features.flatten(2).transpose(1, 2)  # N×hw×C
        return self.log_likelihood(positions, self.condition).reshape(n, 1, h, w)
