"""Galaxy Zoo challenge (../shared/data/gzc): embeddings and rare-class diffusion (issue 13).

Two sections, each saved as soon as it is done (a partial run keeps its
numbers):

* **embeddings**: AstroPT-style pretraining on every gzc image (train + val
  and the galaxies outside the five-class catalog; labels unused) under a
  CPU budget; linear and kNN probes at 1 %, 10 % and 100 % of the train
  labels, scored on val, for the pretrained encoder, the same encoder with
  random weights and raw-pixel PCA; the supervised rotation-invariant CNN
  trained from scratch on the same labels; retrieval precision@10 (same
  class) on val, and, per transformer block, what each layer's token mean
  retrieves (the diagnosis of a pretrained encoder that retrieves worse than
  its random initialisation).
* **diffusion**: a class-conditioned generator trained on the train split;
  classifiers trained with and without generated ``cigar_smooth`` galaxies
  (2 % of the data), same budget, several seeds; completeness (recall) and
  purity (precision) of ``cigar_smooth`` on val.

Every method starts from one stack: the central 104 px of each 128 px stamp
(the 207 px of the 424 px challenge JPEG that Dieleman et al. crop), resized
to 32 px, no background subtraction or normalisation (AstroPT and PCA scale
each galaxy themselves; the CNNs add their usual per-band min-max).  The
functions of ``bench_embeddings.py`` and ``bench_generation.py`` are reused.

Writes ``benchmarks/results/gzc_methods.json`` and ``gzc_methods.md``
(``gzc_methods_quick.*`` with ``--quick``).  Full run (about 35 minutes on 2
shared CPU cores)::

    flock /tmp/tuningfork-bench.lock .venv/bin/python benchmarks/bench_gzc_methods.py --threads 2

Smoke run (a few hundred galaxies, budgets of seconds; numbers meaningless)::

    nice -n 19 .venv/bin/python benchmarks/bench_gzc_methods.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_report
from bench_embeddings import (
    encoder_vectors,
    evaluate,
    precision_at_10,
    pretrain_stack,
    probe_table,
    read_stack,
    stack_collection,
    stopwatch,
    supervised_curve,
)
from bench_generation import Sizes, classifier_options, rare_class_scores

# Imported before the hour of work, not when first needed: a half-saved edit
# elsewhere in the shared tree must not break a run at its last stage.
from tuningfork.data import GalaxyCollection
from tuningfork.preprocessing import PreprocessConfig

REPO = Path(__file__).resolve().parents[1]
GZC = REPO.parent / "shared" / "data" / "gzc"
RESULTS = REPO / "benchmarks" / "results"
RARE = "cigar_smooth"
#: gzc stamps are the central 256 px of the 424 px JPEGs at half scale, so
#: Dieleman et al.'s 207 px crop is 104 gzc pixels.
CROP_PIXELS = 104
IMAGE_SIZE = 32

FULL = {
    "size": "small",
    "patch_size": 8,
    "pretrain_epochs": 100,
    "pretrain_budget_s": 600.0,
    "repeats": 3,
    "supervised_epochs": 30,
    "supervised_budget_s": 120.0,
    "limit": None,
    "generator_budget_s": 400.0,
    "generator_channels": (32, 64, 64),
    "classifier_epochs": 30,
    "classifier_budget_s": 150.0,
    "n_generated": 400,
    "sampler_steps": 20,
    "seeds": (0, 1, 2),
}
QUICK = {
    **FULL,
    "size": "tiny",
    "pretrain_budget_s": 5.0,
    "repeats": 1,
    "supervised_epochs": 1,
    "supervised_budget_s": 3.0,
    "limit": 400,
    "generator_budget_s": 5.0,
    "generator_channels": (8, 16),
    "classifier_epochs": 1,
    "classifier_budget_s": 3.0,
    "n_generated": 8,
    "sampler_steps": 2,
    "seeds": (0,),
}


def read_gzc(settings: dict, seed: int) -> tuple[np.ndarray, dict]:
    """Every gzc image as one preprocessed stack, and the five-class catalog's rows in it.

    Returns the stack and ``{"labels", "split", "rows"}``: per catalog galaxy
    its label, split and row of the stack.
    """
    images = GalaxyCollection.open(GZC / "images")
    catalog = GalaxyCollection.open(GZC / "catalog_5class.csv").catalog
    position = {galaxy: row for row, galaxy in enumerate(images.ids)}
    rows = np.array([position[str(galaxy)] for galaxy in catalog["id"]])
    labels = np.asarray(catalog["label"]).astype(str)
    split = np.asarray(catalog["split"]).astype(str)
    if settings["limit"]:
        keep = np.sort(np.random.default_rng(seed).permutation(len(rows))[: settings["limit"]])
        rows, labels, split = rows[keep], labels[keep], split[keep]
        # The quick run pretrains on its labelled galaxies only.
        images = images.subset(rows)
        rows = np.arange(len(rows))
    read = PreprocessConfig(crop_pixels=CROP_PIXELS, output_size=IMAGE_SIZE, subtract_background=False,
                            normalisation="none")
    return read_stack(images, read), {"labels": labels, "split": split, "rows": rows}


def layer_precision(vectors: np.ndarray, labels: np.ndarray, depth: int) -> list[float]:
    """Precision@10 of each block's token mean (the ``layers`` pooling is their concatenation)."""
    return [precision_at_10(part, labels) for part in np.split(vectors, depth, axis=1)]


