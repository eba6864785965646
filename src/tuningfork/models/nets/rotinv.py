"""Rotation-invariant convolutional network after Dieleman, Willett & Dambre (2015).

Dieleman et al. cut each image into overlapping viewpoints (rotations and
flips of corner crops), ran every viewpoint through one shared convolutional
stack, and combined the features in a dense head.  Their crops are rotated so
that the galaxy centre always sits in the same corner; the viewpoints of a
rotated galaxy are therefore the same crops in another order.

Here the viewpoints are the top-left crops of ``g(x)`` for every element ``g``
of a subgroup of the dihedral group D4 (the four 90-degree rotations, or those
and their mirror images).  Applying any element ``h`` of that subgroup to the
input only permutes the viewpoints (``g h`` runs over the same group), and the
viewpoint features are combined with symmetric functions (mean and max), so
the network is exactly invariant to ``h``: predictions of a rotated image
equal the original's up to float summation order.  Dieleman concatenated the
viewpoint features, which is not exactly invariant.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from ..registry import register_model

#: The subgroups of D4 that the network can pool over, by name.
SYMMETRY_GROUPS = {"c4": 4, "d4": 8}


def dihedral_views(images: torch.Tensor, group: str) -> torch.Tensor:
    """Stack the images transformed by every element of a subgroup of D4.

    Parameters
    ----------
    images : Tensor
        (batch, bands, H, W) with H == W.
    group : {"c4", "d4"}
        ``"c4"``: the four 90-degree rotations; ``"d4"``: those and their
        mirror images.

    Returns
    -------
    Tensor
        (group order, batch, bands, H, W); element ``k`` (k < 4) is the image
        rotated k quarter turns as ``torch.rot90`` does, element ``4 + k`` its
        mirror image.
    """
    # Transposes and flips rather than torch.rot90, which has no ONNX export.
    turned = images.transpose(-2, -1)
    rotations = [images, turned.flip(-2), images.flip((-2, -1)), turned.flip(-1)]
    if group == "d4":
        rotations += [view.flip(-1) for view in rotations]
    return torch.stack(rotations)


def _conv_block(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class RotationInvariantNet(nn.Module):
    """Viewpoint CNN that is exactly invariant to a subgroup of D4.

    Parameters
    ----------
    num_outputs : int
        Number of logits (classes, or Galaxy Zoo answers).
    in_channels : int
        Bands of the input image.
    image_size : int
        Side of the square input, in pixels.
    crop_fraction : float
        Side of each viewpoint crop as a fraction of ``image_size``; crops
        larger than one half overlap in the centre, where the galaxy is
        (Dieleman et al. used 45/69 = 0.65).
    group : {"c4", "d4"}
        Symmetries pooled over: 4 rotations (4 viewpoints) or rotations and
        flips (8 viewpoints, twice the cost).  The default pools over
        rotations only, which keeps 64-pixel inference above 500 images/s on
        two CPU cores; flips are then learnt from augmentation, and averaged
        over by test-time augmentation.
    widths : tuple of int
        Channels of the convolutional stages; each stage halves the resolution.
    stem_stride : int
        Stride of the first (5x5) convolution.  2 replaces the first max-pool:
        full-resolution feature maps are what make a CPU slow, far more than
        the arithmetic.
    view_features : int
        Width of the shared dense layer applied to each viewpoint.
    hidden : int
        Width of the dense layer of the head.
    dropout : float
        Dropout before each dense layer of the head.

    Notes
    -----
    The backbone (:meth:`forward_features`: viewpoint stack and pooling) and
    the classifier ``head`` are separate, as in timm: ``forward(x) ==
    head(forward_features(x))``, and ``forward_head(features,
    pre_logits=True)`` returns what the last linear layer reads, the
    features an encoder uses.
    """

    def __init__(
        self,
        num_outputs: int,
        in_channels: int = 3,
        image_size: int = 64,
        crop_fraction: float = 0.65,
        group: str = "c4",
        widths: tuple[int, ...] = (32, 64, 96, 128),
        stem_stride: int = 2,
        view_features: int = 256,
        hidden: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__()
        if group not in SYMMETRY_GROUPS:
            raise ConfigError(f"rotinv: unknown symmetry group '{group}' (choose from {', '.join(SYMMETRY_GROUPS)})")
        if not 0.5 <= crop_fraction <= 1.0:
            raise ConfigError(f"rotinv: crop_fraction {crop_fraction} must lie in [0.5, 1]")
        self.group = group
        self.crop_size = round(image_size * crop_fraction)
        stages = []
        channels, side = in_channels, self.crop_size
        for index, width in enumerate(widths):
            # A wide first kernel sees spiral-arm scales at low cost while
            # the channel count is still small.
            if index == 0 and stem_stride > 1:
                stages.append(_conv_block(channels, width, 5, stride=stem_stride))
                side = (side - 1) // stem_stride + 1
            else:
                stages += [_conv_block(channels, width, 5 if index == 0 else 3), nn.MaxPool2d(2)]
                side //= 2
            channels = width
        self.features = nn.Sequential(*stages)
        if side < 1:
            raise ConfigError(f"rotinv: {len(widths)} stages shrink a {self.crop_size}-pixel crop to nothing")
        # The layout of the final feature map is kept (flattened, not
        # averaged): every viewpoint puts the galaxy centre in the same
        # corner, so position carries meaning, as in Dieleman's design.
        self.view_head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels * side * side, view_features), nn.ReLU(inplace=True)
        )
        #: Length of the pooled backbone features.
        self.num_features = 2 * view_features
        #: Length of the pre-logit features (timm's name).
        self.head_hidden_size = hidden
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * view_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_outputs),
        )

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled viewpoint features, (batch, num_features), of (batch, bands, H, W) images."""
        views = dihedral_views(images, self.group)[..., : self.crop_size, : self.crop_size]
        order, batch = views.shape[:2]
        features = self.view_head(self.features(views.reshape(order * batch, *views.shape[2:])))
        features = features.reshape(order, batch, -1)
        return torch.cat([features.mean(dim=0), features.amax(dim=0)], dim=1)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits of pooled features, or (``pre_logits``) what the last linear layer reads.

        Parameters
        ----------
        features : Tensor
            (batch, num_features) from :meth:`forward_features`.
        pre_logits : bool
            Stop before the output layer: (batch, head_hidden_size).

        Returns
        -------
        Tensor
        """
        return self.head[:-1](features) if pre_logits else self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return logits for a batch of (batch, bands, H, W) images."""
        return self.forward_head(self.forward_features(images))


@register_model("rotinv")
def rotinv(num_outputs: int, in_channels: int = 3, image_size: int = 64, **options) -> RotationInvariantNet:
    """Registry constructor of :class:`RotationInvariantNet` (the default architecture).

    Parameters
    ----------
    num_outputs, in_channels, image_size : int
        As for :class:`RotationInvariantNet`.
    **options
        Its other keyword arguments.

    Returns
    -------
    RotationInvariantNet
    """
    return RotationInvariantNet(num_outputs, in_channels=in_channels, image_size=image_size, **options)
