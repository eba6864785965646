"""The ``tuningfork`` command line: parse arguments, call the library, report.

Everything here is a thin layer over the Python API; no science happens in
this file.  Every command is registered through :class:`_App`, which turns
any :class:`~tuningfork.errors.TuningforkError` into a single ``error:`` line
on stderr and exit status 2, so users never see a traceback for a problem
with their own input.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from . import _environment  # noqa: F401  (first: before anything loads numpy)
from .clustering.config import DEFAULT_PREPROCESS, ClusterConfig
from .errors import TuningforkError

console = Console()
# Option defaults are read from the library's settings, so each lives in one place.
_CLUSTER = ClusterConfig()
error_console = Console(stderr=True)
_Overwrite = Annotated[bool, typer.Option(help="Replace existing outputs (each only once its new "
                                                 "version is complete).")]
# Options that predict and catalog share.
_TargetAccuracy = Annotated[float | None, typer.Option(help="Triage: per predicted class, the lowest confidence "
                                                            "threshold at which the validation split reached "
                                                            "this purity.")]
_MinConfidence = Annotated[float | None, typer.Option(help="Triage: this confidence threshold for every class.")]
_CarriedColumns = Annotated[str | None, typer.Option(help="Comma-separated catalog columns to carry into the "
                                                          "output (file, ra and dec always are).")]
# Options of every command that can run on Dask (through tuningfork.pipeline).
_Workers = Annotated[int | None, typer.Option(help="Run on a local Dask cluster of this many worker processes "
                                                   "(catalog: one per core by default); 1 runs here, without "
                                                   "a cluster.")]
_Scheduler = Annotated[str | None, typer.Option(help="Run on a running Dask scheduler (tcp://HOST:PORT).")]


def _one_line_errors(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except TuningforkError as error:
            error_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper


class _App(typer.Typer):
    """A Typer app whose commands print tuningfork errors as one line."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)

        def decorator(func):
            register(_one_line_errors(func))
            return func

        return decorator


app = _App(
    name="tuningfork",
    help="Turn survey cutouts of galaxies into a morphology catalog.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="Catalog, HDF5, NPY/NPZ, image file or folder.")],
    label_column: Annotated[str | None, typer.Option(help="Column holding class labels.")] = None,
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
) -> None:
    """Describe a data set: counts, shapes, bands, dtypes, NaN fraction, label balance."""
    from rich.table import Table

    from .data import GalaxyCollection

    collection = GalaxyCollection.open(path, label_column=label_column, skip_missing=skip_missing)
    table = Table(title=str(path), show_header=False)
    for key, value in collection.describe(progress=True).items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)


@app.command()
def preview(
    path: Annotated[Path, typer.Argument(help="Catalog, HDF5, NPY/NPZ, image file or folder.")],
    out: Annotated[Path, typer.Option(help="Output PNG.")] = Path("preview.png"),
    n: Annotated[int, typer.Option(help="Galaxies to show (per group with --group-by).")] = 36,
    stretch: Annotated[str, typer.Option(help="asinh, linear, sqrt or log.")] = "asinh",
    size: Annotated[int | None, typer.Option(help="Resize every cutout to this many pixels.")] = None,
    group_by: Annotated[str | None, typer.Option(help="Catalog column to group rows by.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for picking galaxies.")] = 0,
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
    overwrite: _Overwrite = False,
) -> None:
    """Save a mosaic PNG of cutouts with the chosen stretch."""
    from .data import GalaxyCollection
    from .plots import preview_collection

    _check_outputs(overwrite, out)
    collection = GalaxyCollection.open(path, skip_missing=skip_missing)
    preview_collection(collection, out, n=n, stretch=stretch, size=size, group_by=group_by, seed=seed)
    console.print(f"wrote {out}")


@app.command()
def cutout(
    image: Annotated[Path, typer.Argument(help="Survey field: FITS (with WCS for ra/dec), PNG/JPEG or NPY.")],
    out: Annotated[Path, typer.Option(help="Folder for the stamps and catalog.csv.")],
    catalog: Annotated[Path | None, typer.Option(help="Positions (ra/dec or x/y) to cut at; "
                                                         "without it, sources are detected.")] = None,
    size: Annotated[int | None, typer.Option(help="Stamp side in pixels (default: 64 at catalog "
                                                     "positions, scaled to each detected source).")] = None,
    hdu: Annotated[str | None, typer.Option(help="FITS extension, by name or number.")] = None,
    nsigma: Annotated[float, typer.Option(help="Detection threshold above the background rms.")] = 3.0,
    npixels: Annotated[int, typer.Option(help="Minimum connected pixels of a source.")] = 20,
    psf_fwhm: Annotated[float, typer.Option(help="PSF FWHM in pixels; extended sources are wider.")] = 3.0,
    deblend: Annotated[bool, typer.Option(help="Split touching sources (photutils deblending); off "
                                               "by default so a knotty spiral stays one galaxy.")] = False,
    contrast: Annotated[float, typer.Option(help="With --deblend: flux fraction a component needs to "
                                                 "be split off (higher keeps more together).")] = 0.001,
    nlevels: Annotated[int, typer.Option(help="With --deblend: number of deblending thresholds.")] = 32,
    all_sources: Annotated[bool, typer.Option(help="Also cut point-like sources.")] = False,
    keep_outside: Annotated[bool, typer.Option(help="Keep positions outside the field as "
                                                    "flagged empty stamps.")] = False,
    format: Annotated[str, typer.Option(help="Stamp format: fits or npy.")] = "fits",
    overwrite: _Overwrite = False,
) -> None:
    """Cut stamps from a survey image at catalog positions or around detected galaxies."""
    from .data.cutouts import cutout_field

    hdu_key = int(hdu) if hdu is not None and hdu.isdigit() else hdu
    stamps = cutout_field(image, catalog=catalog, size=size, out_dir=out, hdu=hdu_key,
                          keep_outside=keep_outside, extended_only=not all_sources, nsigma=nsigma,
                          npixels=npixels, psf_fwhm=psf_fwhm, deblend=deblend, contrast=contrast,
                          nlevels=nlevels, format=format, overwrite=overwrite)
    edge = int(sum(bool(flag) for flag in stamps.table["edge"]))
    console.print(f"wrote {len(stamps.images)} stamps ({edge} at the field edge, padded and flagged) "
                  f"and {out / 'catalog.csv'}")
    if stamps.outside_ids:
        console.print(f"left out {len(stamps.outside_ids)} positions outside the field")


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Folder for images/ and catalog.csv.")],
    n: Annotated[int, typer.Option(help="Number of galaxies.")] = 1000,
    size: Annotated[int, typer.Option(help="Stamp side in pixels.")] = 64,
    bands: Annotated[str, typer.Option(help="Comma-separated band names, e.g. g,r,i.")] = "r",
    pixel_scale: Annotated[float, typer.Option(help="Arcsec per pixel.")] = 0.2,
    psf: Annotated[str, typer.Option(help="moffat or kolmogorov.")] = "moffat",
    psf_fwhm: Annotated[float, typer.Option(help="PSF FWHM in arcsec.")] = 0.7,
    noise: Annotated[str, typer.Option(help="gaussian, poisson, cosmos or none.")] = "gaussian",
    classes: Annotated[str | None, typer.Option(help="Comma-separated subset of classes.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same galaxies.")] = 0,
    workers: Annotated[int, typer.Option(help="Processes to render with.")] = 2,
    formats: Annotated[str, typer.Option(help="Comma-separated image formats: fits, png.")] = "fits,png",
    overwrite: _Overwrite = False,
) -> None:
    """Render labelled galaxies with GalSim (8 classes) and write images plus a catalog."""
    from .simulation import simulate as render
    from .simulation import write_sample

    _check_outputs(overwrite, folder=out)
    sample = render(n, size=size, bands=_split(bands), pixel_scale=pixel_scale, psf=psf,
                    psf_fwhm=psf_fwhm, noise=noise, classes=_split(classes) if classes else None,
                    seed=seed, workers=workers, progress=True)
    catalog_path = write_sample(sample, out, formats=_split(formats), overwrite=overwrite)
    console.print(f"wrote {n} galaxies and {catalog_path}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for every demo output.")] = Path("tuningfork-demo"),
    n_simulated: Annotated[int, typer.Option(help="Simulated galaxies to add to the real ones.")] = 400,
    seed: Annotated[int, typer.Option(help="Seed of every random step.")] = 0,
) -> None:
    """Run the tour on shipped data: Hubble Deep Field cutouts plus GalSim galaxies."""
    from .demo import run_demo

    run_demo(out, n_simulated=n_simulated, seed=seed, console=console)


