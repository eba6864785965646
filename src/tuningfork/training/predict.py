"""Apply a model folder to new images and write a catalog with triage.

``predict`` needs only the model folder and the images: the folder's config
says how to preprocess, what the outputs mean, which temperature calibrates
them, and (from its validation split) which confidence threshold of each
predicted class reaches a requested purity.  The written catalog carries
each galaxy's image file, sky position and any chosen catalog columns, so a
galaxy in the expert queue can be opened straight from it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import GalaxyCollection, check_output, write_table
from ..data.batches import DECODE_BATCH
from ..errors import ConfigError, MissingColumnError, ModelError
from ..models import StoredModel, load_model, open_model
from ..models.export import OnnxRuntimeNetwork
from ..models.inference import network_logits
from ..preprocessing import PreprocessConfig, Preprocessor
from .calibration import (
    MIN_CLASS_COUNT,
    calibrated_probabilities,
    class_thresholds,
    threshold_for_accuracy,
    triage,
)
from .datamodule import class_codes, open_collection
from .trees import get_tree

#: How ``predict`` can run the network: ``auto`` (ONNX Runtime when the model
#: folder holds its exported graph, else torch), eager PyTorch, or ONNX
#: Runtime (CPU; faster there for the default network).
INFERENCE_ENGINES = ("auto", "torch", "onnx")


def check_engine(engine: str) -> None:
    """Refuse an engine not in :data:`INFERENCE_ENGINES` (a ``ConfigError`` naming them)."""
    if engine not in INFERENCE_ENGINES:
        raise ConfigError(f"unknown inference engine '{engine}' (choose from {', '.join(INFERENCE_ENGINES)})")


def resolve_engine(engine: str, model: StoredModel) -> str:
    """The engine that runs ``model``: ``auto`` becomes ``onnx`` when its folder holds a graph of its weights.

    Parameters
    ----------
    engine : {"auto", "torch", "onnx"}
    model : StoredModel

    Returns
    -------
    {"torch", "onnx"}
    """
    from ..models.export import stored_graph

    check_engine(engine)
    if engine != "auto":
        return engine
    # Without a stored graph ONNX Runtime would need torch to export one, which saves nothing in one process.
    return "onnx" if stored_graph(model) is not None else "torch"


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


def interpret(logits: np.ndarray, model: StoredModel) -> Outputs:
    """Turn raw network outputs into probabilities, predictions and confidence.

    Parameters
    ----------
    logits : ndarray
        (n, outputs) from :func:`network_logits`.
    model : StoredModel
        The model that produced them.

    Returns
    -------
    Outputs
    """
    config = model.config
    if config.is_votes:
        import torch

        from .losses import vote_fractions

        tree = get_tree(config.target["tree"])
        fractions = vote_fractions(torch.from_numpy(logits), tree, config.target["loss"]).numpy().astype(np.float64)
        root = fractions[:, tree.question_slices()[0]]
        return Outputs(fractions, tree.leaf(fractions), root.max(axis=1), root)
    probabilities = calibrated_probabilities(logits, config.temperature)
    names = np.array(config.class_names)
    return Outputs(probabilities, names[probabilities.argmax(axis=1)].tolist(), probabilities.max(axis=1), probabilities)


def _check_input_shape(model: StoredModel, shape: tuple, source: str) -> None:
    expected = (model.config.in_channels, model.config.image_size, model.config.image_size)
    if tuple(shape) != expected:
        raise ModelError(f"{source}: images preprocess to {tuple(shape)} but model {model.folder} expects {expected}")


def model_images(model: StoredModel, collection: GalaxyCollection, batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """Read a collection preprocessed exactly as the model's training data was.

    Parameters
    ----------
    model : StoredModel
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
    model: StoredModel, collection: GalaxyCollection, batch_size: int = 256, tta: bool = False, progress: bool = False,
    engine: str = "torch",
) -> np.ndarray:
    """Network outputs for every galaxy, reading one batch of images at a time.

    Unlike :func:`model_images` followed by :func:`network_logits`, memory
    stays flat however large the collection.

    Parameters
    ----------
    model : StoredModel
        Its network is built here for the torch engine, unless it is a
        :class:`~tuningfork.models.LoadedModel` already.
    collection : GalaxyCollection
    batch_size : int
        Most images passed through the network at a time; they are decoded
        and preprocessed at most :data:`~tuningfork.data.batches.DECODE_BATCH` at a time.
    tta : bool
        Average over the 8 rotations and flips.
    progress : bool
        Show a progress bar.
    engine : {"torch", "onnx", "auto"}
        Run the network with PyTorch, or with ONNX Runtime on the CPU, or
        as :func:`resolve_engine` chooses.

    Returns
    -------
    ndarray
        float32 (n, outputs).
    """
    engine = resolve_engine(engine, model)
    if engine == "onnx":
        network = OnnxRuntimeNetwork(model)
    else:
        network = load_model(model).network
    preprocessor = Preprocessor(PreprocessConfig.from_dict(model.config.preprocessing))
    outputs = []
    for batch in collection.iter_batches(min(batch_size, DECODE_BATCH), preprocess=preprocessor, progress=progress):
        _check_input_shape(model, batch.images.shape[1:], collection.name)
        outputs.append(network_logits(network, batch.images, batch_size, tta))
    return np.concatenate(outputs)


