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
    test-time augmentation, and the ensemble of it with another run
    (``--ensemble-with``).
``ensemble``
    Adds to ``best`` the row of several trained networks together
    (``--ensemble-with A,B,...``), each with test-time augmentation.
``votes``
    The 17 vote-fraction columns of ``catalog_votes.csv`` under the Galaxy
    Zoo 2 tree (questions 1, 2, 6, 7, 8): RMSE over the 17 cumulative
    columns as the challenge computes it, per-question RMSE and the accuracy
    of the top answer of question 1 on galaxies with >= 0.8 agreement.  From
    scratch, or (``--pretrain-budget-s``) fine-tuned from a five-class model.
``curve``
    Validation accuracy at 10%, 30% and 100% of the training split.
``gz2``
    gz2-spirals (two classes): from scratch against fine-tuning a gzc model
    trained without the gzc galaxies of gz2-spirals' ``val`` split.
``ship``
    Copies the single five-class network of ``best`` with the highest
    balanced accuracy, and the vote model of lowest RMSE, into the package
    with their cards.

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
        "precision": result.metrics["precision"],
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
    lines = ["| model | precision | budget CPU-s | epochs | accuracy | balanced acc. | macro-F1 | ECE | cov@95% | cov@99% | "
             + " | ".join(f"recall {name}" for name in classes) + " |",
             "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(classes)]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row.get('precision', '32-true' if 'epochs_run' in row else '-')} | "
            f"{_f(row.get('train_cpu_seconds'), 0)} | {row.get('epochs_run', '-')} | {_f(row['accuracy'])} | "
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
    for key in ("votes", "curve", "gz2", "gz1", "clustering"):
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


def stratified_part(collection: GalaxyCollection, fraction: float, seed: int) -> GalaxyCollection:
    """A seeded, class-stratified share of a labelled collection."""
    from sklearn.model_selection import train_test_split

    if fraction >= 1.0:
        return collection
    labels = np.asarray([str(v) for v in collection.catalog["label"]])
    rows, _ = train_test_split(np.arange(len(labels)), train_size=fraction, random_state=seed, stratify=labels)
    return collection.subset(np.sort(rows))


def val_probabilities(folder: Path, val_set, tta: bool) -> np.ndarray:
    from tuningfork.training import predict

    table = predict(folder, val_set, tta=tta, progress=False)
    return np.stack([np.asarray(table[name]) for name in table.colnames if name.startswith("prob_")], axis=1)


def ensemble_row(folders: list[Path], val_set, classes: list[str]) -> dict:
    """The scores of several trained networks together, each with TTA: their mean probabilities."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    truth = np.asarray([str(v) for v in val_set.catalog["label"]])
    mean = np.mean([val_probabilities(folder, val_set, True) for folder in folders], axis=0)
    predicted = np.asarray(classes)[mean.argmax(axis=1)]
    return {
        "accuracy": float((predicted == truth).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro")),
        "recall": {name: float((predicted[truth == name] == name).mean()) for name in classes},
        "members": [str(folder) for folder in folders],
    }


def stage_ensemble(args, work: Path) -> dict:
    """The ``best`` section with one more row: the networks of ``--ensemble-with`` (comma-separated) together."""
    section = load_report()["best"]
    folders = [Path(folder) for folder in args.ensemble_with.split(",")]
    missing = [str(folder) for folder in folders if not (folder / "config.json").is_file()]
    if missing:
        sys.exit(f"not model folders: {', '.join(missing)}")
    _, val_set = five_class()
    name = f"ensemble({', '.join(folder.name for folder in folders)})+tta"
    return section | {"models": section["models"] | {name: ensemble_row(folders, val_set, section["classes"])}}


def stage_best(args, work: Path) -> dict:
    """The best network of the one-budget comparison, trained ``--budget-s``; with TTA; ensembled with another run.

    Rows of earlier runs at other budgets are kept; the partner of the
    ensemble is ``--ensemble-with`` (by default the one-budget run's folder).
    """
    report = load_report()
    supervised = report["supervised"]
    networks = {name: row for name, row in supervised["models"].items() if name in NETWORKS}
    best = max(networks, key=lambda name: networks[name]["accuracy"])
    partner = Path(args.ensemble_with) if args.ensemble_with else work / best
    if not (partner / "config.json").is_file():
        sys.exit(f"{partner}: no model folder to ensemble with (pass --ensemble-with FOLDER)")
    train_set, val_set = five_class()
    # A seed other than the first is named, so that its rows sit beside the first seed's.
    long_name = f"{best}-long-{args.budget_s:g}s" + (f"-seed{args.seed}" if args.seed else "")
    models = dict(report.get("best", {}).get("models", {}))
    models[long_name] = train_and_score(long_name, train_set, val_set, work, args.budget_s, args.seed,
                                        **dict(NETWORKS[best])) | {"budget_s": args.budget_s}
    models[f"{long_name}+tta"] = scores(
        evaluate(work / long_name, val_set, work / f"{long_name}-tta-eval", tta=True, progress=False, overwrite=True),
        supervised["classes"]) | {"train_cpu_seconds": models[long_name]["train_cpu_seconds"],
                                  "epochs_run": models[long_name]["epochs_run"], "tta": True}
    shutil.copy(work / f"{long_name}-tta-eval" / "confusion_matrix.png", RESULTS / f"gzc_{long_name}_tta_confusion.png")
    classes = supervised["classes"]
    models[f"ensemble({long_name}, {partner.name})+tta"] = ensemble_row([work / long_name, partner], val_set, classes)
    return {"machine": machine_info(), "n_train": len(train_set), "n_val": len(val_set), "classes": classes,
            "network": best, "budget_s": args.budget_s, "models": models}


def _shipped_row(name: str, section: dict) -> dict:
    """The measured row a shipped model comes from: the best of its section, whether or not its folder is left.

    For ``gzc-5class`` the single network with the highest balanced
    accuracy (rather than plain accuracy: with cigar_smooth at 2% of the
    galaxies, the 3,600 and 7,200 CPU-s runs were one galaxy apart in
    accuracy and 0.023 apart in cigar recall); for ``gzc-votes`` the lowest
    RMSE.  A best row whose folder is gone is not replaced by a worse one.
    """
    if name == "gzc-5class":
        rows = [row for row in section["models"].values() if row.get("folder")]
        return max(rows, key=lambda row: (row["balanced_accuracy"], row["accuracy"]))
    return min(section["rows"].values(), key=lambda row: row["rmse"])


def votes_row(train_set, val_set, folder: Path, budget_s: float, seed: int, **options) -> dict:
    """Train the 17 vote-fraction columns under the Galaxy Zoo 2 tree; score them on ``val_set``."""
    started = time.perf_counter()
    preprocess = {"output_size": IMAGE_SIZE, **options.pop("preprocess", {})}
    result = train(train_set, folder, tree="gz2", preprocess=preprocess, budget_s=budget_s, epochs=1000,
                   split_column=None, val_fraction=0.1, seed=seed, accelerator="cpu", progress=False,
                   overwrite=True, **options)
    metrics = evaluate(folder, val_set, folder.with_name(f"{folder.name}-eval"), progress=False, overwrite=True)
    return {"tree": result.config.target["tree"], "epochs_run": result.metrics["epochs_run"],
            "budget_s": budget_s, "train_cpu_seconds": round(result.metrics["train_cpu_seconds"], 1),
            "wall_seconds": round(time.perf_counter() - started, 1), "rmse": metrics["rmse"],
            "rmse_per_question": metrics.get("rmse_per_question"),
            "high_agreement_accuracy_q1": metrics.get("high_agreement_accuracy"),
            "high_agreement_n": metrics.get("high_agreement_n"), "folder": str(folder)}


def five_class_base(held_out: set[str], folder: Path, budget_s: float, seed: int) -> int:
    """Train the five-class rotinv on gzc's train split less the ``held_out`` ids; return how many were left out.

    The base of a fine-tuning row must not have seen the galaxies that row
    is scored on (the gzc catalogs and gz2-spirals share galaxies).
    """
    train_set, _ = five_class()
    keep = np.flatnonzero([galaxy not in held_out for galaxy in train_set.ids])
    print(f"== base {folder.name}: gzc train without {len(train_set) - len(keep)} held-out galaxies", flush=True)
    train(train_set.subset(keep), folder, "label", preprocess={"output_size": IMAGE_SIZE}, budget_s=budget_s,
          epochs=1000, split_column=None, val_fraction=0.1, seed=seed, accelerator="cpu", progress=False,
          overwrite=True)
    return len(train_set) - len(keep)


def stage_votes(args, work: Path) -> dict:
    """The 17 vote-fraction columns under the Galaxy Zoo 2 tree: from scratch, or from a five-class model.

    With ``--pretrain-budget-s`` the five-class network is first trained on
    gzc's train split less the vote catalog's val galaxies (they overlap),
    then fine-tuned on the votes with layer-wise learning-rate decay; else
    the network trains from scratch.  Rows of the other start are kept.
    """
    from tuningfork.models import read_config

    gzc = GalaxyCollection.open(GZC / "catalog_votes.csv")
    split = np.asarray([str(value) for value in gzc.catalog["split"]])
    train_set, val_set = gzc.subset(np.flatnonzero(split == "train")), gzc.subset(np.flatnonzero(split == "val"))
    columns = [c for c in gzc.catalog.colnames if c.startswith("Class")]
    truth = np.stack([np.asarray(val_set.catalog[c], dtype=float) for c in columns], axis=1)
    mean = np.stack([np.asarray(train_set.catalog[c], dtype=float) for c in columns], axis=1).mean(axis=0)
    rows = dict(load_report().get("votes", {}).get("rows", {}))
    if args.pretrain_budget_s:
        base = work / "votes-base"
        left_out = five_class_base(set(val_set.ids), base, args.pretrain_budget_s, args.seed)
        crop = read_config(base)[0].preprocessing["crop_pixels"]
        rows["from the five-class model"] = votes_row(
            train_set, val_set, work / "votes-pretrained", args.budget_s, args.seed, init_from=base,
            layer_decay=0.75, crop=None, preprocess={"crop_pixels": crop}) | {
            "pretrain_budget_s": args.pretrain_budget_s, "base_left_out": left_out,
            "stage_args": f"--stage votes --budget-s {args.budget_s:g} --pretrain-budget-s {args.pretrain_budget_s:g}"}
    else:
        rows["from scratch"] = votes_row(train_set, val_set, work / "votes", args.budget_s, args.seed) | {
            "stage_args": f"--stage votes --budget-s {args.budget_s:g}"}
    mean_rmse = float(np.sqrt(((truth - mean) ** 2).mean()))
    machine = machine_info()
    return {"mean_predictor_rmse": mean_rmse, "rows": rows, "machine": machine,
            "markdown": votes_markdown(rows, len(train_set), len(val_set), mean_rmse, machine)}


def votes_markdown(rows: dict, n_train: int, n_val: int, mean_rmse: float, machine: dict) -> list[str]:
    """The vote-fraction section of gzc.md: one row per start."""
    lines = ["## Vote fractions (catalog_votes.csv, 17 columns)", "",
             (f"{n_train} training, {n_val} val galaxies; rotinv {IMAGE_SIZE} px; tree "
              f"`{next(iter(rows.values()))['tree']}`; mean predictor (train means) RMSE {mean_rmse:.4f}. "
              f"Machine: {machine}."), "",
             ("| start | CPU-s | epochs | RMSE over the 17 cumulative columns (target <= 0.085) | question 1 "
              "top-answer accuracy, >= 0.8 agreement (target >= 0.99) | per-question RMSE |"),
             "|---|---|---|---|---|---|"]
    for start, row in rows.items():
        per_question = ", ".join(f"{q} {v:.3f}" for q, v in (row["rmse_per_question"] or {}).items())
        cpu = (f"{row['pretrain_budget_s']:.0f} five-class + {row['train_cpu_seconds']:.0f}"
               if "pretrain_budget_s" in row else f"{row['train_cpu_seconds']:.0f}")
        lines.append(f"| {start} | {cpu} | {row['epochs_run']} | {row['rmse']:.4f} | "
                     f"{_f(row['high_agreement_accuracy_q1'])} ({row['high_agreement_n']} galaxies) | "
                     f"{per_question} |")
    if "from the five-class model" in rows:
        left_out = rows["from the five-class model"]["base_left_out"]
        none = " (none: the two catalogs' splits agree on the galaxies they share)" if not left_out else ""
        lines += ["", (f"The five-class model trained on gzc's train split less the {left_out} galaxies of the "
                       f"vote catalog's val split it holds{none}, then fine-tuned on the votes (layer decay 0.75, "
                       "its crop).")]
    lines += ["", "Per-question RMSE: per-question fractions, where answered."]
    return lines


def stage_curve(args, work: Path) -> dict:
    """Val accuracy at 10%, 30% (and, from ``supervised``, 100%) of the training split, same budget."""
    train_set, val_set = five_class()
    rows = {}
    for fraction in (0.1, 0.3):
        part = stratified_part(train_set, fraction, args.seed)
        name = f"rotinv-{int(fraction * 100)}pc"
        print(f"== {name}: {len(part)} galaxies", flush=True)
        rows[name] = train_and_score(name, part, val_set, work, args.budget_s, args.seed) | {"n_train": len(part)}
    full = load_report().get("supervised", {}).get("models", {}).get("rotinv")
    if full:
        rows["rotinv-100pc"] = full | {"n_train": len(train_set)}
    lines = ["## Data-size curve (rotinv, same CPU budget)", "",
             "| training share | galaxies | epochs | val accuracy | balanced acc. | recall cigar_smooth |",
             "|---|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name.split('-')[1]} | {row['n_train']} | {row['epochs_run']} | {row['accuracy']:.3f} | "
                     f"{row['balanced_accuracy']:.3f} | {row['recall']['cigar_smooth']:.3f} |")
    return {"machine": machine_info(), "budget_s": args.budget_s, "rows": rows, "markdown": lines}


def _matching_crop(gzc_folder: Path) -> int:
    """Crop, in pixels of a 424 px challenge JPEG, covering the sky a gzc model sees.

    gzc stamps are the central 256 px of those JPEGs at half resolution, so a
    crop of C gzc pixels covers 2C JPEG pixels.
    """
    from tuningfork.models import read_config

    config, _ = read_config(gzc_folder)
    return 2 * int(config.preprocessing["crop_pixels"] or 128)


#: The label shares of the fine-tuning rows.
FRACTIONS = (0.01, 0.1, 1.0)


def label_share(rows: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified ``fraction`` of ``rows``, with at least two galaxies of each class (one to train on, one
    to validate), so every model knows every class."""
    from sklearn.model_selection import train_test_split

    if fraction >= 1.0:
        return rows
    kept, _ = train_test_split(rows, train_size=fraction, random_state=seed, stratify=labels[rows])
    rng = np.random.default_rng(seed)
    extra = [rng.choice(rows[labels[rows] == name], 2, replace=False) for name in np.unique(labels[rows])
             if np.sum(labels[kept] == name) < 2]
    return np.unique(np.concatenate([kept, *extra]))


def fine_tune_rows(name: str, train_set, test_set, base: Path, work: Path, budget_s: float, seed: int,
                   label: str, crop: int, split_column: str | None) -> dict:
    """From scratch, full fine-tuning with layer decay, and head only, at one budget each."""
    preprocess = {"output_size": IMAGE_SIZE, "crop_pixels": crop}
    variants = {"scratch": {}, "fine-tune (layer decay 0.75)": {"init_from": base, "layer_decay": 0.75},
                "head only": {"init_from": base, "freeze_encoder": True}}
    # With a split column its val rows choose the checkpoint: they are not training labels.
    n_train = (len(train_set) if split_column is None else
               int(np.sum(np.asarray([str(v) for v in train_set.catalog[split_column]]) == "train")))
    rows = {}
    for variant, options in variants.items():
        folder = work / f"{name}-{variant.split()[0]}"
        result = train(train_set, folder, label, preprocess=preprocess, budget_s=budget_s, epochs=1000,
                       split_column=split_column, val_fraction=0.2, seed=seed, accelerator="cpu", progress=False,
                       overwrite=True, crop=None, **options)
        metrics = evaluate(folder, test_set, work / f"{folder.name}-eval", label_column=label, progress=False,
                           overwrite=True)
        rows[variant] = {"n_train": n_train, "epochs_run": result.metrics["epochs_run"],
                         "train_cpu_seconds": round(result.metrics["train_cpu_seconds"], 1),
                         "accuracy": metrics["accuracy"], "balanced_accuracy": metrics["balanced_accuracy"],
                         "macro_f1": metrics["macro_f1"]}
        print(name, variant, json.dumps(rows[variant]), flush=True)
    return rows


def _fine_tune_table(title: str, rows: dict) -> list[str]:
    lines = [title, "", "| labels | galaxies | start | epochs | CPU-s | accuracy | balanced acc. | macro-F1 |",
             "|---|---|---|---|---|---|---|---|"]
    for share, variants in rows.items():
        for variant, row in variants.items():
            lines.append(f"| {share} | {row['n_train']} | {variant} | {row['epochs_run']} | "
                         f"{row['train_cpu_seconds']:.0f} | {row['accuracy']:.3f} | {row['balanced_accuracy']:.3f} | "
                         f"{row['macro_f1']:.3f} |")
    return lines


def stage_gz2(args, work: Path) -> dict:
    """gz2-spirals: from scratch against fine-tuning a gzc model that never saw gz2-spirals' val galaxies."""
    spirals = GalaxyCollection.open(SHARED / "gz2-spirals" / "catalog.csv", label_column="label")
    split = np.asarray([str(v) for v in spirals.catalog["split"]])
    held_out = {spirals.ids[row] for row in np.flatnonzero(split == "val")}
    base = work / "gzc-without-gz2-val"
    left_out = five_class_base(held_out, base, args.budget_s, args.seed)
    labels = np.asarray([str(v) for v in spirals.catalog["label"]])
    train_rows, val_rows = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
    rows = {}
    for fraction in FRACTIONS:
        # Only the train split is cut: its val split still chooses the checkpoint and is scored.
        part = spirals.subset(np.concatenate([label_share(train_rows, labels, fraction, args.seed), val_rows]))
        rows[f"{fraction:.0%}"] = fine_tune_rows(f"gz2-{fraction:g}", part, spirals.subset(val_rows), base, work,
                                                 args.fine_tune_budget_s, args.seed, "label", _matching_crop(base),
                                                 "split")
    lines = _fine_tune_table(
        f"## gz2-spirals: from scratch vs fine-tuning a gzc model at 1%, 10%, 100% of its train split "
        f"({args.fine_tune_budget_s:.0f} CPU-s each)", rows)
    lines += ["", f"The gzc model ({args.budget_s:.0f} CPU-s) trained without the {left_out} gzc "
              "galaxies that are in gz2-spirals' val split. gz2-spirals' val split chooses the checkpoint and is "
              "scored (as in every earlier gz2-spirals number). Machine: " + str(machine_info()) + "."]
    return {"rows": rows, "markdown": lines}


def stage_gz1(args, work: Path) -> dict:
    """gz1 (5 merged classes): fine-tuning a gzc model against from scratch at 1%, 10%, 100% of its labels."""
    from bench_gz1 import TARGET, gz1_split

    base = Path(args.base) if args.base else work / "rotinv-long"
    train_set, test_set = gz1_split(args.seed)
    rows = {}
    labels = np.asarray([str(v) for v in train_set.catalog[TARGET]])
    for fraction in FRACTIONS:
        part = train_set.subset(label_share(np.arange(len(labels)), labels, fraction, args.seed))
        rows[f"{fraction:.0%}"] = fine_tune_rows(f"gz1-{fraction:g}", part, test_set, base, work,
                                                 args.fine_tune_budget_s, args.seed, TARGET, _matching_crop(base),
                                                 None)
    lines = _fine_tune_table(f"## gz1: fine-tuning the gzc model vs from scratch ({args.fine_tune_budget_s:.0f} "
                             "CPU-s each; scored on bench_gz1's 25% held-out split)", rows)
    lines += ["", f"Base model: {base}. Machine: {machine_info()}."]
    return {"rows": rows, "markdown": lines}


def stage_clustering(args, work: Path) -> dict:
    """Voting clustering of gzc val (the pipeline's defaults) against k-means on the same features."""
    from tuningfork.clustering import ClusterConfig, run_cluster_pipeline

    gzc = GalaxyCollection.open(GZC / "catalog_5class.csv", label_column="label")
    val = gzc.subset(np.flatnonzero(np.asarray([str(v) for v in gzc.catalog["split"]]) == "val"))
    rows = {}
    for encoder in args.encoders.split(","):
        started = time.perf_counter()
        config = ClusterConfig(label_column="label", encoder=encoder, seed=args.seed, embedding_map="pca")
        result = run_cluster_pipeline(val, work / f"clusters-{encoder.replace('/', '_')}", config, force=True,
                                      overwrite=True, log=print)
        rows[encoder] = {"scores": result.scores, "wall_seconds": round(time.perf_counter() - started, 1),
                         "k": config.n_clusters}
    lines = ["## Unsupervised: voting clustering on gzc val", "",
             (f"{len(val)} val galaxies, five classes used only to score the groups; pipeline defaults "
             f"(k = {config.n_clusters}, bootstrap voting, threshold {config.threshold}). The paper classifies 53%. "
             f"Machine: {machine_info()}."), "",
             "| encoder | method | classified | purity | ARI | NMI |", "|---|---|---|---|---|---|"]
    for encoder, row in rows.items():
        for method, score in row["scores"].items():
            lines.append(f"| {encoder} | {method} | {_f(score.get('fraction_classified'))} | "
                         f"{_f(score.get('purity'))} | {_f(score.get('ari'))} | {_f(score.get('nmi'))} |")
    return {"rows": rows, "markdown": lines}


#: What each shipped model is, and where its metrics come from in the report.
SHIPPED = {
    "gzc-5class": {
        "description": "five Galaxy Zoo challenge classes: round_smooth, in_between_smooth, spiral, edge_on, "
                       "cigar_smooth (rotation-invariant CNN)",
        "catalog": "catalog_5class.csv", "section": "best", "stage_args": "--stage best"},
    "gzc-votes": {
        "description": "Galaxy Zoo 2 vote fractions, questions 1, 2, 6, 7, 8 (17 columns Class1.1 ... Class8.7, "
                     "cumulative as in the challenge's solutions file)",
        "catalog": "catalog_votes.csv", "section": "votes", "stage_args": "--stage votes"},
}
INPUT = ("SDSS gri colour composites (JPEG or PNG) like the Galaxy Zoo challenge's: the central 256 px of a "
         "424 px, 0.396\"/px cutout resized to 128 px (0.79\"/px), galaxy centred; the model crops and resizes "
         "to its own input itself. From full 424 px cutouts, crop the central 256 px first.")


#: Val galaxies (the first, in catalog order) whose score each card records, for the tests to reproduce.
SLICE_ROWS = 300


def slice_check(name: str, catalog: Path) -> dict:
    """The shipped model's score on the first :data:`SLICE_ROWS` val galaxies, by name resolution."""
    collection = GalaxyCollection.open(catalog)
    val = np.flatnonzero(np.asarray([str(v) for v in collection.catalog["split"]]) == "val")[:SLICE_ROWS]
    metrics = evaluate(name, collection.subset(val), Path("/tmp/gzc-work") / f"{name}-slice", progress=False,
                       overwrite=True)
    key = "rmse" if "rmse" in metrics else "accuracy"
    return {"rows": f"first {SLICE_ROWS} rows with split = val", key: metrics[key]}


def stage_ship(args, work: Path) -> dict:
    """Copy the measured models into the package with their cards (weights, config, ONNX graph, card.json)."""
    from tuningfork.models.export import ONNX_FILE, export_onnx
    from tuningfork.models.shipped import CARD_FILE, SHIPPED_ROOT, file_sha256

    report = load_report()
    # Models not shipped again this time keep their earlier cards.
    shipped = dict(report.get("ship", {}))
    for name, spec in SHIPPED.items():
        section = report.get(spec["section"])
        if not section:
            print(f"skipping {name}: run {spec['stage_args']} first")
            continue
        row = _shipped_row(name, section)
        if name == "gzc-5class":
            metrics = {key: round(row[key], 4) for key in ("accuracy", "balanced_accuracy", "macro_f1", "ece")}
            metrics["recall_cigar_smooth"] = round(row["recall"]["cigar_smooth"], 4)
            stage_args = f"{spec['stage_args']} --budget-s {row.get('budget_s', section['budget_s']):g}"
        else:
            metrics = {"rmse": round(row["rmse"], 4),
                       "q1_high_agreement_accuracy": round(row["high_agreement_accuracy_q1"], 4)}
            stage_args = row["stage_args"]
        source = Path(row["folder"])
        if not (source / "config.json").is_file():
            print(f"skipping {name}: the folder of its best run, {source}, is gone (rerun {stage_args}); "
                  "its earlier card stays")
            continue
        target = SHIPPED_ROOT / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for file in ("weights.safetensors", "config.json"):
            shutil.copy(source / file, target / file)
        export_onnx(target)
        catalog = GZC / spec["catalog"]
        card = {
            "description": spec["description"], "input": INPUT,
            "command": f"python benchmarks/bench_gzc.py {stage_args} --seed {args.seed} "
                       "(train split; 10% of it chose the checkpoint and calibrated)",
            "training_catalog": {"file": f"shared/data/gzc/{spec['catalog']}", "sha256": file_sha256(catalog)},
            "metrics": metrics, "metrics_on": "the val split of the catalog, never seen in training",
            "files": {file: file_sha256(target / file) for file in ("weights.safetensors", "config.json", ONNX_FILE)},
        }
        # Written twice: the name resolves only once a card is there.
        (target / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        card["slice_check"] = slice_check(name, catalog)
        (target / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        shipped[name] = card
        print(f"shipped {name}: {metrics}")
    return shipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", required=True, choices=["supervised", "best", "ensemble", "votes", "curve",
                                                          "gz2", "gz1", "clustering", "ship"])
    parser.add_argument("--models", default="pca,rotinv,hybrid,convnext")
    parser.add_argument("--budget-s", type=float, default=600.0)
    parser.add_argument("--fine-tune-budget-s", type=float, default=200.0)
    parser.add_argument("--pretrain-budget-s", type=float, default=0.0,
                        help="votes stage: first train the five-class network this long (without the vote "
                             "catalog's val galaxies) and fine-tune it on the votes; 0: from scratch")
    parser.add_argument("--base", help="gzc model folder the gz1 stage fine-tunes (default: the best stage's)")
    parser.add_argument("--ensemble-with", help="best stage: model folder ensembled with the long run "
                                                "(default: the supervised stage's run of the same network); "
                                                "ensemble stage: the model folders, comma-separated")
    parser.add_argument("--encoders", default="morphology", help="clustering stage: encoders, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gzc-work"))
    args = parser.parse_args()
    if not GZC.exists():
        sys.exit(f"{GZC} not found: this benchmark needs ../shared/data/gzc")
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    stages = {"supervised": stage_supervised, "best": stage_best, "ensemble": stage_ensemble,
              "votes": stage_votes, "curve": stage_curve, "gz2": stage_gz2, "gz1": stage_gz1,
              "clustering": stage_clustering, "ship": stage_ship}
    section = stages[args.stage](args, args.work)
    # The ensemble stage adds a row to the best stage's section.
    report = load_report() | {"best" if args.stage == "ensemble" else args.stage: section}
    write_report(RESULTS, "gzc", report, markdown(report))


if __name__ == "__main__":
    main()