@app.command()
def pretrain(
    data: Annotated[list[Path], typer.Argument(help="Data sets to pretrain on (labels are ignored).")],
    out: Annotated[Path, typer.Option(help="Model folder to write.")] = Path("astropt-model"),
    size: Annotated[str, typer.Option(help="Model size: tiny, small, base or large.")] = "tiny",
    image_size: Annotated[int | None, typer.Option(help="Side of the model's input in pixels "
                                                        "[default: 32].")] = None,
    crop_pixels: Annotated[int | None, typer.Option(help="Keep the central square of this "
                                                            "many pixels before resizing.")] = None,
    crop_fraction: Annotated[float | None, typer.Option(help="Or keep this fraction of each side "
                                                              "[default: 0.5; 1 keeps all].")] = None,
    stretch: Annotated[str | None, typer.Option(help="linear (JPEG composites) or asinh (FITS) "
                                                     "[default: linear].")] = None,
    normalisation: Annotated[str | None, typer.Option(help="Per-band minmax or zscore, or none (the model "
                                                           "scales each galaxy, keeping colours) "
                                                           "[default: none].")] = None,
    subtract_background: Annotated[bool | None, typer.Option(
        "--subtract-background/--no-subtract-background",
        help="Subtract each band's sky level first [default: no].")] = None,
    patch_size: Annotated[int, typer.Option(help="Patch side in pixels; divides --image-size.")] = 8,
    sed_columns: Annotated[str | None, typer.Option(help="Comma-separated catalog columns "
                                                            "(one per band) read as SED tokens.")] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the data at most.")] = 30,
    budget: Annotated[float | None, typer.Option(help="CPU-time budget in seconds; training stops "
                                                      "when it is spent.")] = None,
    batch_size: Annotated[int, typer.Option(help="Galaxies per step.")] = 64,
    learning_rate: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 1e-3,
    accelerator: Annotated[str, typer.Option(help="auto, cpu or gpu.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of weights, split and augmentation.")] = 0,
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
    overwrite: _Overwrite = False,
) -> None:
    """Pretrain the AstroPT patch transformer without labels and save a model folder."""
    from .data import GalaxyCollection
    from .embeddings import pretrain as run_pretraining
    from .embeddings.pretrain import pretrain_preprocess
    from .models import load_model

    _check_outputs(overwrite, folder=out)
    collections = [GalaxyCollection.open(path, skip_missing=skip_missing) for path in data]
    preprocess = pretrain_preprocess(image_size, crop_pixels, crop_fraction, stretch, normalisation,
                                     subtract_background)
    crop = (f"central {preprocess.crop_pixels} px" if preprocess.crop_pixels
            else f"central {preprocess.crop_fraction or 1:.0%}")
    console.print(f"preprocessing: {crop} of each stamp, resized to {preprocess.output_size} px, "
                  f"{preprocess.stretch} stretch, normalisation {preprocess.normalisation}, "
                  f"background {'subtracted' if preprocess.subtract_background else 'kept'}")
    folder = run_pretraining(collections, out, size=size, preprocess=preprocess, patch_size=patch_size,
                             sed_columns=_split(sed_columns) if sed_columns else (), max_epochs=epochs,
                             budget_s=budget, batch_size=batch_size, learning_rate=learning_rate,
                             accelerator=accelerator, seed=seed, progress=True, overwrite=overwrite)
    _report_budget(load_model(folder, architecture="astropt").config.metrics)
    console.print(f"wrote {folder}")


@app.command()
def embed(
    data: Annotated[Path, typer.Argument(help="Catalog, HDF5, NPY/NPZ, image file or folder.")],
    encoder: Annotated[str, typer.Option(
        help="morphology, a model folder, or timm:<architecture> with --weights.")],
    out: Annotated[Path, typer.Option(help="Output Parquet (a .npy is written beside it).")] = Path(
        "embeddings.parquet"),
    weights: Annotated[Path | None, typer.Option(help="Local weights file of a timm backbone.")] = None,
    bands: Annotated[int | None, typer.Option(help="Image bands (timm backbones, morphology); default: "
                                                   "the data's.")] = None,
    batch_size: Annotated[int, typer.Option(help="Galaxies per batch.")] = 64,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    workers: _Workers = None,
    scheduler: _Scheduler = None,
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
    overwrite: _Overwrite = False,
) -> None:
    """Embed every galaxy with an encoder; write ids and vectors to Parquet + NPY."""
    from .data import GalaxyCollection
    from .embeddings import extract_embeddings
    from .models import load_encoder

    _check_outputs(overwrite, out)
    collection = GalaxyCollection.open(data, skip_missing=skip_missing)
    if workers is not None or scheduler is not None:
        from .pipeline.commands import embed_distributed

        written = embed_distributed(collection, encoder, out, weights=weights, bands=bands, batch_size=batch_size,
                                    workers=workers, scheduler=scheduler, progress=True, overwrite=overwrite)
        console.print(f"wrote {len(written)} embeddings of dimension {written.dim} to {out}")
        return
    if bands is None:
        bands = collection[0].image.shape[0] if len(collection) else 3
    model = load_encoder(encoder, weights=weights, bands=bands, device=device)
    with _collapse_warnings():
        written = extract_embeddings(collection, model, out, batch_size=batch_size, progress=True,
                                     overwrite=overwrite)
    console.print(f"wrote {len(written)} embeddings of dimension {written.dim} to {out}")


@app.command()
def similar(
    embeddings: Annotated[Path, typer.Argument(help="Embeddings Parquet from 'tuningfork embed'.")],
    id: Annotated[str | None, typer.Option("--id", help="Query galaxy id.")] = None,
    image: Annotated[Path | None, typer.Option(help="Query image file (needs --encoder).")] = None,
    encoder: Annotated[str | None, typer.Option(help="Encoder of the embeddings, for --image.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Local weights of a timm encoder.")] = None,
    k: Annotated[int, typer.Option(help="Neighbours to return.")] = 10,
    kind: Annotated[str, typer.Option(help="Index: auto, flat (exact), ivf or hnsw.")] = "auto",
    metric: Annotated[str, typer.Option(help="cosine or l2.")] = "cosine",
    rebuild: Annotated[bool, typer.Option(help="Rebuild the index saved beside the embeddings.")] = False,
    data: Annotated[Path | None, typer.Option(help="Data set for the mosaic (default: the "
                                                      "one that was embedded).")] = None,
    out: Annotated[Path, typer.Option(help="Neighbours table (CSV, Parquet or FITS).")] = Path("similar.csv"),
    mosaic: Annotated[Path, typer.Option(help="Mosaic PNG of the neighbours.")] = Path("similar.png"),
    overwrite: _Overwrite = False,
) -> None:
    """Find the galaxies most similar to a galaxy id or a new image (faiss index)."""
    from .data import GalaxyCollection, write_table
    from .embeddings import load_embeddings
    from .embeddings.embed import embed_query_image
    from .embeddings.plots import neighbours_mosaic
    from .embeddings.search import open_or_build_index
    from .errors import ConfigError

    if (id is None) == (image is None):
        raise ConfigError("give exactly one query: --id or --image")
    if image is not None and encoder is None:
        raise ConfigError(f"{image}: a query image needs --encoder (the one that made {embeddings})")
    _check_outputs(overwrite, out, mosaic)
    with _collapse_warnings():
        vectors = load_embeddings(embeddings)
    index = open_or_build_index(vectors, rebuild=rebuild, kind=kind, metric=metric)
    query, query_image = id, None
    if image is not None:
        query_image, query = embed_query_image(vectors, image, encoder, weights=weights)
    table = index.neighbours(query, k)
    write_table(out, table)
    console.print(table)
    console.print(f"index {index.settings.kind} ({index.settings.metric}), recall@10 vs exact "
                  f"{index.settings.recall_at_10:.3f}; wrote {out}")
    source = _embedded_data(vectors, data)
    if source is not None:
        neighbours_mosaic(GalaxyCollection.open(source), table, mosaic, query_image=query_image)
        console.print(f"wrote {mosaic}")