def section_embeddings(stack, gzc, settings, seed, accelerator, work: Path, save_vectors: Path | None = None,
                       save_partial=None) -> dict:
    """Pretrain on every image; probes, supervised baseline and retrieval on the five classes.

    ``save_vectors`` keeps every encoder's embeddings, the labels and splits
    in an ``.npz`` file, for looking into them after the run;
    ``save_partial(result)`` is called with the probes and retrieval before
    the supervised baseline runs.
    """
    from tuningfork.models import load_model

    timings: dict[str, float] = {}
    with stopwatch(timings, "pretrain"):
        record = pretrain_stack(stack, work / "gzc-astropt", settings, settings["patch_size"],
                                settings["pretrain_epochs"], accelerator, seed)
    print(f"pretrained: {record['epochs_run']} epochs, {record['train_cpu_seconds']:.0f} CPU-s", flush=True)
    labelled, labels = stack[gzc["rows"]], gzc["labels"]
    train_rows = np.flatnonzero(gzc["split"] == "train")
    val_rows = np.flatnonzero(gzc["split"] != "train")
    with stopwatch(timings, "embed"):
        vectors = encoder_vectors(work / "gzc-astropt", labelled, seed)
    if save_vectors:
        np.savez(save_vectors, labels=labels, split=gzc["split"], **vectors)
    with stopwatch(timings, "probe"):
        result = evaluate(vectors, labels, train_rows, val_rows, settings, seed)
    # Retrieval is scored among the val galaxies, which no probe was fitted on.
    result["precision_at_10_all"] = result.pop("precision_at_10")
    result["precision_at_10"] = {
        name: precision_at_10(embedding[val_rows], labels[val_rows]) for name, embedding in vectors.items()
    }
    depth = load_model(work / "gzc-astropt", architecture="astropt").network.config.depth
    result["precision_at_10_by_layer"] = {
        name: layer_precision(vectors[name][val_rows], labels[val_rows], depth)
        for name in ("astropt_pretrained", "astropt_random_init")
    }
    print(f"precision@10 (val): {result['precision_at_10']}", flush=True)
    result.update(pretrain=record, n_pretrain=len(stack), n_train=len(train_rows), n_val=len(val_rows),
                  seconds=timings)
    if save_partial:
        save_partial(result)
    with stopwatch(timings, "supervised"):
        result["probes"]["supervised_from_scratch"] = supervised_curve(
            labelled, labels, train_rows, val_rows, settings, seed, work / "cnn")
    return result


