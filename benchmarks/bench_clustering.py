"""Benchmark of the unsupervised morphology pipeline (issue 4).

On a fixed-seed GalSim set (8 classes, S/N 20-200) and on the real Galaxy
Zoo images in ../shared/data (gz2-unlabelled plus gz2-spirals; the
spiral/non_spiral labels only score the groups):

* fraction classified (the paper: 53 %), purity of the classified part,
  ARI and NMI of the bagging voting clustering, against plain k-means on
  the same features and k-means on PCA of raw pixels;
* ablation: the default pipeline, the same with the denoising autoencoder,
  and the same without the polar step;
* denoising: PSNR and SSIM gain on simulated galaxies whose noiseless truth
  is known, for the residual U-Net the pipeline trains and for the plain
  autoencoder whose bottleneck can serve as an encoder;
* polar step: cosine similarity between embeddings of galaxies and of their
  rotated copies, with and without it, for a ConvNeXt and for the
  morphology descriptors;
* wall time of every stage at 10^3 and 10^4 galaxies.

The encoder is the pipeline's default, the rotation-invariant morphology
descriptors (no weights, nothing downloaded).  ``--encoder convnext_large
--weights FILE`` runs the paper's configuration instead, with a local
ImageNet checkpoint.

Writes ``clustering.json`` and ``clustering.md`` to ``benchmarks/results/``
(``clustering_quick.*`` with ``--quick``).

Full run (about 15 minutes on 2 quiet CPU cores, 25 on a shared one)::

    nice -n 5 python benchmarks/bench_clustering.py

Smoke run (about a minute)::

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
    read_groups,
    rotation_consistency,
    run_cluster_pipeline,
    score_groups,
    train_autoencoder,
)
from tuningfork.clustering.pipeline import labels_where_present
from tuningfork.data import GalaxyCollection
from tuningfork.data.writers import atomic_path
from tuningfork.models import MorphologyEncoder, TimmEncoder
from tuningfork.models.nets.descriptors import MORPHOLOGY_ENCODER
from tuningfork.preprocessing import PreprocessConfig, Preprocessor, estimate_noise_sigma
from tuningfork.simulation import simulate

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
PAPER_FRACTION_CLASSIFIED = 0.53
BASELINES = ("voting", "kmeans_features", "kmeans_raw_pixels")
VARIANTS = ("default", "denoise", "no_polar")
SIM_SNR = (20.0, 200.0)
STAMP = 64

FULL = {
    "sim_sizes": (1000, 10000),
    "gz2_limit": None,
    "k_sim": 8,
    "k_gz2": 20,
    "n_bootstrap": 8,
    "max_fit_samples": 2000,
    "denoise_epochs": 3,
    "denoise_channels": 8,
    "denoise_depth": 2,
    "denoise_max_train": 600,
    "denoise_eval": 500,
    "rotation_galaxies": 32,
    "conv_encoder": "convnext_tiny",
    "warmup": 200,
}
QUICK = {
    "sim_sizes": (160, 320),
    "gz2_limit": 80,
    "k_sim": 8,
    "k_gz2": 8,
    "n_bootstrap": 2,
    "max_fit_samples": 300,
    "denoise_epochs": 1,
    "denoise_channels": 8,
    "denoise_depth": 2,
    "denoise_max_train": 160,
    "denoise_eval": 80,
    "rotation_galaxies": 8,
    "conv_encoder": "convnext_atto",
    "warmup": 40,
}


def pipeline_config(settings: dict, args, k: int, preprocess: dict) -> ClusterConfig:
    """The default pipeline at benchmark sizes (labels only score the groups)."""
    return ClusterConfig(
        n_clusters=k,
        n_bootstrap=settings["n_bootstrap"],
        max_fit_samples=settings["max_fit_samples"],
        encoder=args.encoder,
        encoder_weights=str(args.weights) if args.weights else None,
        denoise_epochs=settings["denoise_epochs"],
        denoise_channels=settings["denoise_channels"],
        denoise_depth=settings["denoise_depth"],
        denoise_max_train=settings["denoise_max_train"],
        preprocess=preprocess,
        label_column="label",
        # UMAP would dominate the plot stage; the benchmark measures the clustering.
        embedding_map="pca",
        seed=args.seed,
    )


def run_variants(collection, config: ClusterConfig, work: Path, log) -> dict:
    """The default pipeline (with baselines), then the denoise and no-polar ablations.

    Only the default run evaluates against labels itself (with the two
    k-means baselines); the ablations' groups are scored here, which spares
    recomputing the raw-pixel baseline for each.
    """
    variants = {
        "default": config,
        "denoise": dataclasses.replace(config, denoise=True, label_column=None),
        "no_polar": dataclasses.replace(config, polar=False, label_column=None),
    }
    labels, labelled = labels_where_present(collection, "label")
    results = {}
    for name, variant in variants.items():
        log(f"  {name}")
        result = run_cluster_pipeline(collection, work / name, variant, overwrite=True)
        if result.scores is not None:
            scores = result.scores
        else:
            groups = read_groups(result.files["groups"])
            group = np.asarray(groups["group"].filled(-1))
            classified = np.asarray(groups["classified"], dtype=bool)
            scores = {
                "voting": score_groups(group[labelled], labels[labelled], classified[labelled])
            }
        results[name] = {
            "scores": scores,
            "seconds": result.seconds,
            "cpu_seconds": result.cpu_seconds,
        }
    return results


def simulated_sample(n: int, args, work: Path, log):
    """The fixed-seed simulated set, rendered once and kept in the work folder."""
    cache = work / f"simulated_{n}_{args.seed}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return stored["images"], stored["labels"], float(stored["seconds"])
    log(f"simulating {n} galaxies")
    started = time.perf_counter()
    sample = simulate(n, size=STAMP, snr=SIM_SNR, seed=args.seed, workers=args.workers)
    seconds = time.perf_counter() - started
    labels = np.asarray(sample.catalog["label"]).astype(str)
    with atomic_path(cache) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, images=sample.images, labels=labels, seconds=seconds)
    return sample.images, labels, seconds


def simulated_benchmark(settings: dict, args, work: Path, log) -> dict:
    largest = max(settings["sim_sizes"])
    images, labels, simulate_seconds = simulated_sample(largest, args, work, log)
    ids = [f"sim{i:05d}" for i in range(largest)]
    everything = GalaxyCollection.from_arrays(images, Table({"id": ids, "label": labels}))
    config = pipeline_config(settings, args, settings["k_sim"], {"output_size": STAMP})
    # A first, unreported run pays the one-off costs (imports, first calls
    # of Lightning and scikit-learn) that would otherwise inflate the
    # smaller size's stage times.
    log("warming up")
    run_variants(everything.subset(np.arange(settings["warmup"])), config, work / "warmup", log)
    by_size = {}
    for size in sorted(settings["sim_sizes"]):
        log(f"simulated, {size} galaxies")
        collection = everything.subset(np.arange(size))
        by_size[str(size)] = run_variants(collection, config, work / f"sim_{size}", log)
    return {"simulate_seconds": simulate_seconds, "n": largest, "by_size": by_size}


def gz2_catalog(limit: int | None) -> Table:
    """gz2-unlabelled (blank labels) plus gz2-spirals, as one catalog of files."""
    labelled = Table.read(SHARED / "gz2-spirals" / "catalog.csv", format="ascii.csv")
    unlabelled = sorted((SHARED / "gz2-unlabelled" / "images").glob("*.jpg"))
    if limit is not None:
        labelled, unlabelled = labelled[:limit], unlabelled[:limit]
    return Table(
        {
            "id": [f"u{path.stem}" for path in unlabelled]
            + [f"s{galaxy}" for galaxy in labelled["galaxy_id"]],
            "file": [str(path) for path in unlabelled]
            + [str(SHARED / "gz2-spirals" / name) for name in labelled["file"]],
            "label": [""] * len(unlabelled) + [str(label) for label in labelled["label"]],
        }
    )


def gz2_benchmark(settings: dict, args, work: Path, log) -> dict:
    """Cluster the Galaxy Zoo images; score on the spiral/non_spiral labelled part.

    Dieleman et al.: the galaxy fills the central ~200 of 424 pixels, so the
    centre is cropped before shrinking to the stamp size.  The small stamps
    are read once and kept in memory, which spares decoding the JPEGs again
    in every run.
    """
    from tuningfork.data.writers import write_table

    log("gz2-unlabelled + gz2-spirals: reading")
    catalog = gz2_catalog(settings["gz2_limit"])
    on_disk = GalaxyCollection.open(write_table(work / "gz2_catalog.csv", catalog))
    started = time.perf_counter()
    stamps = on_disk.read_images(Preprocessor(PreprocessConfig(crop_pixels=207, output_size=STAMP)))
    read_seconds = time.perf_counter() - started
    collection = GalaxyCollection.from_arrays(
        stamps, Table({"id": on_disk.ids, "label": catalog["label"]})
    )
    config = pipeline_config(settings, args, settings["k_gz2"], {"output_size": STAMP})
    log("gz2-unlabelled + gz2-spirals: clustering")
    return {
        "n": len(collection),
        "n_labelled": int(np.sum(np.asarray(catalog["label"]) != "")),
        "read_seconds": read_seconds,
        "variants": run_variants(collection, config, work / "gz2", log),
    }


def denoising_benchmark(settings: dict, args) -> dict:
    """The pipeline's denoiser recipe, and the plain autoencoder, against known truth."""
    count = settings["denoise_eval"]
    sample = simulate(
        count,
        size=STAMP,
        snr=SIM_SNR,
        seed=args.seed + 1,
        workers=args.workers,
        return_noiseless=True,
    )
    # One global scale (the median noise) keeps noisy and true images comparable.
    scale = float(np.median(estimate_noise_sigma(sample.images)))
    noisy, truth = sample.images / scale, sample.noiseless / scale
    train = int(0.8 * count)
    results = {}
    for name, skips in (("unet", True), ("plain", False)):
        model, metrics = train_autoencoder(
            noisy[:train],
            epochs=settings["denoise_epochs"],
            base_channels=settings["denoise_channels"],
            depth=settings["denoise_depth"],
            skips=skips,
            seed=args.seed,
        )
        gain = denoising_gain(noisy[train:], denoise(model, noisy[train:]), truth[train:])
        results[name] = {**gain, "final_train_loss": metrics["final_train_loss"]}
    return {"n_train": train, "n_test": count - train, "snr": list(SIM_SNR), **results}


