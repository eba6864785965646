"""DDPM training of a conditional generator with Lightning and EMA weights.

Each step noises a batch of model-space images at random diffusion steps,
replaces the condition by the null condition for a random ``condition_dropout``
share of the batch (so that one network learns both the conditional and the
unconditional noise for classifier-free guidance), and regresses the noise.
An exponential moving average of the weights (diffusers' ``EMAModel``) is
what gets saved: it gives visibly cleaner samples than the last weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.nn import functional as F

from ..data import GalaxyCollection, check_output
from ..errors import CatalogError, ConfigError
from ..models import ConditionalUNet, ConditionSpace, UNetConfig, save_model
from ..models.runtime import BestWeights, budget_reached, make_trainer, training_progress
from ..preprocessing import PreprocessConfig, Preprocessor, d4_apply_each, random_d4
from .folder import Generator
from .scaling import DiffusionScaling, check_generator_preprocess

#: Preprocessing of a generator by default: 32 px stamps, asinh stretch
#: (data units are sky-subtracted fluxes), no per-image normalisation.
DEFAULT_PREPROCESS = PreprocessConfig(output_size=32, stretch="asinh", normalisation="none")
# Seed of the fixed noise on which the loss is measured before and after training.
_PROBE_SEED = 12345


def noise_schedule(
    train_timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2", clip_range: float = 1.0
):
    """The DDPM noise schedule used in training (a diffusers ``DDPMScheduler``).

    Parameters
    ----------
    train_timesteps : int
        Diffusion steps of the forward process.
    beta_schedule : str
        diffusers beta schedule; the cosine schedule (``squaredcos_cap_v2``)
        suits small images better than the linear one.
    clip_range : float
        Samplers clip their estimate of the clean image to +-this, in model
        units (:attr:`DiffusionScaling.model_limit`).

    Returns
    -------
    diffusers.DDPMScheduler
    """
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=train_timesteps,
        beta_schedule=beta_schedule,
        clip_sample=True,
        clip_sample_range=float(clip_range),
        # Few-step samplers must start from pure noise at the last step.
        timestep_spacing="trailing",
    )


def diffusion_loss(
    model: ConditionalUNet,
    scheduler,
    images: torch.Tensor,
    condition: torch.Tensor,
    condition_dropout: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Noise-prediction (epsilon) MSE of one batch.

    Parameters
    ----------
    model : ConditionalUNet
        The network.
    scheduler : diffusers.DDPMScheduler
        Noise schedule.
    images : Tensor
        (n, bands, H, W) clean images in model space.
    condition : Tensor
        Class indices or standardised features of the images.
    condition_dropout : float
        Probability [0, 1] of replacing each image's condition by the null one.
    generator : torch.Generator, optional
        CPU random source of the noise, steps and dropout (fixed for a
        reproducible loss).

    Returns
    -------
    Tensor
        Scalar loss.
    """
    count, device = len(images), images.device
    noise = torch.randn(images.shape, generator=generator).to(device)
    steps = torch.randint(0, scheduler.config.num_train_timesteps, (count,), generator=generator).to(device)
    dropped = (torch.rand(count, generator=generator) < condition_dropout).to(device)
    noisy = scheduler.add_noise(images, noise, steps)
    return F.mse_loss(model(noisy, steps, condition.to(device), dropped), noise)


