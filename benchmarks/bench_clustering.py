"""Benchmark of the unsupervised morphology pipeline (issue 4).

On a fixed-seed GalSim set (8 classes) and on the real Galaxy Zoo images in
../shared/data (gz2-unlabelled plus gz2-spirals; the spiral/non_spiral
labels only score the groups):

* fraction classified (the paper: 53 %), purity of the classified part,
  ARI and NMI of the bagging voting clustering, against plain k-means on
  the same features and k-means on PCA of raw pixels;
* ablation: the same pipeline without denoising, and without the polar step;
* denoising: PSNR and SSIM gain on simulated galaxies whose noiseless truth
  is known;
* polar step: cosine similarity between embeddings of galaxies and of their
  rotated copies, with and without it;
* wall time of every stage at 10^3 and 10^4 galaxies.

The encoder is a timm ConvNeXt.  Without ``--weights`` its weights are
random (nothing is ever downloaded): the numbers then measure the method
with an untrained encoder, not the paper's ImageNet-trained ConvNeXt-large.
Pass a local file for that: ``--encoder convnext_large --weights FILE``.

Writes ``clustering.json`` and ``clustering.md`` to ``benchmarks/results/``.

Full run (about an hour on 2 quiet CPU cores; minutes on a GPU)::

    python benchmarks/bench_clustering.py

Smoke run (a few minutes)::

    python benchmarks/bench_clustering.py --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

from tuningfork.clustering import (
    ClusterConfig,
    PolarStep,
    denoise,
    denoising_gain,
    load_encoder,
    rotation_consistency,
    run_cluster_pipeline,
    train_autoencoder,
)
from tuningfork.clustering.autoencoder import estimate_noise_sigma, read_preprocessed
from tuningfork.data import GalaxyCollection
from tuningfork.data.writers import atomic_path, write_table
from tuningfork.preprocessing import PreprocessConfig, Preprocessor
from tuningfork.simulation import simulate

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
PAPER_FRACTION_CLASSIFIED = 0.53
METHODS = ("voting", "kmeans_features", "kmeans_raw_pixels")

FULL = {
    "sim_sizes": (1000, 10000),
    "gz2_limit": None,
    "k_sim": 8,
    "k_gz2": 20,
    "n_bootstrap": 10,
    "denoise_epochs": 20,
    "denoise_max_train": 5000,
    "input_size": 128,
    "denoise_eval": 1500,
    "rotation_galaxies": 128,
    "embedding_map": "umap",
}
QUICK = {
    "sim_sizes": (120, 240),
    "gz2_limit": 60,
    "k_sim": 4,
    "k_gz2": 4,
    "n_bootstrap": 2,
    "denoise_epochs": 1,
    "denoise_max_train": 200,
    "input_size": 32,
    "denoise_eval": 96,
    "rotation_galaxies": 16,
    "embedding_map": "pca",
}


def pipeline_config(
    settings: dict, args, k: int, label_column: str | None, preprocess: dict
) -> ClusterConfig:
    return ClusterConfig(
        n_clusters=k,
        n_bootstrap=settings["n_bootstrap"],
        encoder=args.encoder,
        encoder_weights=str(args.weights) if args.weights else None,
        input_size=settings["input_size"],
        denoise_epochs=settings["denoise_epochs"],
        denoise_max_train=settings["denoise_max_train"],
        preprocess=preprocess,
        label_column=label_column,
        embedding_map=settings["embedding_map"],
        seed=args.seed,
    )


def reuse_denoiser(source: Path, target: Path) -> None:
    """Give an ablation run the denoiser already trained with the same settings.

    Its fingerprint in stages.json is copied too, so the pipeline's own
    cache logic decides (and would retrain if the settings differed).
    """
    if target.exists() or not (source / "denoiser").is_dir():
        return
    target.mkdir(parents=True)
    shutil.copytree(source / "denoiser", target / "denoiser")
    stages = json.loads((source / "stages.json").read_text())
    (target / "stages.json").write_text(json.dumps({"denoise": stages["denoise"]}))


def run_with_ablations(collection, config: ClusterConfig, work: Path, log) -> dict:
    """The full pipeline, then without denoising and without the polar step."""
    variants = {
        "full": config,
        "no_denoise": dataclasses.replace(config, denoise=False),
        "no_polar": dataclasses.replace(config, polar=False),
    }
    results = {}
    for name, variant in variants.items():
        if variant.denoise and name != "full":
            reuse_denoiser(work / "full", work / name)
        log(f"  {name}")
        result = run_cluster_pipeline(collection, work / name, variant)
        results[name] = {"scores": result.scores, "seconds": result.seconds}
    return results


def simulated_benchmark(settings: dict, args, work: Path, log) -> dict:
    largest = max(settings["sim_sizes"])
    started = time.perf_counter()
    sample = simulate(largest, size=64, seed=args.seed, workers=args.workers)
    simulate_seconds = time.perf_counter() - started
    catalog = Table({"id": sample.catalog["id"], "label": sample.catalog["label"]})
    everything = GalaxyCollection.from_arrays(sample.images, catalog)
    preprocess = {"output_size": 64, "stretch": "asinh", "stretch_softening": 1.0}
    config = pipeline_config(settings, args, settings["k_sim"], "label", preprocess)
    scaling = {}
    for size in sorted(settings["sim_sizes"]):
        log(f"simulated, {size} galaxies")
        collection = everything.subset(np.arange(size))
        if size == largest:
            ablation = run_with_ablations(collection, config, work / f"sim_{size}", log)
            scaling[size] = ablation["full"]["seconds"]
        else:
            scaling[size] = run_cluster_pipeline(
                collection, work / f"sim_{size}" / "full", config
            ).seconds
    return {
        "simulate_seconds": simulate_seconds,
        "n": largest,
        "ablation": ablation,
        "stage_seconds": {str(size): seconds for size, seconds in scaling.items()},
    }


def gz2_collection(limit: int | None, work: Path) -> GalaxyCollection:
    """gz2-unlabelled (blank labels) plus gz2-spirals, as one catalog."""
    labelled = Table.read(SHARED / "gz2-spirals" / "catalog.csv", format="ascii.csv")
    unlabelled = sorted((SHARED / "gz2-unlabelled" / "images").glob("*.jpg"))
    if limit is not None:
        labelled, unlabelled = labelled[:limit], unlabelled[:limit]
    rows = {"id": [], "file": [], "label": []}
    for path in unlabelled:
        rows["id"].append(f"u{path.stem}")
        rows["file"].append(str(path))
        rows["label"].append("")
    for row in labelled:
        rows["id"].append(f"s{row['galaxy_id']}")
        rows["file"].append(str(SHARED / "gz2-spirals" / row["file"]))
        rows["label"].append(str(row["label"]))
    catalog = write_table(work / "gz2_catalog.csv", Table(rows))
    return GalaxyCollection.open(catalog, label_column="label")


def gz2_benchmark(settings: dict, args, work: Path, log) -> dict:
    log("gz2-unlabelled + gz2-spirals")
    collection = gz2_collection(settings["gz2_limit"], work)
    # Dieleman et al.: the galaxy fills the central ~200 of 424 pixels.
    preprocess = {"crop_pixels": 207, "output_size": 64}
    config = pipeline_config(settings, args, settings["k_gz2"], "label", preprocess)
    return {
        "n": len(collection),
        "ablation": run_with_ablations(collection, config, work / "gz2", log),
    }


def denoising_benchmark(settings: dict, args) -> dict:
    """The pipeline's autoencoder recipe on simulated galaxies with known truth."""
    count = settings["denoise_eval"]
    sample = simulate(
        count,
        size=64,
        snr=(5.0, 50.0),
        seed=args.seed + 1,
        workers=args.workers,
        return_noiseless=True,
    )
    # One global scale (the median noise) keeps noisy and true images comparable.
    scale = float(np.median(estimate_noise_sigma(sample.images)))
    noisy, truth = sample.images / scale, sample.noiseless / scale
    train = int(0.8 * count)
    model, metrics = train_autoencoder(
        noisy[:train], epochs=settings["denoise_epochs"], seed=args.seed
    )
    gain = denoising_gain(noisy[train:], denoise(model, noisy[train:]), truth[train:])
    return {
        **gain,
        "n_train": train,
        "n_test": count - train,
        "final_train_loss": metrics["final_train_loss"],
    }