@app.command()
def outliers(
    embeddings: Annotated[Path, typer.Argument(help="Embeddings Parquet from 'tuningfork embed'.")],
    out: Annotated[Path, typer.Option(help="Ranked table (CSV, Parquet or FITS).")] = Path("outliers.csv"),
    detectors: Annotated[str, typer.Option(help="Comma-separated: isolation_forest, knn, lof.")] = (
        "isolation_forest,knn,lof"),
    neighbors: Annotated[int, typer.Option(help="Neighbourhood size of knn and lof.")] = 20,
    data: Annotated[Path | None, typer.Option(help="Data set for the mosaic (default: the "
                                                      "one that was embedded).")] = None,
    mosaic: Annotated[Path, typer.Option(help="Mosaic PNG of the top outliers.")] = Path("outliers.png"),
    top: Annotated[int, typer.Option(help="Outliers in the mosaic.")] = 25,
    seed: Annotated[int, typer.Option(help="Seed of the isolation forest.")] = 0,
    overwrite: _Overwrite = False,
) -> None:
    """Rank galaxies by how anomalous their embeddings are (rank average of detectors)."""
    from .data import GalaxyCollection, write_table
    from .embeddings import load_embeddings, outlier_scores
    from .embeddings.plots import outliers_mosaic

    _check_outputs(overwrite, out, mosaic)
    with _collapse_warnings():
        vectors = load_embeddings(embeddings)
    table = outlier_scores(vectors.vectors, vectors.ids, detectors=_split(detectors), n_neighbors=neighbors,
                           seed=seed)
    write_table(out, table)
    console.print(table[:10])
    console.print(f"wrote {out}")
    source = _embedded_data(vectors, data)
    if source is not None:
        outliers_mosaic(GalaxyCollection.open(source), table, mosaic, top=top)
        console.print(f"wrote {mosaic}")


@app.command()
def probe(
    embeddings: Annotated[Path, typer.Argument(help="Embeddings Parquet from 'tuningfork embed'.")],
    catalog: Annotated[Path, typer.Option(help="Catalog with ids and the label column.")],
    column: Annotated[str, typer.Option(help="Class or numeric column to predict.")] = "label",
    task: Annotated[str, typer.Option(help="auto, classification or regression.")] = "auto",
    fractions: Annotated[str, typer.Option(help="Comma-separated label fractions.")] = "0.01,0.1,1",
    probes: Annotated[str, typer.Option(help="Comma-separated: linear, knn.")] = "linear,knn",
    split_column: Annotated[str, typer.Option(help="Column whose 'train' rows train, "
                                                   "the others test.")] = "split",
    test_fraction: Annotated[float, typer.Option(help="Held-out share without a split column.")] = 0.3,
    repeats: Annotated[int, typer.Option(help="Label subsets per fraction.")] = 3,
    redshift_like: Annotated[bool, typer.Option(help="Divide regression residuals by 1 + truth.")] = True,
    out: Annotated[Path, typer.Option(help="Metrics table (CSV, Parquet or FITS).")] = Path("probes.csv"),
    plot: Annotated[Path, typer.Option(help="PNG of metric vs label fraction.")] = Path("probes.png"),
    seed: Annotated[int, typer.Option(help="Seed of the split and label subsets.")] = 0,
    overwrite: _Overwrite = False,
) -> None:
    """Fit linear and kNN probes on a fraction of the labels and score held-out galaxies."""
    from .data import read_catalog, write_table
    from .embeddings import load_embeddings
    from .embeddings.plots import probe_curves
    from .embeddings.probes import probe_catalog

    _check_outputs(overwrite, out, plot)
    table = probe_catalog(load_embeddings(embeddings), read_catalog(catalog), column,
                          split_column=split_column, test_fraction=test_fraction, seed=seed, task=task,
                          fractions=_fractions(fractions), probes=_split(probes),
                          repeats=repeats, redshift_like=redshift_like)
    write_table(out, table)
    probe_curves(table, "accuracy" if "accuracy" in table.colnames else "nmad", plot)
    console.print(table)
    console.print(f"wrote {out} and {plot}")


@contextlib.contextmanager
def _collapse_warnings():
    """Print collapsed-embeddings warnings as one ``warning:`` line instead of Python's two."""
    from .embeddings.store import CollapsedEmbeddingsWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CollapsedEmbeddingsWarning)
        yield
    for warning in caught:
        if issubclass(warning.category, CollapsedEmbeddingsWarning):
            error_console.print(f"[bold yellow]warning:[/] {warning.message}", highlight=False, soft_wrap=True)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


def _report_budget(metrics: dict) -> None:
    """Say how many epochs ran when the CPU budget stopped training."""
    if metrics.get("budget_reached"):
        console.print(f"CPU budget reached after {metrics['epochs_run']} epochs "
                      f"({metrics['train_cpu_seconds']:.0f} CPU s)")


def _embedded_data(embeddings, data: Path | None) -> Path | None:
    """The data set to read mosaic images from: given, else the one embedded if still there."""
    if data is not None:
        return data
    source = embeddings.metadata.get("source")
    if source and Path(source).exists():
        return Path(source)
    console.print("no data set to draw the mosaic from (give --data)")
    return None


def _fractions(text: str) -> list[float]:
    from .errors import ConfigError

    try:
        return [float(value) for value in _split(text)]
    except ValueError:
        raise ConfigError(f"label fractions must be comma-separated numbers, got '{text}'") from None


