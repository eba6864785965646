"""Benchmark of the foundation embeddings (issue 5).

On the real Galaxy Zoo images in ../shared/data and on a fixed-seed GalSim set:

* probe accuracy with 1 %, 10 % and 100 % of the labels (linear and kNN
  probes on frozen embeddings) against the project's supervised classifier
  (:func:`tuningfork.training.fit.train`, rotation-invariant CNN) trained
  from scratch on the same labels;
* retrieval precision@10 (neighbours of the same class) of the pretrained
  AstroPT encoder, the same encoder with random weights, and raw-pixel PCA;
* outlier-detection AUROC on injected anomalies (stars, mergers and image
  artefacts in a field of isolated galaxies);
* faiss search throughput (queries/s) and recall@10 over 10^5 vectors.

Every method of a data set starts from the same stack of images, read and
cropped/resized once (Galaxy Zoo: the central 208 px, as Dieleman et al.,
resized to 32 px; simulations: the 64 px stamps resized to 32 px).  AstroPT
and PCA see them with the model's per-galaxy scaling (one scale for all
bands); the supervised CNN gets its usual per-band min-max normalisation.

Writes ``embeddings.json`` and ``embeddings.md`` to ``benchmarks/results/``
(``embeddings_quick.*`` with ``--quick``).

Full run (about 15 minutes on 2 CPU cores, far less on a GPU)::

    python benchmarks/bench_embeddings.py --threads 1

Smoke run (a minute or two; numbers meaningless)::

    python benchmarks/bench_embeddings.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

from tuningfork.data import GalaxyCollection
from tuningfork.data.writers import atomic_path
from tuningfork.embeddings import (
    EmbeddingSet,
    SimilarityIndex,
    label_subsets,
    outlier_scores,
    pretrain,
    recall_at_k,
    run_probes,
)
from tuningfork.embeddings.probes import classification_metrics
from tuningfork.models import AstroPT, AstroPTEncoder, load_model
from tuningfork.preprocessing import PreprocessConfig, Preprocessor
from tuningfork.simulation import simulate

REPO = Path(__file__).resolve().parents[1]
ISOLATED = ("elliptical", "lenticular", "spiral", "barred_spiral", "edge_on", "irregular")
FRACTIONS = (0.01, 0.1, 1.0)
ENCODERS = ("astropt_pretrained", "astropt_random_init", "pixel_pca")

FULL = {
    "size": "small",
    "image_size": 32,
    # Galaxy Zoo galaxies fill the crop, so 8 px patches (16 tokens) see them
    # whole; the simulated galaxies cover ~10 px of 32 and need 4 px patches.
    "gz2_patch_size": 8,
    "sim_patch_size": 4,
    "gz2_epochs": 30,
    "sim_epochs": 20,
    "sim_count": 2000,
    "sim_snr": (20.0, 200.0),
    "anomaly_fraction": 0.03,
    "gz2_limit": None,
    "repeats": 3,
    "supervised_epochs": 30,
    "supervised_budget_s": 120.0,
    "search_count": 100_000,
    "search_queries": 2000,
}
QUICK = {
    **FULL,
    "size": "tiny",
    "gz2_epochs": 1,
    "sim_epochs": 1,
    "sim_count": 160,
    "anomaly_fraction": 0.1,
    "gz2_limit": 200,
    "repeats": 1,
    "supervised_epochs": 1,
    "supervised_budget_s": 5.0,
    "search_count": 10_000,
    "search_queries": 200,
}


@contextmanager
def stopwatch(timings: dict, name: str):
    """Add the wall time of the block to ``timings[name]`` (seconds)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def read_stack(collection: GalaxyCollection, config: PreprocessConfig) -> np.ndarray:
    """All images of a collection, preprocessed, as one float32 stack."""
    preprocessor = Preprocessor(config)
    return collection.read_images(preprocessor, 256)


