"""A convolutional denoising autoencoder trained on the user's own images.

Faint galaxies are noisy, and an encoder trained on ImageNet reacts to that
noise; the ConvNeXt voting-clustering method therefore denoises every
cutout first.  Two ways to train without clean images:

* ``targets=None``: extra Gaussian noise, as strong as the noise already in
  the image, is injected on the fly and the network learns to remove it
  (Noisier2Noise-style; it then also removes much of the original noise);
* ``targets=`` a second, independent noisy realisation of the same galaxies
  (Noise2Noise), or the noiseless truth of simulations.

Without skip connections the bottleneck has to summarise the galaxy, so
the pooled bottleneck (:func:`embed`) can serve as an encoder for the
clustering; but such a network can only return a blurred blob for galaxies
a few pixels across.  With ``skips=True`` (a residual U-Net) the fine
structure travels around the bottleneck and the network only learns what to
remove: the better denoiser, whose bottleneck no longer summarises anything.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError, ImageShapeError, ModelError

ARCHITECTURE = "denoising_autoencoder"


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


def estimate_noise_sigma(images: np.ndarray) -> np.ndarray:
    """Robust per-image estimate of white pixel noise.

    The median absolute deviation of differences between horizontally
    adjacent pixels is insensitive to the smooth galaxy light, and the
    difference of two independent pixels has sqrt(2) times their noise.

    Parameters
    ----------
    images : ndarray
        (n, bands, H, W) images.

    Returns
    -------
    ndarray
        float32 (n,) noise standard deviations, in image units.
    """
    from astropy.stats import mad_std

    array = np.asarray(images, dtype=np.float32)
    differences = np.diff(array, axis=-1).reshape(array.shape[0], -1)
    return (mad_std(differences, axis=1, ignore_nan=True) / math.sqrt(2.0)).astype(np.float32)


def _as_image_batch(images: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(images, dtype=np.float32)
    if array.ndim != 4:
        raise ImageShapeError(name, f"expected a (n, bands, H, W) stack, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ImageShapeError(name, "holds NaN or inf pixels; fill them in preprocessing first")
    return array


class _DenoisingTask:
    """Factory of the Lightning module, so Lightning is imported only to train."""

    @staticmethod
    def build(model: DenoisingAutoencoder, learning_rate: float, inject: bool, seed: int):
        import lightning as L

        class DenoisingTask(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.model = model
                self.noise = torch.Generator().manual_seed(seed)

            def training_step(self, batch, batch_index):
                inputs, targets, sigma = batch
                if inject:
                    # Noise strength varies per galaxy by a factor 0.5-1.5 so
                    # the network does not overfit one noise level.
                    scale = sigma * (0.5 + torch.rand(sigma.shape, generator=self.noise))
                    noise = torch.randn(inputs.shape, generator=self.noise) * scale.view(
                        -1, 1, 1, 1
                    )
                    inputs = inputs + noise.to(inputs.device)
                loss = F.mse_loss(self.model(inputs), targets)
                self.log("train_loss", loss, prog_bar=False, on_epoch=True, on_step=False)
                return loss

            def configure_optimizers(self):
                return torch.optim.AdamW(self.model.parameters(), lr=learning_rate)

        return DenoisingTask()


def train_autoencoder(
    images: np.ndarray,
    *,
    targets: np.ndarray | None = None,
    noise_sigma: float | None = None,
    base_channels: int = 16,
    depth: int = 3,
    skips: bool = False,
    epochs: int = 20,
    batch_size: int = 32,
    learning_rate: float = 2e-3,
    seed: int = 0,
    accelerator: str = "auto",
) -> tuple[DenoisingAutoencoder, dict]:
    """Train a denoising autoencoder on the user's images.

    Parameters
    ----------
    images : ndarray
        (n, bands, H, W) preprocessed images (finite; same scale as at
        inference).
    targets : ndarray, optional
        (n, bands, H, W) targets: an independent noisy realisation of each
        image, or its noiseless truth.  Without targets, noise is injected
        on the fly and the image itself is the target.
    noise_sigma : float, optional
        Standard deviation of the injected noise, in image units; by
        default each image's own noise (:func:`estimate_noise_sigma`).
    base_channels, depth : int
        Network size (see :class:`DenoisingAutoencoder`).
    skips : bool
        Residual U-Net (the better denoiser) instead of a plain autoencoder
        (whose bottleneck can serve as an embedding).
    epochs : int
        Passes over the images.
    batch_size : int
        Images per optimisation step.
    learning_rate : float
        AdamW learning rate.
    seed : int
        Seed of the initial weights, the shuffling and the injected noise.
    accelerator : str
        Lightning accelerator ('auto', 'cpu', 'gpu').

    Returns
    -------
    model : DenoisingAutoencoder
        The trained network, in eval mode.
    metrics : dict
        ``final_train_loss`` (mean squared error of the last epoch), ``mode``
        ('inject' or 'pairs'), ``epochs``.
    """
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    inputs = _as_image_batch(images, "autoencoder training images")
    inject = targets is None
    target_array = inputs if inject else _as_image_batch(targets, "autoencoder training targets")
    if target_array.shape != inputs.shape:
        raise ImageShapeError(
            "autoencoder training targets",
            f"shape {target_array.shape} differs from images {inputs.shape}",
        )
    if epochs < 1 or batch_size < 1:
        raise ConfigError(
            f"train_autoencoder: epochs ({epochs}) and batch_size ({batch_size}) must be positive"
        )
    if noise_sigma is None:
        sigma = estimate_noise_sigma(inputs)
    elif noise_sigma > 0:
        sigma = np.full(inputs.shape[0], noise_sigma, dtype=np.float32)
    else:
        raise ConfigError(f"train_autoencoder: noise_sigma must be positive, got {noise_sigma}")

    torch.manual_seed(seed)
    model = DenoisingAutoencoder(inputs.shape[1], base_channels, depth, skips)
    dataset = TensorDataset(
        torch.from_numpy(inputs.copy()),
        torch.from_numpy(target_array.copy()),
        torch.from_numpy(sigma),
    )
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    task = _DenoisingTask.build(model, learning_rate, inject, seed)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, loader)
    model.eval()
    final_loss = float(trainer.callback_metrics.get("train_loss", torch.tensor(float("nan"))))
    return model.cpu(), {
        "final_train_loss": final_loss,
        "mode": "inject" if inject else "pairs",
        "epochs": epochs,
    }


def _batched(
    model: DenoisingAutoencoder, images: np.ndarray, batch_size: int, method
) -> np.ndarray:
    from .encoders import forward_in_batches

    model.eval()
    return forward_in_batches(
        method,
        _as_image_batch(images, "images"),
        bands=model.in_channels,
        batch_size=batch_size,
        device=next(model.parameters()).device,
        name="autoencoder input",
    )


def denoise(model: DenoisingAutoencoder, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Apply a trained autoencoder.

    Parameters
    ----------
    model : DenoisingAutoencoder
        Trained network.
    images : ndarray
        (n, bands, H, W) images, preprocessed as for training.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    ndarray
        New float32 array of the same shape.
    """
    return _batched(model, images, batch_size, model)


