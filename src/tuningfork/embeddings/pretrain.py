"""Self-supervised pretraining of the AstroPT patch transformer (no labels).

The Lightning loop feeds batches of preprocessed images (and optional SED
values from catalog columns) to :meth:`AstroPT.loss`, keeps the weights with
the lowest validation loss, and saves a model folder like every other
tuningfork model, so that ``tuningfork embed`` can use it later with exactly
the same preprocessing.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data import GalaxyCollection, check_output
from ..errors import ConfigError
from ..models import AstroPT, AstroPTConfig, astropt_model_config, save_model
from ..models.runtime import BestWeights, budget_reached, make_trainer, training_progress
from ..preprocessing import PreprocessConfig, Preprocessor, d4_apply_each, random_d4

#: Preprocessed images of a data set are kept in memory between epochs when
#: they take less than this; larger sets are re-read each epoch.
CACHE_BYTES = 2 * 1024**3
#: Share of the optimiser steps spent warming the learning rate up.
WARMUP_FRACTION = 0.1
#: Gradients are clipped to this global norm, as in GPT-style training.
GRADIENT_CLIP = 1.0
#: Preprocessing when none is given.  Survey cutouts centre the galaxy in a
#: stamp about twice its size (Galaxy Zoo: ~200 of 424 px), so the central
#: half is kept, as Dieleman et al. (2015) cropped 207 px; 32 px with 8 px
#: patches gives 16 tokens that each see a part of the galaxy, not sky.  No
#: background subtraction or per-band normalisation: the model subtracts each
#: galaxy's median and scales all bands by one value itself (``input_scaling``
#: of :class:`AstroPTConfig`), which keeps colours.  On Galaxy Zoo, with
#: ``size="small"`` and 300 CPU s, the linear probe reaches 0.696 with these
#: settings, 0.635 with the whole 424 px stamp at 64 px, background
#: subtraction and per-band min-max scaling, and 0.648 on pixel PCA (0.759,
#: 0.657 and 0.647 with another seed and split; benchmarks/results/
#: pretrain_defaults.md and pretrain_defaults_seed1.md).
DEFAULT_PREPROCESS = PreprocessConfig(
    crop_fraction=0.5, output_size=32, subtract_background=False, normalisation="none"
)


def pretrain_preprocess(
    image_size: int | None = None,
    crop_pixels: int | None = None,
    crop_fraction: float | None = None,
    stretch: str | None = None,
    normalisation: str | None = None,
    subtract_background: bool | None = None,
) -> PreprocessConfig:
    """:data:`DEFAULT_PREPROCESS` with the settings a user gave.

    Parameters
    ----------
    image_size : int, optional
        Side of the model's input in pixels.
    crop_pixels, crop_fraction : optional
        The central square to keep (at most one); either replaces the
        default crop.
    stretch : str, optional
        Intensity stretch (see :class:`~tuningfork.preprocessing.PreprocessConfig`).
    normalisation : {'minmax', 'zscore', 'none'}, optional
        Per-band normalisation; the default ``'none'`` leaves the scaling to
        the model (one scale for all bands, which keeps colours).
    subtract_background : bool, optional
        Subtract each band's sky level first (default: no; the model
        subtracts each galaxy's median itself).

    Returns
    -------
    PreprocessConfig

    Raises
    ------
    ConfigError
        Both crops given, or a value out of range.
    """
    given = {"output_size": image_size, "stretch": stretch, "normalisation": normalisation,
             "subtract_background": subtract_background}
    changes = {name: value for name, value in given.items() if value is not None}
    if crop_pixels is not None or crop_fraction is not None:
        # A crop the user gave replaces the default one.
        changes.update(crop_pixels=crop_pixels, crop_fraction=crop_fraction)
    return dataclasses.replace(DEFAULT_PREPROCESS, **changes)


class GalaxyImages(Dataset):
    """Preprocessed images (and SED values) of a collection, read lazily.

    Parameters
    ----------
    collection : GalaxyCollection
        The galaxies.
    preprocess : PreprocessConfig
        Applied to every image.
    sed : ndarray, optional
        (n_galaxies, n_sed) standardised SED values.
    cache : bool
        Keep preprocessed images in memory after the first read.
    """

    def __init__(
        self,
        collection: GalaxyCollection,
        preprocess: PreprocessConfig,
        sed: np.ndarray | None = None,
        cache: bool = False,
    ):
        self.collection = collection
        self.preprocessor = Preprocessor(preprocess)
        self.sed = sed
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.collection)

    def __getitem__(self, index: int):
        image = self._cache.get(index) if self._cache is not None else None
        if image is None:
            galaxy = self.collection[index]
            image = self.preprocessor(galaxy.image, source=galaxy.id)
            if self._cache is not None:
                self._cache[index] = image
        sed = self.sed[index] if self.sed is not None else np.zeros(0, dtype=np.float32)
        return torch.from_numpy(image), torch.from_numpy(sed)


class AstroPTModule(L.LightningModule):
    """Lightning wrapper: next-token loss, AdamW, warm-up then cosine decay.

    Parameters
    ----------
    config : dict
        :meth:`AstroPTConfig.to_dict`.
    learning_rate : float
        Peak learning rate of AdamW.
    weight_decay : float
        AdamW weight decay.
    augment : bool
        Apply a random rotation/flip (D4) to each training image; galaxy
        orientation carries no information, so this multiplies the data.
    seed : int
        Seed of the augmentation.
    """

    def __init__(self, config: dict, learning_rate: float, weight_decay: float, augment: bool, seed: int):
        super().__init__()
        self.save_hyperparameters()
        self.model = AstroPT(AstroPTConfig.from_dict(config))
        self._rng = np.random.default_rng(seed)

    def _sed(self, sed: torch.Tensor) -> torch.Tensor | None:
        return sed if sed.shape[1] else None

    def training_step(self, batch, batch_index):
        images, sed = batch
        if self.hparams.augment:
            images = d4_apply_each(images, random_d4(self._rng, len(images)))
        loss = self.model.loss(images, self._sed(sed))
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(images))
        return loss

    def validation_step(self, batch, batch_index):
        images, sed = batch
        loss = self.model.loss(images, self._sed(sed))
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(images))

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams.learning_rate,
            weight_decay=self.hparams.weight_decay,
        )
        progress = training_progress(self.trainer)

        def factor(step: int) -> float:
            # A short warm-up keeps the first steps of a randomly initialised
            # transformer from diverging at the peak rate; a cosine decay
            # follows, to its end when a CPU budget stops training early.
            done = progress(step)
            if done < WARMUP_FRACTION:
                return 0.04 + 0.96 * done / WARMUP_FRACTION
            return 0.5 * (1.0 + math.cos(math.pi * (done - WARMUP_FRACTION) / (1.0 - WARMUP_FRACTION)))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "interval": "step"},
        }


def pretrain(
    collections: GalaxyCollection | Sequence[GalaxyCollection],
    out_dir: str | Path,
    size: str = "tiny",
    preprocess: PreprocessConfig | None = None,
    patch_size: int = 8,
    sed_columns: Sequence[str] = (),
    max_epochs: int = 30,
    budget_s: float | None = None,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.05,
    validation_fraction: float = 0.1,
    augment: bool = True,
    num_workers: int = 0,
    accelerator: str = "auto",
    seed: int = 0,
    progress: bool = False,
    overwrite: bool = False,
    **model_options,
) -> Path:
    """Pretrain an AstroPT model on unlabelled galaxies and save its model folder.

    Parameters
    ----------
    collections : GalaxyCollection or sequence of GalaxyCollection
        Training galaxies (several data sets are pooled); labels are ignored.
        All images must have the same number of bands.
    out_dir : str or Path
        Model folder to write (``weights.safetensors`` + ``config.json``).
    size : str
        A named size of :data:`~tuningfork.models.nets.astropt.MODEL_SIZES`.
    preprocess : PreprocessConfig, optional
        Image preprocessing; its ``output_size`` (pixels) is the model's
        image size.  Default :data:`DEFAULT_PREPROCESS`: the central half
        of each stamp at 32 px, no normalisation (the model scales each
        galaxy itself with one scale for all bands, see ``input_scaling`` of
        :class:`AstroPTConfig`, which keeps colours that a per-band
        normalisation would erase).
    patch_size : int
        Patch side in pixels; must divide the image size.
    sed_columns : sequence of str
        Catalog columns read as SED tokens (one per band), e.g. magnitudes.
    max_epochs : int
        Passes over the data at most.
    budget_s : float, optional
        CPU-time budget in seconds (``time.process_time`` of this process);
        training stops when it is spent, and the model folder's metrics say
        so (``budget_reached``, ``epochs_run``).
    batch_size : int
        Galaxies per step.
    learning_rate, weight_decay : float
        AdamW settings; the learning rate warms up over the first 10 % of
        the steps (or of the budget, when that runs out first), then decays
        on a cosine.
    validation_fraction : float
        Fraction of galaxies held out to pick the best epoch (0 for none).
    augment : bool
        Random D4 rotations/flips of the training images.
    num_workers : int
        DataLoader worker processes reading and preprocessing images.
    accelerator : str
        Lightning accelerator (``auto``, ``cpu``, ``gpu``).
    seed : int
        Seed of the initial weights, the split and the augmentation.
    progress : bool
        Show Lightning's progress bar.
    overwrite : bool
        Replace an existing output (else ``OutputExistsError``, before any work).
    **model_options
        Overrides of :class:`AstroPTConfig` fields (``embed_dim``, ``depth``...).

    Returns
    -------
    Path
        The model folder.
    """
    check_output(out_dir, kind="folder", overwrite=overwrite)
    preprocess = preprocess or DEFAULT_PREPROCESS
    if preprocess.output_size is None or preprocess.polar:
        raise ConfigError(
            "pretraining needs square images: set the preprocessing output_size "
            "and no polar transform"
        )
    if not 0 <= validation_fraction < 1:
        raise ConfigError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    collections = [collections] if isinstance(collections, GalaxyCollection) else list(collections)
    names = ", ".join(collection.name for collection in collections)
    total = sum(len(collection) for collection in collections)
    if total < 2:
        raise ConfigError(f"{names}: pretraining needs at least 2 galaxies, got {total}")
    L.seed_everything(seed, workers=True, verbose=False)

    band_counts = {
        collection.name: int(collection[0].image.shape[0])
        for collection in collections
        if len(collection)
    }
    if len(set(band_counts.values())) > 1:
        raise ConfigError(f"pretraining data sets have different numbers of bands: {band_counts}")
    bands = next(iter(band_counts.values()))
    sed = (
        np.concatenate([collection.sed_values(sed_columns) for collection in collections])
        if sed_columns
        else None
    )
    center, scale = [], []
    if sed is not None:
        center = np.nanmedian(sed, axis=0)
        # A robust scale, so a few catastrophic magnitudes do not squash the rest.
        scale = 1.4826 * np.nanmedian(np.abs(sed - center), axis=0)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        center = np.nan_to_num(center)
        sed = ((sed - center) / scale).astype(np.float32)
        center, scale = center.tolist(), scale.tolist()
    config = AstroPTConfig.from_size(
        size,
        bands=bands,
        image_size=preprocess.output_size,
        patch_size=patch_size,
        sed_columns=list(sed_columns),
        sed_center=center,
        sed_scale=scale,
        **model_options,
    )

    rows = np.random.default_rng(seed).permutation(total)
    n_val = round(validation_fraction * total)
    cache = total * bands * preprocess.output_size**2 * 4 < CACHE_BYTES
    starts = np.cumsum([0] + [len(collection) for collection in collections])
    data = torch.utils.data.ConcatDataset(
        [
            GalaxyImages(
                collection, preprocess, None if sed is None else sed[start:stop], cache=cache
            )
            for collection, start, stop in zip(collections, starts[:-1], starts[1:])
        ]
    )

    def loader(indices, shuffle):
        subset = torch.utils.data.Subset(data, indices.tolist())
        return DataLoader(
            subset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=num_workers,
            drop_last=shuffle and len(indices) > batch_size,
        )

    module = AstroPTModule(config.to_dict(), learning_rate, weight_decay, augment, seed)
    best = BestWeights("val_loss", "min")
    trainer = make_trainer(
        max_epochs=max_epochs, accelerator=accelerator, callbacks=[best], budget_s=budget_s,
        gradient_clip=GRADIENT_CLIP, progress=progress,
    )
    cpu_start = time.process_time()
    trainer.fit(module, loader(rows[n_val:], True), loader(rows[:n_val], False) if n_val else None)
    best.restore(module)
    model = module.model.cpu().eval()
    metrics = {
        "train_loss": best.train_losses,
        "val_loss": best.scores,
        "best_val_loss": min(best.scores) if best.scores else None,
        "n_train": int(len(rows) - n_val),
        "n_val": n_val,
        "epochs_run": int(trainer.current_epoch),
        "max_epochs": max_epochs,
        "budget_s": budget_s,
        "budget_reached": budget_reached(trainer),
        "train_cpu_seconds": time.process_time() - cpu_start,
        "data": [collection.name for collection in collections],
    }
    return save_model(out_dir, model, astropt_model_config(model, preprocess, metrics))
