"""The ``tuningfork demo`` tour, on data that needs no download.

Real galaxies are cut out of the Hubble Deep Field that scikit-image ships and
more are simulated with GalSim; each stage of tuningfork then runs on them and
writes its outputs under one folder.  Each stage is one function here, so the
tour grows as tuningfork does.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from rich.console import Console


def cut_hubble_deep_field(out: Path, console: Console) -> Path:
    """Detect the extended sources of the Hubble Deep Field and cut stamps.

    Returns
    -------
    Path
        The stamps' catalog.
    """
    from .data.cutouts import cutout_field, load_hubble_deep_field

    field, _ = load_hubble_deep_field()
    folder = out / "hdf-cutouts"
    stamps = cutout_field(field, out_dir=folder, overwrite=True)
    console.print(f"  Hubble Deep Field: {len(stamps.images)} extended sources cut into {folder}")
    return folder / "catalog.csv"


def simulate_sample(out: Path, n: int, seed: int, console: Console) -> Path:
    """Render ``n`` labelled g, r, i galaxies of every simulated class.

    Returns
    -------
    Path
        The simulated sample's catalog.
    """
    from .simulation import simulate, write_sample

    # Brighter than simulate()'s default S/N range, so the tour's small
    # sample shows its classes clearly.
    sample = simulate(n, size=64, bands=("g", "r", "i"), snr=(40.0, 400.0), seed=seed, workers=2,
                      progress=True)
    catalog = write_sample(sample, out / "simulated", overwrite=True)
    # A fixed train/val/test split, so the classifier is scored on galaxies it never saw.
    from astropy.table import Table

    from .data.writers import write_table

    table = Table.read(catalog)
    roles = np.random.default_rng(seed).choice(["train", "val", "test"], size=len(table), p=[0.6, 0.2, 0.2])
    table["split"] = roles
    write_table(catalog, table)
    console.print(f"  GalSim: {n} galaxies in {len(set(sample.catalog['label']))} classes in {catalog.parent}")
    return catalog


def describe_and_preview(catalog: Path, name: str, out: Path, console: Console,
                         group_by: str | None = None) -> dict:
    """Describe a data set, save the description as JSON and a preview mosaic.

    Returns
    -------
    dict
        The description (see ``GalaxyCollection.describe``).
    """
    from .data import GalaxyCollection
    from .data.writers import atomic_path
    from .plots import preview_collection

    collection = GalaxyCollection.open(catalog)
    description = collection.describe()
    with atomic_path(out / f"{name}-info.json") as tmp:
        tmp.write_text(json.dumps(description, indent=2, default=str))
    preview_collection(collection, out / f"{name}-preview.png", n=8 if group_by else 36,
                       stretch="asinh", size=64, group_by=group_by)
    console.print(f"  {name}: {description.get('count', len(collection))} galaxies described "
                  f"and previewed ({name}-info.json, {name}-preview.png)")
    return description


def preprocess_sample(catalog: Path, name: str, out: Path, console: Console) -> Path:
    """Preprocess a data set into a network-ready stack, with its config and a polar view.

    Returns
    -------
    Path
        The NPY stack of preprocessed images.
    """
    from .data import GalaxyCollection
    from .data.writers import atomic_path
    from .plots import mosaic
    from .preprocessing import PreprocessConfig, Preprocessor, from_polar, to_polar, typical_noise

    collection = GalaxyCollection.open(catalog)
    config = PreprocessConfig(output_size=64, stretch="asinh",
                              stretch_softening=3.0 * typical_noise(collection),
                              normalisation="minmax")
    preprocess = Preprocessor(config)
    images = collection.read_images(preprocess, batch_size=128, progress=True)
    stack_path = out / f"{name}-preprocessed.npy"
    with atomic_path(stack_path) as tmp:
        np.save(tmp, images)
    with atomic_path(out / f"{name}-preprocess-config.json") as tmp:
        tmp.write_text(config.to_json())
    mosaic(list(images[:16]), out / f"{name}-preprocessed.png", already_scaled=True,
           suptitle=f"{name}: preprocessed (asinh, 64 px)")
    centre = images.shape[-1] // 2
    brightest = np.argsort(images[:, :, centre - 4:centre + 4, centre - 4:centre + 4].mean(axis=(1, 2, 3)))
    shown = images[brightest[::-1][:4]]
    polar = [to_polar(image, 32, 64, extension=0.25) for image in shown]
    back = [from_polar(view, image.shape[-2:], n_angles=64) for view, image in zip(polar, shown)]
    mosaic([*shown, *polar, *back], out / f"{name}-polar.png", ncols=4, already_scaled=True,
           titles=["image"] * 4 + ["polar (r up), +25% angle"] * 4 + ["inverse"] * 4)
    report = preprocess.report()
    console.print(f"  {name}: {len(images)} preprocessed to {stack_path.name}; "
                  f"{report['images_with_nonfinite']} had NaN/inf pixels "
                  f"({report['nonfinite_pixels_filled']} filled)")
    return stack_path


def classify_sample(catalog: Path, out: Path, seed: int, console: Console) -> Path:
    """Train the default classifier on the sample's train split, then evaluate and triage.

    Returns
    -------
    Path
        The model folder.
    """
    from .training import evaluate, predict, train

    folder = out / "classifier"
    # The library warns about what a user should know (a short budget, classes
    # whose validation purity never reaches the triage target); the tour shows
    # each once, as a note, instead of Python's warning lines.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(catalog, folder, target="label", epochs=15, budget_s=90, seed=seed, progress=False,
              overwrite=True)
        metrics = evaluate(folder, catalog, out / "classifier-evaluation", split="test", overwrite=True)
        table = predict(folder, catalog, out / "predictions.parquet", target_accuracy=0.95, overwrite=True)
    accuracy = metrics.get("accuracy", float("nan"))
    confident = int(np.sum(np.asarray(table["triage"]) == "confident"))
    console.print(f"  classifier: test accuracy {accuracy:.1%} ({folder}); metrics and plots in "
                  f"classifier-evaluation/, predictions with triage in predictions.parquet "
                  f"({confident} of {len(table)} confident at 95% purity per class, the rest to experts)")
    for message in dict.fromkeys(str(warning.message) for warning in caught
                                 if issubclass(warning.category, UserWarning)):
        console.print(f"  note: {message}", highlight=False)
    return folder


def cluster_sample(catalog: Path, out: Path, seed: int, console: Console) -> Path:
    """Group the simulated sample without labels; the labels only score the groups.

    Returns
    -------
    Path
        The folder of the clustering outputs (groups catalog, plots).
    """
    from .clustering import ClusterConfig, run_cluster_pipeline

    folder = out / "clusters"
    # The default encoder: rotation-invariant morphology descriptors with the
    # polar step, which group galaxies by shape rather than by S/N.
    config = ClusterConfig(n_clusters=8, n_bootstrap=4, label_column="label", seed=seed,
                           preprocess={"output_size": 64, "stretch": "asinh"})
    result = run_cluster_pipeline(catalog, folder, config, log=lambda message: console.print(f"    {message}"))
    classified = float(np.mean(~np.asarray(result.groups["group"].mask))) if hasattr(
        result.groups["group"], "mask") else 1.0
    console.print(f"  clustering: {classified:.0%} of galaxies classified; groups, mosaics and "
                  f"morphology planes in {folder}")
    return folder


def catalog_sample(catalog: Path, out: Path, classifier: Path, clusters: Path, console: Console) -> Path:
    """Build the survey catalog of the sample on Dask and print it: the tour's main output.

    Classification with triage, the fitted clustering's groups, morphology
    embeddings with their nearest neighbours and outlier scores, joined by id.

    Returns
    -------
    Path
        The catalog folder.
    """
    from rich.table import Table as RichTable

    from .clustering.pipeline import FITTED_FOLDER
    from .pipeline import build_catalog

    folder = out / "catalog"
    with warnings.catch_warnings():
        # The tour reported the triage notes in step 4 already.
        warnings.simplefilter("ignore", UserWarning)
        result = build_catalog(catalog, folder, classifier, clusterer=clusters / FITTED_FOLDER, encoder="morphology",
                               target_accuracy=0.95, shard_size=100, workers=2, overwrite=True)
    table = result.catalog
    shown = RichTable(title=f"{folder / 'catalog.parquet'}: {len(table)} galaxies, {len(table.colnames)} columns "
                            f"(first 10 rows)")
    columns = ("id", "predicted_class", "confidence", "triage", "expert_rank", "group", "group_vote_fraction",
               "outlier_score", "neighbour_1")
    for name in columns:
        shown.add_column(name)
    for row in table[:10]:
        shown.add_row(*(_cell(row[name]) for name in columns))
    console.print(shown)
    expert = int(np.sum(np.asarray(table["triage"]) == "expert"))
    console.print(f"  {expert} galaxies queued for experts (ranked across the catalog), "
                  f"{int(np.sum(np.asarray(table['group_classified'])))} in a group; embeddings and their faiss "
                  f"index in {folder}; rerun `tuningfork catalog` on it to resume")
    return folder


def _cell(value) -> str:
    """One value of the printed catalog: numbers to 3 decimals, masked and NaN values as '-'."""
    if np.ma.is_masked(value) or (isinstance(value, (float, np.floating)) and not np.isfinite(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, (float, np.floating)) else str(value)


def run_demo(out: str | Path = "tuningfork-demo", n_simulated: int = 400, seed: int = 0,
             console: Console | None = None) -> Path:
    """Run every stage of the tour and write its outputs under ``out``.

    Parameters
    ----------
    out : str or Path
        Output folder; created if needed.  Files from an earlier run are
        replaced one by one, each only once its new version is complete
        (no ``overwrite`` needed: the demo owns this folder).
    n_simulated : int
        Number of GalSim galaxies.
    seed : int
        Seed of the simulation and of every later random step.
    console : rich.console.Console, optional
        Where progress is printed.

    Returns
    -------
    Path
        The output folder.
    """
    from .data.writers import check_output

    console = console or Console()
    # The demo's folder is rewritten on every run by design: only check that it can be.
    out = check_output(out, kind="folder", overwrite=True)
    out.mkdir(parents=True, exist_ok=True)
    console.rule("tuningfork demo")
    console.print("[bold]1. Data[/]: real cutouts and simulated galaxies")
    hdf_catalog = cut_hubble_deep_field(out, console)
    sim_catalog = simulate_sample(out, n_simulated, seed, console)
    console.print("[bold]2. Describe and preview[/]")
    describe_and_preview(hdf_catalog, "hdf", out, console)
    describe_and_preview(sim_catalog, "simulated", out, console, group_by="label")
    console.print("[bold]3. Preprocess[/]")
    preprocess_sample(hdf_catalog, "hdf", out, console)
    preprocess_sample(sim_catalog, "simulated", out, console)
    console.print("[bold]4. Supervised classification[/] (rotation-invariant CNN, calibrated triage)")
    classifier = classify_sample(sim_catalog, out, seed, console)
    console.print("[bold]5. Unsupervised groups[/] (morphology encoding, PCA, voting clustering)")
    clusters = cluster_sample(sim_catalog, out, seed, console)
    console.print("[bold]6. Foundation embeddings[/] (self-supervised patch transformer)")
    from .embeddings.tour import embeddings_tour

    embeddings_tour(sim_catalog, out / "embeddings", console=console, seed=seed)
    console.print("[bold]7. Conditional diffusion[/] (class-conditioned generator)")
    from .generation.tour import generation_tour

    generation_tour(sim_catalog, out / "generation", console=console, seed=seed)
    console.print("[bold]8. The morphology catalog[/] (every stage joined by id, on a 2-worker Dask cluster)")
    catalog_sample(sim_catalog, out, classifier, clusters, console)
    console.print(f"[bold green]done[/]: outputs in {out}/")
    return out
