"""What a pipeline process holds and how one local worker runs: models loaded once per process.

Each process (a Dask worker, or the caller's own when one local worker is
asked for) keeps the models it has loaded in module-level caches keyed by
folder, so that a task names a model folder and never carries its weights.
One local worker runs the shards here, one after the other, on one core: a
Dask cluster of one would add a scheduler, a worker process and their
imports (about 1.9 CPU-s, more than half of what a 1,000-galaxy catalog
now costs, benchmarks/bench_scale.py) for the isolation of a process, which resuming
the run makes up for.  Nothing here imports Dask.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import ConfigError
from ..models import LoadedModel, StoredModel, load_model, open_model

_MODELS: dict[str, LoadedModel] = {}
# Opened folders (config, weights checksum) without networks, keyed like the models.
_STORED: dict[str, StoredModel] = {}
# ONNX Runtime sessions of the models, keyed like them.
_ONNX_NETWORKS: dict[str, object] = {}
# Fitted clusterings and encoders, keyed like the models.
_CLUSTERINGS: dict[str, object] = {}
_ENCODERS: dict[tuple, object] = {}


def cached_model(folder: str | Path) -> LoadedModel:
    """The model of ``folder``, loaded on first use in this process and kept.

    Parameters
    ----------
    folder : str or Path
        A model folder.

    Returns
    -------
    LoadedModel
    """
    key = str(Path(folder).resolve())
    if key not in _MODELS:
        _MODELS[key] = load_model(key)
    return _MODELS[key]


def cached_stored(folder: str | Path) -> StoredModel:
    """The opened model folder (config and checked weights, no network), opened once per process.

    What the catalog's tables and preprocessing need; unlike
    :func:`cached_model` it imports no torch.
    """
    key = str(Path(folder).resolve())
    if key not in _STORED:
        _STORED[key] = _MODELS[key] if key in _MODELS else open_model(key)
    return _STORED[key]


def cached_network(folder: str | Path, engine: str = "torch", graph: str | None = None, threads: int | None = None):
    """The network of ``folder``'s model as ``engine`` runs it, built once per process.

    Parameters
    ----------
    folder : str or Path
        A model folder.
    engine : {"torch", "onnx"}
        The torch network itself, or an ONNX Runtime session of it.
    graph : str, optional
        An exported graph of the model to run (:func:`~tuningfork.models.export.cached_graph`);
        with it and ONNX Runtime, torch is never imported.
    threads : int, optional
        Intra-op threads of the ONNX Runtime session (one on a worker).

    Returns
    -------
    torch.nn.Module or OnnxRuntimeNetwork
        What :func:`~tuningfork.models.inference.network_logits` runs.
    """
    if engine != "onnx":
        return cached_model(folder).network
    model = cached_stored(folder)
    key = str(model.folder.resolve())
    if key not in _ONNX_NETWORKS:
        from ..models.export import OnnxRuntimeNetwork

        _ONNX_NETWORKS[key] = OnnxRuntimeNetwork(model, threads, graph)
    return _ONNX_NETWORKS[key]


def cached_clustering(folder: str | Path):
    """The :class:`~tuningfork.clustering.pipeline.FittedClustering` of ``folder``, loaded once per process."""
    from ..clustering.pipeline import FittedClustering

    key = str(Path(folder).resolve())
    if key not in _CLUSTERINGS:
        _CLUSTERINGS[key] = FittedClustering.load(key)
    return _CLUSTERINGS[key]


def cached_encoder(spec: str, weights: str | None, bands: int, batch_size: int = 32):
    """The encoder :func:`~tuningfork.models.load_encoder` opens for ``spec``, loaded once per process."""
    from ..models import load_encoder

    key = (spec, weights, bands, batch_size)
    if key not in _ENCODERS:
        _ENCODERS[key] = load_encoder(spec, weights=weights, bands=bands, batch_size=batch_size)
    return _ENCODERS[key]


def default_workers() -> int:
    """Worker processes for a local cluster: one per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_workers(workers: int | None) -> int:
    """The number of local workers asked for: ``workers``, or :func:`default_workers`.

    Raises
    ------
    ConfigError
        ``workers`` is not a positive integer.
    """
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"number of workers must be a positive integer, got {workers!r}")
    return workers


def uses_torch(engine: str, clusterings: Sequence = (), encoders: Sequence = ()) -> bool:
    """Whether a process running these models needs torch (ONNX Runtime alone runs a stored graph)."""
    return engine != "onnx" or bool(clusterings) or bool(encoders)


def load_models(folders: Sequence[str | Path], clusterings: Sequence[str | Path] = (), encoders: Sequence[tuple] = (),
                engine: str = "torch", graph: str | None = None) -> None:
    """Load models into this process's caches, each network on one thread.

    Parameters
    ----------
    folders : sequence of str or Path
        Model folders (:func:`cached_network`).
    clusterings : sequence of str or Path
        Fitted clustering folders (:func:`cached_clustering`).
    encoders : sequence of tuple
        ``(spec, weights, bands, batch_size)`` of encoders (:func:`cached_encoder`).
    engine : {"torch", "onnx"}
        How the networks of ``folders`` run.
    graph : str, optional
        The exported graph of the one model of ``folders``, for ``"onnx"``.
    """
    if uses_torch(engine, clusterings, encoders):
        import torch

        torch.set_num_threads(1)
    for folder in folders:
        cached_network(folder, engine, graph, threads=1)
    for folder in clusterings:
        cached_clustering(folder)
    for spec in encoders:
        cached_encoder(*spec)


@contextlib.contextmanager
def one_core(folders: Sequence[str | Path], clusterings: Sequence[str | Path] = (), encoders: Sequence[tuple] = (),
             engine: str = "torch", graph: str | None = None) -> Iterator[None]:
    """Run as one local worker inside: the models loaded here, and torch, BLAS and OpenMP on one thread.

    What a Dask worker process gets from its nanny (``OMP_NUM_THREADS=1``
    and its kin) and from :class:`~tuningfork.pipeline.cluster.ModelPlugin`;
    the caller's thread counts come back on leaving.  Parameters as
    :func:`load_models`.
    """
    from threadpoolctl import threadpool_limits

    torch_threads = None
    if uses_torch(engine, clusterings, encoders):
        import torch

        torch_threads = torch.get_num_threads()
    try:
        with threadpool_limits(limits=1):
            load_models(folders, clusterings, encoders, engine, graph)
            yield
    finally:
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