def _check_outputs(overwrite: bool, *files: Path, folder: Path | None = None) -> None:
    """Refuse unwritable or existing outputs before any work (the library checks again when it writes)."""
    from .data.writers import check_output

    for path in files:
        check_output(path, overwrite=overwrite)
    if folder is not None:
        check_output(folder, kind="folder", overwrite=overwrite)


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@app.command()
def cluster(
    data: Annotated[Path, typer.Argument(help="Catalog, HDF5, NPY/NPZ, image file or folder.")],
    out: Annotated[Path, typer.Option(help="Output folder; a rerun resumes from its finished stages. "
                                           "Its clustering/ folder is the fitted clustering, for --model.")] = Path(
        "clusters"),
    fit_on: Annotated[Path | None, typer.Option(help="Fit the clustering on this other data set (run written "
                                                     "to OUT/fit/), then assign DATA to its groups.")] = None,
    model: Annotated[Path | None, typer.Option(help="Assign DATA with a fitted clustering folder (OUT/clustering/ "
                                                    "of an earlier run) instead of fitting one; the clustering, "
                                                    "encoder, preprocessing and sweep options are then "
                                                    "those it was fitted with.")] = None,
    k: Annotated[int, typer.Option("--k", help="Groups per clustering (20 in the paper).")] = _CLUSTER.n_clusters,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples.")] = _CLUSTER.n_bootstrap,
    threshold: Annotated[float, typer.Option(help="Fraction of votes needed to classify a galaxy.")] = (
        _CLUSTER.threshold),
    models: Annotated[str, typer.Option(help="Comma-separated: kmeans, ward, gmm, birch.")] = (
        ",".join(_CLUSTER.models)),
    encoder: Annotated[str, typer.Option(help="'morphology' (rotation-invariant descriptors), a timm "
                                              "architecture (with --weights), a model folder, or "
                                              "'autoencoder' (the denoiser's latent).")] = _CLUSTER.encoder,
    weights: Annotated[Path | None, typer.Option(help="Local weights file of the timm encoder.")] = None,
    input_size: Annotated[int, typer.Option(help="Encoder input side in pixels.")] = _CLUSTER.input_size,
    pca: Annotated[float, typer.Option(help="Variance fraction (< 1) or number of PCA components.")] = (
        _CLUSTER.pca_components),
    denoise: Annotated[bool, typer.Option(help="Train and apply the denoising autoencoder first.")] = (
        _CLUSTER.denoise),
    denoise_epochs: Annotated[int, typer.Option(help="Autoencoder training epochs.")] = _CLUSTER.denoise_epochs,
    polar: Annotated[bool, typer.Option(help="Polar step with extended angle axis before encoding.")] = (
        _CLUSTER.polar),
    size: Annotated[int | None, typer.Option(help="Resize cutouts to this many pixels (default "
                                                  f"{DEFAULT_PREPROCESS['output_size']}).")] = None,
    stretch: Annotated[str | None, typer.Option(help="linear (default), asinh, sqrt or log.")] = None,
    label_column: Annotated[str | None, typer.Option(help="Known classes of DATA, to score the groups.")] = None,
    sweep: Annotated[str | None, typer.Option(help="Comma-separated K values to compare.")] = None,
    morphometry: Annotated[bool, typer.Option(help="Also measure statmorph parameters (slow).")] = (
        _CLUSTER.morphometry),
    workers: Annotated[int, typer.Option(help="Processes for the morphometry.")] = _CLUSTER.workers,
    embedding_map: Annotated[str, typer.Option(help="umap or pca.")] = _CLUSTER.embedding_map,
    seed: Annotated[int, typer.Option(help="Seed of every random step.")] = _CLUSTER.seed,
    force: Annotated[bool, typer.Option(help="Recompute every stage.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Write into a non-empty OUT that is not an earlier cluster "
                                                 "run (an earlier run is resumed).")] = False,
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
) -> None:
    """Unsupervised groups by bagging voting clustering of (denoised, polar) encoder features.

    By default the clustering is fitted on DATA.  With --fit-on it is fitted
    on another data set and DATA is assigned to its groups; with --model a
    clustering fitted earlier assigns DATA.
    """
    from .clustering import assign_groups, run_cluster_pipeline
    from .clustering.pipeline import FITTED_FOLDER, check_run_folder
    from .data import GalaxyCollection
    from .errors import ConfigError

    if fit_on is not None and model is not None:
        raise ConfigError("cluster: give --fit-on (fit, then assign) or --model (assign only), not both")
    check_run_folder(out, overwrite)
    given = {key: value for key, value in {"output_size": size, "stretch": stretch}.items() if value is not None}
    preprocess = {**DEFAULT_PREPROCESS, **given} if given else None
    config = ClusterConfig(
        n_clusters=k, n_bootstrap=bootstrap, models=tuple(_split(models)), threshold=threshold,
        pca_components=int(pca) if pca >= 1 else pca, encoder=encoder,
        encoder_weights=str(weights) if weights else None, input_size=input_size, denoise=denoise,
        denoise_epochs=denoise_epochs, polar=polar, preprocess=preprocess,
        # With --fit-on, the labels score DATA, not the data set fitted on.
        label_column=None if fit_on is not None else label_column,
        sweep_k=tuple(int(value) for value in _split(sweep)) if sweep else (), morphometry=morphometry,
        workers=workers, embedding_map=embedding_map, seed=seed,
    )
    collection = GalaxyCollection.open(data, label_column=label_column, skip_missing=skip_missing)
    if fit_on is not None:
        fit_collection = GalaxyCollection.open(fit_on, skip_missing=skip_missing)
        console.print(f"fitting on {fit_on} into {out / 'fit'}")
        run_cluster_pipeline(fit_collection, out / "fit", config, force=force, overwrite=overwrite,
                             log=console.print)
        model = out / "fit" / FITTED_FOLDER
    if model is not None:
        # OUT was checked above, before --fit-on wrote its fit/ folder into it.
        result = assign_groups(collection, model, out, label_column=label_column, force=force,
                               overwrite=overwrite or fit_on is not None, log=console.print)
        fitted_with = f"the groups of {model}"
    else:
        result = run_cluster_pipeline(collection, out, config, force=force, overwrite=overwrite,
                                      log=console.print)
        fitted_with = f"{k} groups"
    classified = int(sum(result.groups["classified"]))
    console.print(f"{classified} of {len(result.groups)} galaxies classified into {fitted_with}; wrote {out}")
    for method, scores in (result.scores or {}).items():
        console.print(f"{method}: " + ", ".join(f"{name} {value:.3f}" for name, value in scores.items()))


denoise_app = _App(name="denoise", help="Train or apply the denoising autoencoder.", no_args_is_help=True)
app.add_typer(denoise_app, name="denoise")