class DiffusionModule(L.LightningModule):
    """DDPM training step, AdamW with cosine decay, EMA of the weights.

    Parameters
    ----------
    model : ConditionalUNet
        The network to train.
    scheduler : diffusers.DDPMScheduler
        Noise schedule.
    learning_rate : float
        Peak AdamW learning rate.
    condition_dropout : float
        Share of conditions replaced by the null condition.
    ema_decay : float
        Largest EMA decay (reached after a warm-up of the average).
    augment : bool
        Random D4 rotation/flip of each image (orientation carries no
        morphology, so this multiplies the training set by eight).
    seed : int
        Seed of the augmentation.
    """

    def __init__(self, model, scheduler, learning_rate, condition_dropout, ema_decay, augment, seed):
        from diffusers.training_utils import EMAModel

        super().__init__()
        self.model = model
        self.scheduler = scheduler
        self.learning_rate = learning_rate
        self.condition_dropout = condition_dropout
        self.augment = augment
        self.ema = EMAModel(model.parameters(), decay=ema_decay)
        self._rng = np.random.default_rng(seed)

    def on_fit_start(self):
        self.ema.to(self.device)

    def training_step(self, batch, batch_index):
        images, condition = batch
        if self.augment:
            images = d4_apply_each(images, random_d4(self._rng, len(images)))
        loss = diffusion_loss(self.model, self.scheduler, images, condition, self.condition_dropout)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(images))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_index):
        self.ema.step(self.model.parameters())

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.learning_rate, weight_decay=0.0)
        progress = training_progress(self.trainer)
        # A cosine decay to zero over the epochs, or over the CPU budget when
        # that runs out first.
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * progress(step)))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def training_conditions(
    collection: GalaxyCollection, feature_columns: Sequence[str] | None = None
) -> tuple[ConditionSpace, list]:
    """The condition space of a training set and each galaxy's condition.

    Parameters
    ----------
    collection : GalaxyCollection
        Training galaxies.
    feature_columns : sequence of str, optional
        Condition on these numeric catalog columns (vote fractions, Sersic
        index, ellipticity...); by default on the collection's label column.

    Returns
    -------
    space : ConditionSpace
    conditions : list
        One class name or feature vector per galaxy.

    Raises
    ------
    MissingColumnError
        No label column (class conditioning) or a feature column is absent.
    CatalogError
        Some galaxy has no label or a non-finite feature value.
    """
    if not feature_columns:
        codes = collection.labels()
        space = ConditionSpace.from_classes(collection.class_names)
        return space, [space.names[code] for code in codes]
    values = collection.sed_values(feature_columns)
    bad_rows = np.flatnonzero(~np.all(np.isfinite(values), axis=1))
    if bad_rows.size:
        raise CatalogError(
            f"{collection.name}: {bad_rows.size} rows have missing or non-finite values in "
            f"{', '.join(feature_columns)} (e.g. id {collection.ids[bad_rows[0]]}); use subset() to leave them out"
        )
    space = ConditionSpace.fit_features(feature_columns, values)
    return space, list(values.astype(np.float64))


