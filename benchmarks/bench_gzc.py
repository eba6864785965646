"""Galaxy Zoo challenge (../shared/data/gzc): every method at scale on real data.

Stages (``--stage``), each adding its own section to
``benchmarks/results/gzc.json`` (earlier sections are kept, so stages can be
run one at a time, alone, under ``flock /tmp/tuningfork-bench.lock``):

``supervised``
    Five classes (``catalog_5class.csv``).  Every model trains on the
    ``train`` split only (``train`` itself holds out a stratified 10% of it
    for checkpoint choice and calibration) and is scored once on the ``val``
    split, which it never saw: accuracy, balanced accuracy, macro-F1,
    per-class recall, ECE, coverage at 95% and 99% accuracy, confusion matrix
    PNG.  The same CPU budget for each network; a PCA + logistic-regression
    floor on pixels.
``best``
    The best network of ``supervised`` trained longer (``--budget-s``), with
    test-time augmentation, and the ensemble of it with its shorter run.
``votes``
    The 17 vote-fraction columns of ``catalog_votes.csv`` under the Galaxy
    Zoo 2 tree (questions 1, 2, 6, 7, 8): RMSE over the 17 cumulative
    columns as the challenge computes it, per-question RMSE and the accuracy
    of the top answer of question 1 on galaxies with >= 0.8 agreement.
``curve``
    Validation accuracy at 10%, 30% and 100% of the training split.
``gz2``
    gz2-spirals (two classes): from scratch against fine-tuning a gzc model
    trained without the gzc galaxies of gz2-spirals' ``val`` split.

Run (alone)::

    flock /tmp/tuningfork-bench.lock .venv/bin/python benchmarks/bench_gzc.py --stage supervised --budget-s 600
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_report
from bench_inference import machine_info

from tuningfork.data import GalaxyCollection
from tuningfork.training import train
from tuningfork.training.evaluate import evaluate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
GZC = SHARED / "gzc"
RESULTS = Path(__file__).resolve().parent / "results"
REPORT = RESULTS / "gzc.json"
#: The networks compared at one budget, with the training options of each.
NETWORKS = {
    "rotinv": {"architecture": "rotinv"},
    # The Astroformer recipe for small data: mixup/cutmix regularisation, and
    # standardised inputs for a layer-normalised transformer.
    "hybrid": {"architecture": "hybrid", "mixup": 0.2, "cutmix": 0.2,
               "preprocess": {"normalisation": "zscore"}},
    "convnext": {"architecture": "convnext_atto"},
}
IMAGE_SIZE = 64


def five_class() -> tuple[GalaxyCollection, GalaxyCollection]:
    """The ``train`` and ``val`` splits of catalog_5class.csv."""
    gzc = GalaxyCollection.open(GZC / "catalog_5class.csv", label_column="label")
    split = np.asarray([str(value) for value in gzc.catalog["split"]])
    return gzc.subset(np.flatnonzero(split == "train")), gzc.subset(np.flatnonzero(split == "val"))


def scores(metrics: dict, classes: list[str]) -> dict:
    """The headline numbers of an ``evaluate`` metrics dict."""
    return {
        "accuracy": metrics["accuracy"], "balanced_accuracy": metrics["balanced_accuracy"],
        "macro_f1": metrics["macro_f1"], "ece": metrics["ece"],
        "coverage_at_0.95": metrics["coverage_at_0.95"], "coverage_at_0.99": metrics["coverage_at_0.99"],
        "recall": {name: metrics["per_class"][name]["recall"] for name in classes},
        "confusion_matrix": metrics["confusion_matrix"],
    }


def train_and_score(name: str, train_set, val_set, work: Path, budget_s: float, seed: int, tta: bool = False,
                    **options) -> dict:
    """Train one network on ``train_set``, evaluate it on ``val_set``; the folder stays in ``work``."""
    preprocess = {"output_size": IMAGE_SIZE, **options.pop("preprocess", {})}
    started = time.perf_counter()
    result = train(train_set, work / name, "label", preprocess=preprocess, budget_s=budget_s, epochs=1000,
                   split_column=None, val_fraction=0.1, seed=seed, accelerator="cpu", progress=False,
                   overwrite=True, **options)
    metrics = evaluate(work / name, val_set, work / f"{name}-eval", tta=tta, progress=False, overwrite=True)
    shutil.copy(work / f"{name}-eval" / "confusion_matrix.png", RESULTS / f"gzc_{name}_confusion.png")
    return {
        "options": {key: value for key, value in options.items() if key != "extra_train"} | {"preprocess": preprocess},
        "epochs_run": result.metrics["epochs_run"],
        "train_cpu_seconds": round(result.metrics["train_cpu_seconds"], 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "tta": tta,
        "folder": str(work / name),
        **scores(metrics, result.config.class_names),
    }


def pixel_floor(train_set, val_set, seed: int) -> dict:
    """PCA (50 components) + logistic regression on 32 px pixels: the floor any network must beat."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tuningfork.preprocessing import PreprocessConfig, Preprocessor

    preprocessor = Preprocessor(PreprocessConfig(output_size=32, crop_fraction=0.5))
    started = time.process_time()
    x_train = train_set.read_images(preprocessor, 256, False).reshape(len(train_set), -1)
    x_val = val_set.read_images(preprocessor, 256, False).reshape(len(val_set), -1)
    y_train = np.asarray([str(v) for v in train_set.catalog["label"]])
    y_val = np.asarray([str(v) for v in val_set.catalog["label"]])
    model = make_pipeline(StandardScaler(), PCA(50, random_state=seed),
                          LogisticRegression(max_iter=2000, class_weight="balanced"))
    model.fit(x_train, y_train)
    predicted = model.predict(x_val)
    classes = sorted(set(y_train))
    return {
        "options": {"pixels": "32 px, central half", "pca": 50, "classifier": "logistic, balanced"},
        "train_cpu_seconds": round(time.process_time() - started, 1),
        "accuracy": float((predicted == y_val).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y_val, predicted)),
        "macro_f1": float(f1_score(y_val, predicted, average="macro")),
        "recall": {name: float((predicted[y_val == name] == name).mean()) for name in classes},
    }


