"""Where independently trained models agree against the gz2-spirals labels.

Every model in ``supervised.md`` plateaus at 85-87% on gz2-spirals.  This
script asks why: it trains ``--members`` rotinv networks from different seeds
(``--budget-s`` CPU seconds each, on the catalog's ``train`` split), scores
them on the ``val`` split with flip TTA, and reports

* each member's accuracy and the accuracy of their average;
* the share of val galaxies that *every* member gets wrong, by label, and
  how confident the average is on them;
* a mosaic of the galaxies all members call spiral while the label says
  non_spiral (and the reverse), most confident first: the galaxies an expert
  should relabel first, and a way to judge whether the errors are the
  model's or the labels'.

Writes ``benchmarks/results/gz2_agreement.json``, ``gz2_agreement.md`` and
``gz2_agreement_mosaic.png``.

    python benchmarks/bench_gz2_agreement.py --members 4 --budget-s 600 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import write_report
from bench_inference import machine_info
from bench_supervised import FULL, RESULTS, gz2_data

from tuningfork.models import load_model
from tuningfork.models.inference import network_logits
from tuningfork.plots import mosaic
from tuningfork.preprocessing import PreprocessConfig, Preprocessor
from tuningfork.training import train
from tuningfork.training.predict import interpret

#: Galaxies shown per disagreement direction in the mosaic.
MOSAIC_PER_GROUP = 16


def member_spiral_probabilities(folder: Path, images: np.ndarray) -> np.ndarray:
    """Calibrated P(spiral) of one model folder on preprocessed images, with flip TTA."""
    model = load_model(folder)
    probabilities = interpret(network_logits(model.network, images, tta=True), model).probabilities
    return probabilities[:, model.config.class_names.index("spiral")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4, help="independently trained rotinv networks")
    parser.add_argument("--budget-s", type=float, default=600.0, help="CPU seconds of training per member")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_set, test_set, preprocess = gz2_data(FULL)
    labels = np.asarray(test_set.catalog["label"]).astype(str)
    is_spiral = labels == "spiral"
    display = test_set.read_images(Preprocessor(PreprocessConfig.from_dict(preprocess.to_dict() | {"output_size": 96})))
    test_images = test_set.read_images(Preprocessor(preprocess))
    members = []
    with tempfile.TemporaryDirectory(prefix="bench-gz2-agreement-") as scratch:
        for seed in range(args.members):
            folder = Path(scratch) / f"rotinv_{seed}"
            train(train_set, folder, architecture="rotinv", preprocess=preprocess, epochs=FULL["max_epochs"],
                  budget_s=args.budget_s, split_column=None, val_fraction=0.15, seed=seed, accelerator="cpu",
                  progress=False, overwrite=True)
            members.append(member_spiral_probabilities(folder, test_images))
            print(f"member {seed}: accuracy {np.mean((members[-1] > 0.5) == is_spiral):.3f}", flush=True)
    members = np.stack(members)
    average = members.mean(axis=0)
    wrong_by_all = np.all((members > 0.5) != is_spiral, axis=0)
    report = {
        "settings": {"members": args.members, "budget_s": args.budget_s, "threads": args.threads,
                     "n_train": len(train_set), "n_test": len(test_set)},
        "machine": machine_info(),
        "member_accuracy": [float(np.mean((p > 0.5) == is_spiral)) for p in members],
        "average_accuracy": float(np.mean((average > 0.5) == is_spiral)),
        "wrong_by_all": float(wrong_by_all.mean()),
        "by_label": {},
    }
    groups = {"non_spiral": ~is_spiral, "spiral": is_spiral}
    for label, rows in groups.items():
        consistent = wrong_by_all & rows
        confidence_against = np.abs(average - is_spiral)[consistent]
        report["by_label"][label] = {
            "n": int(rows.sum()),
            "wrong_by_all": int(consistent.sum()),
            "share_wrong_by_all": float(consistent.sum() / rows.sum()),
            "median_confidence_against_label": float(np.median(confidence_against)) if consistent.any() else None,
        }
    tiles, titles = [], []
    ids = np.asarray(test_set.ids).astype(str)
    for label, rows in groups.items():
        chosen = np.flatnonzero(wrong_by_all & rows)
        chosen = chosen[np.argsort(-np.abs(average - is_spiral)[chosen])][:MOSAIC_PER_GROUP]
        tiles += [display[index] for index in chosen] + [None] * ((-len(chosen)) % 8)
        predicted = "spiral" if label == "non_spiral" else "non_spiral"
        titles += [f"{ids[index]} {label}\nP({predicted})={abs(average[index] - is_spiral[index]):.2f}"
                   for index in chosen] + [""] * ((-len(chosen)) % 8)
    RESULTS.mkdir(parents=True, exist_ok=True)
    figure = RESULTS / "gz2_agreement_mosaic.png"
    mosaic(tiles, figure, titles=titles, ncols=8, already_scaled=True, tile_inches=1.9,
           suptitle="gz2-spirals val galaxies every model gets wrong (catalog label shown)")
    report["mosaic"] = figure.name
    write_report(RESULTS, "gz2_agreement", report, markdown(report))


def markdown(report: dict) -> str:
    """The results as a markdown table."""
    settings = report["settings"]
    lines = [
        "# gz2-spirals: where independently trained models agree against the label",
        "",
        (f"{settings['members']} rotinv networks (seeds 0-{settings['members'] - 1}), {settings['budget_s']:.0f} CPU-s "
         f"each, {settings['threads']} threads, trained on the {settings['n_train']} `train` galaxies and scored with "
         f"flip TTA on the {settings['n_test']} `val` galaxies."),
        "",
        "Member accuracies: " + ", ".join(f"{value:.3f}" for value in report["member_accuracy"])
        + f"; their average: {report['average_accuracy']:.3f}.",
        "",
        f"Misclassified by every member: {report['wrong_by_all']:.1%} of val galaxies.",
        "",
        "| catalog label | galaxies | wrong by every member | share | median P(other class) of the average |",
        "|---|---|---|---|---|",
    ]
    for label, row in report["by_label"].items():
        median = "-" if row["median_confidence_against_label"] is None else f"{row['median_confidence_against_label']:.2f}"
        lines.append(f"| {label} | {row['n']} | {row['wrong_by_all']} | {row['share_wrong_by_all']:.1%} | {median} |")
    lines += ["", f"Mosaic of those galaxies, most confident first: `{report['mosaic']}`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