def rotation_benchmark(settings: dict, args) -> dict:
    sample = simulate(
        settings["rotation_galaxies"],
        size=64,
        snr=(50.0, 200.0),
        seed=args.seed + 2,
        workers=args.workers,
    )
    images = read_preprocessed(
        GalaxyCollection.from_arrays(sample.images),
        Preprocessor(PreprocessConfig(output_size=64, stretch="asinh")),
    )
    encoder = load_encoder(
        args.encoder, weights=args.weights, in_chans=1, input_size=settings["input_size"]
    )
    return {
        "cartesian": rotation_consistency(encoder, images),
        "polar": rotation_consistency(encoder, images, polar=PolarStep()),
    }


def _score_rows(ablation: dict) -> list[str]:
    rows = []
    for variant, outcome in ablation.items():
        methods = METHODS if variant == "full" else ("voting",)
        for method in methods:
            s = outcome["scores"][method]
            rows.append(
                f"| {variant} | {method} | {s['fraction_classified']:.3f} | {s['purity']:.3f} | "
                f"{s['ari']:.3f} | {s['nmi']:.3f} |"
            )
    return rows


def markdown(report: dict) -> str:
    header = (
        "| pipeline | grouping | fraction classified | purity | ARI | NMI |\n"
        "|---|---|---|---|---|---|"
    )
    encoder = report["settings"]["encoder"]
    weights = report["settings"]["weights"] or "random initialisation (no local weights given)"
    lines = [
        f"# Clustering benchmark{' (quick run)' if report['settings']['quick'] else ''}",
        "",
        (
            f"Machine: {report['machine']}. Encoder: `{encoder}`, weights: {weights}. "
            f"Settings: `{json.dumps(report['settings'])}`."
        ),
        "",
        (
            f"The paper classified {PAPER_FRACTION_CLASSIFIED:.0%} of its COSMOS galaxies. "
            "Purity, ARI and NMI are computed on the classified galaxies only; "
            "k-means classifies every galaxy."
        ),
        "",
        f"## Simulated ({report['simulated']['n']} galaxies, 8 classes)",
        "",
        header,
        *_score_rows(report["simulated"]["ablation"]),
        "",
        (
            f"## Galaxy Zoo 2 ({report['gz2']['n']} galaxies; "
            "scored on the spiral/non_spiral labelled part)"
        ),
        "",
        header,
        *_score_rows(report["gz2"]["ablation"]),
        "",
        "## Wall time per stage (simulated, full pipeline, seconds)",
        "",
    ]
    sizes = list(report["simulated"]["stage_seconds"])
    lines.append("| stage | " + " | ".join(f"{s} galaxies" for s in sizes) + " | ratio |")
    lines.append("|---|" + "---|" * (len(sizes) + 1))
    timings = report["simulated"]["stage_seconds"]
    for stage in timings[sizes[0]]:
        values = [timings[s].get(stage, float("nan")) for s in sizes]
        ratio = values[-1] / values[0] if values[0] > 0 else float("nan")
        lines.append(f"| {stage} | " + " | ".join(f"{v:.1f}" for v in values) + f" | {ratio:.1f} |")
    d = report["denoising"]
    r = report["rotation"]
    lines += [
        "",
        (
            f"Simulating {report['simulated']['n']} galaxies took "
            f"{report['simulated']['simulate_seconds']:.0f} s."
        ),
        "",
        f"## Denoising ({d['n_test']} held-out simulated galaxies, S/N 5-50)",
        "",
        "| | PSNR (dB) | SSIM |",
        "|---|---|---|",
        f"| noisy | {d['psnr_noisy']:.2f} | {d['ssim_noisy']:.3f} |",
        f"| denoised | {d['psnr_denoised']:.2f} | {d['ssim_denoised']:.3f} |",
        f"| gain | {d['psnr_gain']:+.2f} | {d['ssim_gain']:+.3f} |",
        "",
        "## Polar step: cosine similarity of embeddings of rotated copies (centred)",
        "",
        "| input | mean | " + " | ".join(k for k in r["cartesian"] if k != "mean") + " |",
        "|---|" + "---|" * len(r["cartesian"]),
    ]
    for name, scores in r.items():
        lines.append(
            f"| {name} | {scores['mean']:.3f} | "
            + " | ".join(f"{v:.3f}" for k, v in scores.items() if k != "mean")
            + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    parser.add_argument(
        "--encoder", default="convnext_tiny", help="timm architecture or model folder"
    )
    parser.add_argument(
        "--weights", type=Path, default=None, help="local weights of the timm encoder"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("/tmp/tuningfork-bench-clustering"),
        help="pipeline caches (outside the repository)",
    )
    parser.add_argument("--workers", type=int, default=2, help="GalSim rendering processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse finished pipeline stages of an interrupted run (their times are then missing)",
    )
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    work = args.work_dir / ("quick" if args.quick else "full")
    if not args.resume:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    report = {
        "settings": {
            **{k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
            "encoder": args.encoder,
            "weights": str(args.weights) if args.weights else None,
            "quick": args.quick,
            "seed": args.seed,
        },
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"cuda={torch.cuda.is_available()}",
        "paper_fraction_classified": PAPER_FRACTION_CLASSIFIED,
    }
    report["simulated"] = simulated_benchmark(settings, args, work, log)
    report["gz2"] = gz2_benchmark(settings, args, work, log)
    log("denoising gain")
    report["denoising"] = denoising_benchmark(settings, args)
    log("rotation consistency")
    report["rotation"] = rotation_benchmark(settings, args)
    results = REPO / "benchmarks" / "results"
    with atomic_path(results / "clustering.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=float))
    with atomic_path(results / "clustering.md") as tmp:
        tmp.write_text(markdown(report))
    log(f"wrote {results / 'clustering.json'} and clustering.md")


if __name__ == "__main__":
    main()