def section_diffusion(stack, gzc, settings, seed, accelerator, work: Path) -> dict:
    """Classifiers with and without generated cigar_smooth galaxies, scored on val."""
    from tuningfork.generation import load_generator, train_generator
    from tuningfork.generation.augment import generate_for_classifier
    from tuningfork.training.fit import train

    labels, split = gzc["labels"], gzc["split"]
    train_rows, val_rows = np.flatnonzero(split == "train"), np.flatnonzero(split != "train")
    labelled = stack_collection(stack[gzc["rows"]], labels)
    training, val = labelled.subset(train_rows), labelled.subset(val_rows)
    # The stack is cropped and resized already: the generator keeps its pixel
    # values (JPEG composites: linear), the classifier adds per-band min-max.
    generator_preprocess = PreprocessConfig(output_size=IMAGE_SIZE, subtract_background=False, stretch="linear",
                                            normalisation="none")
    classifier_preprocess = PreprocessConfig(output_size=IMAGE_SIZE, subtract_background=False)
    started = time.perf_counter()
    folder = train_generator(training, work / "generator", preprocess=generator_preprocess,
                             unet={"channels": tuple(settings["generator_channels"])}, max_epochs=1000,
                             budget_s=settings["generator_budget_s"], accelerator=accelerator, seed=seed,
                             overwrite=True)
    generator = load_generator(folder)
    record = {
        "train_counts": {str(name): int((labels[train_rows] == name).sum()) for name in np.unique(labels)},
        "n_val": len(val_rows),
        "n_val_rare": int((labels[val_rows] == RARE).sum()),
        "generator": {key: generator.metrics.get(key) for key in
                      ("epochs_run", "budget_reached", "loss_per_epoch", "fixed_batch_loss_before",
                       "fixed_batch_loss_after")},
        "generator_seconds": round(time.perf_counter() - started, 1),
    }
    print(f"generator: {record['generator_seconds']} s", flush=True)
    sizes = Sizes(image_size=IMAGE_SIZE, classifier_epochs=settings["classifier_epochs"],
                  classifier_budget_s=settings["classifier_budget_s"])
    # The catalog's val split is the test set; checkpoints are chosen on a
    # stratified tenth of the train split.
    options = {**classifier_options(sizes), "split_column": None, "val_fraction": 0.1,
               "accelerator": accelerator}
    runs = []
    for run_seed in settings["seeds"]:
        for augmented in (False, True):
            started = time.perf_counter()
            extra = {}
            if augmented:
                extra["extra_train"] = generate_for_classifier(
                    generator, [RARE], settings["n_generated"], classifier_preprocess,
                    steps=settings["sampler_steps"], seed=run_seed)
            out = work / f"classifier-{run_seed}-{'aug' if augmented else 'real'}"
            train(training, out, preprocess=classifier_preprocess, seed=run_seed, progress=False, overwrite=True,
                  **options, **extra)
            scores = rare_class_scores(out, val, RARE)
            runs.append({"seed": run_seed, "augmented": augmented, **scores,
                         "seconds": round(time.perf_counter() - started, 1)})
            print(f"seed {run_seed} augmented={augmented}: {scores}", flush=True)
    record["runs"] = runs
    record["summary"] = {
        kind: {metric: {"mean": float(np.mean([r[metric] for r in runs if r["augmented"] == flag])),
                        "std": float(np.std([r[metric] for r in runs if r["augmented"] == flag]))}
               for metric in ("completeness", "purity", "accuracy")}
        for kind, flag in (("real_only", False), ("augmented", True))
    }
    record["classifier"] = {key: value for key, value in options.items() if key != "accelerator"}
    return record


