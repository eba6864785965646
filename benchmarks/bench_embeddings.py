"""Benchmark of the foundation embeddings (issue 5).

On the real Galaxy Zoo images in ../shared/data and on a fixed-seed GalSim set:

* probe accuracy with 1 %, 10 % and 100 % of the labels (linear and kNN
  probes on frozen embeddings) against the same architecture trained
  supervised from scratch on the same labels;
* retrieval precision@10 (neighbours of the same class) of the pretrained
  AstroPT encoder, the same encoder with random weights, and raw-pixel PCA;
* outlier-detection AUROC on injected anomalies (stars, mergers and image
  artefacts in a field of isolated galaxies);
* faiss search throughput (queries/s) and recall@10 over 10^5 vectors.

Writes ``embeddings.json`` and ``embeddings.md`` to ``benchmarks/results/``
(``embeddings_quick.*`` with ``--quick``).

Full run (roughly 1-2 h on 2 idle CPU cores, minutes on a GPU)::

    python benchmarks/bench_embeddings.py

Smoke run (about a minute; numbers meaningless)::

    python benchmarks/bench_embeddings.py --quick
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

from tuningfork.data import GalaxyCollection
from tuningfork.data.writers import atomic_path
from tuningfork.embeddings import (
    AstroPT,
    AstroPTEncoder,
    EmbeddingSet,
    SimilarityIndex,
    label_subsets,
    load_astropt,
    outlier_scores,
    pretrain,
    recall_at_k,
    run_probes,
)
from tuningfork.embeddings.probes import classification_metrics
from tuningfork.preprocessing import PreprocessConfig, Preprocessor, d4_apply_each, random_d4
from tuningfork.simulation import simulate

REPO = Path(__file__).resolve().parents[1]
ISOLATED = ("elliptical", "lenticular", "spiral", "barred_spiral", "edge_on", "irregular")
FRACTIONS = (0.01, 0.1, 1.0)

FULL = {
    "size": "small",
    "image_size": 64,
    "patch_size": 8,
    "epochs": 15,
    "sim_count": 2000,
    "anomaly_fraction": 0.03,
    "gz2_limit": None,
    "repeats": 3,
    "supervised_epochs": 15,
    "search_count": 100_000,
    "search_queries": 2000,
}
QUICK = {
    "size": "tiny",
    "image_size": 32,
    "patch_size": 8,
    "epochs": 1,
    "sim_count": 160,
    "anomaly_fraction": 0.1,
    "gz2_limit": 200,
    "repeats": 1,
    "supervised_epochs": 1,
    "search_count": 10_000,
    "search_queries": 200,
}


def preprocessed(collection: GalaxyCollection, config: PreprocessConfig) -> np.ndarray:
    """All images of a collection, preprocessed, as one float32 stack."""
    preprocessor = Preprocessor(config)
    return np.concatenate([batch.images for batch in collection.iter_batches(256, preprocessor)])


def encode(encoder: AstroPTEncoder, images: np.ndarray) -> np.ndarray:
    """Embed preprocessed images in chunks."""
    return np.concatenate(
        [encoder.encode(images[start : start + 256]) for start in range(0, len(images), 256)]
    )


def pixel_pca(images: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """Raw-pixel baseline: PCA of the flattened preprocessed images."""
    from sklearn.decomposition import PCA

    flat = images.reshape(len(images), -1)
    return (
        PCA(n_components=min(dim, *flat.shape), random_state=seed)
        .fit_transform(flat)
        .astype(np.float32)
    )


def precision_at_10(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Mean fraction of each galaxy's 10 nearest neighbours (itself excluded) sharing its label."""
    embeddings = EmbeddingSet([str(i) for i in range(len(vectors))], vectors)
    _, rows = SimilarityIndex.build(embeddings, kind="flat").search(vectors, 11)
    hits = []
    for own, found in enumerate(rows):
        others = [row for row in found if row != own and row >= 0][:10]
        hits.append(np.mean(labels[others] == labels[own]))
    return float(np.mean(hits))