def rotation_benchmark(settings: dict, args) -> dict:
    """Cosine similarity of embeddings of rotated copies, with and without the polar step."""
    sample = simulate(
        settings["rotation_galaxies"],
        size=STAMP,
        snr=(50.0, 200.0),
        seed=args.seed + 2,
        workers=args.workers,
    )
    images = GalaxyCollection.from_arrays(sample.images).read_images(
        Preprocessor(PreprocessConfig(output_size=STAMP))
    )
    convnext = TimmEncoder(settings["conv_encoder"], args.weights, in_chans=1, input_size=STAMP)
    descriptors = MorphologyEncoder(angular=True)
    flat = MorphologyEncoder(angular=False)
    return {
        settings["conv_encoder"]: {
            "cartesian": rotation_consistency(convnext, images, standardise=True),
            "polar": rotation_consistency(convnext, images, polar=PolarStep(), standardise=True),
        },
        MORPHOLOGY_ENCODER: {
            "cartesian": rotation_consistency(flat, images, standardise=True),
            "polar": rotation_consistency(descriptors, images, standardise=True),
        },
    }


def _score_rows(variants: dict) -> list[str]:
    rows = []
    for variant, outcome in variants.items():
        methods = BASELINES if variant == "default" else ("voting",)
        for method in methods:
            s = outcome["scores"][method]
            rows.append(
                f"| {variant} | {method} | {s['fraction_classified']:.3f} | {s['purity']:.3f} | "
                f"{s['ari']:.3f} | {s['nmi']:.3f} |"
            )
    return rows