def markdown(report: dict) -> str:
    """The results as markdown tables."""
    settings = report["settings"]
    lines = [
        f"# Galaxy Zoo challenge: embeddings and diffusion ({'quick run: not a measurement' if settings['quick'] else 'full run'})",
        "",
        (f"Machine: {report['machine']}. Settings: `{json.dumps(settings)}`. Input: every method starts from "
         f"the central {CROP_PIXELS} px of the 128 px gzc stamps resized to {IMAGE_SIZE} px. Budgets are "
         "CPU-seconds of the benchmark process (all its threads)."),
        "",
    ]
    if "embeddings" in report:
        part = report["embeddings"]
        record = part["pretrain"]
        lines += [
            f"## Embeddings: probes on val (accuracy; {part['n_train']} train, {part['n_val']} val galaxies)",
            "",
            (f"Probes averaged over {settings['repeats']} label subsets; the supervised rotinv CNN from scratch "
             f"uses the first subset, {settings['supervised_budget_s']:.0f} CPU-s at most per fit, checkpoint "
             "chosen on part of its own labels."),
            "",
            *probe_table(part),
            "",
            "## Embeddings: retrieval precision@10 (same class, among the val galaxies)",
            "",
            "| encoder | precision@10 (val) | precision@10 (train+val) |",
            "|---|---|---|",
            *(f"| {name} | {value:.3f} | {part['precision_at_10_all'][name]:.3f} |"
              for name, value in part["precision_at_10"].items()),
            "",
            "Per transformer block (token mean of that block's output; the embedding concatenates them):",
            "",
            "| encoder | " + " | ".join(f"block {i + 1}" for i in range(len(
                part["precision_at_10_by_layer"]["astropt_pretrained"]))) + " |",
            "|---|" + "---|" * len(part["precision_at_10_by_layer"]["astropt_pretrained"]),
            *(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |"
              for name, values in part["precision_at_10_by_layer"].items()),
            "",
            f"Pretraining ({settings['size']}, {settings['patch_size']} px patches): "
            f"{record['train_cpu_seconds']:.0f} CPU-s (budget {record['budget_s']}), {record['epochs_run']} "
            f"epochs on {part['n_pretrain']} galaxies; training loss {record['train_loss'][0]:.4f} (first epoch) "
            f"to {record['train_loss'][-1]:.4f}, best validation loss {record['best_val_loss']:.4f}. "
            "Stage wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in part["seconds"].items()) + ".",
            "",
        ]
    if "diffusion" in report:
        part = report["diffusion"]
        lines += [
            (f"## Diffusion: {RARE} with and without generated galaxies (val: {part['n_val']} galaxies, "
             f"{part['n_val_rare']} {RARE})"),
            "",
            (f"Train split counts: {part['train_counts']}. Generator: class-conditioned, "
             f"{settings['generator_budget_s']:.0f} CPU-s budget, {part['generator']['epochs_run']} epochs "
             f"({part['generator_seconds']:.0f} s wall). Augmented runs add {settings['n_generated']} generated "
             f"{RARE} galaxies (DDIM, {settings['sampler_steps']} steps). Classifier: rotinv, balanced class "
             f"weights, {settings['classifier_budget_s']:.0f} CPU-s each, checkpoint on a tenth of train."),
            "",
            "| seed | generated | completeness | purity | accuracy | wall s |",
            "|---|---|---|---|---|---|",
            *(f"| {r['seed']} | {'yes' if r['augmented'] else 'no'} | {r['completeness']:.3f} | "
              f"{r['purity']:.3f} | {r['accuracy']:.3f} | {r['seconds']:.0f} |" for r in part["runs"]),
            "",
            "| training set | completeness | purity | accuracy |",
            "|---|---|---|---|",
            *(f"| {kind} | " + " | ".join(f"{values[m]['mean']:.3f} ± {values[m]['std']:.3f}"
                                          for m in ("completeness", "purity", "accuracy")) + " |"
              for kind, values in part["summary"].items()),
            "",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred galaxies, budgets of seconds")
    parser.add_argument("--sections", default="embeddings,diffusion", help="comma-separated sections to run")
    parser.add_argument("--accelerator", default="cpu", help="auto, cpu or gpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--save-vectors", type=Path, default=None, help="keep the embeddings in this .npz")
    parser.add_argument("--note", default="", help="words on the machine (e.g. shared with other jobs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = {**(QUICK if args.quick else FULL), "quick": args.quick, "seed": args.seed}
    stem = "gzc_methods_quick" if args.quick else "gzc_methods"
    uptime = subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()
    report = {
        "settings": settings,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads, cuda={torch.cuda.is_available()}; `{uptime}` at start"
        + (f"; {args.note}" if args.note else ""),
    }
    previous = RESULTS / f"{stem}.json"
    if previous.exists():
        # Sections not rerun keep their earlier numbers.
        report = {**json.loads(previous.read_text()), **report}
    start = time.perf_counter()
    stack, gzc = read_gzc(settings, args.seed)
    print(f"read {len(stack)} images in {time.perf_counter() - start:.0f} s", flush=True)

    def save_partial(result: dict) -> None:
        write_report(RESULTS, stem, {**report, "embeddings": result}, markdown({**report, "embeddings": result}))

    sections = {"embeddings": partial(section_embeddings, save_vectors=args.save_vectors, save_partial=save_partial),
                "diffusion": section_diffusion}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.sections.split(","):
            started = time.perf_counter()
            report[name] = sections[name](stack, gzc, settings, args.seed, args.accelerator, Path(scratch))
            report[name]["wall_seconds"] = time.perf_counter() - started
            write_report(RESULTS, stem, report, markdown(report))


if __name__ == "__main__":
    main()
