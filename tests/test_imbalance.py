"""Class imbalance (issue 12, item 1): weights, loss, warnings, crop, and a short real gz1 run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from astropy.table import Table
from sklearn.metrics import balanced_accuracy_score
from typer.testing import CliRunner

from tuningfork.cli import app
from tuningfork.data import GalaxyCollection
from tuningfork.models import load_model
from tuningfork.models.inference import network_logits
from tuningfork.training.datamodule import Target, class_codes
from tuningfork.training.fit import (
    TrainingWarning,
    near_chance_balanced_accuracy,
    train,
    training_warnings,
)
from tuningfork.training.losses import balanced_class_weights, classification_loss, imbalance_ratio
from tuningfork.training.predict import model_images

torch.set_num_threads(2)
runner = CliRunner()

# gz1 training slice: imbalanced like gz1 (largest / smallest 8), three classes
# a small network can tell apart in a few seconds of CPU.
SLICE = {"elliptical": 200, "edge_on": 50, "spiral": 25}
HELD_OUT = {"elliptical": 50, "edge_on": 25, "spiral": 25}


def _minimiser(loss, n_classes: int) -> np.ndarray:
    logits = torch.zeros(1, n_classes, requires_grad=True)
    optimiser = torch.optim.Adam([logits], lr=0.1)
    for _ in range(1500):
        optimiser.zero_grad()
        loss(logits).backward()
        optimiser.step()
    return torch.softmax(logits, dim=1).detach().numpy()[0]


def test_weighted_smoothed_loss_keeps_a_common_galaxy_in_its_class():
    # gz1-like inverse-frequency weights: common class 0, rare classes 2 and 3.
    weights = torch.tensor([0.3, 1.6, 20.0, 30.0])
    target = torch.tensor([0])
    ours = _minimiser(lambda z: classification_loss(z, target, 0.1, weights), 4)
    torchs = _minimiser(lambda z: F.cross_entropy(z, target, weight=weights, label_smoothing=0.1), 4)
    # torch's weighted smoothing calls the galaxy the rarest class: the collapse.
    assert torchs.argmax() == 3
    assert ours.argmax() == 0 and ours[0] > 0.9


def test_weighted_loss_weighs_each_galaxy_by_its_true_class():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    targets = torch.tensor([0, 1, 1])
    weights = torch.tensor([1.0, 3.0])
    per_galaxy = F.cross_entropy(logits, targets, reduction="none")
    expected = (per_galaxy * weights[targets]).sum() / weights[targets].sum()
    assert classification_loss(logits, targets, 0.0, weights).item() == pytest.approx(expected.item())
    # Soft (mixup) targets carry the expected weight of their classes.
    soft = F.one_hot(targets, 2).float()
    assert classification_loss(logits, soft, 0.0, weights).item() == pytest.approx(expected.item())
    assert classification_loss(logits, targets, 0.0).item() == pytest.approx(per_galaxy.mean().item())


def test_sqrt_weights_are_finite_and_softer_than_inverse_frequency():
    labels = np.repeat([0, 1, 2], [820, 90, 10])
    inverse = balanced_class_weights(labels, 4)
    soft = balanced_class_weights(labels, 4, power=0.5)
    assert np.isfinite(soft).all() and soft[3] == 0.0
    counts = np.bincount(labels, minlength=4)
    # Mean weight one per galaxy, as the unweighted loss.
    assert (counts * soft).sum() / counts.sum() == pytest.approx(1.0)
    assert soft[2] / soft[0] == pytest.approx(np.sqrt(inverse[2] / inverse[0]), rel=1e-5)
    assert soft[2] / soft[0] < inverse[2] / inverse[0]
    assert imbalance_ratio(labels, 3) == pytest.approx(82.0)
    assert imbalance_ratio(labels, 4) == np.inf


def test_near_chance_and_few_epoch_warnings():
    five = Target("classes", "label", list("abcde"))
    assert near_chance_balanced_accuracy(5) == pytest.approx(0.3)
    assert near_chance_balanced_accuracy(2) == pytest.approx(0.6)
    # The model: 0.288 balanced accuracy over five classes.
    assert any("near chance" in note for note in training_warnings({"val_balanced_accuracy": 0.288}, five, None))
    assert training_warnings({"val_balanced_accuracy": 0.55}, five, 7) == []
    notes = training_warnings({"val_balanced_accuracy": 0.55}, five, 1)
    assert len(notes) == 1 and notes[0].startswith("budget reached after 1 epoch")


def test_a_one_epoch_budget_warns(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(48, 1, 16, 16)).astype(np.float32)
    table = Table({"id": [f"g{i}" for i in range(48)], "label": ["a", "b"] * 24,
                   "split": np.where(np.arange(48) < 36, "train", "val")})
    collection = GalaxyCollection.from_arrays(images, table)
    with pytest.warns(TrainingWarning, match="budget reached after 1 epoch"):
        result = train(collection, tmp_path / "m", image_size=16, epochs=50, budget_s=1e-3, batch_size=8,
                       progress=False, crop=None, architecture_options={"widths": (4, 8), "view_features": 8,
                                                                         "hidden": 8})
    assert result.metrics["epochs_run"] == 1
    assert any(note.startswith("budget reached") for note in result.metrics["warnings"])


def _gz1_slice(shared_data, tmp_path_factory):
    """Catalog files (absolute image paths into the shared folder) for a training slice and held-out rows."""
    gz1 = GalaxyCollection.open(shared_data / "gz1" / "catalog.csv")
    labels = np.asarray([str(label) for label in gz1.catalog["label_merged"]])
    rng = np.random.default_rng(0)
    chosen = {name: rng.permutation(np.flatnonzero(labels == name)) for name in SLICE}
    train_rows = np.concatenate([chosen[name][:count] for name, count in SLICE.items()])
    test_rows = np.concatenate([chosen[name][SLICE[name]:SLICE[name] + count] for name, count in HELD_OUT.items()])
    folder = tmp_path_factory.mktemp("gz1slice")
    # Absolute paths: the images are read in place, only the catalogs are new.
    files = np.asarray([str((shared_data / "gz1" / str(name)).resolve()) for name in gz1.catalog["file"]])
    paths = {}
    for name, rows in (("train", train_rows), ("heldout", test_rows)):
        table = Table({"galaxy_id": [str(gz1.ids[row]) for row in rows], "file": files[rows],
                       "label_merged": labels[rows]})
        if name == "train":
            table["split"] = np.where(np.arange(len(rows)) % 5 == 0, "val", "train")
        paths[name] = folder / f"{name}.csv"
        table.write(paths[name], format="ascii.csv")
    return paths, folder


def test_gz1_default_training_beats_all_majority_and_says_what_it_chose(shared_data, tmp_path_factory):
    # Epochs rather than --budget: CPU seconds stretch on a loaded machine.
    paths, folder = _gz1_slice(shared_data, tmp_path_factory)
    result = runner.invoke(app, ["train", str(paths["train"]), "--out", str(folder / "model"), "--target",
                                 "label_merged", "--image-size", "32", "--epochs", "12", "--batch-size", "32",
                                 "--accelerator", "cpu"])
    assert result.exit_code == 0, result.output
    model = load_model(folder / "model")
    collection = GalaxyCollection.open(paths["heldout"], label_column="label_merged")
    truth, _ = class_codes(collection, "label_merged", model.config.class_names)
    predicted = network_logits(model.network, model_images(model, collection)).argmax(axis=1)
    chance = 1 / len(model.config.class_names)
    # "All ellipticals" scores exactly chance; demand a clear margin and several classes.
    score = balanced_accuracy_score(truth, predicted)
    assert score > chance + 0.15, score
    assert len(np.unique(predicted)) >= 2

    config = json.loads((folder / "model" / "config.json").read_text())
    crop = config["metrics"]["crop"]
    # The galaxies fill the centre of the 423 px stamps.
    assert 120 <= config["preprocessing"]["crop_pixels"] <= 320
    assert crop["pixels"] == config["preprocessing"]["crop_pixels"] and crop["side"] == 423
    assert f"crop: central {crop['pixels']} of 423 px" in result.output
    weighting = config["metrics"]["class_weighting"]
    assert weighting["scheme"] == "sqrt" and weighting["imbalance_ratio"] == pytest.approx(8.0, rel=0.05)
    assert "classes are imbalanced (largest/smallest = 8)" in result.output
    assert weighting["weights"]["spiral"] > weighting["weights"]["elliptical"]


def test_no_balance_classes_turns_the_weights_off(shared_data, tmp_path_factory):
    paths, folder = _gz1_slice(shared_data, tmp_path_factory)
    result = runner.invoke(app, ["train", str(paths["train"]), "--out", str(folder / "plain"), "--target",
                                 "label_merged", "--image-size", "32", "--epochs", "1", "--crop-pixels", "0",
                                 "--no-balance-classes", "--accelerator", "cpu"])
    assert result.exit_code == 0, result.output
    config = json.loads((folder / "plain" / "config.json").read_text())
    assert config["metrics"]["class_weighting"]["scheme"] is None
    assert config["preprocessing"]["crop_pixels"] is None and config["metrics"]["crop"] is None