def stack_collection(images: np.ndarray, labels: np.ndarray | None = None) -> GalaxyCollection:
    """A collection over an in-memory stack, ids ``0..n-1`` (and a ``label`` column)."""
    columns = {"id": [str(i) for i in range(len(images))]}
    if labels is not None:
        columns["label"] = list(labels)
    return GalaxyCollection.from_arrays(images, Table(columns))


#: The stacks are preprocessed already; the model only checks their size.
STACK_PREPROCESS = {"subtract_background": False, "normalisation": "none"}


def encode(encoder: AstroPTEncoder, images: np.ndarray) -> np.ndarray:
    """Embed preprocessed images in chunks."""
    return np.concatenate(
        [encoder.encode(images[start : start + 256]) for start in range(0, len(images), 256)]
    )


def pixel_pca(model: AstroPT, images: np.ndarray, seed: int) -> np.ndarray:
    """Raw-pixel baseline: PCA of the pixels the model sees (after its per-galaxy scaling)."""
    from sklearn.decomposition import PCA

    with torch.inference_mode():
        scaled = model.scale_images(torch.from_numpy(images)).numpy()
    flat = scaled.reshape(len(scaled), -1)
    components = min(model.config.embed_dim, *flat.shape)
    return PCA(n_components=components, random_state=seed).fit_transform(flat).astype(np.float32)


