"""``train``: from a labelled data set to a calibrated model folder."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score

from ..data import GalaxyCollection, check_output
from ..errors import ConfigError, ModelError
from ..models import (
    DEFAULT_ARCHITECTURE,
    EnsembleNetwork,
    LoadedModel,
    ModelConfig,
    create_model,
    save_model,
)
from ..models.export import export_onnx
from ..models.folder import copy_matching_weights
from ..models.inference import network_logits
from ..models.runtime import (
    BestWeights,
    CpuBudget,
    find_callback,
    make_trainer,
    resolve_precision,
)
from ..preprocessing import PreprocessConfig, Preprocessor
from .calibration import (
    calibrated_probabilities,
    expected_calibration_error,
    fit_temperature,
    threshold_for_accuracy,
)
from .datamodule import (
    Target,
    choose_crop,
    class_codes,
    open_collection,
    split_indices,
    vote_table,
)
from .evaluate import first_question_majority, validation_triage, vote_metrics
from .finetune import freeze_encoder as freeze_encoder_weights
from .losses import balanced_class_weights, imbalance_ratio
from .module import Augmentation, GalaxyDataModule, GalaxyModule
from .predict import interpret
from .trees import get_tree, tree_for_columns

#: Peak learning rates that work for each family (AdamW, batch 64).
DEFAULT_LEARNING_RATES = {"rotinv": 2e-3, "hybrid": 1e-3}
_TIMM_LEARNING_RATE = 1e-3
# Triage thresholds reported in the training metrics.
_REPORTED_ACCURACIES = (0.95, 0.99)
#: Class-weighting schemes: the power of the inverse class frequency.
CLASS_WEIGHTINGS = {"sqrt": 0.5, "balanced": 1.0}
#: With ``class_weights="auto"``, classes are weighted (sqrt) above this
#: ratio of the largest to the smallest training class.
IMBALANCE_RATIO = 3.0
# Training that stopped on its budget after at most this many epochs is flagged.
_FEW_EPOCHS = 2

log = logging.getLogger(__name__)


class TrainingWarning(UserWarning):
    """A model was written but its validation says it may not be worth using."""


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    folder : Path
        The model folder written.
    config : ModelConfig
        Its config (metrics included).
    """

    folder: Path
    config: ModelConfig

    @property
    def metrics(self) -> dict[str, Any]:
        """Training and validation metrics."""
        return self.config.metrics


def _preprocess_config(preprocess: PreprocessConfig | dict | None, image_size: int) -> PreprocessConfig:
    if preprocess is None:
        return PreprocessConfig(output_size=image_size)
    config = preprocess if isinstance(preprocess, PreprocessConfig) else PreprocessConfig.from_dict(preprocess)
    if config.output_size is None:
        raise ConfigError("preprocessing for training needs an output_size (networks take square images of one size)")
    return config


def _resolve_target(collection: GalaxyCollection, target: str, tree: str | None, vote_loss: str | None):
    if tree is not None:
        # A catalog may hold only some questions (the challenge's 17 columns):
        # the tree is then the one asking those.
        tree = tree_for_columns(tree, collection.catalog.colnames).name
        votes, loss = vote_table(collection, tree, vote_loss)
        return Target(kind="votes", tree=tree, loss=loss), votes, None
    codes, class_names = class_codes(collection, target)
    return Target(kind="classes", column=target, class_names=class_names), codes, codes