def supervised_from_scratch(
    config, images, labels, train_rows, test_rows, epochs, seed, accelerator
):
    """The AstroPT architecture plus a linear head, trained on labels only from random weights."""
    import lightning as L

    classes, codes = np.unique(labels, return_inverse=True)

    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.encoder = AstroPT(config)
            self.head = torch.nn.Linear(config.embed_dim, len(classes))
            self.rng = np.random.default_rng(seed)

        def forward(self, batch):
            return self.head(self.encoder.embed(batch))

        def training_step(self, batch, _):
            x, y = batch
            x = d4_apply_each(x, random_d4(self.rng, len(x)))
            return torch.nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=3e-4, weight_decay=0.05)

    L.seed_everything(seed, verbose=False)
    data = torch.utils.data.TensorDataset(
        torch.from_numpy(images[train_rows]), torch.from_numpy(codes[train_rows])
    )
    loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True)
    model = Classifier()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader)
    model = model.cpu().eval()
    with torch.inference_mode():
        logits = torch.cat(
            [
                model(torch.from_numpy(images[test_rows][i : i + 256]))
                for i in range(0, len(test_rows), 256)
            ]
        )
    return classification_metrics(labels[test_rows], classes[logits.argmax(1).numpy()])


def supervised_curve(config, images, labels, train_rows, test_rows, settings, seed, accelerator):
    """Supervised-from-scratch metrics on the same label subsets as the probes (first repeat)."""
    rows = []
    for fraction in FRACTIONS:
        subset = label_subsets(labels, train_rows, fraction, repeats=1, seed=seed)[0]
        metrics = supervised_from_scratch(
            config,
            images,
            labels,
            subset,
            test_rows,
            settings["supervised_epochs"],
            seed,
            accelerator,
        )
        rows.append(
            {
                "probe": "supervised_from_scratch",
                "fraction": fraction,
                "n_labels": len(subset),
                **metrics,
            }
        )
    return rows