def check_labels(
    collection: GalaxyCollection,
    model: StoredModel,
    column: str | None = None,
    class_map: dict[str, str] | None = None,
) -> np.ndarray | None:
    """Codes of the label column when the data has it, checking its classes.

    Parameters
    ----------
    collection : GalaxyCollection
        The galaxies.
    model : StoredModel
        Whose classes the labels must be among.
    column : str, optional
        Label column; the model's by default.
    class_map : dict of str to str, optional
        Labels renamed before they are compared with the model's classes
        (``{"spiral_cw": "spiral", "spiral_acw": "spiral"}``); labels not
        in it are kept as they are.

    Returns
    -------
    ndarray or None
        Class codes in the model's class order, or None when the data has
        no such column (or the model predicts votes).
    """
    column = column or model.config.target.get("column")
    if model.config.is_votes or column not in collection.catalog.colnames:
        return None
    if class_map:
        collection = _renamed_labels(collection, column, class_map)
    codes, _ = class_codes(collection, column, model.config.class_names)
    return codes


def _renamed_labels(collection: GalaxyCollection, column: str, class_map: dict[str, str]) -> GalaxyCollection:
    from astropy.table import MaskedColumn

    # A subset holds its own copy of the catalog, so the caller's labels stay as they are.
    renamed = collection.subset(np.arange(len(collection)))
    values = renamed.catalog[column]
    labels = [class_map.get(str(value), str(value)) for value in values.tolist()]
    renamed.catalog[column] = MaskedColumn(labels, mask=np.ma.getmaskarray(values))
    return renamed


def triage_class_names(model: StoredModel) -> list[str]:
    """The classes triage thresholds are set for: the model's classes, or its tree's first answers."""
    if model.config.is_votes:
        return [answer.name for answer in get_tree(model.config.target["tree"]).questions[0].answers]
    return list(model.config.class_names)


