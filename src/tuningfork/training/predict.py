"""Apply a model folder to new images and write a catalog with triage.

``predict`` needs only the model folder and the images: the folder's config
says how to preprocess, what the outputs mean, which temperature calibrates
them, and (from its validation split) which confidence threshold reaches a
requested accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import GalaxyCollection, write_table
from ..errors import ConfigError, ModelError
from ..models import LoadedModel, load_model
from ..models.export import OnnxRuntimeNetwork
from ..models.runtime import network_logits
from ..preprocessing import PreprocessConfig, Preprocessor
from .calibration import calibrated_probabilities, threshold_for_accuracy, triage
from .datamodule import class_codes, open_collection
from .losses import vote_fractions
from .trees import get_tree

#: How ``predict`` can run the network: eager PyTorch (CPU or GPU), or
#: ONNX Runtime (CPU; faster there for the default network).
INFERENCE_ENGINES = ("torch", "onnx")


@dataclass
class Outputs:
    """What a model says about a set of galaxies.

    Attributes
    ----------
    probabilities : ndarray
        (n, classes) calibrated class probabilities, or (n, answers) vote
        fractions normalised per question.
    predicted : list of str
        Predicted class, or the leaf of the decision tree.
    confidence : ndarray
        Probability of the predicted class; for vote models the largest
        fraction of the first question.
    triage_probabilities : ndarray
        The distribution triage is computed on (the class probabilities,
        or the first question's fractions).
    """

    probabilities: np.ndarray
    predicted: list[str]
    confidence: np.ndarray
    triage_probabilities: np.ndarray


def interpret(logits: np.ndarray, model: LoadedModel) -> Outputs:
    """Turn raw network outputs into probabilities, predictions and confidence.

    Parameters
    ----------
    logits : ndarray
        (n, outputs) from :func:`network_logits`.
    model : LoadedModel
        The model that produced them.

    Returns
    -------
    Outputs
    """
    config = model.config
    if config.is_votes:
        tree = get_tree(config.target["tree"])
        fractions = vote_fractions(torch.from_numpy(logits), tree, config.target["loss"]).numpy().astype(np.float64)
        root = fractions[:, tree.question_slices()[0]]
        return Outputs(fractions, tree.leaf(fractions), root.max(axis=1), root)
    probabilities = calibrated_probabilities(logits, config.temperature)
    names = np.array(config.class_names)
    return Outputs(probabilities, names[probabilities.argmax(axis=1)].tolist(), probabilities.max(axis=1), probabilities)


def _check_input_shape(model: LoadedModel, shape: tuple, source: str) -> None:
    expected = (model.config.in_channels, model.config.image_size, model.config.image_size)
    if tuple(shape) != expected:
        raise ModelError(f"{source}: images preprocess to {tuple(shape)} but model {model.folder} expects {expected}")


def model_images(model: LoadedModel, collection: GalaxyCollection, batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """Read a collection preprocessed exactly as the model's training data was.

    Parameters
    ----------
    model : LoadedModel
    collection : GalaxyCollection
    batch_size : int
        Images read at a time.
    progress : bool
        Show a progress bar.

    Returns
    -------
    ndarray
        float32 (n, bands, H, W).
    """
    preprocessor = Preprocessor(PreprocessConfig.from_dict(model.config.preprocessing))
    images = collection.read_images(preprocessor, batch_size, progress)
    _check_input_shape(model, images.shape[1:], collection.name)
    return images


def collection_logits(
    model: LoadedModel, collection: GalaxyCollection, batch_size: int = 256, tta: bool = False, progress: bool = False,
    engine: str = "torch",
) -> np.ndarray:
    """Network outputs for every galaxy, reading one batch of images at a time.

    Unlike :func:`model_images` followed by :func:`network_logits`, memory
    stays flat however large the collection.

    Parameters
    ----------
    model : LoadedModel
    collection : GalaxyCollection
    batch_size : int
        Images read and passed through the network at a time.
    tta : bool
        Average over the 8 rotations and flips.
    progress : bool
        Show a progress bar.
    engine : {"torch", "onnx"}
        Run the network with PyTorch, or with ONNX Runtime on the CPU.

    Returns
    -------
    ndarray
        float32 (n, outputs).
    """
    if engine not in INFERENCE_ENGINES:
        raise ConfigError(f"unknown inference engine '{engine}' (choose from {', '.join(INFERENCE_ENGINES)})")
    network = OnnxRuntimeNetwork(model) if engine == "onnx" else model.network
    preprocessor = Preprocessor(PreprocessConfig.from_dict(model.config.preprocessing))
    outputs = []
    for batch in collection.iter_batches(batch_size, preprocess=preprocessor, progress=progress):
        _check_input_shape(model, batch.images.shape[1:], collection.name)
        outputs.append(network_logits(network, batch.images, batch_size, tta))
    return np.concatenate(outputs)


def check_labels(collection: GalaxyCollection, model: LoadedModel) -> np.ndarray | None:
    """Codes of the model's label column when the data has it, checking its classes.

    Returns
    -------
    ndarray or None
        Class codes in the model's class order, or None when the data has
        no such column (or the model predicts votes).
    """
    column = model.config.target.get("column")
    if model.config.is_votes or column not in collection.catalog.colnames:
        return None
    codes, _ = class_codes(collection, column, model.config.class_names)
    return codes


def confidence_threshold(model: LoadedModel, target_accuracy: float | None, min_confidence: float | None) -> float | None:
    """The triage threshold asked for, if any.

    Parameters
    ----------
    model : LoadedModel
        Its config holds the validation confidences.
    target_accuracy : float, optional
        Choose the lowest threshold at which the validation galaxies kept
        reach this accuracy.
    min_confidence : float, optional
        Use this threshold directly.

    Returns
    -------
    float or None
        None when neither is given.
    """
    if target_accuracy is not None and min_confidence is not None:
        raise ConfigError("give either a target accuracy or a minimum confidence, not both")
    if min_confidence is not None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ConfigError(f"minimum confidence {min_confidence} must lie in [0, 1]")
        return float(min_confidence)
    if target_accuracy is None:
        return None
    validation = model.config.validation
    if not validation.get("confidence"):
        raise ModelError(f"{model.folder}: no validation confidences stored; use a minimum confidence instead")
    threshold, _ = threshold_for_accuracy(
        np.asarray(validation["confidence"]), np.asarray(validation["correct"], dtype=bool), target_accuracy
    )
    return threshold


def prediction_table(ids: list[str], outputs: Outputs, model: LoadedModel, threshold: float | None):
    """Build the prediction catalog (see :func:`predict` for its columns)."""
    from astropy.table import Table

    table = Table({"id": ids, "predicted_class": outputs.predicted, "confidence": outputs.confidence})
    if model.config.is_votes:
        tree = get_tree(model.config.target["tree"])
        for index, (_, answer) in enumerate(tree.answers):
            table[f"{answer.column}_fraction"] = outputs.probabilities[:, index]
    else:
        for index, name in enumerate(model.config.class_names):
            table[f"prob_{name}"] = outputs.probabilities[:, index]
    if threshold is not None:
        decision = triage(outputs.triage_probabilities, threshold)
        table["triage"] = np.where(decision.confident, "confident", "expert")
        table["expert_priority"] = decision.priority
        rank = np.full(len(ids), np.nan)
        rank[decision.queue] = np.arange(1, len(decision.queue) + 1)
        table["expert_rank"] = rank
        table.meta["confidence_threshold"] = threshold
    return table


def expert_queue_path(output: Path) -> Path:
    """Where the expert queue of a prediction catalog is written."""
    return output.with_name(f"{output.stem}_expert_queue{output.suffix}")


def predict(
    model_folder: str | Path,
    data: str | Path | GalaxyCollection,
    output: str | Path | None = None,
    *,
    target_accuracy: float | None = None,
    min_confidence: float | None = None,
    tta: bool = False,
    batch_size: int = 256,
    progress: bool = False,
    engine: str = "torch",
):
    """Predict classes (or vote fractions) for new galaxies, with triage.

    Parameters
    ----------
    model_folder : str or Path
        Folder written by :func:`~tuningfork.training.train`.
    data : str, Path or GalaxyCollection
        The galaxies.  If the catalog has the model's label column, its
        classes must be among the model's.
    output : str or Path, optional
        Catalog to write (``.parquet``, ``.csv`` or ``.fits``).  With triage,
        the expert queue alone, most useful first, goes to
        ``<stem>_expert_queue<suffix>`` beside it.
    target_accuracy : float, optional
        Triage: keep as confident the galaxies above the lowest confidence
        threshold at which the validation split reached this accuracy.
    min_confidence : float, optional
        Triage with this confidence threshold instead.
    tta : bool
        Average over the 8 rotations and flips (test-time augmentation).
    batch_size : int
        Images per forward pass.
    progress : bool
        Show a progress bar while reading images.
    engine : {"torch", "onnx"}
        Run the network with PyTorch, or with ONNX Runtime (CPU only; for
        the default network 1,041 instead of 551 images/s end to end on 2
        cores, benchmarks/results/inference.md).

    Returns
    -------
    astropy.table.Table
        ``id``, ``predicted_class`` (for vote models the leaf of the tree),
        ``confidence``, ``prob_<class>`` (or ``<answer column>_fraction``),
        and with triage ``triage`` (``confident``/``expert``),
        ``expert_priority`` (entropy in nats; NaN when confident) and
        ``expert_rank`` (1 = label first; NaN when confident).
    """
    model = load_model(model_folder)
    threshold = confidence_threshold(model, target_accuracy, min_confidence)
    collection = open_collection(data)
    check_labels(collection, model)
    outputs = interpret(collection_logits(model, collection, batch_size, tta, progress, engine), model)
    table = prediction_table(collection.ids, outputs, model, threshold)
    if output is not None:
        output = Path(output)
        write_table(output, table)
        if threshold is not None:
            queue = table[np.argsort(table["expert_rank"])]
            write_table(expert_queue_path(output), queue[queue["triage"] == "expert"])
    return table
