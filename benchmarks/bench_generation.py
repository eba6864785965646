"""Conditional diffusion: fidelity, conditioning and rare-class augmentation.

Two data sets, each with one class made rare in the training split:

* **simulated**: GalSim galaxies (g, r, i; fixed seed) of five classes, where
  edge-on disks with a dust lane (``dusty_edge_on``, split off ``edge_on`` by
  the simulation's ``dust_lane`` flag) are about 1% of the training split;
* **gz2-spirals** (``../shared/data``): SDSS gri JPEGs, with spirals cut to
  about 5% of the training split; the catalog's ``val`` split is the held-out
  test set and a stratified fifth of the (cut) training split validates.

On each: a class-conditioned generator is trained on the training split; a
small denoising autoencoder trained on the same galaxies is the tuningfork
encoder of the Frechet distance; a classifier trained on real galaxies gives
the conditional accuracy; statmorph KS statistics compare generated and real
test galaxies per class; and classifiers are trained with and without
``--n-generated`` generated galaxies of the rare class, over several seeds,
to measure the rare class's completeness (recall) and purity (precision) on
the real test split.

Writes ``benchmarks/results/generation.json`` and ``generation.md``
(``generation_quick.*`` with ``--quick``).

Usage: ``python benchmarks/bench_generation.py --threads 1`` (full run:
CPU-sized, 34 minutes with one thread while another benchmark used the
second core) or ``--quick`` (a few minutes, tiny sizes, to check that
the script works; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table

from tuningfork.data import GalaxyCollection, write_table
from tuningfork.data.writers import atomic_path
from tuningfork.generation import (
    evaluate_generator,
    load_generator,
    real_in_data_units,
    train_generator,
)
from tuningfork.generation.augment import folder_classifier, generate_for_classifier
from tuningfork.preprocessing import PreprocessConfig

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SIMULATED_CLASSES = ("elliptical", "spiral", "edge_on", "irregular", "merger")
RARE_SIMULATED = "dusty_edge_on"


@dataclass
class Sizes:
    """Everything that differs between the full run and ``--quick``."""

    per_class_train: int = 200
    rare_train: int = 10
    per_class_test: int = 60
    gz2_rare_fraction: float = 0.05
    gz2_max_train: int | None = None
    image_size: int = 32
    unet_channels: tuple[int, ...] = (32, 64, 64)
    generator_steps: int = 1000
    encoder_epochs: int = 10
    classifier_epochs: int = 12
    classifier_budget_s: float = 60.0
    sampler_steps: int = 20
    n_generated: int = 100
    n_evaluate: int = 32
    seeds: tuple[int, ...] = (0, 1)
    morphometry_workers: int = 2
    label: str = "full"
    notes: list[str] = field(default_factory=list)


QUICK = Sizes(
    per_class_train=12, rare_train=2, per_class_test=6, gz2_max_train=80, image_size=16,
    unet_channels=(8, 16), generator_steps=4, encoder_epochs=1, classifier_epochs=1, classifier_budget_s=20.0,
    sampler_steps=2, n_generated=6, n_evaluate=5, seeds=(0,), morphometry_workers=1, label="quick",
)


def classifier_options(sizes: Sizes) -> dict:
    """Classifier settings shared by every run (small rotation-invariant CNN).

    Balanced class weights (and checkpoints chosen by balanced accuracy), as
    anyone training on a rare class would use: without them a classifier
    that never names the rare class scores best, and augmentation has
    nothing to improve.
    """
    widths = (16, 32, 64) if sizes.image_size >= 32 else (8, 16)
    return {"architecture": "rotinv", "architecture_options": {"widths": widths, "group": "c4"},
            "epochs": sizes.classifier_epochs, "budget_s": sizes.classifier_budget_s, "batch_size": 32,
            "class_weights": "balanced"}


def simulated_collection(sizes: Sizes, seed: int = 0) -> GalaxyCollection:
    """Train/val/test collection of simulated galaxies with a rare dusty edge-on class."""
    from tuningfork.simulation import simulate

    # Edge-ons are drawn twice as often: half of them have a dust lane and
    # become the rare class; a quarter more than needed absorbs the scatter.
    per_class = int(1.25 * (sizes.per_class_train + max(2, sizes.per_class_train // 5) + sizes.per_class_test))
    fractions = {name: (2.0 if name == "edge_on" else 1.0) for name in SIMULATED_CLASSES}
    total = int(per_class * sum(fractions.values()))
    sample = simulate(total, size=2 * sizes.image_size, bands=("g", "r", "i"), classes=SIMULATED_CLASSES,
                      class_fractions=fractions, snr=(30.0, 300.0), seed=seed, workers=2)
    catalog = sample.catalog
    labels = np.array(catalog["label"], dtype=object)
    labels[(labels == "edge_on") & np.asarray(catalog["dust_lane"], dtype=bool)] = RARE_SIMULATED
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), "", dtype=object)
    for name in (*SIMULATED_CLASSES, RARE_SIMULATED):
        rows = rng.permutation(np.flatnonzero(labels == name))
        n_train = sizes.rare_train if name == RARE_SIMULATED else sizes.per_class_train
        n_test = sizes.per_class_test
        n_val = max(2, n_train // 5)
        split[rows[:n_test]] = "test"
        split[rows[n_test : n_test + n_val]] = "val"
        split[rows[n_test + n_val : n_test + n_val + n_train]] = "train"
    keep = np.flatnonzero(split != "")
    table = Table({"id": catalog["id"][keep], "label": labels[keep].astype(str), "split": split[keep].astype(str)})
    return GalaxyCollection.from_arrays(sample.images[keep], table)


def gz2_collection(sizes: Sizes, work: Path, seed: int = 0) -> GalaxyCollection:
    """gz2-spirals with spirals cut to ``gz2_rare_fraction`` of the training split; val becomes test."""
    source = SHARED_DATA / "gz2-spirals"
    catalog = Table.read(source / "catalog.csv", format="ascii.csv")
    rng = np.random.default_rng(seed)
    labels, splits = np.asarray(catalog["label"], dtype=str), np.asarray(catalog["split"], dtype=str)
    train_other = rng.permutation(np.flatnonzero((splits == "train") & (labels == "non_spiral")))
    if sizes.gz2_max_train:
        train_other = train_other[: sizes.gz2_max_train]
    n_rare = max(2, round(sizes.gz2_rare_fraction * len(train_other) / (1 - sizes.gz2_rare_fraction)))
    train_rare = rng.permutation(np.flatnonzero((splits == "train") & (labels == "spiral")))[:n_rare]
    test = np.flatnonzero(splits == "val")
    if sizes.gz2_max_train:
        test = rng.permutation(test)[: sizes.gz2_max_train]
    new_split = np.full(len(catalog), "", dtype=object)
    for rows in (train_other, train_rare):
        n_val = max(1, len(rows) // 5)
        new_split[rows[:n_val]], new_split[rows[n_val:]] = "val", "train"
    new_split[test] = "test"
    keep = np.flatnonzero(new_split != "")
    table = Table({
        "id": np.asarray(catalog["galaxy_id"])[keep].astype(str),
        "file": [str((source / name).resolve()) for name in np.asarray(catalog["file"])[keep]],
        "label": labels[keep],
        "split": new_split[keep].astype(str),
    })
    path = write_table(work / "gz2-cut.csv", table)
    return GalaxyCollection.open(path)


def rows_of(collection: GalaxyCollection, split: str) -> np.ndarray:
    """Row indices of one split."""
    return np.flatnonzero(np.asarray(collection.catalog["split"], dtype=str) == split)


def rare_class_scores(classifier: Path, test: GalaxyCollection, rare: str) -> dict:
    """Completeness (recall) and purity (precision) of the rare class on the test galaxies."""
    from sklearn.metrics import precision_score, recall_score

    from tuningfork.models import load_model
    from tuningfork.models.inference import network_logits
    from tuningfork.training.predict import interpret, model_images

    model = load_model(classifier)
    predicted = np.asarray(interpret(network_logits(model.network, model_images(model, test)), model).predicted)
    truth = np.asarray(test.catalog["label"], dtype=str)
    return {
        "completeness": float(recall_score(truth == rare, predicted == rare, zero_division=0)),
        "purity": float(precision_score(truth == rare, predicted == rare, zero_division=0)),
        "accuracy": float(np.mean(predicted == truth)),
    }


def run_dataset(name: str, collection: GalaxyCollection, rare: str, generator_preprocess: PreprocessConfig,
                classifier_preprocess: PreprocessConfig, sizes: Sizes, work: Path) -> dict:
    """Train the generator, encoder and classifiers of one data set and measure them."""
    from tuningfork.clustering import train_denoiser
    from tuningfork.training.fit import train

    train_rows, test_rows = rows_of(collection, "train"), rows_of(collection, "test")
    training, test = collection.subset(train_rows), collection.subset(test_rows)
    labels, label_counts = np.unique(np.asarray(training.catalog["label"], dtype=str), return_counts=True)
    counts = {str(label): int(n) for label, n in zip(labels, label_counts)}
    record: dict = {"train_counts": counts, "n_test": len(test), "rare_class": rare,
                    "rare_train_fraction": counts.get(rare, 0) / len(training)}
    print(f"[{name}] training split {counts}, test {len(test)}", flush=True)

    started = time.perf_counter()
    batch_size = 32
    epochs = max(1, int(np.ceil(sizes.generator_steps / np.ceil(len(training) / batch_size))))
    generator_folder = train_generator(
        training, work / f"{name}-generator", preprocess=generator_preprocess,
        unet={"channels": sizes.unet_channels}, max_epochs=epochs, batch_size=batch_size, seed=0, overwrite=True
    )
    generator = load_generator(generator_folder)
    record["generator"] = {
        "epochs": epochs,
        "train_seconds": round(time.perf_counter() - started, 1),
        "loss_per_epoch": generator.metrics["loss_per_epoch"],
        "fixed_batch_loss_before": generator.metrics["fixed_batch_loss_before"],
        "fixed_batch_loss_after": generator.metrics["fixed_batch_loss_after"],
    }
    print(f"[{name}] generator trained in {record['generator']['train_seconds']} s", flush=True)

    started = time.perf_counter()
    encoder_images = real_in_data_units(generator, training)
    encoder_folder, _ = train_denoiser(
        GalaxyCollection.from_arrays(encoder_images), work / f"{name}-encoder",
        preprocess=PreprocessConfig(output_size=sizes.image_size, subtract_background=False),
        epochs=sizes.encoder_epochs, seed=0, overwrite=True
    )
    record["encoder_train_seconds"] = round(time.perf_counter() - started, 1)

    augmentation = []
    options = classifier_options(sizes)
    for seed in sizes.seeds:
        for augmented in (False, True):
            started = time.perf_counter()
            folder = work / f"{name}-classifier-{seed}-{'aug' if augmented else 'real'}"
            extra = {"extra_train": generate_for_classifier(generator, [rare], sizes.n_generated,
                                                            classifier_preprocess, seed=seed)} if augmented else {}
            train(collection.subset(np.concatenate([train_rows, rows_of(collection, "val")])), folder,
                  preprocess=classifier_preprocess, seed=seed, progress=False, **options, **extra, overwrite=True)
            scores = rare_class_scores(folder, test, rare)
            augmentation.append({"seed": seed, "augmented": augmented, **scores,
                                 "seconds": round(time.perf_counter() - started, 1)})
            print(f"[{name}] seed {seed} augmented={augmented}: {scores}", flush=True)
    record["augmentation"] = augmentation
    record["augmentation_summary"] = {
        kind: {
            metric: {"mean": float(np.mean([r[metric] for r in augmentation if r["augmented"] == flag])),
                     "std": float(np.std([r[metric] for r in augmentation if r["augmented"] == flag]))}
            for metric in ("completeness", "purity", "accuracy")
        }
        for kind, flag in (("real_only", False), ("augmented", True))
    }

    started = time.perf_counter()
    classifier = folder_classifier(work / f"{name}-classifier-{sizes.seeds[0]}-real", generator)
    summary, ks = evaluate_generator(
        generator, test, encoder=encoder_folder, classifier=classifier, n_per_condition=sizes.n_evaluate,
        steps=sizes.sampler_steps, seed=0, n_workers=sizes.morphometry_workers, overwrite=True
    )
    record["evaluation_seconds"] = round(time.perf_counter() - started, 1)
    record["mosaic"] = str(sample_mosaic(name, generator, test, sizes).relative_to(RESULTS.parent.parent))
    record["per_class"] = [dict(zip(summary.colnames, map(_plain, row))) for row in summary]
    record["ks"] = [dict(zip(ks.colnames, map(_plain, row))) for row in ks]
    return record


def sample_mosaic(name: str, generator, test: GalaxyCollection, sizes: Sizes) -> Path:
    """A PNG with, per class, a row of real test galaxies and a row of generated ones."""
    from tuningfork.generation import generate
    from tuningfork.plots import mosaic

    per_row = 6
    real = real_in_data_units(generator, test)
    labels = np.asarray(test.catalog["label"], dtype=str)
    images, titles = [], []
    for condition in generator.conditions.names:
        chosen = np.flatnonzero(labels == condition)[:per_row]
        made = generate(generator, [condition], n=per_row, steps=sizes.sampler_steps, seed=1).images
        for row, caption in ((real[chosen], "real"), (made, "generated")):
            tiles = list(row) + [None] * (per_row - len(row))
            images += tiles
            titles += [f"{condition} {caption}" if index == 0 else "" for index in range(per_row)]
    suffix = "" if sizes.label == "full" else f"_{sizes.label}"
    path = RESULTS / f"generation_{name}_samples{suffix}.png"
    mosaic(images, path, titles=titles, ncols=per_row, suptitle=f"{name}: real (odd rows) and generated (even rows)")
    return path


def _plain(value):
    """numpy scalars to JSON-ready Python values (NaN becomes None)."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and not np.isfinite(value) else value


