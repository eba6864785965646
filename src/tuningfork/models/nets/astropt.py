"""An autoregressive patch transformer in the manner of AstroPT.

The model reads an image as a sequence of patches (spiral from the centre, see
:mod:`tuningfork.models.patches`), optionally followed by one token per
photometric band (the SED), and learns to predict every token from the ones
before it with a causal transformer.  No labels are needed (AstroPT, Smith
et al. 2024; Euclid Q1 multi-modal model, Siudek et al. 2025).

Three choices make the embeddings useful after a few CPU minutes on a few
thousand galaxies rather than millions:

* each image is scaled by its own brightness (one scale for all bands, so
  colours survive), so faint and bright galaxies weigh alike in the loss;
* the target of every prediction is the next patch standardised on its own
  (the normalised-pixel loss of masked autoencoders), so the model is
  rewarded for predicting structure rather than the overall brightness;
* the embedding concatenates the token means of every block, as AstroPT found
  intermediate layers better than the last one for downstream tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ...config import Serialisable
from ...errors import ConfigError
from ...preprocessing import PreprocessConfig
from ..folder import ModelConfig
from ..patches import PATCH_ORDERS, image_to_patches
from ..registry import register_model

#: ``galaxy``: each image minus its median, divided by its 99th percentile
#: (over all bands at once); ``none``: pixels as preprocessed.
INPUT_SCALINGS = ("galaxy", "none")
#: ``patch``: each target patch standardised on its own; ``pixels``: raw values.
TARGETS = ("patch", "pixels")
#: ``layers``: token means of every block, concatenated; ``final``: token mean
#: of the final hidden states (the original AstroPT embedding).
POOLINGS = ("layers", "final")
# Percentile of an image's pixels that its scaling maps to 1.
_SCALE_PERCENTILE = 0.99
# Added to a patch's standard deviation before dividing by it, in units of the
# scaled image, so that flat sky patches do not divide by zero.
_PATCH_STD_FLOOR = 1e-2

#: Named sizes, from a model that trains in seconds on a laptop CPU to one that
#: needs a GPU (the latter is close to AstroPT's smallest published model).
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"embed_dim": 32, "depth": 2, "heads": 2},
    "small": {"embed_dim": 128, "depth": 4, "heads": 4},
    "base": {"embed_dim": 384, "depth": 8, "heads": 6},
    "large": {"embed_dim": 768, "depth": 12, "heads": 12},
}


@dataclass
class AstroPTConfig(Serialisable):
    """Architecture of an :class:`AstroPT` model; serialisable to a dict.

    Parameters
    ----------
    bands : int
        Image bands.
    image_size : int
        Side of the (square) input image in pixels; a multiple of ``patch_size``.
    patch_size : int
        Side of a patch in pixels.
    embed_dim : int
        Width of the transformer (and of the embeddings).
    depth : int
        Number of transformer blocks.
    heads : int
        Attention heads; must divide ``embed_dim``.
    mlp_ratio : float
        Width of the feed-forward layer relative to ``embed_dim``.
    dropout : float
        Dropout probability inside the blocks.
    order : {"spiral", "raster"}
        Patch reading order.
    input_scaling : {"galaxy", "none"}
        ``galaxy`` subtracts each image's median and divides by its 99th
        percentile, both over all bands, so colours are kept; ``none`` uses
        the preprocessed pixels as they are.
    target : {"patch", "pixels"}
        What the next-patch loss compares: each target patch standardised on
        its own (``patch``), or its raw values (``pixels``).
    pooling : {"layers", "final"}
        Embedding: the token means of every block, concatenated
        (``layers``, ``depth * embed_dim`` values), or the token mean of the
        final hidden states (``final``, ``embed_dim`` values).
    sed_columns : list of str
        Catalog columns (one per band, e.g. magnitudes) read as SED tokens
        after the image; empty for an image-only model.
    sed_center, sed_scale : list of float
        Per-column standardisation learnt at pretraining, in the units of the
        columns, so that embedding applies exactly the same scaling.
    """

    bands: int = 3
    image_size: int = 64
    patch_size: int = 8
    embed_dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    order: str = "spiral"
    input_scaling: str = "galaxy"
    target: str = "patch"
    pooling: str = "layers"
    sed_columns: list[str] = field(default_factory=list)
    sed_center: list[float] = field(default_factory=list)
    sed_scale: list[float] = field(default_factory=list)

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"AstroPT config: patch size {self.patch_size} px does not divide "
                f"image size {self.image_size} px"
            )
        if self.embed_dim % self.heads:
            raise ConfigError(
                f"AstroPT config: {self.heads} heads do not divide embed_dim {self.embed_dim}"
            )
        if self.order not in PATCH_ORDERS:
            raise ConfigError(f"AstroPT config: patch order '{self.order}' is unknown")
        for name, allowed in (
            ("input_scaling", INPUT_SCALINGS),
            ("target", TARGETS),
            ("pooling", POOLINGS),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"AstroPT config: {name} '{getattr(self, name)}' is unknown "
                    f"(choose one of {', '.join(allowed)})"
                )
        if self.sed_center and len(self.sed_center) != len(self.sed_columns):
            raise ConfigError("AstroPT config: sed_center needs one value per SED column")
        if self.sed_scale and len(self.sed_scale) != len(self.sed_columns):
            raise ConfigError("AstroPT config: sed_scale needs one value per SED column")

    @classmethod
    def from_size(cls, size: str, **overrides) -> AstroPTConfig:
        """Build a config from a named size in :data:`MODEL_SIZES` plus overrides."""
        if size not in MODEL_SIZES:
            raise ConfigError(
                f"AstroPT size '{size}' is unknown (choose one of {', '.join(MODEL_SIZES)})"
            )
        return cls(**{**MODEL_SIZES[size], **overrides})

    @property
    def n_patches(self) -> int:
        """Number of image tokens."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def patch_dim(self) -> int:
        """Values in one flattened patch."""
        return self.bands * self.patch_size**2

    @property
    def embedding_dim(self) -> int:
        """Length of an embedding (see ``pooling``)."""
        return self.embed_dim * (self.depth if self.pooling == "layers" else 1)