def load_report() -> dict:
    return json.loads(REPORT.read_text()) if REPORT.exists() else {}


def _f(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def supervised_table(rows: dict, classes: list[str]) -> list[str]:
    lines = ["| model | budget CPU-s | epochs | accuracy | balanced acc. | macro-F1 | ECE | cov@95% | cov@99% | "
             + " | ".join(f"recall {name}" for name in classes) + " |",
             "|---|---|---|---|---|---|---|---|---|" + "---|" * len(classes)]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {_f(row.get('train_cpu_seconds'), 0)} | {row.get('epochs_run', '-')} | {_f(row['accuracy'])} | "
            f"{_f(row['balanced_accuracy'])} | {_f(row['macro_f1'])} | {_f(row.get('ece'))} | "
            f"{_f(row.get('coverage_at_0.95'))} | {_f(row.get('coverage_at_0.99'))} | "
            + " | ".join(_f(row["recall"].get(name)) for name in classes) + " |")
    return lines


def markdown(report: dict) -> str:
    """Every section measured so far, as one markdown page."""
    lines = ["# Galaxy Zoo challenge benchmarks (benchmarks/bench_gzc.py)", "",
             ("Real SDSS gri composites of ../shared/data/gzc (128 px, 0.79\"/px). Networks train on the `train` "
             "split (a stratified 10% of it held out for checkpoint choice and calibration) and are scored on "
             "`val`, never seen in training. CPU only; budgets are CPU-seconds of the training process."), ""]
    for key, title in (("supervised", "Five classes, one budget for each"), ("best", "The best network, longer")):
        section = report.get(key)
        if not section:
            continue
        lines += [f"## {title}", "", (f"Machine: {section['machine']}; {section['n_train']} training, "
                  f"{section['n_val']} val galaxies; {IMAGE_SIZE} px input."), ""]
        lines += supervised_table(section["models"], section["classes"]) + [""]
        lines += [section.get("notes", ""), ""]
    for key in ("votes", "curve", "gz2"):
        if report.get(key):
            lines += report[key]["markdown"] + [""]
    return "\n".join(lines)


def stage_supervised(args, work: Path) -> dict:
    train_set, val_set = five_class()
    models = {}
    for name in args.models.split(","):
        print(f"== {name}", flush=True)
        if name == "pca":
            models[name] = pixel_floor(train_set, val_set, args.seed)
        else:
            models[name] = train_and_score(name, train_set, val_set, work, args.budget_s, args.seed,
                                           **dict(NETWORKS[name]))
        print(json.dumps({k: v for k, v in models[name].items() if k != "confusion_matrix"}), flush=True)
    earlier = load_report().get("supervised", {}).get("models", {})
    return {"machine": machine_info(), "n_train": len(train_set), "n_val": len(val_set),
            "classes": sorted({str(v) for v in train_set.catalog["label"]}), "budget_s": args.budget_s,
            "models": earlier | models}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", required=True, choices=["supervised", "best", "votes", "curve", "gz2"])
    parser.add_argument("--models", default="pca,rotinv,hybrid,convnext")
    parser.add_argument("--budget-s", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gzc-work"))
    args = parser.parse_args()
    if not GZC.exists():
        sys.exit(f"{GZC} not found: this benchmark needs ../shared/data/gzc")
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    section = {"supervised": stage_supervised}[args.stage](args, args.work)
    report = load_report() | {args.stage: section}
    write_report(RESULTS, "gzc", report, markdown(report))


if __name__ == "__main__":
    main()