def _number(value, digits: int = 3, style: str = "f") -> str:
    return "n/a" if value is None else f"{value:.{digits}{style}}"


def markdown(results: dict) -> str:
    """Fidelity/conditioning and augmentation tables."""
    env = results["environment"]
    lines = [
        "# Conditional diffusion (generation)",
        "",
        (
            f"Run: {results['sizes']['label']}. Machine: {env['cpus']} CPUs, load average {env['load_average']} "
            f"at start (shared machine). Generated stamps {results['sizes']['image_size']} px; sampler DDIM, "
            f"{results['sizes']['sampler_steps']} steps, guidance 2."
        ),
        "",
        "## Fidelity, conditioning, physical plausibility (test galaxies vs generated)",
        "",
        (
            "Frechet distance on the embeddings of a denoising autoencoder trained on the training split; "
            "'floor' is the same distance between two halves of the real galaxies (what a perfect generator "
            "would reach at this sample size). Conditional accuracy: share of generated galaxies that a "
            "classifier trained on real galaxies assigns to the requested class. KS: two-sample statistic of "
            "statmorph quantities, generated vs real (0 = same distribution)."
        ),
        "",
        (
            "| data | class | n real | n gen | Frechet | floor | cond. accuracy | KS sersic_n "
            "| KS concentration | KS gini | KS asymmetry |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, record in results["datasets"].items():
        if "skipped" in record:
            continue
        ks = {(row["group"], row["quantity"]): row["ks_statistic"] for row in record["ks"]}
        for row in record["per_class"]:
            group = row["condition"]
            lines.append(
                f"| {name} | {group} | {row['n_real']} | {row['n_generated']} | {_number(row['frechet_distance'], 3, 'g')} "
                f"| {_number(row['frechet_real_halves'], 3, 'g')} | {_number(row['conditional_accuracy'], 2)} | "
                + " | ".join(_number(ks.get((group, q)), 2) for q in ("sersic_n", "concentration", "gini", "asymmetry"))
                + " |"
            )
    lines += [
        "",
        "## Rare-class augmentation (real held-out test split, mean ± std over seeds)",
        "",
        (
            "| data | rare class | share of training | generated added | completeness real-only "
            "| completeness augmented | purity real-only | purity augmented | accuracy real-only "
            "| accuracy augmented |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, record in results["datasets"].items():
        if "skipped" in record:
            lines.append(f"| {name} | skipped: {record['skipped']} |||||||||")
            continue
        summary = record["augmentation_summary"]
        cells = []
        for metric in ("completeness", "purity", "accuracy"):
            for kind in ("real_only", "augmented"):
                value = summary[kind][metric]
                cells.append(f"{value['mean']:.3f} ± {value['std']:.3f}")
        lines.append(f"| {name} | {record['rare_class']} | {record['rare_train_fraction']:.1%} | "
                     f"{results['sizes']['n_generated']} | " + " | ".join(cells) + " |")
    lines += ["", *(f"- {note}" for note in results["sizes"]["notes"]), ""]
    return "\n".join(lines)


def write_results(sizes: Sizes, environment: dict, datasets: dict, quick: bool) -> str:
    """Write the JSON and markdown results (after every data set, so a crash keeps the finished ones)."""
    results = {"sizes": {**sizes.__dict__, "unet_channels": list(sizes.unet_channels), "seeds": list(sizes.seeds)},
               "environment": environment, "datasets": datasets}
    suffix = "_quick" if quick else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    with atomic_path(RESULTS / f"generation{suffix}.json") as tmp_json:
        tmp_json.write_text(json.dumps(results, indent=2))
    text = markdown(results)
    with atomic_path(RESULTS / f"generation{suffix}.md") as tmp_md:
        tmp_md.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script works")
    parser.add_argument("--generator-steps", type=int, help="optimiser steps of each generator")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    if args.generator_steps:
        sizes.generator_steps = args.generator_steps
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    environment = {"cpus": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
                   "python": platform.python_version(), "threads": args.threads}
    datasets: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-generation-") as tmp:
        work = Path(tmp)
        size = sizes.image_size
        datasets["simulated"] = run_dataset(
            "simulated", simulated_collection(sizes), RARE_SIMULATED,
            PreprocessConfig(output_size=size, stretch="asinh", normalisation="none"),
            PreprocessConfig(output_size=size, stretch="asinh"), sizes, work,
        )
        write_results(sizes, environment, datasets, args.quick)
        if (SHARED_DATA / "gz2-spirals").is_dir():
            # The galaxy fills the central ~200 of 424 pixels.
            datasets["gz2-spirals"] = run_dataset(
                "gz2-spirals", gz2_collection(sizes, work), "spiral",
                PreprocessConfig(crop_pixels=207, output_size=size, stretch="linear", normalisation="none"),
                PreprocessConfig(crop_pixels=207, output_size=size), sizes, work,
            )
        else:
            datasets["gz2-spirals"] = {"skipped": f"{SHARED_DATA / 'gz2-spirals'} not present"}
    sizes.notes.append(f"total wall time {time.perf_counter() - started:.0f} s")
    print(write_results(sizes, environment, datasets, args.quick))


if __name__ == "__main__":
    main()
