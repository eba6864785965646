"""Benchmark of the expert loop (issue 15): label the expert queue, or label at random?

On ``../shared/data/gzc`` (five Galaxy Zoo classes, SDSS gri JPEGs), the
catalog's true labels play the expert:

1. a classifier is trained on a small stratified seed set of the ``train``
   split (or ``--init-from MODEL`` is used as it is);
2. it predicts a pool of other ``train`` galaxies; triage with one
   confidence threshold (``--min-confidence``) puts the uncertain ones in the
   expert queue, most uncertain first;
3. two experts each label ``--labels`` galaxies, through the same
   :class:`~tuningfork.data.labels.LabelLog` the explorer writes: one takes
   them from the top of the queue, the other at random from the pool;
4. each set of labels joins the seed labels (``apply_expert_labels``, as
   ``tuningfork train --labels`` does) and the model is fine-tuned from step
   1 (``init_from``) with the same CPU budget;
5. both fine-tuned models are scored on a fixed test set drawn from the
   ``val`` split (never trained on), and on the rest of the queue: the share
   of it they now predict with confidence at or above the threshold.

Walmsley et al. (2020) found that active selection needed 35-60% fewer
labels than random selection for the same accuracy; this measures the
smaller question of which 200 labels help more.

Run it only under the benchmark lock (a few CPU minutes)::

    flock /tmp/tuningfork-bench.lock python benchmarks/bench_active.py --seeds 0 1 2

Writes ``benchmarks/results/active.json`` and ``active.md``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import write_report
from astropy.table import MaskedColumn

from tuningfork.data import GalaxyCollection
from tuningfork.data.labels import LabelLog, apply_expert_labels
from tuningfork.preprocessing import PreprocessConfig
from tuningfork.training import predict, train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
TARGET = "label"


def stratified(labels: np.ndarray, rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` of ``rows`` in proportion to their classes (at least 5 of each), sorted."""
    chosen = []
    for name in np.unique(labels[rows]):
        members = rows[labels[rows] == name]
        take = max(5, round(n * len(members) / len(rows)))
        chosen.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def fit(collection, out: Path, args, seed: int, init_from=None) -> Path:
    preprocess = PreprocessConfig(output_size=args.image_size, stretch="linear")
    result = train(collection, out, TARGET, preprocess=preprocess, epochs=1000, budget_s=args.budget_s,
                   split_column=None, val_fraction=0.2, seed=seed, accelerator="cpu", progress=False,
                   init_from=init_from)
    return result.folder


def scored(model: Path, test, queue_rest, min_confidence: float) -> dict:
    """Accuracy on the test set and confident share of the remaining queue."""
    test_table = predict(model, test, min_confidence=min_confidence)
    truth = np.asarray([str(label) for label in test.catalog[TARGET]])
    queue_table = predict(model, queue_rest, min_confidence=min_confidence)
    return {"test_accuracy": round(float(np.mean(np.asarray(test_table["predicted_class"]) == truth)), 4),
            "test_confident_share": round(float(np.mean(test_table["triage"] == "confident")), 4),
            "queue_confident_share": round(float(np.mean(queue_table["triage"] == "confident")), 4)}


def run_seed(data: GalaxyCollection, args, seed: int, work: Path) -> dict:
    rng = np.random.default_rng(seed)
    labels = np.asarray([str(label) for label in data.catalog[TARGET]])
    split = np.asarray([str(value) for value in data.catalog["split"]])
    train_rows = np.flatnonzero(split == "train")
    test_rows = np.sort(rng.choice(np.flatnonzero(split == "val"), size=args.test_size, replace=False))
    seed_rows = stratified(labels, train_rows, args.seed_size, rng)
    pool_rows = np.sort(rng.choice(np.setdiff1d(train_rows, seed_rows), size=args.pool_size, replace=False))
    started = time.perf_counter()
    base = Path(args.init_from) if args.init_from else fit(data.subset(seed_rows), work / f"base-{seed}", args, seed)
    pool_table = predict(base, data.subset(pool_rows), min_confidence=args.min_confidence)
    queued = np.flatnonzero(pool_table["triage"] == "expert")
    queue = queued[np.argsort(np.asarray(pool_table["expert_rank"])[queued], kind="stable")]
    picks = {"queue": pool_rows[queue[:args.labels]],
             "random": np.sort(rng.choice(pool_rows, size=args.labels, replace=False))}
    test = data.subset(test_rows)
    row = {"seed": seed, "pool": len(pool_rows), "queue": len(queue),
           "base_queue_share": round(len(queue) / len(pool_rows), 4)}
    # The queue left to the experts after the queue strategy took its labels: the same
    # galaxies for both strategies, so their confident shares compare.
    queue_rest = data.subset(np.setdiff1d(pool_rows[queue], np.concatenate(list(picks.values()))))
    row["base"] = scored(base, test, queue_rest, args.min_confidence)
    for name, rows in picks.items():
        log = LabelLog(work / f"labels-{seed}-{name}.sqlite")
        for index in rows:
            log.append(data.ids[index], labels[index], f"oracle-{name}",
                       predicted_class=str(pool_table["predicted_class"][np.searchsorted(pool_rows, index)]))
        # The expert's labels arrive only through the log: the catalog's are blanked first.
        combined = data.subset(np.concatenate([seed_rows, rows]))
        combined.catalog[TARGET] = MaskedColumn(
            [str(label) for label in combined.catalog[TARGET]],
            mask=np.r_[np.zeros(len(seed_rows), bool), np.ones(len(rows), bool)])
        labelled = apply_expert_labels(combined, log, TARGET)
        tuned = fit(labelled, work / f"{name}-{seed}", args, seed, init_from=base)
        classes, counts = np.unique(labels[rows], return_counts=True)
        row[name] = {"labelled": len(labelled),
                     "classes_of_new_labels": {str(c): int(n) for c, n in zip(classes, counts, strict=True)},
                     **scored(tuned, test, queue_rest, args.min_confidence)}
    row["wall_seconds"] = round(time.perf_counter() - started, 1)
    return row


