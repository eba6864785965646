"""Export a model folder's network to ONNX, and run it with ONNX Runtime.

A classifier's folder keeps its exported graph beside the weights
(``network.onnx``, written by ``train``), tagged with the SHA-256 of the
weights it was exported from and the test-time-augmentation elements the
network needs.  A process that finds a graph matching the folder's weights
runs it without importing torch at all: that saves about two CPU-seconds at
every start of ``predict --engine onnx`` and of each catalog worker.  A folder
without one (written by an earlier release, or copied without it) is
exported on the fly, with torch, as before.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..data.writers import atomic_path
from ..errors import ModelError
from ..preprocessing import d4_apply
from .folder import LoadedModel, StoredModel, load_model

#: The exported graph's file in a model folder.
ONNX_FILE = "network.onnx"
#: Metadata keys of the graph: the weights it was exported from, and :func:`~.inference.tta_elements`.
WEIGHTS_KEY = "tuningfork_weights_sha256"
TTA_KEY = "tuningfork_tta_elements"


def _write_onnx(model: LoadedModel, path: Path) -> Path:
    import onnx
    import torch

    from .inference import tta_elements

    config = model.config
    example = torch.zeros(1, config.in_channels, config.image_size, config.image_size)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # The TorchScript exporter warns about its own deprecation; the
        # newer exporter needs onnxscript, which is not a dependency.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model.network, (example,), str(tmp), dynamo=False, input_names=["images"],
                output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            )
        except (RuntimeError, torch.onnx.errors.OnnxExporterError) as error:
            problem = str(error).splitlines()[0][:160]
            raise ModelError(f"{model.folder}: the {config.architecture} network cannot be exported to ONNX ({problem})") from error
        graph = onnx.load(str(tmp))
        for key, value in ((WEIGHTS_KEY, model.weights_sha256),
                           (TTA_KEY, ",".join(str(element) for element in tta_elements(model.network)))):
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(graph, str(tmp))
    return Path(path)


def export_onnx(folder: str | Path, path: str | Path | None = None) -> Path:
    """Write the network of a model folder as an ONNX graph with a dynamic batch axis.

    The graph maps ``images`` (batch, bands, H, W) float32, preprocessed as
    the folder's config says, to raw ``logits``; temperature and the vote
    normalisation are applied afterwards as in ``predict``.

    Parameters
    ----------
    folder : str or Path
        Model folder.
    path : str or Path, optional
        Output ``.onnx`` file (written atomically); by default the folder's
        own :data:`ONNX_FILE`, which ``predict --engine onnx`` and the
        catalog's workers then run without torch.

    Returns
    -------
    Path
        The written file.
    """
    model = load_model(folder)
    return _write_onnx(model, Path(path) if path is not None else model.folder / ONNX_FILE)


def _tags(path: Path) -> dict[str, str] | None:
    """The metadata of an ONNX graph file, or None when it is not one ONNX Runtime reads."""
    import onnxruntime
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except (Fail, InvalidGraph, InvalidProtobuf):
        return None
    return session.get_modelmeta().custom_metadata_map


def stored_graph(model: StoredModel, graph: str | Path | None = None) -> Path | None:
    """The first of ``graph`` and the folder's :data:`ONNX_FILE` that was exported from ``model``'s weights.

    Parameters
    ----------
    model : StoredModel
    graph : str or Path, optional
        Another graph file to try first.

    Returns
    -------
    Path or None
        None when neither exists, reads, or matches the weights (a stale,
        half-copied or foreign file is passed over, not an error).
    """
    for path in ([Path(graph)] if graph is not None else []) + [model.folder / ONNX_FILE]:
        if path.is_file() and model.weights_sha256:
            tags = _tags(path)
            if tags is not None and tags.get(WEIGHTS_KEY) == model.weights_sha256 and TTA_KEY in tags:
                return path
    return None


def cached_graph(model: StoredModel, path: str | Path) -> Path:
    """A graph of ``model``'s weights: the folder's own, or ``path``, exported there (with torch) if neither matches.

    Parameters
    ----------
    model : StoredModel
    path : str or Path
        Where to export when the folder has no matching graph (a catalog
        run's folder, so that its workers need no torch).

    Returns
    -------
    Path
    """
    found = stored_graph(model, path)
    return found if found is not None else _write_onnx(load_model(model), Path(path))


def _default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class OnnxRuntimeNetwork:
    """A model's network, run by ONNX Runtime on the CPU.

    ONNX Runtime fuses the layers of the default ``rotinv`` network and runs
    it about twice as fast as eager PyTorch on a CPU (1,290 vs 729 images/s
    on 2 cores, benchmarks/results/inference.md).

    Parameters
    ----------
    model : StoredModel
        The model.  Its folder's :data:`ONNX_FILE` (or ``graph``) is run when
        it was exported from the folder's weights (:func:`stored_graph`);
        otherwise the network is built and exported to a temporary file
        (which needs torch).
    threads : int, optional
        Intra-op threads; by default one per core this process may use.
    graph : str or Path, optional
        Another exported graph to try first (the one a catalog run exports
        once for all its workers, :func:`cached_graph`).

    Attributes
    ----------
    elements : tuple of int
        The D4 elements test-time augmentation averages over
        (:func:`~tuningfork.models.inference.tta_elements` of the network).
    """

    def __init__(self, model: StoredModel, threads: int | None = None, graph: str | Path | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or _default_threads()
        # Idle threads that spin between batches burn CPU time that reading
        # and preprocessing (on the main thread) need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = stored_graph(model, graph)
        with tempfile.TemporaryDirectory(prefix="tuningfork-onnx-") as scratch:
            if path is None:
                path = _write_onnx(load_model(model), Path(scratch) / ONNX_FILE)
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        tags = self.session.get_modelmeta().custom_metadata_map
        self.elements = tuple(int(element) for element in tags[TTA_KEY].split(","))

    def logits(self, images: np.ndarray, batch_size: int = 256, tta: bool = False) -> np.ndarray:
        """Raw outputs for an image array, in batches (see :func:`~tuningfork.models.inference.network_logits`).

        Parameters
        ----------
        images : ndarray
            float32 (n, bands, H, W); not modified.
        batch_size : int
            Images per run of the graph.
        tta : bool
            Average over :attr:`elements`.

        Returns
        -------
        ndarray
            float32 (n, outputs).
        """
        elements = self.elements if tta else (0,)
        outputs = []
        for start in range(0, len(images), batch_size):
            batch = np.asarray(images[start:start + batch_size], dtype=np.float32)
            runs = [self.session.run(None, {"images": np.ascontiguousarray(d4_apply(batch, element) if element
                                                                           else batch)})[0] for element in elements]
            outputs.append(sum(runs) / len(runs))
        return np.concatenate(outputs).astype(np.float32) if outputs else np.zeros((0, 0), dtype=np.float32)
