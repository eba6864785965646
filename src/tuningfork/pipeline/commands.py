"""``predict``, ``embed`` and ``morphometry`` on Dask: one stage of the catalog, written as the command writes it.

Each runs :func:`~tuningfork.pipeline.build_catalog` with that one stage, so
the per-shard code is the catalog's, in a working folder beside the output
(``<output>.shards/``, resumed by a rerun after a killed run and removed once
the output is written), and then writes the file the single-process command
writes: the same columns, rows and file formats.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from ..data import GalaxyCollection, check_output, write_table
from .catalog import EMBEDDINGS_FILE, build_catalog
from .config import EmbeddingStage, MorphometryStage, PipelineConfig


def work_folder(output: str | Path) -> Path:
    """The folder of shards beside ``output`` while it is computed on Dask."""
    output = Path(output)
    return output.with_name(f"{output.name}.shards")


def _run(data, output: Path, overwrite: bool, **options):
    check_output(output, overwrite=overwrite)
    return build_catalog(data, work_folder(output), **options)


def predict_distributed(
    model_folder: str | Path,
    data: str | Path | GalaxyCollection,
    output: str | Path,
    *,
    target_accuracy: float | None = None,
    min_confidence: float | None = None,
    columns: Sequence[str] = (),
    engine: str = "auto",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    overwrite: bool = False,
):
    """:func:`~tuningfork.training.predict` shard by shard on Dask; the same catalog and expert queue.

    Parameters
    ----------
    model_folder, data, output, target_accuracy, min_confidence, columns, engine, progress, overwrite
        As in :func:`~tuningfork.training.predict`.
    workers, scheduler
        As in :func:`~tuningfork.pipeline.build_catalog`.

    Returns
    -------
    astropy.table.Table
        The predictions; galaxies whose files could not be read are left
        out (listed in ``failures.parquet`` of the working folder, which is
        then kept).
    """
    from ..training.predict import write_predictions

    output = Path(output)
    result = _run(data, output, overwrite, classifier=model_folder, target_accuracy=target_accuracy,
                  min_confidence=min_confidence, engine=engine, columns=columns, workers=workers,
                  scheduler=scheduler, progress=progress)
    write_predictions(output, result.catalog)
    _finish(result)
    return result.catalog


def embed_distributed(
    data: str | Path | GalaxyCollection,
    encoder: str,
    output: str | Path,
    *,
    weights: str | Path | None = None,
    bands: int | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    overwrite: bool = False,
):
    """:func:`~tuningfork.embeddings.extract_embeddings` shard by shard on Dask; the same Parquet + NPY.

    Parameters
    ----------
    data : str, Path or GalaxyCollection
    encoder : str
        As in :func:`~tuningfork.models.load_encoder`.
    output : str or Path
        The ``.parquet`` (the ``.npy`` goes beside it).
    weights, bands, progress, overwrite
        As in ``tuningfork embed``.
    batch_size : int
        Galaxies per forward pass of the encoder.
    workers, scheduler
        As in :func:`~tuningfork.pipeline.build_catalog`.

    Returns
    -------
    EmbeddingSet
    """
    from ..embeddings import load_embeddings
    from ..embeddings.store import npy_path_for

    output = Path(output)
    check_output(npy_path_for(output), overwrite=overwrite)
    stage = EmbeddingStage(encoder=str(encoder), weights=None if weights is None else str(weights), bands=bands,
                           batch_size=batch_size)
    result = _run(data, output, overwrite, config=PipelineConfig(embeddings=stage), workers=workers,
                  scheduler=scheduler, progress=progress)
    made = result.folder / EMBEDDINGS_FILE
    # Both files are complete in the working folder: moving them is the atomic step.
    npy_path_for(made).replace(npy_path_for(output))
    made.replace(output)
    _finish(result)
    return load_embeddings(output)


def morphometry_distributed(
    data: str | Path | GalaxyCollection,
    output: str | Path,
    *,
    stage: MorphometryStage | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    overwrite: bool = False,
):
    """:func:`~tuningfork.morphometry.morphometry_catalog` shard by shard on Dask; the same table.

    Parameters
    ----------
    data : str, Path or GalaxyCollection
    output : str or Path
        Table to write (CSV, Parquet or FITS).
    stage : MorphometryStage, optional
        Band, gain, sky, mask, PSF, quantities and statmorph options.
    workers, scheduler, progress, overwrite
        As in :func:`~tuningfork.pipeline.build_catalog`.

    Returns
    -------
    astropy.table.Table
        The columns of :func:`~tuningfork.morphometry.morphometry_catalog`.
    """
    from ..training.predict import carried_columns

    output = Path(output)
    collection = data if isinstance(data, GalaxyCollection) else GalaxyCollection.open(data)
    result = _run(collection, output, overwrite, config=PipelineConfig(morphometry=stage or MorphometryStage()),
                  workers=workers, scheduler=scheduler, progress=progress)
    carried = set(carried_columns(collection.subset([0])).colnames)
    table = result.catalog[[name for name in result.catalog.colnames if name not in carried]]
    write_table(output, table)
    _finish(result)
    return table


def _finish(result) -> None:
    """Remove the working folder once the output is written, unless it lists failures to look at."""
    if not len(result.failures):
        shutil.rmtree(result.folder)