def verdict(report: dict) -> str:
    """Which selection did better on each score, over how many seeds."""
    summary, runs = report["summary"], report["runs"]
    wins = sum(run["queue"]["test_accuracy"] > run["random"]["test_accuracy"] for run in runs)
    better = "the expert queue" if summary["accuracy_difference"] > 0 else "random selection"
    return (f"Test accuracy: {better} did better on average; the queue won {wins} of {len(runs)} seed(s). "
            "The queue's labels are the galaxies the first model was least sure of, so they are spread over "
            "the classes differently from the test set (class counts below). Training stops on a CPU-time "
            "budget, so the epochs each model gets, and the numbers, shift with the machine's load: differences "
            "of a point or two between the two selections are within what a rerun changes.")


def markdown(report: dict) -> str:
    settings = report["settings"]
    lines = [
        "# Expert queue vs random labels (gzc, 5 classes)",
        "",
        (f"Seed set {settings['seed_size']} train galaxies (stratified), pool {settings['pool_size']} other train "
         f"galaxies, {settings['labels']} new labels per strategy, test set {settings['test_size']} val galaxies; "
         f"{settings['image_size']} px, {settings['budget_s']} CPU-s per training, confidence threshold "
         f"{settings['min_confidence']}. `uptime` load {report['machine']['load_average']} at start, "
         f"{report['machine']['cpus']} CPUs. The catalog's true labels play the expert, through the label log."),
        "",
        ("| seed | queue share (base) | test acc base | test acc queue | test acc random | "
         "confident share of remaining queue: base / queue / random |"),
        "|---|---|---|---|---|---|",
    ]
    for row in report["runs"]:
        lines.append(
            f"| {row['seed']} | {row['base_queue_share']:.3f} | {row['base']['test_accuracy']:.3f} | "
            f"{row['queue']['test_accuracy']:.3f} | {row['random']['test_accuracy']:.3f} | "
            f"{row['base']['queue_confident_share']:.3f} / {row['queue']['queue_confident_share']:.3f} / "
            f"{row['random']['queue_confident_share']:.3f} |")
    summary = report["summary"]
    lines += [
        "",
        (f"Mean over {len(report['runs'])} seed(s): test accuracy queue {summary['queue_test_accuracy']:.3f}, "
         f"random {summary['random_test_accuracy']:.3f} (difference {summary['accuracy_difference']:+.3f}); "
         f"confident share of the remaining queue: queue {summary['queue_queue_confident_share']:.3f}, random "
         f"{summary['random_queue_confident_share']:.3f}."),
        "",
        verdict(report),
        "",
        ("Classes of the new labels (queue vs random), first seed: "
         f"{report['runs'][0]['queue']['classes_of_new_labels']} vs "
         f"{report['runs'][0]['random']['classes_of_new_labels']}."),
        "",
        ("Small images, a few hundred labels and a CPU budget of seconds: the numbers compare the two "
         "selections under the same cost, not the accuracy the classifier reaches with real training."),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "gzc" / "catalog_5class.csv")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="Start from this model folder (e.g. gzc-5class) instead of training on the seed set.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--seed-size", type=int, default=300)
    parser.add_argument("--pool-size", type=int, default=2000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--budget-s", type=float, default=30.0)
    parser.add_argument("--min-confidence", type=float, default=0.7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    machine = {"cpus": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2), "threads": args.threads}
    data = GalaxyCollection.open(args.data, label_column=TARGET)
    with tempfile.TemporaryDirectory() as work:
        runs = [run_seed(data, args, seed, Path(work)) for seed in args.seeds]
    mean = {f"{name}_{key}": round(float(np.mean([run[name][key] for run in runs])), 4)
            for name in ("base", "queue", "random") for key in ("test_accuracy", "queue_confident_share")}
    mean["accuracy_difference"] = round(mean["queue_test_accuracy"] - mean["random_test_accuracy"], 4)
    settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    report = {"settings": settings, "machine": machine, "runs": runs, "summary": mean}
    write_report(RESULTS, "active", report, markdown(report))


if __name__ == "__main__":
    main()
