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

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.nn import functional as F

from ..errors import ConfigError, ImageShapeError
from ..models import load_model, save_model
from ..models.encoder import forward_in_batches
from ..models.nets.autoencoder import ARCHITECTURE, DenoisingAutoencoder, autoencoder_model_config
from ..models.runtime import make_trainer
from ..preprocessing import estimate_noise_sigma


def _as_image_batch(images: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(images, dtype=np.float32)
    if array.ndim != 4:
        raise ImageShapeError(name, f"expected a (n, bands, H, W) stack, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ImageShapeError(name, "holds NaN or inf pixels; fill them in preprocessing first")
    return array


class DenoisingTask(L.LightningModule):
    """Lightning wrapper of a :class:`DenoisingAutoencoder`: MSE to the targets, AdamW.

    Parameters
    ----------
    model : DenoisingAutoencoder
        The network to train.
    learning_rate : float
        AdamW learning rate.
    inject : bool
        Add Gaussian noise to each input, of about each image's own noise
        level (the image itself is then the target).
    seed : int
        Seed of the injected noise.
    """

    def __init__(self, model: DenoisingAutoencoder, learning_rate: float, inject: bool, seed: int):
        super().__init__()
        self.model = model
        self.learning_rate = learning_rate
        self.inject = inject
        self.noise = torch.Generator().manual_seed(seed)

    def training_step(self, batch, batch_index):
        inputs, targets, sigma = batch
        if self.inject:
            # Noise strength varies per galaxy by a factor 0.5-1.5 so the
            # network does not overfit one noise level.  The draws come from
            # a CPU generator, whatever the device, so a seed gives the same noise.
            factor = 0.5 + torch.rand(sigma.shape, generator=self.noise)
            noise = torch.randn(inputs.shape, generator=self.noise)
            inputs = inputs + noise.to(inputs.device) * (sigma * factor.to(sigma.device)).view(-1, 1, 1, 1)
        loss = F.mse_loss(self.model(inputs), targets)
        self.log("train_loss", loss, prog_bar=False, on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.learning_rate)


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
    task = DenoisingTask(model, learning_rate, inject, seed)
    trainer = make_trainer(max_epochs=epochs, accelerator=accelerator)
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


def train_denoiser(
    collection,
    folder: str | Path,
    *,
    preprocess=None,
    max_images: int = 5000,
    seed: int = 0,
    overwrite: bool = False,
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
    overwrite : bool
        Replace an existing output (else ``OutputExistsError``, before any work).
    **training
        Passed to :func:`train_autoencoder` (``epochs``, ``base_channels``,
        ``depth``, ``noise_sigma``...).

    Returns
    -------
    folder : Path
    metrics : dict
        Training metrics, also stored in config.json.
    """
    from ..data.writers import check_output
    from ..preprocessing import PreprocessConfig, Preprocessor

    check_output(folder, kind="folder", overwrite=overwrite)
    config = preprocess or PreprocessConfig()
    if max_images < 1:
        raise ConfigError(f"train_denoiser: max_images must be at least 1, got {max_images}")
    rng = np.random.default_rng(seed)
    chosen = np.sort(
        rng.choice(len(collection), size=min(len(collection), max_images), replace=False)
    )
    images = collection.subset(chosen).read_images(Preprocessor(config))
    model, metrics = train_autoencoder(images, seed=seed, **training)
    metrics["n_train"] = int(chosen.size)
    folder = save_model(
        folder,
        model,
        autoencoder_model_config(model, image_size=images.shape[-1], preprocess=config.to_dict(), metrics=metrics),
    )
    return folder, metrics


def apply_denoiser(
    folder: str | Path, collection, output: str | Path, batch_size: int = 64, *, overwrite: bool = False
) -> Path:
    """Denoise a collection with a saved autoencoder and write an NPZ stack.

    The images are preprocessed exactly as for training (the folder's
    config), denoised, and written with their ids as ``images`` and ``ids``
    arrays, a file :meth:`GalaxyCollection.open` reads back.

    Parameters
    ----------
    folder : str or Path
        Autoencoder model folder, e.g. of :func:`train_denoiser`.
    collection : GalaxyCollection
        The galaxies to denoise.
    output : str or Path
        ``.npz`` file to write (atomically).
    batch_size : int
        Galaxies per batch.
    overwrite : bool
        Replace an existing output (else ``OutputExistsError``, before any work).

    Returns
    -------
    Path
    """
    from ..data.writers import atomic_path, check_output
    from ..preprocessing import PreprocessConfig, Preprocessor

    check_output(output, overwrite=overwrite)
    loaded = load_model(folder, architecture=ARCHITECTURE)
    model, config = loaded.network, loaded.config
    preprocess = Preprocessor(PreprocessConfig.from_dict(config.preprocessing))
    denoised = [
        denoise(model, batch.images, batch_size)
        for batch in collection.iter_batches(batch_size, preprocess=preprocess)
    ]
    with atomic_path(output) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, images=np.concatenate(denoised), ids=np.asarray(collection.ids))
    return Path(output)
