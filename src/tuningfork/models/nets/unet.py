"""The conditional denoising network: diffusers' UNet2DModel plus a condition embedding.

The condition (a class index or a standardised feature vector) is embedded
to the width of the UNet's timestep embedding and added to it, through
UNet2DModel's ``class_embed_type='identity'`` input.  One extra *null*
condition (an extra class index, or a learned vector for features) stands for
"no condition": training replaces the real condition by it at random
(condition dropout), which is what classifier-free guidance needs at
sampling time (Ho & Salimans 2022).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...config import Serialisable
from ...errors import ConfigError
from ..conditions import ConditionSpace
from ..registry import register_model

#: Architecture name of a generator's model folder.
ARCHITECTURE = "conditional-diffusion"


@dataclass(frozen=True)
class UNetConfig(Serialisable):
    """Size of the denoising UNet.

    Parameters
    ----------
    image_size : int
        Side of the square images, in pixels; divisible by
        ``2 ** (len(channels) - 1)``.
    bands : int
        Image bands (input and output channels).
    channels : tuple of int
        Channels of each resolution level (each level after the first halves
        the resolution); multiples of ``norm_groups``.
    layers_per_block : int
        Residual blocks per level.
    attention_levels : int
        Self-attention in this many of the lowest-resolution levels (0: none).
    norm_groups : int
        Groups of the group normalisation.
    """

    image_size: int = 32
    bands: int = 3
    channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    attention_levels: int = 1
    norm_groups: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.channels or any(c <= 0 or c % self.norm_groups for c in self.channels):
            raise ConfigError(
                f"UNetConfig: channels {self.channels} must be positive multiples of norm_groups "
                f"({self.norm_groups})"
            )
        if self.image_size % 2 ** (len(self.channels) - 1):
            raise ConfigError(
                f"UNetConfig: image_size {self.image_size} px is not divisible by "
                f"2^{len(self.channels) - 1} (one halving per level)"
            )
        if self.bands < 1 or self.layers_per_block < 1:
            raise ConfigError("UNetConfig: bands and layers_per_block must be at least 1")
        if not 0 <= self.attention_levels <= len(self.channels):
            raise ConfigError(
                f"UNetConfig: attention_levels must be in 0..{len(self.channels)}, got {self.attention_levels}"
            )

    @property
    def embedding_dim(self) -> int:
        """Width of UNet2DModel's timestep embedding (4 x the first level's channels)."""
        return 4 * self.channels[0]


class ConditionalUNet(nn.Module):
    """UNet2DModel predicting the added noise, conditioned on a class or features.

    Parameters
    ----------
    config : UNetConfig
        Network size.
    conditions : ConditionSpace
        What the network is conditioned on.
    """

    def __init__(self, config: UNetConfig, conditions: ConditionSpace):
        from diffusers import UNet2DModel

        super().__init__()
        self.config = config
        self.conditions = conditions
        levels = len(config.channels)
        plain = levels - config.attention_levels
        self.unet = UNet2DModel(
            sample_size=config.image_size,
            in_channels=config.bands,
            out_channels=config.bands,
            block_out_channels=config.channels,
            down_block_types=("DownBlock2D",) * plain + ("AttnDownBlock2D",) * config.attention_levels,
            up_block_types=("AttnUpBlock2D",) * config.attention_levels + ("UpBlock2D",) * plain,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_groups,
            attention_head_dim=8,
            class_embed_type="identity",
        )
        width = config.embedding_dim
        if conditions.kind == "class":
            # Index len(names) is the null condition.
            self.class_embedding = nn.Embedding(conditions.size + 1, width)
        else:
            self.feature_embedding = nn.Sequential(
                nn.Linear(conditions.size, width), nn.SiLU(), nn.Linear(width, width)
            )
            self.null_embedding = nn.Parameter(torch.zeros(width))

    def embed_condition(self, condition: torch.Tensor, dropped: torch.Tensor | None = None) -> torch.Tensor:
        """Embedding of each condition, the null embedding where ``dropped``.

        Parameters
        ----------
        condition : Tensor
            int64 class indices (n,) or float standardised features (n, size).
        dropped : Tensor, optional
            bool (n,): use the null condition for these rows.

        Returns
        -------
        Tensor
            (n, embedding_dim).
        """
        if dropped is None:
            dropped = torch.zeros(len(condition), dtype=torch.bool, device=condition.device)
        if self.conditions.kind == "class":
            null_index = torch.full_like(condition, self.conditions.size)
            return self.class_embedding(torch.where(dropped, null_index, condition))
        embedded = self.feature_embedding(condition.float())
        return torch.where(dropped[:, None], self.null_embedding.expand_as(embedded), embedded)

    def forward(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        condition: torch.Tensor,
        dropped: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise in ``noisy`` at diffusion ``timesteps``.

        Parameters
        ----------
        noisy : Tensor
            (n, bands, H, W) noised images in model space.
        timesteps : Tensor
            int64 (n,) or scalar diffusion step(s).
        condition : Tensor
            As in :meth:`embed_condition`.
        dropped : Tensor, optional
            bool (n,) rows to treat as unconditional.

        Returns
        -------
        Tensor
            (n, bands, H, W) predicted noise.
        """
        return self.unet(noisy, timesteps, class_labels=self.embed_condition(condition, dropped)).sample

    def guided(
        self, noisy: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor, guidance: float
    ) -> torch.Tensor:
        """Classifier-free guided noise prediction.

        ``eps = eps_null + guidance * (eps_cond - eps_null)``: 0 samples
        without the condition, 1 with it as trained, larger values push the
        samples further towards the condition at the cost of diversity.

        Parameters
        ----------
        noisy : Tensor
            (n, bands, H, W).
        timestep : Tensor
            The current diffusion step.
        condition : Tensor
            As in :meth:`embed_condition`.
        guidance : float
            Guidance scale.

        Returns
        -------
        Tensor
            (n, bands, H, W) guided noise prediction.
        """
        if guidance == 1.0:
            return self(noisy, timestep, condition)
        count = len(noisy)
        dropped = torch.arange(2 * count, device=noisy.device) >= count
        both = self(torch.cat([noisy, noisy]), timestep, torch.cat([condition, condition]), dropped)
        conditional, unconditional = both[:count], both[count:]
        return unconditional + guidance * (conditional - unconditional)


@register_model(ARCHITECTURE, needs_target=True)
def conditional_unet(
    num_outputs: int = 3, in_channels: int = 3, image_size: int = 32, *, target: dict[str, Any], **options
) -> ConditionalUNet:
    """Registry constructor of :class:`ConditionalUNet`, from a generator folder's settings.

    Parameters
    ----------
    num_outputs : int
        Ignored (the outputs are the image bands).
    in_channels, image_size : int
        Image bands and side, unless ``options`` give ``bands`` / ``image_size``.
    target : dict
        The folder's target; its ``conditions`` are the
        :meth:`ConditionSpace.to_dict` of the condition space.
    **options
        The other :class:`UNetConfig` fields.

    Returns
    -------
    ConditionalUNet
    """
    settings = {"image_size": image_size, "bands": in_channels, **options}
    return ConditionalUNet(UNetConfig.from_dict(settings), ConditionSpace.from_dict(target["conditions"]))