@denoise_app.command("train")
def denoise_train(
    data: Annotated[Path, typer.Argument(help="Catalog, HDF5, NPY/NPZ, image file or folder.")],
    out: Annotated[Path, typer.Option(help="Model folder to write.")] = Path("denoiser"),
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = _CLUSTER.denoise_epochs,
    size: Annotated[int, typer.Option(help="Resize cutouts to this many pixels.")] = (
        DEFAULT_PREPROCESS["output_size"]),
    stretch: Annotated[str, typer.Option(help="linear, asinh, sqrt or log.")] = "linear",
    channels: Annotated[int, typer.Option(help="Channels of the first level (doubled per level).")] = (
        _CLUSTER.denoise_channels),
    depth: Annotated[int, typer.Option(help="Downsampling levels.")] = _CLUSTER.denoise_depth,
    max_images: Annotated[int, typer.Option(help="Galaxies drawn at random for training.")] = (
        _CLUSTER.denoise_max_train),
    noise_sigma: Annotated[float | None, typer.Option(help="Injected noise (default: each image's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
    overwrite: _Overwrite = False,
) -> None:
    """Train a denoising autoencoder on your own images (noise injected on the fly)."""
    from .clustering import train_denoiser
    from .data import GalaxyCollection
    from .preprocessing import PreprocessConfig

    _check_outputs(overwrite, folder=out)
    collection = GalaxyCollection.open(data, skip_missing=skip_missing)
    folder, metrics = train_denoiser(
        collection, out, preprocess=PreprocessConfig(output_size=size, stretch=stretch), max_images=max_images,
        seed=seed, epochs=epochs, base_channels=channels, depth=depth, noise_sigma=noise_sigma,
        overwrite=overwrite,
    )
    console.print(f"trained on {metrics['n_train']} galaxies, final loss {metrics['final_train_loss']:.4g}; "
                  f"wrote {folder}")


@denoise_app.command("apply")
def denoise_apply(
    model: Annotated[Path, typer.Argument(help="Model folder from 'tuningfork denoise train'.")],
    data: Annotated[Path, typer.Argument(help="Catalog, HDF5, NPY/NPZ, image file or folder.")],
    out: Annotated[Path, typer.Option(help="Output NPZ (images + ids).")] = Path("denoised.npz"),
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
    overwrite: _Overwrite = False,
) -> None:
    """Denoise every galaxy with a trained autoencoder; write an NPZ stack with ids."""
    from .clustering import apply_denoiser
    from .data import GalaxyCollection

    _check_outputs(overwrite, out)
    collection = GalaxyCollection.open(data, skip_missing=skip_missing)
    console.print(f"wrote {apply_denoiser(model, collection, out, overwrite=overwrite)}")


@app.command()
def morphometry(
    data: Annotated[Path, typer.Argument(help="Catalog, HDF5, NPY/NPZ, image file or folder.")],
    out: Annotated[Path, typer.Option(help="Output table (CSV, Parquet or FITS).")] = Path("morphometry.csv"),
    band: Annotated[int | None, typer.Option(help="Band to measure (default: mean of the bands).")] = None,
    gain: Annotated[float | None, typer.Option(help="Electrons per image unit (default: sky-rms "
                                                       "weight map).")] = None,
    mask: Annotated[Path | None, typer.Option(help="FITS bad-pixel mask (nonzero = bad), of the "
                                                     "images' shape.")] = None,
    psf: Annotated[Path | None, typer.Option(help="FITS PSF image for the Sersic fits (normalised "
                                                    "here).")] = None,
    sky_subtracted: Annotated[bool, typer.Option(help="The images are already sky-subtracted: "
                                                        "do not estimate a sky level.")] = False,
    sky: Annotated[float | None, typer.Option(help="Known sky level to subtract (default: "
                                                     "measured on source-free pixels).")] = None,
    workers: _Workers = None,
    scheduler: _Scheduler = None,
    all_quantities: Annotated[bool, typer.Option(help="Every statmorph output, not only the main ones.")] = False,
    bulge_disk: Annotated[bool, typer.Option(help="Also fit a Sersic bulge + exponential disk (statmorph's "
                                                    "double Sersic, second index fixed to 1).")] = False,
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
    overwrite: _Overwrite = False,
) -> None:
    """Gini, M20, CAS, Sersic index, half-light radius and flags with statmorph."""
    import numpy as np

    from .data import GalaxyCollection
    from .errors import ConfigError
    from .morphometry import (
        ALL_QUANTITIES,
        DEFAULT_QUANTITIES,
        DOUBLESERSIC_QUANTITIES,
        morphometry_catalog,
    )

    if sky_subtracted and sky is not None:
        raise ConfigError("morphometry: give --sky-subtracted or --sky, not both")
    sky_level: float | str = 0.0 if sky_subtracted else ("auto" if sky is None else sky)
    _check_outputs(overwrite, out)
    collection = GalaxyCollection.open(data, skip_missing=skip_missing)
    quantities = ALL_QUANTITIES if all_quantities else DEFAULT_QUANTITIES
    # A bulge + exponential disk is the usual two-component model of a disk
    # galaxy (and the published one to compare a bulge's n and r_e with).
    extra = ({"include_doublesersic": True, "doublesersic_model_args": {"n_2": 1.0, "fixed": {"n_2": True}}}
             if bulge_disk else {})
    quantities = quantities + (DOUBLESERSIC_QUANTITIES if bulge_disk else ())
    if workers is None and scheduler is None:
        table = morphometry_catalog(collection, band=band, gain=gain, mask=mask, psf=psf, sky=sky_level,
                                    output=out, overwrite=overwrite, quantities=quantities, **extra)
    else:
        from .pipeline.commands import morphometry_distributed
        from .pipeline.config import MorphometryStage

        stage = MorphometryStage(band=band, gain=gain, sky=sky_level, mask=None if mask is None else str(mask),
                                 psf=None if psf is None else str(psf), quantities=list(quantities),
                                 statmorph_options=extra)
        table = morphometry_distributed(collection, out, stage=stage, workers=workers, scheduler=scheduler,
                                        progress=True, overwrite=overwrite)
    measured = np.asarray(table["measured"], dtype=bool)
    if measured.any():
        levels = np.asarray(table["sky_level"], dtype=float)[measured]
        rms = np.asarray(table["sky_rms"], dtype=float)[measured]
        how = ("given" if sky_level != "auto" else "estimated on source-free pixels")
        console.print(f"sky {how}: level {np.median(levels):.4g}, rms {np.median(rms):.4g}"
                      f"{' (median over galaxies)' if measured.sum() > 1 else ''}")
        suspect = int((np.asarray(table["sky_flag"])[measured] == 1).sum())
        if suspect:
            console.print(f"warning: sky suspect for {suspect} galaxies (sky_flag 1: the galaxy reaches "
                          "the cutout edge or fills it); if the sky was already removed, pass "
                          "--sky-subtracted")
        warned = int(sum(bool(text) for text in np.asarray(table["warnings"])[measured]))
        if warned:
            console.print(f"statmorph warned about {warned} galaxies (see the warnings column)")
    console.print(f"measured {int(measured.sum())} of {len(table)} galaxies; wrote {out}")


generate_app = _App(name="generate", help="Conditional diffusion: train, sample and evaluate a galaxy generator.",
                    no_args_is_help=True)
app.add_typer(generate_app, name="generate")


@generate_app.command("train")
def generate_train(
    data: Annotated[Path, typer.Argument(help="Catalog, HDF5, NPY/NPZ or folder of training galaxies.")],
    out: Annotated[Path, typer.Option(help="Generator model folder to write.")] = Path("generator"),
    label_column: Annotated[str | None, typer.Option(help="Class column to condition on.")] = None,
    feature_columns: Annotated[str | None, typer.Option(help="Comma-separated numeric columns to condition "
                                                                "on instead of the class.")] = None,
    image_size: Annotated[int, typer.Option(help="Side of the generated stamps in pixels.")] = 32,
    crop_pixels: Annotated[int | None, typer.Option(help="Keep the central square of this many pixels "
                                                            "before resizing.")] = None,
    stretch: Annotated[str, typer.Option(help="asinh (FITS), linear (JPEG composites), sqrt or log.")] = "asinh",
    channels: Annotated[str, typer.Option(help="Comma-separated UNet channels per level.")] = "32,64,64",
    layers_per_block: Annotated[int, typer.Option(help="Residual blocks per UNet level.")] = 1,
    attention_levels: Annotated[int, typer.Option(help="Lowest-resolution levels with self-attention.")] = 1,
    epochs: Annotated[int, typer.Option(help="Passes over the data at most.")] = 30,
    budget: Annotated[float | None, typer.Option(help="CPU-time budget in seconds; training stops "
                                                      "when it is spent.")] = None,
    batch_size: Annotated[int, typer.Option(help="Galaxies per step.")] = 32,
    learning_rate: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 1e-3,
    condition_dropout: Annotated[float, typer.Option(help="Share of steps trained without the condition "
                                                          "(classifier-free guidance).")] = 0.1,
    ema_decay: Annotated[float, typer.Option(help="Decay of the saved EMA weights.")] = 0.999,
    accelerator: Annotated[str, typer.Option(help="auto, cpu or gpu.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of weights, noise and augmentation.")] = 0,
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
    overwrite: _Overwrite = False,
) -> None:
    """Train a class- or feature-conditioned diffusion generator (DDPM, EMA weights)."""
    from .data import GalaxyCollection
    from .generation import load_generator, train_generator
    from .preprocessing import PreprocessConfig

    _check_outputs(overwrite, folder=out)
    collection = GalaxyCollection.open(data, label_column=label_column, skip_missing=skip_missing)
    preprocess = PreprocessConfig(output_size=image_size, crop_pixels=crop_pixels, stretch=stretch,
                                  normalisation="none")
    unet = {"channels": _integers(channels, "--channels"), "layers_per_block": layers_per_block,
            "attention_levels": attention_levels}
    folder = train_generator(collection, out, feature_columns=_split(feature_columns) if feature_columns else None,
                             preprocess=preprocess, unet=unet, max_epochs=epochs, budget_s=budget,
                             batch_size=batch_size,
                             learning_rate=learning_rate, condition_dropout=condition_dropout, ema_decay=ema_decay,
                             accelerator=accelerator, seed=seed, progress=True, overwrite=overwrite)
    metrics = load_generator(folder).metrics
    _report_budget(metrics)
    console.print(f"trained on {metrics['n_train']} galaxies; fixed-batch loss "
                  f"{metrics['fixed_batch_loss_before']:.4f} -> {metrics['fixed_batch_loss_after']:.4f}; wrote {folder}")


@generate_app.command("sample")
def generate_sample(
    generator: Annotated[Path, typer.Argument(help="Generator model folder.")],
    condition: Annotated[list[str], typer.Option(help="A class name, comma-separated feature values, or a "
                                                      "catalog of conditions; repeat for several.")],
    out: Annotated[Path, typer.Option(help="Folder for images/, catalog.csv and the mosaics.")] = Path("generated"),
    n: Annotated[int, typer.Option(help="Galaxies per condition.")] = 16,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale (0: unconditional).")] = 2.0,
    steps: Annotated[int, typer.Option(help="Sampler steps.")] = 25,
    sampler: Annotated[str, typer.Option(help="ddim or dpm-solver.")] = "ddim",
    seed: Annotated[int, typer.Option(help="Seed of the initial noise; the same seed gives the same galaxies.")] = 0,
    formats: Annotated[str, typer.Option(help="Comma-separated image formats: fits, png.")] = "fits,png",
    overwrite: _Overwrite = False,
) -> None:
    """Generate galaxies for given conditions; write FITS/PNG, a conditions catalog and mosaics."""
    from .generation import generate, load_generator, write_generated

    _check_outputs(overwrite, folder=out)
    model = load_generator(generator)
    conditions = [parsed for text in condition for parsed in model.conditions.parse(text, model.name)]
    sample = generate(model, conditions, n=n, guidance=guidance, steps=steps, seed=seed, sampler=sampler)
    catalog = write_generated(sample, out, formats=_split(formats), overwrite=overwrite)
    extrapolated = int(sum(sample.catalog["extrapolated"]))
    note = f" ({extrapolated} outside the training range)" if extrapolated else ""
    console.print(f"wrote {len(sample)} galaxies{note} and {catalog}")


@generate_app.command("evaluate")
def generate_evaluate(
    generator: Annotated[Path, typer.Argument(help="Generator model folder.")],
    data: Annotated[Path, typer.Argument(help="Real galaxies to compare with (held out from training).")],
    encoder: Annotated[Path | None, typer.Option(help="tuningfork encoder folder (pretrain or denoise) for "
                                                         "the Frechet distance.")] = None,
    classifier: Annotated[Path | None, typer.Option(help="Classifier folder trained on real data, for "
                                                            "the conditional accuracy.")] = None,
    n: Annotated[int, typer.Option(help="Real and generated galaxies per condition.")] = 64,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 2.0,
    steps: Annotated[int, typer.Option(help="Sampler steps.")] = 25,
    seed: Annotated[int, typer.Option(help="Seed of the samples and of the real draw.")] = 0,
    morphometry: Annotated[bool, typer.Option(help="Compare statmorph parameters (KS tests).")] = True,
    workers: Annotated[int, typer.Option(help="Processes for statmorph.")] = 1,
    label_column: Annotated[str | None, typer.Option(help="Class column of the real data.")] = None,
    out: Annotated[Path, typer.Option(help="Per-condition table (CSV, Parquet or FITS); the KS table is "
                                           "written beside it.")] = Path("generator-evaluation.csv"),
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
    overwrite: _Overwrite = False,
) -> None:
    """Frechet distance, conditional accuracy and statmorph KS statistics per condition."""
    from .data import GalaxyCollection
    from .generation import evaluate_generator, load_generator
    from .generation.augment import folder_classifier

    _check_outputs(overwrite, out)
    model = load_generator(generator)
    real = GalaxyCollection.open(data, label_column=label_column, skip_missing=skip_missing)
    summary, ks = evaluate_generator(
        model, real, encoder=encoder, classifier=folder_classifier(classifier, model) if classifier else None,
        n_per_condition=n, guidance=guidance, steps=steps, seed=seed, morphometry=morphometry, n_workers=workers,
        output=out, overwrite=overwrite,
    )
    console.print(summary)
    if ks is not None:
        console.print(ks["group", "quantity", "n_real", "n_generated", "ks_statistic", "ks_pvalue"])
    console.print(f"wrote {out}")


def _print_training_choices(metrics: dict, balance_classes: bool | None) -> None:
    """Say which crop and class weighting ``train`` chose, and how to change them."""
    if metrics.get("crop"):
        console.print(f"crop: {metrics['crop']['text']}; --crop-pixels to set it, 0 for the whole stamp")
    weighting = metrics.get("class_weighting") or {}
    ratio = weighting.get("imbalance_ratio")
    if ratio is None:
        return
    if weighting["scheme"] is not None:
        why = f"classes are imbalanced (largest/smallest = {ratio:.0f})" if balance_classes is None else "asked for"
        console.print(f"{why}: using sqrt-inverse-frequency class weights; --no-balance-classes to turn off")
    elif balance_classes is None and ratio > 1:
        console.print(f"classes: largest/smallest = {ratio:.1f}, no class weights; --balance-classes to add them")


@app.command("train")
def train_command(
    data: Annotated[Path, typer.Argument(help="Catalog, Galaxy10-style HDF5, NPY/NPZ stack or folder.")],
    out: Annotated[Path, typer.Option(help="Model folder to write.")] = Path("model"),
    target: Annotated[str, typer.Option(help="Label column (class targets).")] = "label",
    tree: Annotated[str | None, typer.Option(help="Learn Galaxy Zoo votes over this tree instead: "
                                                     "gz2 or gz_decals.")] = None,
    vote_loss: Annotated[str | None, typer.Option(help="dirichlet (vote counts) or mse (fractions); "
                                                          "chosen from the columns by default.")] = None,
    architecture: Annotated[str, typer.Option(help="rotinv, hybrid, or a timm model name.")] = "rotinv",
    weights: Annotated[Path | None, typer.Option(help="Local pretrained weights (timm backbones).")] = None,
    init_from: Annotated[Path | None, typer.Option(help="Model folder or shipped model ('tuningfork models') to "
                                                        "fine-tune (same architecture): all but a changed output "
                                                        "layer start from it.")] = None,
    freeze_encoder: Annotated[bool, typer.Option(help="With --init-from: train the head only, on the frozen "
                                                      "encoder (for few labels).")] = False,
    layer_decay: Annotated[float | None, typer.Option(help="With --init-from: layer-wise learning-rate decay, "
                                                           "e.g. 0.75 (each block learns this much slower than "
                                                           "the one above it).")] = None,
    labels: Annotated[Path | None, typer.Option(help="Expert label database ('tuningfork explore'): its "
                                                     "consensus labels replace the catalog's for the "
                                                     "galaxies that have them.")] = None,
    image_size: Annotated[int, typer.Option(help="Side of the network input in pixels.")] = 64,
    crop_pixels: Annotated[int | None, typer.Option(help="Keep the central square of this many "
                                                            "pixels before resizing; by default measured "
                                                            "from the galaxies' footprints; 0 keeps the "
                                                            "whole stamp.")] = None,
    stretch: Annotated[str, typer.Option(help="linear (JPEG composites) or asinh (FITS).")] = "linear",
    normalisation: Annotated[str, typer.Option(help="Per-band minmax or zscore, or none (keeps the "
                                                    "colours of JPEG composites).")] = "minmax",
    epochs: Annotated[int, typer.Option(help="Maximum passes over the training split.")] = 30,
    budget: Annotated[float | None, typer.Option(help="CPU-time budget in seconds (per ensemble member).")] = None,
    ensemble: Annotated[int, typer.Option(help="Train this many networks from different seeds and "
                                               "average them (costs that many times the time).")] = 1,
    batch_size: Annotated[int, typer.Option(help="Galaxies per step.")] = 64,
    learning_rate: Annotated[float | None, typer.Option(help="Peak AdamW learning rate.")] = None,
    label_smoothing: Annotated[float, typer.Option(help="Cross-entropy label smoothing.")] = 0.1,
    balance_classes: Annotated[bool | None, typer.Option(
        "--balance-classes/--no-balance-classes",
        help="Weight the loss by the square root of the inverse class frequency; by default on when the "
             "largest training class outnumbers the smallest more than 3 times.")] = None,
    mixup: Annotated[float, typer.Option(help="Mixup alpha (0: off).")] = 0.0,
    cutmix: Annotated[float, typer.Option(help="Cutmix alpha (0: off).")] = 0.0,
    split_column: Annotated[str, typer.Option(help="Column with train/val/test values.")] = "split",
    val_fraction: Annotated[float, typer.Option(help="Validation share without a split column.")] = 0.2,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience in epochs.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of split, weights, shuffling and augmentation.")] = 0,
    accelerator: Annotated[str, typer.Option(help="auto, cpu or gpu.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bfloat16 mixed precision where the CPU or GPU has it), "
                                                "32-true, bf16-mixed or 16-mixed.")] = "auto",
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
    augment_with: Annotated[Path | None, typer.Option(help="Generator folder ('tuningfork generate "
                                                              "train'): add generated galaxies of --rare-classes.")] = None,
    rare_classes: Annotated[str | None, typer.Option(help="Comma-separated classes to augment.")] = None,
    generated_per_class: Annotated[int, typer.Option(help="Generated galaxies added per rare class.")] = 100,
    overwrite: _Overwrite = False,
) -> None:
    """Train a classifier (or Galaxy Zoo vote model) and write a calibrated model folder."""
    from .data import GalaxyCollection
    from .preprocessing import PreprocessConfig
    from .training import train
    from .training.fit import TrainingWarning

    _check_outputs(overwrite, folder=out)
    collection = GalaxyCollection.open(data, label_column=None if tree else target, skip_missing=skip_missing)
    if labels is not None:
        from .data.labels import apply_expert_labels

        collection = apply_expert_labels(collection, labels, target)
    preprocess = PreprocessConfig(crop_pixels=crop_pixels or None, output_size=image_size, stretch=stretch,
                                  normalisation=normalisation)
    extra_train = None
    if augment_with is not None:
        from .generation import generate_for_classifier

        extra_train = generate_for_classifier(augment_with, _split(rare_classes) if rare_classes else (),
                                              generated_per_class, preprocess, seed=seed)
    # The warnings are printed below, with the metrics they are about.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingWarning)
        result = train(
            collection, out, target, architecture, tree=tree, vote_loss=vote_loss, preprocess=preprocess,
            epochs=epochs, budget_s=budget, batch_size=batch_size, learning_rate=learning_rate,
            label_smoothing=label_smoothing, class_weights={None: "auto", True: "sqrt", False: None}[balance_classes],
            crop=None if crop_pixels is not None else "auto", mixup=mixup,
            cutmix=cutmix, ensemble=ensemble, weights=weights, init_from=init_from, freeze_encoder=freeze_encoder,
            layer_decay=layer_decay, split_column=split_column,
            val_fraction=val_fraction, patience=patience,
            seed=seed, accelerator=accelerator, precision=precision, extra_train=extra_train, overwrite=overwrite,
        )
    _print_training_choices(result.metrics, balance_classes)
    shown = {key: value for key, value in result.metrics.items() if key.startswith(("val_", "train_"))}
    console.print(shown)
    for note in result.metrics["warnings"]:
        console.print(f"[bold yellow]warning:[/] {note}")
    console.print(f"wrote {result.folder}")


@app.command("predict")
def predict_command(
    model: Annotated[Path, typer.Argument(help="Model folder from 'tuningfork train', or a shipped model "
                                               "('tuningfork models').")],
    data: Annotated[Path, typer.Argument(help="Catalog, HDF5, NPY/NPZ, image file or folder.")],
    out: Annotated[Path, typer.Option(help="Output catalog (Parquet, CSV or FITS).")] = Path("predictions.parquet"),
    target_accuracy: _TargetAccuracy = None,
    min_confidence: _MinConfidence = None,
    columns: _CarriedColumns = None,
    tta: Annotated[bool, typer.Option(help="Average over the 8 rotations and flips.")] = False,
    batch_size: Annotated[int, typer.Option(help="Galaxies per forward pass.")] = 256,
    engine: Annotated[str, typer.Option(help="auto (ONNX Runtime when the model folder holds its exported "
                                              "graph, else torch), torch, or onnx (faster on a CPU).")] = "auto",
    workers: _Workers = None,
    scheduler: _Scheduler = None,
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
    overwrite: _Overwrite = False,
) -> None:
    """Predict classes or vote fractions; split confident predictions from an expert queue."""
    from .data import GalaxyCollection
    from .errors import ConfigError
    from .training import predict
    from .training.predict import expert_queue_path

    _check_outputs(overwrite, out)
    collection = GalaxyCollection.open(data, skip_missing=skip_missing)
    carried = _split(columns) if columns else ()
    if workers is None and scheduler is None:
        table = predict(model, collection, out, target_accuracy=target_accuracy, min_confidence=min_confidence,
                        columns=carried, tta=tta, batch_size=batch_size, progress=True, engine=engine,
                        overwrite=overwrite)
    elif tta:
        raise ConfigError("predict: --tta runs in one process; leave out --workers/--scheduler")
    else:
        from .pipeline.commands import predict_distributed

        table = predict_distributed(model, collection, out, target_accuracy=target_accuracy,
                                    min_confidence=min_confidence, columns=carried, engine=engine, workers=workers,
                                    scheduler=scheduler, progress=True, overwrite=overwrite)
    console.print(f"wrote {len(table)} predictions to {out}")
    if "triage" in table.colnames:
        confident = table["triage"] == "confident"
        for name in sorted(set(table["predicted_class"])):
            rows = table["predicted_class"] == name
            levels = sorted(set(table["threshold"][rows].tolist()))
            shown = ("no threshold reached the target" if levels == [float("inf")]
                     else "threshold " + ", ".join(f"{level:.4f}" for level in levels))
            console.print(f"  {name}: {int(confident[rows].sum())} of {int(rows.sum())} confident ({shown})")
        console.print(f"{int(confident.sum())} confident, {int((~confident).sum())} queued for experts in "
                      f"{expert_queue_path(out)}")


@app.command("models")
def models_command() -> None:
    """List the models shipped with tuningfork: what they expect, how they were trained, how they score."""
    from rich.table import Table

    from .models.shipped import shipped_models

    table = Table("name", "task", "input", "held-out metrics", "trained with")
    for name, model in shipped_models().items():
        card = model.card
        metrics = ", ".join(f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}"
                            for key, value in card.get("metrics", {}).items())
        table.add_row(name, card.get("description", ""), card.get("input", ""), metrics, card.get("command", ""))
    console.print(table)
    console.print("use a name wherever a model folder is asked for, e.g. 'tuningfork predict gzc-5class DATA'")


@app.command("export")
def export_command(
    model: Annotated[Path, typer.Argument(help="Model folder from 'tuningfork train'.")],
    out: Annotated[Path | None, typer.Option(help="ONNX file to write; by default MODEL/network.onnx, which "
                                                  "predict and catalog then run without torch.")] = None,
) -> None:
    """Export a model's network for ONNX Runtime (for folders written before train did it)."""
    from .models.export import export_onnx

    console.print(f"wrote {export_onnx(model, out)}")


@app.command("catalog")
def catalog_command(
    data: Annotated[Path, typer.Argument(help="Catalog, HDF5, NPY/NPZ, image file or folder.")],
    out: Annotated[Path, typer.Option(help="Catalog folder; one from an earlier run of the same input "
                                           "resumes it.")] = Path("catalog"),
    config: Annotated[Path | None, typer.Option(help="Stage config (pipeline.toml; see "
                                                     "examples/pipeline.toml).")] = None,
    classifier: Annotated[Path | None, typer.Option(help="Model folder from 'tuningfork train'.")] = None,
    clusterer: Annotated[str | None, typer.Option(help="Fitted clustering folder, or 'fit' to fit one on a "
                                                       "random sample of the input.")] = None,
    encoder: Annotated[str | None, typer.Option(help="Embedding encoder: morphology, a model folder, or "
                                                     "timm:<architecture>.")] = None,
    morphometry: Annotated[bool, typer.Option(help="Also measure statmorph's Gini, M20, CAS, Sersic n, r_e "
                                                   "(slow).")] = False,
    target_accuracy: _TargetAccuracy = None,
    min_confidence: _MinConfidence = None,
    engine: Annotated[str | None, typer.Option(help="Classifier network engine: auto (ONNX Runtime when the "
                                                    "model folder holds its exported graph, else torch), torch, "
                                                    "or onnx (faster on a CPU) [default: auto].")] = None,
    columns: _CarriedColumns = None,
    workers: _Workers = None,
    scheduler: _Scheduler = None,
    shard_size: Annotated[int | None, typer.Option(help="Galaxies per shard (one Parquet part each) "
                                                        "[default: 1000].")] = None,
    fits: Annotated[bool, typer.Option(help="Also write catalog.fits.")] = False,
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
    check_files: Annotated[bool, typer.Option(help="Check that every image file exists before starting; "
                                                   "--no-check-files leaves it to the workers (a missing file "
                                                   "becomes a row of failures.parquet), for millions of files "
                                                   "on a cluster file system.")] = True,
    overwrite: _Overwrite = False,
) -> None:
    """Every stage for every galaxy on a Dask cluster, shard by shard, into one resumable catalog."""
    from .data import GalaxyCollection
    from .pipeline import build_catalog

    collection = GalaxyCollection.open(data, skip_missing=skip_missing, check_files=check_files)
    result = build_catalog(collection, out, classifier, config=config, clusterer=clusterer, encoder=encoder,
                           morphometry=morphometry, target_accuracy=target_accuracy,
                           min_confidence=min_confidence, engine=engine,
                           columns=_split(columns) if columns else (), shard_size=shard_size,
                           workers=workers, scheduler=scheduler, fits=fits, overwrite=overwrite, progress=True)
    for stage, why in result.skipped.items():
        console.print(f"skipped {stage}: {why}")
    resumed = f" ({result.shards_skipped} finished earlier)" if result.shards_skipped else ""
    console.print(f"computed {result.shards_run} shards{resumed}; wrote {result.rows} galaxies to "
                  f"{out / 'catalog.parquet'}")
    if len(result.failures):
        console.print(f"[bold yellow]warning:[/] {len(result.failures)} galaxies could not be read; "
                      f"see {out / 'failures.parquet'}")


@app.command("explore")
def explore_command(
    catalog: Annotated[Path, typer.Argument(help="Catalog folder ('tuningfork catalog') or predictions Parquet "
                                                 "('tuningfork predict').")],
    labels: Annotated[Path, typer.Option(help="Label database (SQLite, created when missing).")] = Path("labels.sqlite"),
    host: Annotated[str, typer.Option(help="Address to listen on; other than loopback only with --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    token: Annotated[list[str] | None, typer.Option(help="NAME:TOKEN of an annotator (repeat for several; a bare "
                                                         "TOKEN is annotator 'expert'); a random one by default.")] = None,
    data: Annotated[Path | None, typer.Option(help="Data set the images come from (default: the one the "
                                                   "catalog folder records, or the catalog's file column).")] = None,
) -> None:
    """Review the expert queue in a browser and label galaxies by keyboard."""
    from .web import serve

    serve(catalog, labels, host=host, port=port, tokens=token or (), data=data, echo=typer.echo)


@app.command("evaluate")
def evaluate_command(
    model: Annotated[Path, typer.Argument(help="Model folder from 'tuningfork train'.")],
    data: Annotated[Path, typer.Argument(help="Labelled catalog, HDF5 or NPZ.")],
    out: Annotated[Path, typer.Option(help="Folder for metrics.json and the figures.")] = Path("evaluation"),
    split: Annotated[str | None, typer.Option(help="Only rows of this split (e.g. test).")] = None,
    split_column: Annotated[str, typer.Option(help="Column with train/val/test values.")] = "split",
    agreement_column: Annotated[str | None, typer.Option(help="Volunteer agreement with each label, "
                                                                 "for the high-agreement accuracy.")] = None,
    label_column: Annotated[str | None, typer.Option(help="Column of true labels (default: the model's "
                                                             "label column).")] = None,
    class_map: Annotated[list[str] | None, typer.Option("--map", help="Rename a label before comparing it with "
                                                                       "the model's classes: OLD=NEW; repeat it "
                                                                       "or separate pairs by commas.")] = None,
    tta: Annotated[bool, typer.Option(help="Average over the 8 rotations and flips.")] = False,
    batch_size: Annotated[int, typer.Option(help="Galaxies per forward pass.")] = 256,
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
    overwrite: _Overwrite = False,
) -> None:
    """Measure a model on labelled galaxies: metrics JSON, confusion matrix, calibration, coverage, mosaics."""
    from .data import GalaxyCollection
    from .training import evaluate

    _check_outputs(overwrite, folder=out)
    collection = GalaxyCollection.open(data, skip_missing=skip_missing)
    renames = _class_map(class_map or [])
    metrics = evaluate(model, collection, out, split=split, split_column=split_column,
                       agreement_column=agreement_column, label_column=label_column, class_map=renames,
                       tta=tta, batch_size=batch_size, progress=True, overwrite=overwrite)
    headline = ("accuracy", "balanced_accuracy", "macro_f1", "ece", "coverage_at_0.99", "rmse",
                "high_agreement_accuracy")
    console.print({key: metrics[key] for key in headline if key in metrics})
    console.print(f"wrote {out}")


def _class_map(values: list[str]) -> dict[str, str]:
    from .errors import ConfigError

    pairs = [pair for value in values for pair in _split(value)]
    malformed = [pair for pair in pairs if pair.count("=") != 1 or not all(part.strip() for part in pair.split("="))]
    if malformed:
        raise ConfigError(f"--map takes OLD=NEW pairs, got '{malformed[0]}'")
    return {old.strip(): new.strip() for old, new in (pair.split("=") for pair in pairs)}


def _integers(text: str, option: str) -> list[int]:
    from .errors import ConfigError

    try:
        return [int(value) for value in _split(text)]
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated integers, got '{text}'") from None

def main() -> None:
    """Entry point of the ``tuningfork`` console script."""
    app()


if __name__ == "__main__":
    main()