def _with_extra(
    images: np.ndarray, codes: np.ndarray, target: Target, extra_images: np.ndarray, extra_labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The training images and class codes followed by the extra galaxies (new arrays)."""
    if target.kind != "classes":
        raise ConfigError("extra training galaxies can add to class labels only, not to votes")
    extra_images = np.asarray(extra_images, dtype=np.float32)
    labels = [str(label) for label in extra_labels]
    if len(labels) != len(extra_images):
        raise ConfigError(f"extra training galaxies: {len(extra_images)} images but {len(labels)} labels")
    unknown = sorted(set(labels) - set(target.class_names))
    if unknown:
        raise ConfigError(
            f"extra training galaxies: class(es) {', '.join(unknown)} not among the training classes "
            f"({', '.join(target.class_names)})"
        )
    if extra_images.shape[1:] != images.shape[1:]:
        raise ConfigError(
            f"extra training galaxies are {extra_images.shape[1:]} images, the training split {images.shape[1:]}; "
            "preprocess them the same way"
        )
    extra_codes = np.array([target.class_names.index(label) for label in labels], dtype=np.int64)
    return np.concatenate([images, extra_images]), np.concatenate([np.asarray(codes, dtype=np.int64), extra_codes])


def validation_summary(logits: np.ndarray, targets: np.ndarray, target: Target, model: LoadedModel) -> tuple[dict, dict, float]:
    """Calibrate on the validation split and measure it.

    Returns
    -------
    metrics : dict
        Accuracy, ECE before and after calibration, coverage at the reported
        accuracies (classes); RMSE and first-question agreement (votes).
    validation : dict
        ``confidence`` and ``correct`` lists, stored for triage.
    temperature : float
    """
    metrics: dict[str, Any] = {}
    if target.kind == "classes":
        temperature = fit_temperature(logits, targets)
        raw = calibrated_probabilities(logits)
        model.config.temperature = temperature
        outputs = interpret(logits, model)
        predicted = outputs.probabilities.argmax(axis=1)
        correct = predicted == targets
        metrics.update(
            val_accuracy=float(correct.mean()),
            val_balanced_accuracy=float(balanced_accuracy_score(targets, predicted)),
            val_ece_uncalibrated=expected_calibration_error(raw, targets),
            val_ece=expected_calibration_error(outputs.probabilities, targets),
            temperature=temperature,
        )
    else:
        temperature = 1.0
        tree = get_tree(target.tree)
        outputs = interpret(logits, model)
        answered, majority = first_question_majority(tree, targets)
        correct = np.zeros(len(targets), dtype=bool)
        correct[answered] = outputs.triage_probabilities[answered].argmax(axis=1) == majority
        scores = vote_metrics(outputs.probabilities, targets, tree.name)
        metrics.update(val_rmse=scores["rmse"], val_first_question_agreement=scores["agreement"][tree.questions[0].name])
    for accuracy in _REPORTED_ACCURACIES:
        threshold, coverage = threshold_for_accuracy(outputs.confidence, correct, accuracy)
        metrics[f"val_coverage_at_{accuracy:g}"] = coverage
        metrics[f"val_threshold_at_{accuracy:g}"] = threshold if math.isfinite(threshold) else None
    validation, metrics["val_class_triage"] = validation_triage(outputs, correct, model)
    return metrics, validation, temperature


def train(
    data: str | Path | GalaxyCollection,
    output: str | Path,
    target: str = "label",
    architecture: str = DEFAULT_ARCHITECTURE,
    *,
    tree: str | None = None,
    vote_loss: str | None = None,
    preprocess: PreprocessConfig | dict | None = None,
    image_size: int = 64,
    epochs: int = 30,
    budget_s: float | None = None,
    batch_size: int = 64,
    learning_rate: float | None = None,
    weight_decay: float = 0.05,
    label_smoothing: float = 0.1,
    class_weights: str | None = "auto",
    crop: str | None = "auto",
    mixup: float = 0.0,
    cutmix: float = 0.0,
    augmentation: Augmentation | None = None,
    architecture_options: dict | None = None,
    ensemble: int = 1,
    weights: str | Path | None = None,
    init_from: str | Path | None = None,
    freeze_encoder: bool = False,
    layer_decay: float | None = None,
    split_column: str | None = "split",
    val_fraction: float = 0.2,
    patience: int | None = None,
    seed: int = 0,
    accelerator: str = "auto",
    devices: int | str = "auto",
    precision: str = "auto",
    num_workers: int = 0,
    progress: bool = True,
    extra_train: tuple[np.ndarray, Sequence[str]] | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train a classifier (or Galaxy Zoo vote model) and write a model folder.

    Parameters
    ----------
    data : str, Path or GalaxyCollection
        Catalog, Galaxy10-style HDF5 file, stack or folder.
    output : str or Path
        Model folder to write (``weights.safetensors`` + ``config.json``).
    target : str
        Label column, for class targets.
    architecture : str
        ``"rotinv"`` (default), ``"hybrid"`` or a timm model name.
    tree : {"gz2", "gz_decals"}, optional
        Learn Galaxy Zoo votes over this decision tree instead of labels.
    vote_loss : {"dirichlet", "mse"}, optional
        Vote loss; by default Dirichlet-multinomial when vote counts are in
        the catalog, else MSE on fractions.
    preprocess : PreprocessConfig or dict, optional
        Preprocessing; by default ``PreprocessConfig(output_size=image_size)``.
    image_size : int
        Side of the network input, in pixels, when ``preprocess`` is not given.
    epochs : int
        Maximum number of passes over the training split.
    budget_s : float, optional
        CPU-time budget in seconds (``time.process_time`` of this process);
        training stops when it is spent and the learning-rate schedule
        anneals over it.  Results then depend on the machine's speed and
        load, even when the epochs run out first: the schedule follows the
        larger of the shares of steps and of budget spent, and early on the
        budget's share can lead (leave it out for a reproducible run).
    batch_size : int
        Galaxies per step.
    learning_rate : float, optional
        Peak AdamW learning rate; a per-architecture default otherwise.
    weight_decay : float
        AdamW weight decay.
    label_smoothing : float
        Cross-entropy label smoothing (classes).
    class_weights : {"auto", "sqrt", "balanced"} or None
        Loss weight of each class (classes): ``"sqrt"`` the square root of
        the inverse frequency, ``"balanced"`` the inverse frequency, None
        none; ``"auto"`` (default) is ``"sqrt"`` when the largest training
        class outnumbers the smallest more than :data:`IMBALANCE_RATIO`
        times, else None.  On gz1 (ratio 82; benchmarks/results/gz1.md)
        inverse-frequency weights give the highest balanced accuracy but
        call a quarter of the ellipticals something rarer (macro-F1 0.54);
        the square root keeps accuracy and gives the best macro-F1 (0.62).
        The best checkpoint is chosen by validation balanced accuracy
        either way.
    crop : {"auto"} or None
        ``"auto"`` (default): when ``preprocess`` sets no crop, keep the
        central square that :func:`~tuningfork.training.datamodule.choose_crop`
        measures on the training galaxies; None: keep what ``preprocess`` says.
        The crop is stored in the folder's preprocessing config and how it was
        chosen in ``metrics["crop"]``.
    mixup, cutmix : float
        Alphas of mixup and cutmix; 0 turns them off (classes).
    augmentation : Augmentation, optional
        D4, shift and flux-noise settings.
    architecture_options : dict, optional
        Extra keyword arguments of the network (e.g. ``{"group": "c4"}``).
    ensemble : int
        Train this many networks independently (seeds ``seed``,
        ``seed + 1``, ...; each with the whole ``budget_s``) and average
        their logits, as Dieleman et al. averaged 17 networks.  Costs K
        times the training and inference time.
    weights : str or Path, optional
        Local pretrained-weights file for a timm backbone.
    init_from : str or Path, optional
        Model folder (same architecture and input size) to fine-tune: its
        weights are copied wherever names and shapes match, so only the
        output layer starts fresh when the classes differ.  Each ensemble
        member starts from it.  A shipped model's name
        (:func:`tuningfork.models.shipped_models`) works too.
    freeze_encoder : bool
        Train the head only, on the frozen encoder of ``init_from`` (the
        choice when labels are few).
    layer_decay : float, optional
        Layer-wise learning-rate decay: each block below the head learns
        this many times slower than the one above it (e.g. 0.75).
    split_column : str, optional
        Catalog column with ``train``/``val``(/``test``) values; without it a
        stratified random ``val_fraction`` is held out.
    val_fraction : float
        Validation share when there is no split column.
    patience : int, optional
        Stop after this many epochs without a better validation score.
    seed : int
        Seed of the split, initialisation, shuffling and augmentation.
    accelerator, devices
        Passed to :class:`lightning.Trainer` (``"auto"`` uses a GPU if present).
    precision : str
        ``"auto"`` (default): bfloat16 mixed precision where the CPU or GPU
        has it, else float32 (:func:`~tuningfork.models.runtime.resolve_precision`);
        or a Lightning precision such as ``"32-true"``.  Weights are saved in
        float32 either way.
    num_workers : int
        DataLoader worker processes.
    progress : bool
        Show progress bars.
    extra_train : (ndarray, sequence of str), optional
        More training galaxies, e.g. generated ones of rare classes
        (:func:`tuningfork.generation.generate_for_classifier`): float32
        (n, bands, H, W) images already preprocessed as the training split
        is (``preprocess``), and their class names.  They join the training
        split only (class targets only; validation stays real).
    overwrite : bool
        Replace an existing output (else ``OutputExistsError``, before any work).

    Returns
    -------
    TrainResult

    Warns
    -----
    TrainingWarning
        When validation balanced accuracy is near chance (see
        :func:`training_warnings`) or the budget stopped training after one
        or two epochs; the messages are also kept in ``metrics["warnings"]``.
    """
    if class_weights not in (None, "auto", *CLASS_WEIGHTINGS):
        raise ConfigError(f"class_weights must be one of auto, {', '.join(CLASS_WEIGHTINGS)} or None, "
                          f"got {class_weights!r}")
    if crop not in (None, "auto"):
        raise ConfigError(f"crop must be 'auto' or None, got {crop!r}")
    if epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {epochs}")
    if freeze_encoder and init_from is None:
        raise ConfigError("a frozen encoder (head-only training) needs a model to start from (init_from)")
    if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
        raise ConfigError(f"layer_decay must lie in (0, 1], got {layer_decay}")
    check_output(output, kind="folder", overwrite=overwrite)
    L.seed_everything(seed, workers=True, verbose=False)
    collection = open_collection(data, label_column=None if tree else target)
    prep_config = _preprocess_config(preprocess, image_size)
    spec, targets, stratify = _resolve_target(collection, target, tree, vote_loss)
    splits = split_indices(collection, split_column, val_fraction, seed, stratify)
    crop_choice = None
    if crop == "auto" and prep_config.crop_pixels is None and prep_config.crop_fraction is None:
        crop_choice = choose_crop(collection.subset(splits["train"]), prep_config, seed)
        prep_config = dataclasses.replace(prep_config, crop_pixels=crop_choice.pixels)
        log.info("crop: %s", crop_choice.describe())
    options = dict(architecture_options or {})
    if ensemble != 1:
        options["ensemble"] = ensemble
    # Built before the images are read, so a bad architecture fails at once.
    network = create_model(
        architecture, spec.num_outputs, in_channels=collection[0].image.shape[0],
        image_size=prep_config.output_size, weights=weights, **options,
    )
    fine_tuning = None
    if init_from is not None:
        for member in (network.members if isinstance(network, EnsembleNetwork) else [network]):
            copy_matching_weights(member, init_from)
        trainable = freeze_encoder_weights(network) if freeze_encoder else sum(p.numel() for p in network.parameters())
        fine_tuning = {"init_from": str(init_from), "freeze_encoder": freeze_encoder, "layer_decay": layer_decay,
                       "trainable_parameters": int(trainable)}
    preprocessor = Preprocessor(prep_config)
    train_images = collection.subset(splits["train"]).read_images(preprocessor, 256, progress)
    val_images = collection.subset(splits["val"]).read_images(preprocessor, 256, progress)
    train_targets = targets[splits["train"]]
    if extra_train is not None:
        train_images, train_targets = _with_extra(train_images, train_targets, spec, *extra_train)
    weighting = _class_weighting(class_weights, spec, train_targets)
    weights_per_class = None
    if weighting["scheme"] is not None:
        weights_per_class = balanced_class_weights(
            train_targets, len(spec.class_names), CLASS_WEIGHTINGS[weighting["scheme"]]
        )
        weighting["weights"] = dict(zip(spec.class_names, np.round(weights_per_class, 4).tolist()))
    lr = learning_rate or DEFAULT_LEARNING_RATES.get(architecture, _TIMM_LEARNING_RATE)
    fit_options = {
        "spec": spec, "train_data": (train_images, train_targets), "val_data": (val_images, targets[splits["val"]]),
        "budget_s": budget_s, "epochs": epochs, "patience": patience, "progress": progress, "accelerator": accelerator,
        "devices": devices, "num_workers": num_workers, "batch_size": batch_size, "precision": precision,
        "module_options": {"learning_rate": lr, "weight_decay": weight_decay, "label_smoothing": label_smoothing,
                            "class_weights": weights_per_class, "mixup": mixup, "cutmix": cutmix, "augmentation": augmentation,
                           "layer_decay": layer_decay, "frozen_encoder": freeze_encoder},
    }
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    members = network.members if isinstance(network, EnsembleNetwork) else [network]
    # Members differ in initial weights (drawn in turn above), shuffling and
    # augmentation; each gets the whole budget.
    fits = [_fit_member(member, seed=seed + index, **fit_options) for index, member in enumerate(members)]
    cpu_seconds, wall_seconds = time.process_time() - started_cpu, time.perf_counter() - started_wall
    network = network.cpu().eval()
    config = ModelConfig(
        architecture=architecture,
        num_outputs=spec.num_outputs,
        in_channels=int(train_images.shape[1]),
        image_size=int(prep_config.output_size),
        preprocessing=prep_config.to_dict(),
        target=spec.to_dict(),
        architecture_options=options,
    )
    logits = network_logits(network, val_images)
    metrics, validation, temperature = validation_summary(
        logits, targets[splits["val"]], spec, LoadedModel(config=config, folder=Path(output), network=network)
    )
    config.temperature = temperature
    config.validation = validation
    epochs_per_member = [int(fit.current_epoch) for fit in fits]
    budget_stopped = budget_s is not None and any(
        find_callback(fit, CpuBudget).fraction_used() >= 1.0 for fit in fits
    )
    notes = training_warnings(metrics, spec, min(epochs_per_member) if budget_stopped else None)
    for note in notes:
        warnings.warn(note, TrainingWarning, stacklevel=2)
    config.metrics = metrics | {
        "warnings": notes,
        "class_weighting": weighting,
        "crop": None if crop_choice is None else dataclasses.asdict(crop_choice) | {"text": crop_choice.describe()},
        "epochs_run": int(sum(epochs_per_member)),
        "ensemble_members": len(fits),
        "train_cpu_seconds": cpu_seconds,
        "train_wall_seconds": wall_seconds,
        "n_train": len(splits["train"]),
        "initialised_from": str(init_from) if init_from is not None else None,
        "fine_tuning": fine_tuning,
        "n_generated": int(len(train_targets) - len(splits["train"])),
        "n_val": len(splits["val"]),
        "seed": seed,
        "learning_rate": lr,
        "batch_size": batch_size,
        "precision": resolve_precision(precision, accelerator),
    }
    # With several devices every process runs this function; one writes.
    if fits[0].is_global_zero:
        save_model(output, network, config)
        try:
            # The graph ONNX Runtime runs without torch (``predict --engine onnx``, catalog workers).
            export_onnx(output)
        except ModelError:
            pass  # an architecture the exporter cannot trace runs with torch only
    return TrainResult(folder=Path(output), config=config)


def _class_weighting(class_weights: str | None, spec: Target, train_targets: np.ndarray) -> dict[str, Any]:
    """The weighting scheme to use and the imbalance that chose it (``weights`` added later)."""
    if spec.kind != "classes":
        return {"scheme": None, "imbalance_ratio": None, "requested": class_weights}
    ratio = imbalance_ratio(train_targets, len(spec.class_names))
    scheme = class_weights
    if class_weights == "auto":
        scheme = "sqrt" if ratio > IMBALANCE_RATIO else None
    return {"scheme": scheme, "imbalance_ratio": ratio if math.isfinite(ratio) else None, "requested": class_weights}


def near_chance_balanced_accuracy(n_classes: int) -> float:
    """Validation balanced accuracy below which a classifier is flagged as near chance.

    Predicting one class for everything scores ``1/K``; each further class
    recognised perfectly adds ``1/K``.  Below ``1.5/K`` a model is closer to
    "one class for everything" than to "two classes right"; the margin is
    capped at 0.1 above chance so that binary models are flagged below 0.6,
    not 0.75.  The issue's gz1 model (K = 5, 0.288, three classes never
    predicted) falls under the 0.3 of five classes.

    Parameters
    ----------
    n_classes : int

    Returns
    -------
    float
    """
    chance = 1.0 / n_classes
    return chance + min(0.5 * chance, 0.1)


def training_warnings(metrics: dict[str, Any], spec: Target, budget_epochs: int | None) -> list[str]:
    """What a user must know before trusting a freshly trained model.

    Parameters
    ----------
    metrics : dict
        Validation metrics (``val_balanced_accuracy`` for classes).
    spec : Target
        What was learnt.
    budget_epochs : int, optional
        Epochs run when the CPU budget stopped training (None: it did not).

    Returns
    -------
    list of str
        One line per problem; empty when none.
    """
    notes = []
    if budget_epochs is not None and budget_epochs <= _FEW_EPOCHS:
        notes.append(f"budget reached after {budget_epochs} epoch(s): the model has barely trained; "
                     "give a larger --budget")
    if spec.kind == "classes":
        balanced = metrics.get("val_balanced_accuracy", math.nan)
        limit = near_chance_balanced_accuracy(len(spec.class_names))
        if not balanced >= limit:
            notes.append(f"validation balanced accuracy {balanced:.3f} is near chance "
                         f"({1 / len(spec.class_names):.3f} for {len(spec.class_names)} classes; flagged below "
                         f"{limit:.3f}): the model mostly predicts a few classes")
    return notes


def _fit_member(
    network: torch.nn.Module,
    *,
    seed: int,
    spec: Target,
    train_data: tuple[np.ndarray, np.ndarray],
    val_data: tuple[np.ndarray, np.ndarray],
    budget_s: float | None,
    epochs: int,
    patience: int | None,
    progress: bool,
    accelerator: str,
    devices: int | str,
    num_workers: int,
    batch_size: int,
    precision: str,
    module_options: dict,
) -> L.Trainer:
    """Train one network in place with Lightning and keep the weights of its best validation.

    Returns
    -------
    lightning.Trainer
        The finished trainer (epochs run, which process writes).
    """
    L.seed_everything(seed, workers=True, verbose=False)
    module = GalaxyModule(network, spec, seed=seed, **module_options)
    datamodule = GalaxyDataModule(*train_data, *val_data, batch_size=batch_size, seed=seed, num_workers=num_workers)
    if spec.kind == "votes":
        monitor, mode = "val_loss", "min"
    else:
        # Plain accuracy would pick the epoch that ignores the rare classes
        # of an imbalanced set; on a balanced one the two agree.
        monitor, mode = "val_balanced_accuracy", "max"
    best = BestWeights(monitor, mode)
    callbacks = [best]
    if patience:
        callbacks.append(L.pytorch.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience))
    trainer = make_trainer(
        max_epochs=epochs, accelerator=accelerator, devices=devices, callbacks=callbacks, budget_s=budget_s,
        progress=progress, precision=precision,
    )
    trainer.fit(module, datamodule=datamodule)
    best.restore(module)
    return trainer