def embed(model: DenoisingAutoencoder, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Pooled bottleneck features of images.

    Parameters
    ----------
    model : DenoisingAutoencoder
        Trained network.
    images : ndarray
        (n, bands, H, W) images.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    ndarray
        float32 (n, model.latent_dim).
    """
    return _batched(model, images, batch_size, model.embed)


def denoising_gain(noisy: np.ndarray, denoised: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """PSNR and SSIM before and after denoising, against the noiseless truth.

    Parameters
    ----------
    noisy, denoised, truth : ndarray
        (n, bands, H, W) stacks; the data range of each truth image sets
        the PSNR peak and the SSIM range.

    Returns
    -------
    dict
        Means over images of ``psnr_noisy``, ``psnr_denoised`` (dB),
        ``ssim_noisy``, ``ssim_denoised``, and the gains ``psnr_gain`` and
        ``ssim_gain``.
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    stacks = [np.asarray(a, dtype=np.float64) for a in (noisy, denoised, truth)]
    if not stacks[0].shape == stacks[1].shape == stacks[2].shape or stacks[0].ndim != 4:
        raise ImageShapeError(
            "denoising_gain",
            f"need three equal (n, bands, H, W) stacks, got {[s.shape for s in stacks]}",
        )
    scores = {key: [] for key in ("psnr_noisy", "psnr_denoised", "ssim_noisy", "ssim_denoised")}
    for noisy_image, denoised_image, true_image in zip(*stacks):
        data_range = float(true_image.max() - true_image.min()) or 1.0
        window = (
            min(7, *true_image.shape[-2:]) // 2 * 2 + 1 if min(true_image.shape[-2:]) >= 7 else 3
        )
        for label, image in (("noisy", noisy_image), ("denoised", denoised_image)):
            scores[f"psnr_{label}"].append(
                peak_signal_noise_ratio(true_image, image, data_range=data_range)
            )
            scores[f"ssim_{label}"].append(
                structural_similarity(
                    true_image, image, data_range=data_range, channel_axis=0, win_size=window
                )
            )
    means = {key: float(np.mean(values)) for key, values in scores.items()}
    means["psnr_gain"] = means["psnr_denoised"] - means["psnr_noisy"]
    means["ssim_gain"] = means["ssim_denoised"] - means["ssim_noisy"]
    return means


def read_preprocessed(collection, preprocess, batch_size: int = 64) -> np.ndarray:
    """Read a whole collection through a preprocessor into one stack.

    Parameters
    ----------
    collection : GalaxyCollection
        The galaxies.
    preprocess : callable
        Applied to each (bands, H, W) image, e.g. a
        :class:`~tuningfork.preprocessing.Preprocessor`; it must give every
        image the same shape.
    batch_size : int
        Galaxies read at a time.

    Returns
    -------
    ndarray
        float32 (n, bands, h, w).
    """
    return np.concatenate(
        [
            np.stack(batch.images)
            for batch in collection.iter_batches(batch_size, preprocess=preprocess)
        ]
    ).astype(np.float32, copy=False)


def train_denoiser(
    collection,
    folder: str | Path,
    *,
    preprocess=None,
    max_images: int = 5000,
    seed: int = 0,
    **training,
) -> tuple[Path, dict]:
    """Train an autoencoder on (a random subset of) a collection and save it.

    Parameters
    ----------
    collection : GalaxyCollection
        The user's galaxies.
    folder : str or Path
        Model folder to write.
    preprocess : PreprocessConfig, optional
        Preprocessing of the images (default ``PreprocessConfig()``);
        stored in the folder and applied again by :func:`apply_denoiser`.
    max_images : int
        Galaxies drawn at random for training.
    seed : int
        Seed of the draw and of the training.
    **training
        Passed to :func:`train_autoencoder` (``epochs``, ``base_channels``,
        ``depth``, ``noise_sigma``...).

    Returns
    -------
    folder : Path
    metrics : dict
        Training metrics, also stored in config.json.
    """
    from ..preprocessing import PreprocessConfig, Preprocessor

    config = preprocess or PreprocessConfig()
    if max_images < 1:
        raise ConfigError(f"train_denoiser: max_images must be at least 1, got {max_images}")
    rng = np.random.default_rng(seed)
    chosen = np.sort(
        rng.choice(len(collection), size=min(len(collection), max_images), replace=False)
    )
    images = read_preprocessed(collection.subset(chosen), Preprocessor(config))
    model, metrics = train_autoencoder(images, seed=seed, **training)
    metrics["n_train"] = int(chosen.size)
    folder = save_autoencoder(
        model, folder, image_size=images.shape[-1], preprocess=config.to_dict(), metrics=metrics
    )
    return folder, metrics


def apply_denoiser(
    folder: str | Path, collection, output: str | Path, batch_size: int = 64
) -> Path:
    """Denoise a collection with a saved autoencoder and write an NPZ stack.

    The images are preprocessed exactly as for training (the folder's
    config), denoised, and written with their ids as ``images`` and ``ids``
    arrays, a file :meth:`GalaxyCollection.open` reads back.

    Parameters
    ----------
    folder : str or Path
        Model folder of :func:`train_denoiser` or :func:`save_autoencoder`.
    collection : GalaxyCollection
        The galaxies to denoise.
    output : str or Path
        ``.npz`` file to write (atomically).
    batch_size : int
        Galaxies per batch.

    Returns
    -------
    Path
    """
    from ..data.writers import atomic_path
    from ..preprocessing import PreprocessConfig, Preprocessor

    model, config = load_autoencoder(folder)
    preprocess = Preprocessor(PreprocessConfig.from_dict(config.preprocessing))
    denoised = [
        denoise(model, np.stack(batch.images), batch_size)
        for batch in collection.iter_batches(batch_size, preprocess=preprocess)
    ]
    with atomic_path(output) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, images=np.concatenate(denoised), ids=np.asarray(collection.ids))
    return Path(output)


