"""The LightningModule that trains every architecture on every target.

Augmentation runs here, on whole batches and on the training device: a
random element of D4 per galaxy (exact on a square pixel grid), a random
shift of a few pixels (centring errors of the survey cutouts), and flux
noise (a random brightness scale per galaxy plus Gaussian pixel noise).
For class targets, mixup and cutmix (timm's implementation) can be added;
they are part of the Astroformer recipe for small training sets.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..models.runtime import CpuBudget, find_callback
from ..preprocessing import d4_apply_each, random_d4
from .datamodule import Target
from .finetune import encoder_modules, layer_decay_groups
from .losses import classification_loss, vote_loss
from .trees import get_tree

# Share of the schedule spent warming the learning rate up from 1/25 of its peak.
_WARMUP_SHARE = 0.1


@dataclass
class Augmentation:
    """Training-time augmentation settings.

    Parameters
    ----------
    d4 : bool
        Apply a random rotation by a multiple of 90 degrees and flip.
    any_angle : bool
        Also rotate by a random angle (bilinear resampling), as Dieleman et
        al. (2015) did: a galaxy has no preferred orientation, not only none
        among the four grid directions.
    zoom : float
        Rescale by a factor drawn log-uniformly in [1/zoom, zoom] (1: off);
        Dieleman et al. used 1.3.
    shift_pixels : int
        Largest random shift, in pixels, along each axis (edges are
        replicated).
    flux_scale : float
        Standard deviation of the random relative brightness change.
    pixel_noise : float
        Standard deviation of added Gaussian noise, in preprocessed units.
    """

    d4: bool = True
    any_angle: bool = True
    zoom: float = 1.3
    shift_pixels: int = 2
    flux_scale: float = 0.1
    pixel_noise: float = 0.01


def shift_batch(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Shift every image of a batch by its own whole number of pixels.

    Parameters
    ----------
    images : Tensor
        (batch, bands, H, W).
    shifts : Tensor
        (batch, 2) integer shifts along rows and columns; pixels entering at
        an edge copy the edge.

    Returns
    -------
    Tensor
        New tensor of the same shape.
    """
    batch, _, height, width = images.shape
    reach = int(shifts.abs().max()) if shifts.numel() else 0
    if reach == 0:
        return images.clone()
    padded = F.pad(images, (reach, reach, reach, reach), mode="replicate")
    rows = torch.arange(height, device=images.device)[None, :] + reach - shifts[:, :1]
    cols = torch.arange(width, device=images.device)[None, :] + reach - shifts[:, 1:]
    index = torch.arange(batch, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[index, channel, rows[:, None, :, None], cols[:, None, None, :]]


def affine_batch(images: torch.Tensor, angles: torch.Tensor, scales: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Rotate, rescale and shift every image of a batch about its centre (bilinear).

    Parameters
    ----------
    images : Tensor
        (batch, bands, H, W).
    angles : Tensor
        (batch,) rotation angles in radians (pi / 2 equals ``torch.rot90`` with k = 1).
    scales : Tensor
        (batch,) magnifications (> 1 zooms in).
    shifts : Tensor
        (batch, 2) shifts in pixels along rows and columns.

    Returns
    -------
    Tensor
        New tensor of the same shape; pixels from outside copy the edge.
    """
    height, width = images.shape[-2:]
    cos, sin = torch.cos(angles) / scales, torch.sin(angles) / scales
    # affine_grid maps output to input coordinates in [-1, 1] (x = columns).
    theta = torch.stack([
        torch.stack([cos, -sin, -2.0 * shifts[:, 1] / width], dim=1),
        torch.stack([sin, cos, -2.0 * shifts[:, 0] / height], dim=1),
    ], dim=1).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class GalaxyModule(L.LightningModule):
    """Train a network on class labels or Galaxy Zoo votes.

    Parameters
    ----------
    network : torch.nn.Module
        Maps (batch, bands, H, W) images to (batch, outputs) logits.
    target : Target
        What to learn.
    learning_rate : float
        Peak learning rate of AdamW (one warm-up, then cosine decay).
    weight_decay : float
        AdamW weight decay.
    label_smoothing : float
        Label smoothing of the cross-entropy (classes).
    class_weights : ndarray, optional
        (n_classes,) loss weight per class (classes).
    mixup, cutmix : float
        Beta-distribution alpha of mixup and cutmix; 0 turns each off
        (classes).
    augmentation : Augmentation, optional
        Augmentation settings; ``Augmentation(d4=False, shift_pixels=0,
        flux_scale=0, pixel_noise=0)`` turns it off.
    seed : int
        Seed of the augmentation draws.
    layer_decay : float, optional
        Layer-wise learning-rate decay (:func:`~.finetune.layer_decay_groups`);
        None gives every parameter ``learning_rate``.
    frozen_encoder : bool
        The encoder's gradients are off (:func:`~.finetune.freeze_encoder`):
        keep its batch-norm statistics fixed too, so that only the head changes.

    Notes
    -----
    When the trainer has a :class:`~tuningfork.models.runtime.CpuBudget`
    (``make_trainer(budget_s=...)``), the learning-rate schedule follows the
    share of the budget spent.
    """

    def __init__(
        self,
        network: nn.Module,
        target: Target,
        learning_rate: float = 2e-3,
        weight_decay: float = 0.05,
        label_smoothing: float = 0.1,
        class_weights: np.ndarray | None = None,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        augmentation: Augmentation | None = None,
        seed: int = 0,
        layer_decay: float | None = None,
        frozen_encoder: bool = False,
    ):
        super().__init__()
        self.layer_decay = layer_decay
        self.frozen_encoder = frozen_encoder
        self.network = network
        self.target = target
        self.tree = get_tree(target.tree) if target.kind == "votes" else None
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.augmentation = augmentation or Augmentation()
        self.rng = np.random.default_rng(seed)
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights)
        self.val_balanced_accuracy = None
        if target.kind == "classes":
            from torchmetrics.classification import MulticlassAccuracy

            # Mean recall over classes, accumulated over the whole epoch.
            self.val_balanced_accuracy = MulticlassAccuracy(num_classes=len(target.class_names), average="macro")
        self.mixer = None
        if target.kind == "classes" and (mixup > 0 or cutmix > 0):
            from timm.data import Mixup

            self.mixer = Mixup(
                mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=label_smoothing,
                num_classes=len(target.class_names),
            )
        # Lightning compares every __init__ argument with this dict to name
        # it; an array argument makes that comparison raise, so it is ignored.
        self.save_hyperparameters(
            {"target": target.to_dict(), "learning_rate": learning_rate, "weight_decay": weight_decay,
             "label_smoothing": label_smoothing, "mixup": mixup, "cutmix": cutmix,
             "augmentation": asdict(self.augmentation), "seed": seed, "layer_decay": layer_decay,
             "frozen_encoder": frozen_encoder},
            ignore=["class_weights"],
        )

    def on_fit_start(self):
        # oneDNN convolutions are faster on channels-last tensors (about 1.5x
        # for rotinv in float32, 2.8x with bfloat16 on an AMX CPU).
        self.network.to(memory_format=torch.channels_last)

    def on_fit_end(self):
        # Saved weights must be contiguous (safetensors), and callers expect the usual layout.
        self.network.to(memory_format=torch.contiguous_format)

    def on_train_batch_start(self, batch, batch_idx):
        # A frozen encoder stays in evaluation mode (fixed batch-norm
        # statistics, no dropout); set per batch because Lightning restores
        # every module's mode, one by one, after each validation.
        if self.frozen_encoder:
            for module in encoder_modules(self.network):
                module.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of images."""
        return self.network(images)

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """Return an augmented copy of a training batch."""
        settings = self.augmentation
        if settings.d4:
            images = d4_apply_each(images, random_d4(self.rng, len(images)))
        shifts = self.rng.integers(-settings.shift_pixels, settings.shift_pixels + 1, size=(len(images), 2))
        shifts = torch.as_tensor(shifts, device=images.device)
        if settings.any_angle or settings.zoom != 1.0:
            angles = self.rng.uniform(0.0, 2 * math.pi if settings.any_angle else 0.0, len(images))
            scales = np.exp(self.rng.uniform(-math.log(settings.zoom), math.log(settings.zoom), len(images)))
            images = affine_batch(images, torch.as_tensor(angles, device=images.device),
                                  torch.as_tensor(scales, device=images.device), shifts.to(images.dtype))
        elif settings.shift_pixels:
            images = shift_batch(images, shifts)
        if settings.flux_scale or settings.pixel_noise:
            scale = 1.0 + settings.flux_scale * torch.as_tensor(
                self.rng.standard_normal((len(images), 1, 1, 1)), dtype=images.dtype, device=images.device
            )
            noise = torch.as_tensor(self.rng.standard_normal(images.shape), dtype=images.dtype, device=images.device)
            images = images * scale + settings.pixel_noise * noise
        return images

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
        """The target's loss (``smoothing`` is ignored for votes), in float32 whatever the training precision."""
        logits = logits.float()
        if self.tree is not None:
            return vote_loss(logits, targets, self.tree, self.target.loss)
        return classification_loss(logits, targets, smoothing, self.class_weights)

    def training_step(self, batch, batch_idx):
        images, targets = batch
        images = self.augment(images).contiguous(memory_format=torch.channels_last)
        smoothing = self.label_smoothing
        # timm's Mixup needs an even batch; it folds the smoothing into its soft targets.
        if self.mixer is not None and len(images) % 2 == 0:
            images, targets = self.mixer(images, targets)
            smoothing = 0.0
        loss = self.loss(self(images), targets, smoothing)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(images))
        return loss

    def validation_step(self, batch, batch_idx):
        images, targets = batch
        logits = self(images.contiguous(memory_format=torch.channels_last))
        loss = self.loss(logits, targets, 0.0)
        self.log("val_loss", loss, prog_bar=True, batch_size=len(images), sync_dist=True)
        if self.tree is None:
            accuracy = (logits.argmax(dim=1) == targets).float().mean()
            self.log("val_accuracy", accuracy, prog_bar=True, batch_size=len(images), sync_dist=True)
            self.val_balanced_accuracy.update(logits, targets)
            self.log("val_balanced_accuracy", self.val_balanced_accuracy, on_step=False, on_epoch=True)

    def configure_optimizers(self):
        if self.layer_decay is not None:
            parameters = layer_decay_groups(self.network, self.learning_rate, self.layer_decay)
        else:
            parameters = [parameter for parameter in self.parameters() if parameter.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=self.learning_rate, weight_decay=self.weight_decay)
        total_steps = max(int(self.trainer.estimated_stepping_batches), 1)
        budget = find_callback(self.trainer, CpuBudget)

        def schedule(step: int) -> float:
            progress = step / total_steps
            if budget is not None:
                progress = max(progress, budget.fraction_used())
            progress = min(progress, 1.0)
            if progress < _WARMUP_SHARE:
                return 0.04 + 0.96 * progress / _WARMUP_SHARE
            return 0.5 * (1.0 + math.cos(math.pi * (progress - _WARMUP_SHARE) / (1.0 - _WARMUP_SHARE)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class GalaxyDataModule(L.LightningDataModule):
    """In-memory training and validation tensors.

    Parameters
    ----------
    train_images, val_images : ndarray
        float32 (n, bands, H, W).
    train_targets, val_targets : ndarray
        Class codes (int64) or votes (float32, (n, answers)).
    batch_size : int
        Galaxies per training step.
    seed : int
        Seed of the shuffling.
    num_workers : int
        DataLoader worker processes (0: the training process reads).
    """

    def __init__(
        self,
        train_images: np.ndarray,
        train_targets: np.ndarray,
        val_images: np.ndarray,
        val_targets: np.ndarray,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        self.train = TensorDataset(torch.from_numpy(train_images), torch.from_numpy(train_targets))
        self.val = TensorDataset(torch.from_numpy(val_images), torch.from_numpy(val_targets))
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seeded) batches; a last batch of one is dropped (batch norm needs two)."""
        generator = torch.Generator().manual_seed(self.seed)
        drop_last = len(self.train) % self.batch_size == 1
        return DataLoader(
            self.train, batch_size=self.batch_size, shuffle=True, generator=generator,
            drop_last=drop_last, num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        """Validation batches in order."""
        return DataLoader(self.val, batch_size=max(self.batch_size, 256), num_workers=self.num_workers)
