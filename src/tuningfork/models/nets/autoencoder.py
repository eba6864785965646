"""The convolutional denoising autoencoder of the clustering methods.

Trained by :mod:`tuningfork.clustering.autoencoder` on the user's own noisy
images.  Without skip connections the bottleneck has to summarise the
galaxy, so its pooled bottleneck (:meth:`DenoisingAutoencoder.embed`) can
serve as an encoder; with ``skips=True`` (a residual U-Net) it is the better
denoiser, whose bottleneck no longer summarises anything.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn import functional as F

from ...errors import ConfigError
from ..folder import ModelConfig
from ..registry import register_model

ARCHITECTURE = "denoising_autoencoder"
#: ``target.kind`` of an autoencoder model folder.
TARGET_KIND = "denoising"


class DenoisingAutoencoder(nn.Module):
    """Convolutional encoder-decoder, optionally with skip connections.

    Parameters
    ----------
    in_channels : int
        Bands of the images.
    base_channels : int
        Channels of the first level; doubled at every downsampling.
    depth : int
        Number of stride-2 downsamplings; images are padded internally to a
        multiple of ``2**depth`` pixels.
    skips : bool
        Residual U-Net: every decoder level also sees the encoder output of
        the same resolution, and the network predicts a correction added to
        its input.  Better denoising; the bottleneck is then no embedding.
    """

    # Layers of the stem (conv + activation) before the first downsampling;
    # each encoder level then has 4 (strided conv, activation, conv,
    # activation) and each decoder level 3 (upsample, conv, activation).
    _STEM_LAYERS = 2
    _ENCODER_LEVEL_LAYERS = 4

    def __init__(
        self, in_channels: int = 1, base_channels: int = 16, depth: int = 3, skips: bool = False
    ):
        super().__init__()
        if in_channels < 1 or base_channels < 1 or depth < 1:
            raise ConfigError(
                f"DenoisingAutoencoder: in_channels ({in_channels}), "
                f"base_channels ({base_channels}) and depth ({depth}) must be positive"
            )
        self.in_channels = in_channels
        self.base_channels = base_channels
        self.depth = depth
        self.skips = bool(skips)
        widths = [base_channels * 2**level for level in range(depth + 1)]
        encoder: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1), nn.GELU()]
        for narrow, wide in itertools.pairwise(widths):
            encoder += [
                nn.Conv2d(narrow, wide, 3, stride=2, padding=1),
                nn.GELU(),
                nn.Conv2d(wide, wide, 3, padding=1),
                nn.GELU(),
            ]
        decoder: list[nn.Module] = []
        for wide, narrow in zip(widths[:0:-1], widths[-2::-1]):
            decoder += [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(wide + narrow if self.skips else wide, narrow, 3, padding=1),
                nn.GELU(),
            ]
        decoder.append(nn.Conv2d(widths[0], in_channels, 3, padding=1))
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    @property
    def latent_dim(self) -> int:
        """Length of the pooled bottleneck vector returned by :meth:`embed`."""
        return self.base_channels * 2**self.depth

    def config(self) -> dict:
        """Constructor arguments, to rebuild the network from a model folder."""
        return {
            "in_channels": self.in_channels,
            "base_channels": self.base_channels,
            "depth": self.depth,
            "skips": self.skips,
        }

    def _padded(self, images: torch.Tensor) -> torch.Tensor:
        multiple = 2**self.depth
        height, width = images.shape[-2:]
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h or pad_w:
            # Reflection keeps the sky statistics at the new border.
            mode = "reflect" if min(height, width) > max(pad_h, pad_w) else "replicate"
            images = F.pad(images, (0, pad_w, 0, pad_h), mode=mode)
        return images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Denoise a (batch, bands, H, W) tensor; returns the same shape."""
        height, width = images.shape[-2:]
        padded = self._padded(images)
        restored = padded + self._unet(padded) if self.skips else self.decoder(self.encoder(padded))
        return restored[..., :height, :width]

    def _unet(self, images: torch.Tensor) -> torch.Tensor:
        """The correction predicted by the skip-connected network."""
        features, levels = images, []
        for index, layer in enumerate(self.encoder, start=1):
            features = layer(features)
            # The end of the stem and of every level: one output per resolution.
            if (
                index >= self._STEM_LAYERS
                and (index - self._STEM_LAYERS) % self._ENCODER_LEVEL_LAYERS == 0
            ):
                levels.append(features)
        decoder = list(self.decoder)
        for level in range(self.depth):
            upsample, conv, activation = decoder[3 * level : 3 * level + 3]
            skip = levels[self.depth - 1 - level]
            features = activation(conv(torch.cat([skip, upsample(features)], dim=1)))
        return decoder[-1](features)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Return the spatially averaged bottleneck, (batch, latent_dim)."""
        return self.encoder(self._padded(images)).mean(dim=(-2, -1))


@register_model(ARCHITECTURE)
def denoising_autoencoder(
    num_outputs: int = 0, in_channels: int = 1, image_size: int | None = None, **options
) -> DenoisingAutoencoder:
    """Registry constructor of :class:`DenoisingAutoencoder`.

    The network is fully convolutional: it accepts any image size, and its
    outputs are its input bands, so ``num_outputs`` and ``image_size`` are
    not used.

    Parameters
    ----------
    num_outputs : int
        Ignored (the outputs are the ``in_channels`` bands).
    in_channels : int
        Bands of the images.
    image_size : int, optional
        Ignored.
    **options
        ``base_channels``, ``depth``, ``skips``.

    Returns
    -------
    DenoisingAutoencoder
    """
    return DenoisingAutoencoder(in_channels, **options)


def autoencoder_model_config(
    model: DenoisingAutoencoder,
    *,
    preprocess: dict | None = None,
    metrics: dict | None = None,
    image_size: int | None = None,
) -> ModelConfig:
    """The model-folder config of a trained autoencoder, for :func:`tuningfork.models.save_model`.

    Parameters
    ----------
    model : DenoisingAutoencoder
        Trained network.
    preprocess : dict, optional
        ``PreprocessConfig.to_dict()`` of the training images, applied again
        before denoising new images; default ``PreprocessConfig()``.
    metrics : dict, optional
        Training metrics to record (``mode`` says how it was trained).
    image_size : int, optional
        Side of the training images, in pixels (recorded; the network
        accepts any size); by default the preprocessing's ``output_size``.

    Returns
    -------
    ModelConfig

    Raises
    ------
    ConfigError
        When no image size is given and the preprocessing has none.
    """
    from ...preprocessing import PreprocessConfig

    preprocessing = preprocess if preprocess is not None else PreprocessConfig().to_dict()
    image_size = image_size or preprocessing.get("output_size")
    if image_size is None:
        raise ConfigError("autoencoder: give image_size; the preprocessing keeps each image's own size")
    settings = model.config()
    return ModelConfig(
        architecture=ARCHITECTURE,
        num_outputs=settings.pop("in_channels"),
        in_channels=model.in_channels,
        image_size=int(image_size),
        preprocessing=preprocessing,
        target={"kind": TARGET_KIND, "mode": (metrics or {}).get("mode")},
        architecture_options=settings,
        metrics=metrics or {},
    )