def triage_thresholds(
    model: StoredModel, target_accuracy: float | None, min_confidence: float | None
) -> np.ndarray | None:
    """The confidence threshold of each predicted class, if triage is asked for.

    Parameters
    ----------
    model : StoredModel
        Its config holds the validation confidences, correctness and
        predicted classes.
    target_accuracy : float, optional
        Purity each predicted class's confident set must reach on the
        validation split (see :func:`~tuningfork.training.calibration.class_thresholds`).
        Folders written before predicted classes were stored get one
        threshold for all classes, with a warning.
    min_confidence : float, optional
        Use this threshold for every class.

    Returns
    -------
    ndarray or None
        (n_classes,) thresholds in :func:`triage_class_names` order (``inf``
        where a class never reaches the target, with a warning); None when
        neither option is given.
    """
    if target_accuracy is not None and min_confidence is not None:
        raise ConfigError("give either a target accuracy or a minimum confidence, not both")
    names = triage_class_names(model)
    if min_confidence is not None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ConfigError(f"minimum confidence {min_confidence} must lie in [0, 1]")
        return np.full(len(names), float(min_confidence))
    if target_accuracy is None:
        return None
    validation = model.config.validation
    if not validation.get("confidence"):
        raise ModelError(f"{model.folder}: no validation confidences stored; use a minimum confidence instead")
    confidence = np.asarray(validation["confidence"], dtype=np.float64)
    correct = np.asarray(validation["correct"], dtype=bool)
    if "predicted" not in validation:
        warnings.warn(
            f"{model.folder}: no validation predictions stored (written by an older tuningfork), so one "
            "threshold for every class; retrain for a purity target per class",
            stacklevel=2,
        )
        threshold, _ = threshold_for_accuracy(confidence, correct, target_accuracy)
        return np.full(len(names), threshold)
    thresholds = class_thresholds(confidence, correct, validation["predicted"], len(names), target_accuracy)
    unreachable = [name for name, threshold in zip(names, thresholds) if not np.isfinite(threshold)]
    if unreachable:
        warnings.warn(
            f"{model.folder}: no confidence threshold keeps at least {MIN_CLASS_COUNT} validation galaxies predicted "
            f"{', '.join(unreachable)} at purity {target_accuracy:g}; every galaxy predicted so goes to the experts",
            stacklevel=2,
        )
    return thresholds


#: Kinds of collection whose catalog ``file`` column names real image files.
_FILE_KINDS = ("catalog", "directory", "file")


def carried_columns(collection: GalaxyCollection, columns: Sequence[str] = ()):
    """Catalog columns a prediction catalog carries, so that each galaxy can be found and opened.

    Parameters
    ----------
    collection : GalaxyCollection
        The galaxies.
    columns : sequence of str
        Further catalog columns to carry.

    Returns
    -------
    astropy.table.Table
        ``file`` (absolute path of the image; one column per band file for
        multi-file rows, under their catalog names; relative paths are
        taken from the catalog's folder), ``ra`` and ``dec`` when the
        catalog has a sky position, then ``columns``.

    Raises
    ------
    MissingColumnError
        One of ``columns`` is not in the catalog.
    """
    from astropy.table import Table

    catalog, schema = collection.catalog, collection.schema
    for name in columns:
        if name not in catalog.colnames:
            raise MissingColumnError(collection.name, name, catalog.colnames)
    carried = Table()
    if collection.kind in _FILE_KINDS and schema.image_columns:
        origin = collection.origin
        paths = schema.image_paths(catalog, origin if origin.is_dir() else origin.parent)
        names = ["file"] if len(schema.image_columns) == 1 else schema.image_columns
        for band, name in enumerate(names):
            carried[name] = [os.path.realpath(files[band]) for files in paths]
    for role, name in (("ra", schema.ra_column), ("dec", schema.dec_column)):
        if name is not None:
            carried[role] = catalog[name]
    for name in columns:
        if name not in carried.colnames and name != "id":
            carried[name] = catalog[name]
    return carried


