"""An autoregressive patch transformer in the manner of AstroPT.

The model reads an image as a sequence of patches (spiral from the centre, see
:mod:`tuningfork.embeddings.patches`), optionally followed by one token per
photometric band (the SED), and learns to predict every token from the ones
before it with a causal transformer.  No labels are needed; the mean of the
last hidden states is the embedding used downstream (AstroPT, Smith et al.
2024; Euclid Q1 multi-modal model, Siudek et al. 2025).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, ModelError
from ..preprocessing import PreprocessConfig
from .patches import PATCH_ORDERS, image_to_patches

#: Named sizes, from a model that trains in seconds on a laptop CPU to one that
#: needs a GPU (the latter is close to AstroPT's smallest published model).
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"embed_dim": 32, "depth": 2, "heads": 2},
    "small": {"embed_dim": 128, "depth": 4, "heads": 4},
    "base": {"embed_dim": 384, "depth": 8, "heads": 6},
    "large": {"embed_dim": 768, "depth": 12, "heads": 12},
}


@dataclass
class AstroPTConfig:
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
    dropout: float = 0.0
    order: str = "spiral"
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

    def to_dict(self) -> dict:
        """Plain-JSON form of the config."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> AstroPTConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"AstroPT config: unknown keys {sorted(unknown)}")
        return cls(**values)


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

    def tokens(
        self, images: torch.Tensor, sed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch (and SED) targets of a batch, in reading order.

        Parameters
        ----------
        images : Tensor
            (batch, bands, image_size, image_size) preprocessed images.
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
        return image_to_patches(images, self.config.patch_size, self.config.order), sed

    def hidden_states(self, images: torch.Tensor, sed: torch.Tensor | None = None) -> torch.Tensor:
        """Final (normalised) hidden state of every token.

        Parameters
        ----------
        images : Tensor
            (batch, bands, image_size, image_size).
        sed : Tensor, optional
            (batch, n_sed) standardised SED values; NaN marks a missing band.

        Returns
        -------
        Tensor
            (batch, n_patches + n_sed, embed_dim).
        """
        return self._encode(*self.tokens(images, sed))

    def _encode(self, patches: torch.Tensor, sed: torch.Tensor | None) -> torch.Tensor:
        image_tokens = self.patch_embed(patches) + self.modality.weight[0]
        parts = [image_tokens]
        if len(self.config.sed_columns):
            present = torch.isfinite(sed)
            values = torch.nan_to_num(sed, nan=0.0).unsqueeze(-1)
            sed_tokens = torch.where(
                present.unsqueeze(-1), self.sed_embed(values), self.sed_missing
            )
            parts.append(sed_tokens + self.modality.weight[1])
        sequence = torch.cat(parts, dim=1) + self.position
        length = sequence.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(
            length, device=sequence.device, dtype=sequence.dtype
        )
        return self.norm(self.blocks(sequence, mask=causal, is_causal=True))

    def loss(
        self, images: torch.Tensor, sed: torch.Tensor | None = None, huber_delta: float = 1.0
    ) -> torch.Tensor:
        """Next-token prediction loss (Huber) of a batch.

        Every token but the first is predicted from the tokens before it:
        patches by a linear head to pixel values, SED values by a scalar head.
        Missing SED values are left out of the loss.

        Parameters
        ----------
        images : Tensor
            (batch, bands, image_size, image_size).
        sed : Tensor, optional
            (batch, n_sed) standardised SED values.
        huber_delta : float
            Transition of the Huber loss from quadratic to linear, in the units
            of the preprocessed pixels.

        Returns
        -------
        Tensor
            Scalar loss.
        """
        patches, sed = self.tokens(images, sed)
        hidden = self._encode(patches, sed)
        n_patches = self.config.n_patches
        predicted_patches = self.patch_head(hidden[:, : n_patches - 1])
        loss = nn.functional.huber_loss(predicted_patches, patches[:, 1:], delta=huber_delta)
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
        """Embedding of each galaxy: the mean of its final hidden states.

        Parameters
        ----------
        images : Tensor
            (batch, bands, image_size, image_size).
        sed : Tensor, optional
            (batch, n_sed) standardised SED values.

        Returns
        -------
        Tensor
            (batch, embed_dim).
        """
        return self.hidden_states(images, sed).mean(dim=1)

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


def save_astropt(
    model: AstroPT, folder: str | Path, preprocess: PreprocessConfig, metrics: dict
) -> Path:
    """Save a model folder like every tuningfork model (:func:`tuningfork.models.save_model`).

    Parameters
    ----------
    model : AstroPT
        The trained model.
    folder : str or Path
        Created if needed; earlier files are replaced atomically.
    preprocess : PreprocessConfig
        The preprocessing the model was trained with.
    metrics : dict
        Training record (losses per epoch...), JSON-serialisable.

    Returns
    -------
    Path
        The folder.
    """
    from ..models.folder import ModelConfig, save_model

    options = model.config.to_dict()
    config = ModelConfig(
        architecture=ARCHITECTURE,
        num_outputs=0,
        in_channels=options.pop("bands"),
        image_size=options.pop("image_size"),
        preprocessing=preprocess.to_dict(),
        target={"kind": "self-supervised", "objective": "next-token prediction (Huber)"},
        architecture_options=options,
        metrics=metrics,
    )
    return save_model(folder, model, config)


def load_astropt(folder: str | Path):
    """Load a model folder written by :func:`save_astropt`.

    Parameters
    ----------
    folder : str or Path
        The model folder.

    Returns
    -------
    model : AstroPT
        In evaluation mode, on the CPU.
    preprocess : PreprocessConfig
        The preprocessing to apply to images before :meth:`AstroPT.embed`.
    config : tuningfork.models.ModelConfig
        The folder's config (metrics, versions).
    """
    from ..models.folder import load_model, read_config

    config, _ = read_config(folder)
    if config.architecture != ARCHITECTURE:
        raise ModelError(
            f"{folder}: holds a '{config.architecture}' model, not an {ARCHITECTURE} model"
        )
    loaded = load_model(folder)
    return loaded.network, PreprocessConfig.from_dict(loaded.config.preprocessing), loaded.config