def precision_at_10(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Mean share of each galaxy's 10 nearest neighbours (itself excluded) sharing its label.

    Distances are cosine on mean-centred vectors for every encoder: PCA
    components are centred already, while transformer states share a large
    common direction that would otherwise dominate every cosine.
    """
    centred = vectors - vectors.mean(axis=0)
    embeddings = EmbeddingSet([str(i) for i in range(len(vectors))], centred.astype(np.float32))
    _, rows = SimilarityIndex.build(embeddings, kind="flat").search(centred, 11)
    hits = []
    for own, found in enumerate(rows):
        others = [row for row in found if row != own and row >= 0][:10]
        hits.append(np.mean(labels[others] == labels[own]))
    return float(np.mean(hits))


def supervised_from_scratch(stack, labels, train_rows, test_rows, settings, seed, folder):
    """The project's supervised classifier trained on the labelled rows only, scored on the test rows.

    Its model selection needs a validation split, which is drawn from the
    labelled rows themselves (at least one galaxy per class), so the
    classifier never sees more labels than the probes.
    """
    from tuningfork.training.fit import train
    from tuningfork.training.predict import collection_logits

    n_classes = len(np.unique(labels[train_rows]))
    collection = stack_collection(stack, labels)
    train(
        collection.subset(train_rows),
        folder,
        target="label",
        preprocess=PreprocessConfig(output_size=stack.shape[-1], subtract_background=False),
        epochs=settings["supervised_epochs"],
        budget_s=settings["supervised_budget_s"],
        split_column=None,
        val_fraction=min(0.5, max(0.2, n_classes / len(train_rows))),
        seed=seed,
        progress=False, overwrite=True
    )
    model = load_model(folder)
    logits = collection_logits(model, collection.subset(test_rows))
    predicted = np.asarray(model.config.class_names)[logits.argmax(axis=1)]
    return classification_metrics(labels[test_rows], predicted)


def supervised_curve(stack, labels, train_rows, test_rows, settings, seed, work):
    """Supervised-from-scratch metrics on the same label subsets as the probes (first repeat).

    A subset with a single galaxy of some class is left out (shown as "-"):
    the classifier's validation split needs one of each class besides training.
    """
    rows = []
    for fraction in FRACTIONS:
        subset = label_subsets(labels, train_rows, fraction, repeats=1, seed=seed)[0]
        if np.unique(labels[subset], return_counts=True)[1].min() < 2:
            print(f"supervised baseline skipped at {fraction:.0%}: a class has one label")
            continue
        metrics = supervised_from_scratch(
            stack, labels, subset, test_rows, settings, seed, work / f"cnn-{fraction}"
        )
        rows.append(
            {"probe": "rotinv_cnn", "fraction": fraction, "n_labels": len(subset), **metrics}
        )
    return rows


def encoder_vectors(model_folder: Path, images: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Embeddings of preprocessed images by the pretrained, random-init and pixel-PCA encoders."""
    loaded = load_model(model_folder, architecture="astropt")
    model, preprocess = loaded.network, loaded.preprocess
    torch.manual_seed(seed)
    return {
        "astropt_pretrained": encode(AstroPTEncoder(model, preprocess), images),
        "astropt_random_init": encode(AstroPTEncoder(AstroPT(model.config), preprocess), images),
        "pixel_pca": pixel_pca(model, images, seed),
    }


def evaluate(vectors, labels, train_rows, test_rows, settings, seed) -> dict:
    """Probes and precision@10 of every encoder."""
    result = {"probes": {}, "precision_at_10": {}}
    for name, embedding in vectors.items():
        table = run_probes(
            embedding,
            labels,
            train_rows,
            test_rows,
            fractions=FRACTIONS,
            repeats=settings["repeats"],
            seed=seed,
        )
        result["probes"][name] = [
            dict(zip(table.colnames, row)) for row in table.as_array().tolist()
        ]
        result["precision_at_10"][name] = precision_at_10(embedding, labels)
    return result


def pretrain_stack(images, folder, settings, patch_size, epochs, accelerator, seed):
    """Pretrain AstroPT on an in-memory stack; returns the folder and its training record."""
    start = time.perf_counter()
    pretrain(
        stack_collection(images),
        folder,
        size=settings["size"],
        preprocess=PreprocessConfig(output_size=images.shape[-1], **STACK_PREPROCESS),
        patch_size=patch_size,
        max_epochs=epochs,
        budget_s=settings.get("pretrain_budget_s"),
        accelerator=accelerator,
        seed=seed, overwrite=True
    )
    record = load_model(folder, architecture="astropt").config.metrics
    return {**record, "seconds": time.perf_counter() - start}


def run_gz2(data_dir: Path, work: Path, settings: dict, seed: int, accelerator: str) -> dict:
    """Pretrain on gz2-unlabelled + gz2-spirals images; probe with the gz2-spirals labels."""
    timings: dict[str, float] = {}
    unlabelled = GalaxyCollection.open(data_dir / "gz2-unlabelled" / "images")
    labelled = GalaxyCollection.open(data_dir / "gz2-spirals" / "catalog.csv")
    if settings["gz2_limit"]:
        unlabelled = unlabelled.subset(np.arange(min(len(unlabelled), settings["gz2_limit"])))
        labelled = labelled.subset(
            np.random.default_rng(seed).permutation(len(labelled))[: settings["gz2_limit"]]
        )
    # Dieleman et al. crop the central 207 px of the 424 px Galaxy Zoo images.
    read = PreprocessConfig(
        crop_pixels=208, output_size=settings["image_size"], normalisation="none"
    )
    with stopwatch(timings, "read"):
        unlabelled_stack, labelled_stack = read_stack(unlabelled, read), read_stack(labelled, read)
    with stopwatch(timings, "pretrain"):
        record = pretrain_stack(
            np.concatenate([unlabelled_stack, labelled_stack]),
            work / "gz2-astropt",
            settings,
            settings["gz2_patch_size"],
            settings["gz2_epochs"],
            accelerator,
            seed,
        )
    labels = np.asarray(labelled.catalog["label"]).astype(str)
    split = np.asarray(labelled.catalog["split"]).astype(str)
    train_rows, test_rows = np.flatnonzero(split == "train"), np.flatnonzero(split != "train")
    with stopwatch(timings, "embed_and_probe"):
        vectors = encoder_vectors(work / "gz2-astropt", labelled_stack, seed)
        result = evaluate(vectors, labels, train_rows, test_rows, settings, seed)
    with stopwatch(timings, "supervised"):
        result["probes"]["supervised_from_scratch"] = supervised_curve(
            labelled_stack, labels, train_rows, test_rows, settings, seed, work / "gz2"
        )
    result.update(
        pretrain=record,
        n_pretrain=len(unlabelled) + len(labelled),
        n_train=len(train_rows),
        n_test=len(test_rows),
        seconds=timings,
    )
    return result


def inject_artefacts(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copies of the images with a satellite trail or a hot column, as survey artefacts look."""
    damaged = images.copy()
    size = images.shape[-1]
    for image in damaged:
        peak = np.nanmax(image)
        if rng.random() < 0.5:
            angle, offset = rng.uniform(0, np.pi), rng.uniform(-size / 4, size / 4)
            y, x = np.mgrid[:size, :size] - size / 2
            trail = np.exp(-0.5 * ((x * np.sin(angle) - y * np.cos(angle) - offset) / 0.8) ** 2)
            image += 0.8 * peak * trail[None]
        else:
            image[:, :, rng.integers(size)] += 2.0 * peak
    return damaged


def auroc_by_detector(vectors: np.ndarray, anomalous: np.ndarray, seed: int) -> dict[str, float]:
    """AUROC of each outlier detector, and of their rank average, against the injected truth."""
    from sklearn.metrics import roc_auc_score

    scores = outlier_scores(vectors, [str(i) for i in range(len(vectors))], seed=seed)
    truth = anomalous[np.asarray(scores["id"]).astype(int)]
    return {
        "rank_average" if column == "score" else column.removeprefix("score_"): float(
            roc_auc_score(truth, scores[column])
        )
        for column in scores.colnames
        if column.startswith("score")
    }


def run_simulated(work: Path, settings: dict, seed: int, accelerator: str) -> dict:
    """A fixed-seed GalSim field: isolated galaxies plus stars, mergers and artefacts."""
    timings: dict[str, float] = {}
    count = settings["sim_count"]
    n_anomalous = round(settings["anomaly_fraction"] * count)
    n_artefacts = n_anomalous // 3
    classes = ISOLATED + ("star", "merger")
    normal_share = (1 - settings["anomaly_fraction"]) / len(ISOLATED)
    anomaly_share = (n_anomalous - n_artefacts) / count / 2
    fractions = [normal_share] * len(ISOLATED) + [anomaly_share, anomaly_share]
    with stopwatch(timings, "simulate"):
        sample = simulate(
            count,
            size=64,
            bands=("g", "r", "i"),
            snr=tuple(settings["sim_snr"]),
            classes=classes,
            class_fractions=fractions,
            seed=seed,
            workers=2,
        )
    labels = np.asarray(sample.catalog["label"]).astype(str)
    rng = np.random.default_rng(seed)
    isolated_rows = np.flatnonzero(np.isin(labels, ISOLATED))
    artefact_rows = rng.choice(isolated_rows, size=n_artefacts, replace=False)
    images = sample.images.copy()
    images[artefact_rows] = inject_artefacts(images[artefact_rows], rng)
    anomalous = ~np.isin(labels, ISOLATED)
    anomalous[artefact_rows] = True
    read = PreprocessConfig(output_size=settings["image_size"], normalisation="none")
    stack = read_stack(stack_collection(images), read)

    # Pretraining sees the whole field, anomalies included, as a survey would.
    with stopwatch(timings, "pretrain"):
        record = pretrain_stack(
            stack,
            work / "sim-astropt",
            settings,
            settings["sim_patch_size"],
            settings["sim_epochs"],
            accelerator,
            seed,
        )
    with stopwatch(timings, "embed_and_probe"):
        vectors = encoder_vectors(work / "sim-astropt", stack, seed)
        # Probes and retrieval on the clean isolated galaxies: the morphology classes.
        clean = np.setdiff1d(isolated_rows, artefact_rows)
        order = rng.permutation(len(clean))
        cut = len(clean) * 7 // 10
        train_rows, test_rows = np.sort(order[:cut]), np.sort(order[cut:])
        result = evaluate(
            {name: embedding[clean] for name, embedding in vectors.items()},
            labels[clean],
            train_rows,
            test_rows,
            settings,
            seed,
        )
    with stopwatch(timings, "supervised"):
        # The CNN gets its usual input: an asinh stretch of the 64 px stamps.
        cnn_stack = read_stack(
            stack_collection(images[clean]),
            PreprocessConfig(output_size=settings["image_size"], stretch="asinh"),
        )
        result["probes"]["supervised_from_scratch"] = supervised_curve(
            cnn_stack, labels[clean], train_rows, test_rows, settings, seed, work / "sim"
        )
    with stopwatch(timings, "outliers"):
        result["outlier_auroc"] = {
            name: auroc_by_detector(embedding, anomalous, seed)
            for name, embedding in vectors.items()
        }
    result.update(
        pretrain=record,
        n_field=count,
        n_pretrain=count,
        n_anomalous=int(anomalous.sum()),
        n_artefacts=n_artefacts,
        n_train=len(train_rows),
        n_test=len(test_rows),
        seconds=timings,
    )
    return result


def run_search(settings: dict, dim: int, seed: int) -> dict:
    """Build time, queries/s and recall@10 of each index kind over clustered vectors."""
    rng = np.random.default_rng(seed)
    count = settings["search_count"]
    # Embeddings of galaxies cluster by type; a Gaussian mixture mimics that structure.
    centres = rng.normal(size=(200, dim)).astype(np.float32) * 2
    vectors = centres[rng.integers(200, size=count)] + rng.normal(size=(count, dim)).astype(
        np.float32
    )
    embeddings = EmbeddingSet([str(i) for i in range(count)], vectors.astype(np.float32))
    queries = vectors[
        rng.choice(count, settings["search_queries"], replace=False)
    ] + 0.1 * rng.normal(size=(settings["search_queries"], dim)).astype(np.float32)
    result = {"n_vectors": count, "dim": dim, "n_queries": len(queries), "indexes": {}}
    exact = None
    for kind in ("flat", "ivf", "hnsw"):
        start = time.perf_counter()
        index = SimilarityIndex.build(embeddings, kind=kind, recall_queries=0, seed=seed)
        built = time.perf_counter() - start
        start = time.perf_counter()
        index.search(queries, 10)
        elapsed = time.perf_counter() - start
        if exact is None:
            exact = index
        result["indexes"][kind] = {
            "build_seconds": built,
            "queries_per_second": len(queries) / elapsed,
            "recall_at_10": recall_at_k(index, exact, queries, 10),
        }
    return result


def probe_table(part: dict) -> list[str]:
    """Markdown rows of probe accuracy per encoder, probe and label fraction."""
    lines = [
        "| encoder | probe | " + " | ".join(f"{f:.0%} labels" for f in FRACTIONS) + " |",
        "|---|---|" + "---|" * len(FRACTIONS),
    ]
    for encoder, rows in part["probes"].items():
        for probe in dict.fromkeys(row["probe"] for row in rows):
            values = {row["fraction"]: row for row in rows if row["probe"] == probe}
            cells = [
                f"{values[f]['accuracy']:.3f} (n={values[f]['n_labels']})" if f in values else "-"
                for f in FRACTIONS
            ]
            lines.append(f"| {encoder} | {probe} | " + " | ".join(cells) + " |")
    return lines


def markdown(report: dict) -> str:
    """The results as markdown tables."""
    settings = report["settings"]
    lines = [
        f"# Embeddings benchmark ({'quick' if settings['quick'] else 'full'} run)",
        "",
        (
            f"Machine: {report['machine']}. Wall time: {report['seconds']:.0f} s. "
            f"Settings: `{json.dumps(settings)}`."
        ),
        "",
        (
            "Probe accuracy is on held-out galaxies, averaged over "
            f"{settings['repeats']} label subsets; the supervised CNN uses the first subset, "
            f"{settings['supervised_budget_s']:.0f} CPU-s at most per fit. Precision@10 is "
            "cosine on mean-centred vectors."
        ),
        "",
    ]
    for name in ("gz2", "simulated"):
        if name not in report:
            continue
        part = report[name]
        record = part["pretrain"]
        lines += [f"## {name}: probes (accuracy)", "", *probe_table(part), ""]
        lines += [
            f"## {name}: retrieval precision@10 (same class)",
            "",
            "| encoder | precision@10 |",
            "|---|---|",
            *(f"| {encoder} | {value:.3f} |" for encoder, value in part["precision_at_10"].items()),
            "",
            f"Pretraining: {record['seconds']:.0f} s, {record['epochs_run']} epochs on "
            f"{part['n_pretrain']} galaxies; training loss {record['train_loss'][0]:.4f} "
            f"(first epoch) to {record['train_loss'][-1]:.4f}, best validation loss "
            f"{record['best_val_loss']:.4f}. Stage times (s): "
            + ", ".join(f"{stage} {seconds:.0f}" for stage, seconds in part["seconds"].items())
            + ".",
            "",
        ]
        if "outlier_auroc" in part:
            detectors = list(next(iter(part["outlier_auroc"].values())))
            lines += [
                (
                    f"## {name}: outlier AUROC ({part['n_anomalous']} anomalies among "
                    f"{part['n_field']}: stars, mergers, {part['n_artefacts']} artefacts)"
                ),
                "",
                "| encoder | " + " | ".join(detectors) + " |",
                "|---|" + "---|" * len(detectors),
                *(
                    f"| {encoder} | " + " | ".join(f"{values[d]:.3f}" for d in detectors) + " |"
                    for encoder, values in part["outlier_auroc"].items()
                ),
                "",
            ]
    search = report["search"]
    lines += [
        (
            f"## faiss search: {search['n_vectors']} vectors of dimension {search['dim']}, "
            f"{search['n_queries']} queries"
        ),
        "",
        "| index | build (s) | queries/s | recall@10 |",
        "|---|---|---|---|",
        *(
            f"| {kind} | {row['build_seconds']:.2f} | {row['queries_per_second']:.0f} | "
            f"{row['recall_at_10']:.3f} |"
            for kind, row in search["indexes"].items()
        ),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: a smoke test of the script"
    )
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data folder"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results", help="results folder"
    )
    parser.add_argument("--accelerator", default="auto", help="auto, cpu or gpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--note", default="", help="words on the machine (e.g. shared with other jobs)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice); 1 is faster on a busy machine",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = {**(QUICK if args.quick else FULL), "quick": args.quick, "seed": args.seed}

    start = time.perf_counter()
    load = os.getloadavg()[0]
    report = {
        "settings": settings,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads, cuda={torch.cuda.is_available()}, "
        f"load average {load:.1f} at start" + (f"; {args.note}" if args.note else ""),
    }
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        if (args.data / "gz2-spirals").is_dir():
            report["gz2"] = run_gz2(args.data, work, settings, args.seed, args.accelerator)
        else:
            print(f"skipping Galaxy Zoo: {args.data / 'gz2-spirals'} not found")
        report["simulated"] = run_simulated(work, settings, args.seed, args.accelerator)
        dim = load_model(work / "sim-astropt", architecture="astropt").network.config.embedding_dim
    report["search"] = run_search(settings, dim, args.seed)
    report["seconds"] = time.perf_counter() - start
    stem = "embeddings_quick" if args.quick else "embeddings"
    with atomic_path(args.out / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=float))
    with atomic_path(args.out / f"{stem}.md") as tmp:
        tmp.write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
