"""The Dask distributed cluster a pipeline runs on, and the plugin that loads each worker's models.

Models are loaded once per worker process, by a :class:`ModelPlugin` when the
worker starts, into the per-process caches of :mod:`.local`: tasks name a
model folder and look it up, so the network's weights never travel inside a
task.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import dask
from distributed import WorkerPlugin

from ..errors import ConfigError
from .local import check_workers, load_models

#: Seconds to wait for an existing scheduler before giving up.
CONNECT_TIMEOUT = 5

#: Scheduler options of a local cluster: no dashboard, HTTP server on any free port.
LOCAL_SCHEDULER = {"dashboard": False, "dashboard_address": ":0"}
#: Dask's nannies set ``MALLOC_TRIM_THRESHOLD_=65536`` in their workers, which
#: also fixes glibc's mmap threshold: every decoded stamp then becomes a fresh
#: mmap whose pages fault in one by one.  On 424 px JPEGs that cost the worker
#: about as much system time as the network's compute.  Without it the workers'
#: peak memory was no higher (benchmarks/bench_scale.py).
MALLOC_TRIM = "MALLOC_TRIM_THRESHOLD_"
#: The workers' statistical profiler feeds only the dashboard, which a local
#: cluster does not run; sampling every 10 ms it cost a worker about 3% of its
#: CPU time (0.15-0.25 of 5.5 CPU-s on 1,000 424 px JPEGs).
LOCAL_WORKER_CONFIG = {f"distributed.nanny.pre-spawn-environ.{MALLOC_TRIM}": None,
                       "distributed.worker.profile.enabled": False}


@contextlib.contextmanager
def _unset_environ(name: str) -> Iterator[None]:
    """Leave ``name`` out of this process's environment (which spawned workers inherit) while inside.

    A nanny hosted here earlier (a plain ``LocalCluster`` in the same
    notebook or test session) copies Dask's pre-spawn variables into
    ``os.environ``, so the config alone would not keep them from our workers.
    """
    value = os.environ.pop(name, None)
    try:
        yield
    finally:
        if value is not None:
            os.environ[name] = value


class ModelPlugin(WorkerPlugin):
    """Load model folders into each worker as it starts, with one torch thread.

    Parameters
    ----------
    folders : sequence of str or Path
        Model folders every task of the run may use.
    clusterings : sequence of str or Path
        Fitted clustering folders (:func:`~.local.cached_clustering`).
    encoders : sequence of tuple
        ``(spec, weights, bands, batch_size)`` of encoders (:func:`~.local.cached_encoder`).
    engine : {"torch", "onnx"}
        How the networks of ``folders`` run (:func:`~.local.cached_network`).
    graph : str, optional
        The exported graph of the one model of ``folders``, for ``"onnx"``.
    """

    def __init__(self, folders: Sequence[str | Path], clusterings: Sequence[str | Path] = (),
                 encoders: Sequence[tuple] = (), engine: str = "torch", graph: str | None = None):
        self.engine = engine
        self.graph = graph
        self.folders = [str(Path(folder).resolve()) for folder in folders]
        self.clusterings = [str(Path(folder).resolve()) for folder in clusterings]
        self.encoders = [tuple(spec) for spec in encoders]

    def setup(self, worker) -> None:
        """Load the models, each network on one thread (the cluster runs one process per core)."""
        load_models(self.folders, self.clusterings, self.encoders, self.engine, self.graph)


@contextlib.contextmanager
def open_client(workers: int | None = None, scheduler: str | None = None) -> Iterator:
    """A Dask client on a new local cluster, or on an existing scheduler.

    Parameters
    ----------
    workers : int, optional
        Worker processes of the local cluster (one thread each); one per
        core by default.
    scheduler : str, optional
        Address of a running scheduler (``tcp://HOST:PORT``); then no
        local cluster is started.

    Yields
    ------
    distributed.Client

    Raises
    ------
    ConfigError
        Both options are given, ``workers`` is not positive, or the
        scheduler does not answer within :data:`CONNECT_TIMEOUT` seconds.
    """
    from distributed import Client, LocalCluster

    if workers is not None and scheduler is not None:
        raise ConfigError("give either a number of workers or a scheduler address, not both")
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler} ({reason})") from None
        with client:
            yield client
        return
    workers = check_workers(workers)
    # No dashboard (it needs bokeh, and a batch run has no one to look at it), and the
    # scheduler's HTTP server on a free port, so that two runs on one machine do not collide.
    with dask.config.set(LOCAL_WORKER_CONFIG), _unset_environ(MALLOC_TRIM), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                         scheduler_kwargs=LOCAL_SCHEDULER, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        yield client