def _gain_rows(variants: dict) -> list[str]:
    default = variants["default"]["scores"]["voting"]
    rows = []
    for variant, label in (("denoise", "denoising"), ("no_polar", "polar step")):
        other = variants[variant]["scores"]["voting"]
        # The gain of a step is (with it) - (without it).
        sign = 1.0 if variant == "denoise" else -1.0
        rows.append(
            f"| {label} | "
            + " | ".join(
                f"{sign * (other[key] - default[key]):+.3f}"
                for key in ("fraction_classified", "purity", "ari", "nmi")
            )
            + " |"
        )
    return rows


def markdown(report: dict) -> str:
    settings = report["settings"]
    header = (
        "| pipeline | grouping | fraction classified | purity | ARI | NMI |\n"
        "|---|---|---|---|---|---|"
    )
    gain_header = "| gain of | fraction classified | purity | ARI | NMI |\n|---|---|---|---|---|"
    if settings["encoder"] == MORPHOLOGY_ENCODER:
        encoder = (
            "`morphology`, the pipeline's default: rotation-invariant descriptors (growth "
            "curve, C, A, S, Gini, M20, ellipticity, angular Fourier modes on a polar grid, "
            "colour gradients) with their trend in log S/N removed; no pretrained weights "
            "(none can be downloaded here)"
        )
    else:
        encoder = f"`{settings['encoder']}`, weights: {settings['weights'] or 'random'}"
    sim = report["simulated"]
    largest = str(sim["n"])
    lines = [
        f"# Clustering benchmark{' (quick run)' if settings['quick'] else ''}",
        "",
        f"Machine: {report['machine']}. {report['load_note']}",
        f"Total wall time: {report['wall_seconds'] / 60:.1f} min.",
        "",
        f"Encoder: {encoder}.",
        "",
        f"Settings: `{json.dumps(settings)}`.",
        "",
        (
            f"The paper classified {PAPER_FRACTION_CLASSIFIED:.0%} of its COSMOS galaxies. "
            "Purity, ARI and NMI are computed on the classified galaxies only; k-means "
            "classifies every galaxy.  Pipelines: `default` (morphology encoder with the polar "
            "step, no denoising), `denoise` (the same after the residual U-Net denoiser trained "
            "on the images), `no_polar` (without the angular modes of the polar step)."
        ),
        "",
        (
            f"## Simulated ({largest} galaxies, 8 classes, S/N {SIM_SNR[0]:g}-{SIM_SNR[1]:g}, "
            f"K = {settings['k_sim']})"
        ),
        "",
        header,
        *_score_rows(sim["by_size"][largest]),
        "",
        gain_header,
        *_gain_rows(sim["by_size"][largest]),
        "",
    ]
    for size in sim["by_size"]:
        if size != largest:
            lines += [
                f"Same at {size} galaxies:",
                "",
                header,
                *_score_rows(sim["by_size"][size]),
                "",
            ]
    gz2 = report["gz2"]
    lines += [
        (
            f"## Galaxy Zoo 2 ({gz2['n']} galaxies, K = {settings['k_gz2']}; scored on the "
            f"{gz2['n_labelled']} with spiral/non_spiral labels, half of each)"
        ),
        "",
        header,
        *_score_rows(gz2["variants"]),
        "",
        gain_header,
        *_gain_rows(gz2["variants"]),
        "",
        "## Time per stage (simulated, seconds)",
        "",
        (
            "`denoise` is the denoise pipeline's training stage (on at most "
            f"{settings['denoise_max_train']} galaxies at any size); the others are the default "
            "pipeline's (`encode` includes reading and preprocessing, `evaluate` the two k-means "
            "baselines, `plots` uses a PCA map, not UMAP).  CPU time counts this process's "
            "threads and, unlike wall time, does not grow when other jobs share the machine."
        ),
        "",
    ]
    sizes = list(sim["by_size"])
    columns = [f"{kind} {size}" for kind in ("wall", "CPU") for size in sizes]
    lines.append("| stage | " + " | ".join(columns) + " | wall ratio | CPU ratio |")
    lines.append("|---|" + "---|" * (len(columns) + 2))

    def stage_times(size: str, key: str) -> dict:
        variants = sim["by_size"][size]
        return {
            "denoise": variants["denoise"][key].get("denoise", float("nan")),
            **variants["default"][key],
        }

    timings = {
        key: {size: stage_times(size, key) for size in sizes} for key in ("seconds", "cpu_seconds")
    }
    for stage in timings["seconds"][sizes[0]]:
        row, ratios = [], []
        for key in ("seconds", "cpu_seconds"):
            values = [timings[key][size].get(stage, float("nan")) for size in sizes]
            row += [f"{value:.1f}" for value in values]
            ratios.append(values[-1] / values[0] if values[0] > 0 else float("nan"))
        lines.append(f"| {stage} | " + " | ".join(row) + f" | {ratios[0]:.1f} | {ratios[1]:.1f} |")
    lines += [
        "",
        (
            f"Simulating {sim['n']} galaxies took {sim['simulate_seconds']:.0f} s; reading and "
            f"cutting down the {gz2['n']} Galaxy Zoo JPEGs {gz2['read_seconds']:.0f} s."
        ),
        "",
    ]
    d = report["denoising"]
    lines += [
        (
            f"## Denoising ({d['n_test']} held-out simulated galaxies, S/N "
            f"{d['snr'][0]:g}-{d['snr'][1]:g}, {d['n_train']} for training)"
        ),
        "",
        "| network | PSNR noisy (dB) | PSNR denoised | gain | SSIM noisy | SSIM denoised | gain |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in (("unet", "residual U-Net (pipeline)"), ("plain", "plain autoencoder")):
        g = d[name]
        lines.append(
            f"| {label} | {g['psnr_noisy']:.2f} | {g['psnr_denoised']:.2f} | "
            f"{g['psnr_gain']:+.2f} | {g['ssim_noisy']:.3f} | {g['ssim_denoised']:.3f} | "
            f"{g['ssim_gain']:+.3f} |"
        )
    rotation = report["rotation"]
    first = next(iter(rotation.values()))["cartesian"]
    angles = [key for key in first if key != "mean"]
    lines += [
        "",
        (
            f"## Polar step: cosine similarity of embeddings of rotated copies "
            f"({settings['rotation_galaxies']} galaxies; features centred and standardised)"
        ),
        "",
        (
            "For the ConvNeXt (random weights unless `--weights`) the polar step resamples the "
            "image; for the morphology descriptors it adds the angular Fourier amplitudes."
        ),
        "",
        "| encoder | input | mean | " + " | ".join(angles) + " |",
        "|---|---|---|" + "---|" * len(angles),
    ]
    for encoder_name, scores_by_input in rotation.items():
        for input_name, scores in scores_by_input.items():
            lines.append(
                f"| {encoder_name} | {input_name} | {scores['mean']:.3f} | "
                + " | ".join(f"{scores[a]:.3f}" for a in angles)
                + " |"
            )
    return "\n".join(lines) + "\n"


def machine_load_note() -> str:
    """Say how busy the machine was: the timings depend on it."""
    load = Path("/proc/loadavg")
    if not load.is_file():
        return ""
    one_minute = float(load.read_text().split()[0])
    return (
        f"Load average at the end: {one_minute:.1f} on this machine "
        "(shared with other jobs during the run, so wall times are inflated)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    parser.add_argument(
        "--encoder", default=MORPHOLOGY_ENCODER, help="'morphology', timm architecture or folder"
    )
    parser.add_argument(
        "--weights", type=Path, default=None, help="local weights of a timm encoder"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("/tmp/tuningfork-bench-clustering"),
        help="pipeline caches (outside the repository)",
    )
    parser.add_argument("--workers", type=int, default=2, help="GalSim rendering processes")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse the simulated set and finished stages of an interrupted run "
        "(reused stages have no wall time)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    work = args.work_dir / ("quick" if args.quick else "full")
    if not args.resume:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

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
    report["wall_seconds"] = time.perf_counter() - started
    report["load_note"] = machine_load_note()
    results = REPO / "benchmarks" / "results"
    stem = "clustering_quick" if args.quick else "clustering"
    with atomic_path(results / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=float))
    with atomic_path(results / f"{stem}.md") as tmp:
        tmp.write_text(markdown(report))
    log(f"wrote {results / stem}.json and .md in {report['wall_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