def encoder_vectors(model_folder: Path, images: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Embeddings of preprocessed images by the pretrained, random-init and pixel-PCA encoders."""
    model, preprocess, _ = load_astropt(model_folder)
    torch.manual_seed(seed)
    return {
        "astropt_pretrained": encode(AstroPTEncoder(model, preprocess), images),
        "astropt_random_init": encode(AstroPTEncoder(AstroPT(model.config), preprocess), images),
        "pixel_pca": pixel_pca(images, model.config.embed_dim, seed),
    }


def evaluate(
    model_folder, vectors, images, labels, train_rows, test_rows, settings, seed, accelerator
):
    """Probes and precision@10 of every encoder, and the supervised-from-scratch curve."""
    model, _, record = load_astropt(model_folder)
    result = {"pretrain_metrics": record.metrics, "probes": {}, "precision_at_10": {}}
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
    result["probes"]["supervised_from_scratch"] = supervised_curve(
        model.config, images, labels, train_rows, test_rows, settings, seed, accelerator
    )
    return result


def run_gz2(data_dir: Path, work: Path, settings: dict, seed: int, accelerator: str) -> dict:
    """Pretrain on gz2-unlabelled + gz2-spirals images; probe with the gz2-spirals labels."""
    unlabelled = GalaxyCollection.open(data_dir / "gz2-unlabelled" / "images")
    labelled = GalaxyCollection.open(data_dir / "gz2-spirals" / "catalog.csv")
    if settings["gz2_limit"]:
        unlabelled = unlabelled.subset(np.arange(min(len(unlabelled), settings["gz2_limit"])))
        labelled = labelled.subset(
            np.random.default_rng(seed).permutation(len(labelled))[: settings["gz2_limit"]]
        )
    # Dieleman et al. crop the central 207 px of the 424 px Galaxy Zoo images.
    preprocess = PreprocessConfig(crop_pixels=208, output_size=settings["image_size"])
    start = time.perf_counter()
    folder = pretrain(
        [unlabelled, labelled],
        work / "gz2-astropt",
        size=settings["size"],
        preprocess=preprocess,
        patch_size=settings["patch_size"],
        max_epochs=settings["epochs"],
        accelerator=accelerator,
        seed=seed,
    )
    pretrain_seconds = time.perf_counter() - start
    images = preprocessed(labelled, preprocess)
    labels = np.asarray(labelled.catalog["label"]).astype(str)
    split = np.asarray(labelled.catalog["split"]).astype(str)
    train_rows, test_rows = np.flatnonzero(split == "train"), np.flatnonzero(split != "train")
    vectors = encoder_vectors(folder, images, seed)
    result = evaluate(
        folder, vectors, images, labels, train_rows, test_rows, settings, seed, accelerator
    )
    result.update(
        pretrain_seconds=pretrain_seconds,
        n_pretrain=len(unlabelled) + len(labelled),
        n_train=len(train_rows),
        n_test=len(test_rows),
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


def run_simulated(work: Path, settings: dict, seed: int, accelerator: str) -> dict:
    """A fixed-seed GalSim field: isolated galaxies plus stars, mergers and artefacts."""
    count = settings["sim_count"]
    n_anomalous = round(settings["anomaly_fraction"] * count)
    n_artefacts = n_anomalous // 3
    classes = ISOLATED + ("star", "merger")
    normal_share = (1 - settings["anomaly_fraction"]) / len(ISOLATED)
    anomaly_share = (n_anomalous - n_artefacts) / count / 2
    fractions = [normal_share] * len(ISOLATED) + [anomaly_share, anomaly_share]
    sample = simulate(
        count,
        size=64,
        bands=("g", "r", "i"),
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

    preprocess = PreprocessConfig(output_size=settings["image_size"], stretch="asinh")
    collection = GalaxyCollection.from_arrays(images, Table({"id": list(sample.catalog["id"])}))
    start = time.perf_counter()
    folder = pretrain(
        collection,
        work / "sim-astropt",
        size=settings["size"],
        preprocess=preprocess,
        patch_size=settings["patch_size"],
        max_epochs=settings["epochs"],
        accelerator=accelerator,
        seed=seed,
    )
    pretrain_seconds = time.perf_counter() - start
    prepared = preprocessed(collection, preprocess)

    vectors = encoder_vectors(folder, prepared, seed)

    # Probes and retrieval on the clean isolated galaxies: the morphology classes.
    clean = np.setdiff1d(isolated_rows, artefact_rows)
    order = rng.permutation(len(clean))
    train_rows, test_rows = (
        np.sort(order[: len(clean) * 7 // 10]),
        np.sort(order[len(clean) * 7 // 10 :]),
    )
    clean_vectors = {name: embedding[clean] for name, embedding in vectors.items()}
    result = evaluate(
        folder,
        clean_vectors,
        prepared[clean],
        labels[clean],
        train_rows,
        test_rows,
        settings,
        seed,
        accelerator,
    )

    from sklearn.metrics import roc_auc_score

    # Outliers over the whole field.
    result["outlier_auroc"] = {}
    for name, embedding in vectors.items():
        scores = outlier_scores(embedding, [str(i) for i in range(count)], seed=seed)
        truth = anomalous[np.asarray(scores["id"]).astype(int)]
        result["outlier_auroc"][name] = {
            "rank_average" if column == "score" else column.removeprefix("score_"): float(
                roc_auc_score(truth, scores[column])
            )
            for column in scores.colnames
            if column.startswith("score")
        }
    result.update(
        pretrain_seconds=pretrain_seconds,
        n_field=count,
        n_anomalous=int(anomalous.sum()),
        n_artefacts=n_artefacts,
        n_train=len(train_rows),
        n_test=len(test_rows),
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
    for kind in ("flat", "ivf", "hnsw"):
        start = time.perf_counter()
        index = SimilarityIndex.build(embeddings, kind=kind, recall_queries=0, seed=seed)
        built = time.perf_counter() - start
        start = time.perf_counter()
        index.search(queries, 10)
        elapsed = time.perf_counter() - start
        if kind == "flat":
            exact = index
        result["indexes"][kind] = {
            "build_seconds": built,
            "queries_per_second": len(queries) / elapsed,
            "recall_at_10": recall_at_k(index, exact, queries, 10),
        }
    return result


def markdown(report: dict) -> str:
    """The results as markdown tables."""
    lines = [
        f"# Embeddings benchmark ({'quick' if report['settings']['quick'] else 'full'} run)",
        "",
        f"Machine: {report['machine']}. Settings: `{json.dumps(report['settings'])}`.",
        "",
    ]
    for name in ("gz2", "simulated"):
        if name not in report:
            continue
        part = report[name]
        lines += [
            f"## {name}: probes (accuracy on held-out galaxies)",
            "",
            "| encoder | probe | "
            + " | ".join(f"{int(f * 100)} % labels" for f in FRACTIONS)
            + " |",
            "|---|---|" + "---|" * len(FRACTIONS),
        ]
        for encoder, rows in part["probes"].items():
            for probe in dict.fromkeys(row["probe"] for row in rows):
                values = {row["fraction"]: row for row in rows if row["probe"] == probe}
                cells = [
                    f"{values[f]['accuracy']:.3f} (n={values[f]['n_labels']})"
                    if f in values
                    else "-"
                    for f in FRACTIONS
                ]
                lines.append(f"| {encoder} | {probe} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"## {name}: retrieval precision@10 (same class)",
            "",
            "| encoder | precision@10 |",
            "|---|---|",
        ]
        lines += [
            f"| {encoder} | {value:.3f} |" for encoder, value in part["precision_at_10"].items()
        ]
        lines += [
            "",
            (
                f"Pretraining: {part['pretrain_seconds']:.0f} s on "
                f"{part.get('n_pretrain', part.get('n_field'))} galaxies; best validation loss "
                f"{part['pretrain_metrics']['best_val_loss']:.4f}."
            ),
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
            ]
            lines += [
                f"| {encoder} | " + " | ".join(f"{values[d]:.3f}" for d in detectors) + " |"
                for encoder, values in part["outlier_auroc"].items()
            ]
            lines.append("")
    search = report["search"]
    lines += [
        (
            f"## faiss search: {search['n_vectors']} vectors of dimension {search['dim']}, "
            f"{search['n_queries']} queries"
        ),
        "",
        "| index | build (s) | queries/s | recall@10 |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {kind} | {row['build_seconds']:.2f} | {row['queries_per_second']:.0f} | "
        f"{row['recall_at_10']:.3f} |"
        for kind, row in search["indexes"].items()
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
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for the pretrained models (temporary)"
    )
    parser.add_argument("--accelerator", default="auto", help="auto, cpu or gpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = {**(QUICK if args.quick else FULL), "quick": args.quick, "seed": args.seed}

    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        report = {
            "settings": settings,
            "machine": f"{platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} torch threads, cuda={torch.cuda.is_available()}",
        }
        if (args.data / "gz2-spirals").is_dir():
            report["gz2"] = run_gz2(args.data, work, settings, args.seed, args.accelerator)
        else:
            print(f"skipping Galaxy Zoo: {args.data / 'gz2-spirals'} not found")
        report["simulated"] = run_simulated(work, settings, args.seed, args.accelerator)
        dim = load_astropt(work / "sim-astropt")[0].config.embed_dim
        report["search"] = run_search(settings, dim, args.seed)
    stem = "embeddings_quick" if args.quick else "embeddings"
    with atomic_path(args.out / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=float))
    with atomic_path(args.out / f"{stem}.md") as tmp:
        tmp.write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
