"""Pretraining loop: runs end to end, learns, saves a usable model folder."""

import json

import numpy as np
import pytest
import torch

from tuningfork.data import GalaxyCollection
from tuningfork.embeddings.pretrain import DEFAULT_PREPROCESS, pretrain, pretrain_preprocess
from tuningfork.errors import ConfigError
from tuningfork.models import load_model
from tuningfork.models.patches import image_to_patches
from tuningfork.preprocessing import PreprocessConfig, Preprocessor
from tuningfork.simulation import simulate

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def galaxies():
    sample = simulate(40, size=32, bands=("g", "r"), seed=3, workers=1)
    return GalaxyCollection.from_arrays(sample.images, sample.catalog)


def tiny_pretrain(galaxies, out, preprocess=None, **settings):
    """Pretrain on 16-pixel images in 4-pixel patches, on the CPU.

    ``preprocess`` holds PreprocessConfig settings beyond ``output_size=16``.
    """
    config = PreprocessConfig(**{"output_size": 16, **(preprocess or {})})
    return pretrain(
        galaxies, out, preprocess=config, patch_size=4, batch_size=8, accelerator="cpu", **settings
    )


def test_pretrain_learns_and_saves_a_model_folder(galaxies, tmp_path):
    folder = tiny_pretrain(
        galaxies,
        tmp_path / "astropt",
        sed_columns=["flux_g", "flux_r"],
        max_epochs=4,
        learning_rate=3e-3,
        seed=0,
    )
    config = json.loads((folder / "config.json").read_text())
    losses = config["metrics"]["train_loss"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert config["metrics"]["best_val_loss"] == min(config["metrics"]["val_loss"])
    loaded = load_model(folder, architecture="astropt")
    model, preprocess = loaded.network, loaded.preprocess
    assert preprocess.output_size == 16
    assert model.config.sed_columns == ["flux_g", "flux_r"]
    assert np.isfinite(model.config.sed_center).all() and np.all(
        np.array(model.config.sed_scale) > 0
    )


def test_loss_falls_well_below_the_trivial_predictor(tmp_path):
    # Bright galaxies filling the stamp: the loss is not swamped by sky noise.
    sample = simulate(40, size=32, bands=("g", "r"), snr=(300.0, 1000.0), seed=5, workers=1)
    galaxies = GalaxyCollection.from_arrays(sample.images)
    folder = tiny_pretrain(
        galaxies,
        tmp_path / "astropt",
        {"crop_pixels": 16, "normalisation": "none"},
        max_epochs=12,
        learning_rate=3e-3,
        validation_fraction=0.0,
    )
    loaded = load_model(folder, architecture="astropt")
    model, preprocess, record = loaded.network, loaded.preprocess, loaded.config
    images = torch.from_numpy(
        np.stack([Preprocessor(preprocess)(galaxy.image) for galaxy in galaxies])
    )
    targets = model._targets(image_to_patches(model.scale_images(images), 4)[:, 1:])
    # Always predicting a flat patch (zero after standardisation).
    trivial = torch.nn.functional.huber_loss(torch.zeros_like(targets), targets).item()
    assert record.metrics["train_loss"][-1] < 0.6 * trivial


def test_bad_settings_are_clear_errors(galaxies, tmp_path):
    with pytest.raises(ConfigError, match="set the preprocessing output_size"):
        pretrain(galaxies, tmp_path / "m", preprocess=PreprocessConfig(output_size=None))
    with pytest.raises(ConfigError, match="validation_fraction must be in"):
        pretrain(galaxies, tmp_path / "m", validation_fraction=1.5)
    assert not (tmp_path / "m").exists()


def test_a_cpu_budget_stops_early_and_is_recorded(galaxies, tmp_path):
    folder = tiny_pretrain(
        galaxies, tmp_path / "astropt", {"normalisation": "none"}, max_epochs=500, budget_s=0.5
    )
    metrics = load_model(folder, architecture="astropt").config.metrics
    assert metrics["budget_reached"] and metrics["budget_s"] == 0.5
    assert 1 <= metrics["epochs_run"] < 500 and metrics["max_epochs"] == 500
    assert metrics["train_cpu_seconds"] >= 0.5


def test_without_a_budget_every_epoch_runs(galaxies, tmp_path):
    folder = tiny_pretrain(galaxies, tmp_path / "astropt", max_epochs=2)
    metrics = load_model(folder, architecture="astropt").config.metrics
    assert metrics["epochs_run"] == 2 and not metrics["budget_reached"]


def test_default_preprocessing_crops_the_centre_and_keeps_colours():
    default = pretrain_preprocess()
    assert default == DEFAULT_PREPROCESS
    assert default.crop_fraction == 0.5 and default.output_size == 32
    assert default.normalisation == "none" and not default.subtract_background
    chosen = pretrain_preprocess(image_size=48, crop_pixels=200, stretch="asinh")
    assert (chosen.crop_pixels, chosen.crop_fraction, chosen.output_size, chosen.stretch) == (
        200,
        None,
        48,
        "asinh",
    )
    assert pretrain_preprocess(crop_fraction=1.0).crop_fraction == 1.0
    with pytest.raises(ConfigError, match="at most one of crop_pixels and crop_fraction"):
        pretrain_preprocess(crop_pixels=200, crop_fraction=0.5)