def prediction_table(
    ids: list[str], outputs: Outputs, model: StoredModel, thresholds: np.ndarray | None, carried=None
):
    """Build the prediction catalog (see :func:`predict` for its columns).

    Parameters
    ----------
    ids : list of str
    outputs : Outputs
    model : StoredModel
    thresholds : ndarray or None
        (n_classes,) from :func:`triage_thresholds`; None for no triage.
    carried : astropy.table.Table, optional
        Columns from :func:`carried_columns`, placed after ``id``.
    """
    from astropy.table import Table

    table = Table({"id": ids})
    for name in carried.colnames if carried is not None else []:
        table[name] = carried[name]
    table["predicted_class"] = outputs.predicted
    table["confidence"] = outputs.confidence
    if model.config.is_votes:
        tree = get_tree(model.config.target["tree"])
        # Named and weighted as the training catalog's columns: the
        # challenge's cumulative fractions under its own column names, or
        # per-question fractions beside count columns (``X_fraction``).
        values = tree.cumulative(outputs.probabilities) if not tree.fraction_suffix else outputs.probabilities
        for index, column in enumerate(tree.fraction_columns):
            table[column] = values[:, index]
    else:
        for index, name in enumerate(model.config.class_names):
            table[f"prob_{name}"] = outputs.probabilities[:, index]
    if thresholds is not None:
        row_thresholds = np.asarray(thresholds, dtype=np.float64)[outputs.triage_probabilities.argmax(axis=1)]
        decision = triage(outputs.triage_probabilities, row_thresholds)
        table["threshold"] = row_thresholds
        table["triage"] = np.where(decision.confident, "confident", "expert")
        table["expert_priority"] = decision.priority
        rank = np.full(len(ids), np.nan)
        rank[decision.queue] = np.arange(1, len(decision.queue) + 1)
        table["expert_rank"] = rank
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
    columns: Sequence[str] = (),
    tta: bool = False,
    batch_size: int = 256,
    progress: bool = False,
    engine: str = "auto",
    overwrite: bool = False,
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
        Triage: for each predicted class, keep as confident the galaxies
        above the lowest confidence threshold at which the validation
        galaxies predicted in that class reached this purity (so the
        confident catalog reaches it in every class, not only overall).
    min_confidence : float, optional
        Triage with this confidence threshold for every class instead.
    columns : sequence of str
        Catalog columns to carry into the output (checked before any
        image is read).
    tta : bool
        Average over the 8 rotations and flips (test-time augmentation).
    batch_size : int
        Images per forward pass.
    progress : bool
        Show a progress bar while reading images.
    engine : {"auto", "torch", "onnx"}
        Run the network with ONNX Runtime when the folder holds its exported
        graph (``network.onnx``, written by ``train``; then torch is never
        imported), else with PyTorch; or either of them.  ONNX Runtime runs
        on the CPU only; for the default network it gave 252 instead of 148
        images per CPU-second end to end on 1,000 424 px JPEGs
        (benchmarks/results/scale.md).
    overwrite : bool
        Replace an existing output (else ``OutputExistsError``, before any work).

    Returns
    -------
    astropy.table.Table
        ``id``, the columns of :func:`carried_columns` (``file``, ``ra``,
        ``dec`` where known, then ``columns``), ``predicted_class`` (for
        vote models the leaf of the tree), ``confidence``, ``prob_<class>``
        (or, for vote models, one column per answer named as in the training
        catalog), and with triage ``threshold``
        (that of the row's predicted class, or for vote models of its
        first-question answer; ``inf`` where the class never reached the
        target), ``triage`` (``confident``/``expert``), ``expert_priority``
        (entropy in nats; NaN when confident) and ``expert_rank`` (1 =
        label first; NaN when confident).
    """
    if output is not None:
        check_output(output, overwrite=overwrite)
    # ONNX Runtime runs the folder's stored graph without the torch network.
    model = open_model(model_folder)
    engine = resolve_engine(engine, model)
    if engine == "torch":
        model = load_model(model)
    thresholds = triage_thresholds(model, target_accuracy, min_confidence)
    collection = open_collection(data)
    check_labels(collection, model)
    carried = carried_columns(collection, columns)
    outputs = interpret(collection_logits(model, collection, batch_size, tta, progress, engine), model)
    table = prediction_table(collection.ids, outputs, model, thresholds, carried)
    if output is not None:
        write_predictions(output, table)
    return table


def write_predictions(output: str | Path, table) -> None:
    """Write a prediction catalog and, when it was triaged, its expert queue beside it.

    Parameters
    ----------
    output : str or Path
        The catalog (``.parquet``, ``.csv`` or ``.fits``); the queue, most
        useful first, goes to :func:`expert_queue_path`.
    table : astropy.table.Table
        From :func:`predict` (or the survey catalog's classification stage).
    """
    output = Path(output)
    write_table(output, table)
    if "triage" in table.colnames:
        queue = table[np.argsort(table["expert_rank"])]
        write_table(expert_queue_path(output), queue[queue["triage"] == "expert"])