class AstroPT(nn.Module):
    """Causal transformer over image patches and optional SED tokens.

    Parameters
    ----------
    config : AstroPTConfig
        Architecture.
    """

    def __init__(self, config: AstroPTConfig):
        super().__init__()
        self.config = config
        n_sed = len(config.sed_columns)
        dim = config.embed_dim
        self.patch_embed = nn.Linear(config.patch_dim, dim)
        self.sed_embed = nn.Linear(1, dim)
        # A band whose flux is missing (NaN in the catalog) still occupies its
        # position, as a learnt "unknown" token, so positions keep their meaning.
        self.sed_missing = nn.Parameter(torch.zeros(dim))
        self.position = nn.Parameter(torch.zeros(1, config.n_patches + n_sed, dim))
        self.modality = nn.Embedding(2, dim)
        layer = nn.TransformerEncoderLayer(
            dim,
            config.heads,
            int(dim * config.mlp_ratio),
            config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.patch_head = nn.Linear(dim, config.patch_dim)
        self.sed_head = nn.Linear(dim, 1)
        nn.init.trunc_normal_(self.position, std=0.02)

    def _check_inputs(self, images: torch.Tensor, sed: torch.Tensor | None) -> None:
        expected = (self.config.bands, self.config.image_size, self.config.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ConfigError(
                f"AstroPT expects images of shape (batch, {expected[0]}, {expected[1]}, "
                f"{expected[2]}), "
                f"got {tuple(images.shape)}; set the preprocessing resize to {expected[1]} px"
            )
        n_sed = len(self.config.sed_columns)
        if n_sed and sed is None:
            raise ConfigError(
                f"AstroPT model was trained with SED columns {self.config.sed_columns}; "
                "pass sed values"
            )
        if sed is not None and (sed.ndim != 2 or sed.shape != (images.shape[0], n_sed)):
            raise ConfigError(
                f"AstroPT expects SED values of shape ({images.shape[0]}, {n_sed}), "
                f"got {tuple(sed.shape)}"
            )

    def scale_images(self, images: torch.Tensor) -> torch.Tensor:
        """Apply the config's ``input_scaling`` to a batch (a new tensor).

        Parameters
        ----------
        images : Tensor
            (batch, bands, height, width) preprocessed images.

        Returns
        -------
        Tensor
            Same shape; with ``galaxy`` scaling each image minus its median,
            divided by its 99th percentile (both over all bands, so band
            ratios are kept); an image whose percentile is not above its
            median is only shifted.
        """
        if self.config.input_scaling == "none":
            return images.clone()
        flat = images.reshape(len(images), -1)
        shifted = flat - flat.median(dim=1, keepdim=True).values
        # kthvalue rather than torch.quantile, which refuses large batches.
        rank = max(1, round(_SCALE_PERCENTILE * flat.shape[1]))
        top = shifted.kthvalue(rank, dim=1, keepdim=True).values
        scale = torch.where(top > 0, top, torch.ones_like(top))
        return (shifted / scale).reshape(images.shape)

    def tokens(
        self, images: torch.Tensor, sed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch (and SED) tokens of a batch, in reading order.

        Parameters
        ----------
        images : Tensor
            (batch, bands, image_size, image_size) preprocessed images;
            ``input_scaling`` is applied here.
        sed : Tensor, optional
            (batch, n_sed) standardised SED values; NaN marks a missing band.

        Returns
        -------
        patches : Tensor
            (batch, n_patches, patch_dim).
        sed : Tensor or None
            The SED values, unchanged.
        """
        self._check_inputs(images, sed)
        patches = image_to_patches(
            self.scale_images(images), self.config.patch_size, self.config.order
        )
        return patches, sed

    def hidden_states(self, images: torch.Tensor, sed: torch.Tensor | None = None) -> torch.Tensor:
        """Final (normalised) hidden state of every token.

        Parameters
        ----------
        images, sed : Tensor
            As in :meth:`tokens`.

        Returns
        -------
        Tensor
            (batch, n_patches + n_sed, embed_dim).
        """
        return self.norm(self._block_outputs(*self.tokens(images, sed))[-1])

    def _block_outputs(self, patches: torch.Tensor, sed: torch.Tensor | None) -> list[torch.Tensor]:
        image_tokens = self.patch_embed(patches) + self.modality.weight[0]
        parts = [image_tokens]
        if len(self.config.sed_columns):
            present = torch.isfinite(sed)
            values = torch.nan_to_num(sed, nan=0.0).unsqueeze(-1)
            sed_tokens = torch.where(
                present.unsqueeze(-1), self.sed_embed(values), self.sed_missing
            )
            parts.append(sed_tokens + self.modality.weight[1])
        hidden = torch.cat(parts, dim=1) + self.position
        length = hidden.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(
            length, device=hidden.device, dtype=hidden.dtype
        )
        outputs = []
        for block in self.blocks.layers:
            hidden = block(hidden, src_mask=causal, is_causal=True)
            outputs.append(hidden)
        return outputs

    def _targets(self, patches: torch.Tensor) -> torch.Tensor:
        if self.config.target == "pixels":
            return patches
        mean = patches.mean(dim=-1, keepdim=True)
        spread = patches.std(dim=-1, keepdim=True)
        return (patches - mean) / (spread + _PATCH_STD_FLOOR)

    def loss(
        self, images: torch.Tensor, sed: torch.Tensor | None = None, huber_delta: float = 1.0
    ) -> torch.Tensor:
        """Next-token prediction loss (Huber) of a batch.

        Every token but the first is predicted from the tokens before it:
        patches by a linear head (to the target of ``config.target``), SED
        values by a scalar head.  Missing SED values are left out of the loss.

        Parameters
        ----------
        images, sed : Tensor
            As in :meth:`tokens`.
        huber_delta : float
            Transition of the Huber loss from quadratic to linear, in the units
            of the targets.

        Returns
        -------
        Tensor
            Scalar loss.
        """
        patches, sed = self.tokens(images, sed)
        hidden = self.norm(self._block_outputs(patches, sed)[-1])
        n_patches = self.config.n_patches
        predicted_patches = self.patch_head(hidden[:, : n_patches - 1])
        loss = nn.functional.huber_loss(
            predicted_patches, self._targets(patches[:, 1:]), delta=huber_delta
        )
        if len(self.config.sed_columns):
            # The last image token predicts the first band, and so on.
            predicted_sed = self.sed_head(hidden[:, n_patches - 1 : -1]).squeeze(-1)
            present = torch.isfinite(sed)
            if present.any():
                sed_loss = nn.functional.huber_loss(
                    predicted_sed[present], sed[present], delta=huber_delta
                )
                loss = loss + sed_loss
        return loss

    def embed(self, images: torch.Tensor, sed: torch.Tensor | None = None) -> torch.Tensor:
        """Embedding of each galaxy, pooled over its tokens as ``config.pooling`` says.

        Parameters
        ----------
        images : Tensor
            (batch, bands, image_size, image_size).
        sed : Tensor, optional
            (batch, n_sed) standardised SED values.

        Returns
        -------
        Tensor
            (batch, config.embedding_dim).
        """
        outputs = self._block_outputs(*self.tokens(images, sed))
        if self.config.pooling == "final":
            return self.norm(outputs[-1]).mean(dim=1)
        # Each block's states are normalised (without learnt scales) so that no
        # block dominates distances between embeddings.
        width = (self.config.embed_dim,)
        return torch.cat(
            [nn.functional.layer_norm(output, width).mean(dim=1) for output in outputs], dim=1
        )

    def standardise_sed(self, values: torch.Tensor) -> torch.Tensor:
        """Apply the SED scaling stored in the config to raw catalog values.

        Parameters
        ----------
        values : Tensor
            (batch, n_sed) in the units of the catalog columns.

        Returns
        -------
        Tensor
            A new tensor of standardised values (NaN stays NaN).
        """
        center = torch.tensor(self.config.sed_center or [0.0] * values.shape[1], dtype=values.dtype)
        scale = torch.tensor(self.config.sed_scale or [1.0] * values.shape[1], dtype=values.dtype)
        return (values - center.to(values.device)) / scale.to(values.device)


ARCHITECTURE = "astropt"
#: ``target`` of an AstroPT model folder.
TARGET = {"kind": "self-supervised", "objective": "next-token prediction (Huber)"}


@register_model(ARCHITECTURE)
def astropt(num_outputs: int = 0, in_channels: int = 3, image_size: int = 64, **options) -> AstroPT:
    """Registry constructor of :class:`AstroPT` (self-supervised: ``num_outputs`` is unused).

    Parameters
    ----------
    num_outputs : int
        Ignored; the model predicts its own tokens.
    in_channels, image_size : int
        ``bands`` and ``image_size`` of the :class:`AstroPTConfig`.
    **options
        Its other fields.

    Returns
    -------
    AstroPT
    """
    return AstroPT(AstroPTConfig.from_dict({"bands": in_channels, "image_size": image_size, **options}))


def astropt_model_config(model: AstroPT, preprocess: PreprocessConfig, metrics: dict) -> ModelConfig:
    """The model-folder config of a trained :class:`AstroPT`, for :func:`tuningfork.models.save_model`.

    Parameters
    ----------
    model : AstroPT
        The trained model.
    preprocess : PreprocessConfig
        The preprocessing it was trained with.
    metrics : dict
        Training record (losses per epoch...), JSON-serialisable.

    Returns
    -------
    ModelConfig
    """
    options = model.config.to_dict()
    return ModelConfig(
        architecture=ARCHITECTURE,
        num_outputs=0,
        in_channels=options.pop("bands"),
        image_size=options.pop("image_size"),
        preprocessing=preprocess.to_dict(),
        target=dict(TARGET),
        architecture_options=options,
        metrics=metrics,
    )