def train_generator(
    collection: GalaxyCollection,
    out_dir: str | Path,
    *,
    feature_columns: Sequence[str] | None = None,
    preprocess: PreprocessConfig | None = None,
    unet: UNetConfig | dict | None = None,
    max_epochs: int = 30,
    budget_s: float | None = None,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    condition_dropout: float = 0.1,
    ema_decay: float = 0.999,
    train_timesteps: int = 1000,
    augment: bool = True,
    accelerator: str = "auto",
    seed: int = 0,
    progress: bool = False,
    overwrite: bool = False,
) -> Path:
    """Train a conditional diffusion generator on a collection and save its model folder.

    Parameters
    ----------
    collection : GalaxyCollection
        Training galaxies (all with the same number of bands).
    out_dir : str or Path
        Model folder to write.
    feature_columns : sequence of str, optional
        Condition on these catalog columns; by default on the class label.
    preprocess : PreprocessConfig, optional
        Normalisation must be ``'none'`` (see
        :mod:`tuningfork.generation.scaling`); default
        :data:`DEFAULT_PREPROCESS` (32 px, asinh).  Use ``stretch='linear'``
        and a crop for already-stretched JPEG composites.
    unet : UNetConfig or dict, optional
        Network size; ``image_size`` and ``bands`` follow the data.
    max_epochs : int
        Passes over the data at most.
    budget_s : float, optional
        CPU-time budget in seconds (``time.process_time`` of this process);
        training stops when it is spent, and the model folder's metrics say
        so (``budget_reached``, ``epochs_run``).
    batch_size : int
        Galaxies per step.
    learning_rate : float
        Peak AdamW learning rate (cosine decay to zero over the epochs or
        the budget, whichever runs out first).
    condition_dropout : float
        Probability of training on the null condition (classifier-free
        guidance), in [0, 1).
    ema_decay : float
        EMA decay of the saved weights, in (0, 1).
    train_timesteps : int
        Steps of the forward diffusion.
    augment : bool
        Random D4 rotations/flips.
    accelerator : str
        Lightning accelerator (``auto``, ``cpu``, ``gpu``).
    seed : int
        Seed of the weights, noise, dropout and augmentation.
    progress : bool
        Show Lightning's progress bar.
    overwrite : bool
        Replace an existing output (else ``OutputExistsError``, before any work).

    Returns
    -------
    Path
        The model folder.

    Raises
    ------
    ConfigError
        Invalid settings or an empty collection.
    """
    from torch.utils.data import DataLoader, TensorDataset

    check_output(out_dir, kind="folder", overwrite=overwrite)
    preprocess = preprocess or DEFAULT_PREPROCESS
    check_generator_preprocess(preprocess, f"generator {out_dir}")
    if not 0 <= condition_dropout < 1:
        raise ConfigError(f"generator {out_dir}: condition_dropout must be in [0, 1), got {condition_dropout}")
    if not 0 < ema_decay < 1:
        raise ConfigError(f"generator {out_dir}: ema_decay must be in (0, 1), got {ema_decay}")
    if len(collection) == 0:
        raise ConfigError(f"{collection.name}: no galaxies to train a generator on")
    space, conditions = training_conditions(collection, feature_columns)

    stretched = collection.read_images(Preprocessor(preprocess), batch_size=64)
    scaling = DiffusionScaling.fit(stretched, preprocess)
    images = torch.from_numpy(scaling.to_model(stretched))
    settings = unet.to_dict() if isinstance(unet, UNetConfig) else dict(unet or {})
    settings.update(image_size=images.shape[-1], bands=images.shape[1])
    unet_config = UNetConfig.from_dict(settings)

    L.seed_everything(seed, verbose=False)
    model = ConditionalUNet(unet_config, space)
    scheduler = noise_schedule(train_timesteps, clip_range=scaling.model_limit)
    encoded = space.encode(conditions)
    probe = (images[:batch_size], encoded[:batch_size])
    loss_before = _probe_loss(model, scheduler, probe)
    model.train()

    module = DiffusionModule(model, scheduler, learning_rate, condition_dropout, ema_decay, augment, seed)
    # Without validation it only records the loss of every epoch: the EMA
    # weights, not a best epoch, are what gets saved.
    record = BestWeights()
    loader = DataLoader(
        TensorDataset(images, encoded),
        batch_size=min(batch_size, len(images)),
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    trainer = make_trainer(
        max_epochs=max_epochs, accelerator=accelerator, callbacks=[record], budget_s=budget_s, progress=progress
    )
    cpu_start = time.process_time()
    trainer.fit(module, loader)
    cpu_seconds = time.process_time() - cpu_start
    model = module.model.cpu()
    module.ema.to("cpu")
    module.ema.copy_to(model.parameters())
    schedule = {key: value for key, value in scheduler.config.items() if not key.startswith("_")}
    metrics = {
        "loss_per_epoch": record.train_losses,
        # The same images, noise and steps before training and with the EMA
        # weights after it: the loss must have dropped.
        "fixed_batch_loss_before": loss_before,
        "fixed_batch_loss_after": _probe_loss(model, scheduler, probe),
        "n_train": len(images),
        "epochs_run": int(trainer.current_epoch),
        "budget_reached": budget_reached(trainer),
        "train_cpu_seconds": cpu_seconds,
        "data": collection.name,
        "settings": {
            "max_epochs": max_epochs,
            "budget_s": budget_s,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "condition_dropout": condition_dropout,
            "ema_decay": ema_decay,
            "augment": augment,
            "seed": seed,
        },
    }
    generator = Generator(model.eval(), scaling, schedule, metrics, name=str(out_dir))
    return save_model(out_dir, generator.model, generator.model_config())


def _probe_loss(model: ConditionalUNet, scheduler, probe: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Loss on fixed images, noise, steps and conditions (no dropout)."""
    images, condition = probe
    with torch.no_grad():
        generator = torch.Generator().manual_seed(_PROBE_SEED)
        return float(diffusion_loss(model.eval(), scheduler, images, condition, 0.0, generator))