def save_autoencoder(
    model: DenoisingAutoencoder,
    folder: str | Path,
    *,
    preprocess: dict | None = None,
    metrics: dict | None = None,
    image_size: int | None = None,
) -> Path:
    """Write a tuningfork model folder (weights.safetensors + config.json).

    Parameters
    ----------
    model : DenoisingAutoencoder
        Trained network.
    folder : str or Path
        Output folder (created).
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
    Path
        The folder.
    """
    from ..models.folder import ModelConfig, save_model
    from ..preprocessing import PreprocessConfig

    preprocessing = preprocess if preprocess is not None else PreprocessConfig().to_dict()
    image_size = image_size or preprocessing.get("output_size")
    if image_size is None:
        raise ConfigError(
            f"{folder}: give image_size; the preprocessing keeps each image's own size"
        )
    settings = model.config()
    config = ModelConfig(
        architecture=ARCHITECTURE,
        num_outputs=settings.pop("in_channels"),
        in_channels=model.in_channels,
        image_size=int(image_size),
        preprocessing=preprocessing,
        target={"kind": "denoising", "mode": (metrics or {}).get("mode")},
        architecture_options=settings,
        metrics=metrics or {},
    )
    return save_model(folder, model, config)


def load_autoencoder(folder: str | Path):
    """Read a model folder written by :func:`save_autoencoder`.

    Parameters
    ----------
    folder : str or Path
        Model folder.

    Returns
    -------
    model : DenoisingAutoencoder
        In eval mode.
    config : tuningfork.models.ModelConfig
        The folder's config (``preprocessing``, ``metrics``...).

    Raises
    ------
    MissingFileError, CorruptFileError
        If the folder is not a complete model folder.
    ModelError
        If it holds another architecture.
    """
    from ..models.folder import load_model, read_config

    config, _ = read_config(folder)
    if config.architecture != ARCHITECTURE:
        raise ModelError(f"{folder}: holds a '{config.architecture}' model, not a {ARCHITECTURE}")
    loaded = load_model(folder)
    return loaded.network, loaded.config
