"""Tests of tuningfork.clustering.autoencoder: denoising, embedding, model folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tuningfork.clustering.autoencoder import denoise, denoising_gain, embed, train_autoencoder
from tuningfork.errors import ConfigError, ImageShapeError, MissingFileError, ModelError
from tuningfork.models import (
    DenoisingAutoencoder,
    ModelConfig,
    autoencoder_model_config,
    load_model,
    save_model,
)
from tuningfork.preprocessing import estimate_noise_sigma
from tuningfork.simulation import simulate

torch.set_num_threads(1)


def save_autoencoder(model, folder, **settings):
    return save_model(folder, model, autoencoder_model_config(model, **settings))


def load_autoencoder(folder):
    loaded = load_model(folder, architecture="denoising_autoencoder")
    return loaded.network, loaded.config


@pytest.fixture(scope="module")
def simulated():
    """Faint GalSim galaxies with their noiseless truth, on a common scale."""
    sample = simulate(72, size=32, snr=(8.0, 30.0), seed=3, workers=1, return_noiseless=True)
    scale = float(sample.images.std())
    return sample.images / scale, sample.noiseless / scale


@pytest.fixture(scope="module")
def trained(simulated):
    noisy, _ = simulated
    return train_autoencoder(
        noisy[:56], epochs=6, base_channels=8, depth=2, batch_size=16, accelerator="cpu"
    )


def test_autoencoder_reduces_noise_on_simulated_galaxies(simulated, trained):
    noisy, truth = simulated
    model, metrics = trained
    assert metrics["mode"] == "inject" and np.isfinite(metrics["final_train_loss"])
    held_out = noisy[56:]
    gain = denoising_gain(held_out, denoise(model, held_out), truth[56:])
    assert gain["psnr_gain"] > 3.0
    assert gain["ssim_gain"] > 0.1


def test_training_on_noise_pairs_also_denoises(simulated):
    noisy, truth = simulated
    second = (
        truth
        + np.random.default_rng(9).normal(0, 1, truth.shape).astype(np.float32)
        * (noisy - truth).std()
    )
    model, metrics = train_autoencoder(
        noisy[:56],
        targets=second[:56],
        epochs=6,
        base_channels=8,
        depth=2,
        batch_size=16,
        accelerator="cpu",
    )
    assert metrics["mode"] == "pairs"
    assert denoising_gain(noisy[56:], denoise(model, noisy[56:]), truth[56:])["psnr_gain"] > 3.0


def test_skip_connected_denoiser_reduces_noise_and_round_trips(simulated, tmp_path):
    noisy, truth = simulated
    unet, _ = train_autoencoder(
        noisy[:56],
        epochs=6,
        base_channels=8,
        depth=2,
        skips=True,
        batch_size=16,
        accelerator="cpu",
    )
    held_out = noisy[56:]
    gain = denoising_gain(held_out, denoise(unet, held_out), truth[56:])
    assert gain["psnr_gain"] > 2.0 and gain["ssim_gain"] > 0.02
    folder = save_autoencoder(unet, tmp_path / "unet", image_size=32)
    loaded, config = load_autoencoder(folder)
    assert loaded.skips and config.architecture_options["skips"] is True
    np.testing.assert_allclose(denoise(loaded, held_out), denoise(unet, held_out), atol=1e-6)


def test_noise_estimate_ignores_the_galaxy(simulated):
    noisy, truth = simulated
    true_sigma = (noisy - truth).std(axis=(1, 2, 3))
    np.testing.assert_allclose(estimate_noise_sigma(noisy), true_sigma, rtol=0.2)


def test_network_keeps_odd_image_sizes_and_embeds_to_latent_dim():
    model = DenoisingAutoencoder(in_channels=3, base_channels=4, depth=3)
    images = np.random.default_rng(0).normal(size=(2, 3, 21, 27)).astype(np.float32)
    before = images.copy()
    assert denoise(model, images).shape == images.shape
    assert denoise(DenoisingAutoencoder(3, 4, 3, skips=True), images).shape == images.shape
    assert embed(model, images).shape == (2, model.latent_dim) == (2, 32)
    np.testing.assert_array_equal(images, before)


def test_model_folder_round_trip(tmp_path, trained, simulated):
    model, metrics = trained
    folder = save_autoencoder(
        model, tmp_path / "denoiser", image_size=32, preprocess={"output_size": 32}, metrics=metrics
    )
    config = json.loads((folder / "config.json").read_text())
    assert (folder / "weights.safetensors").is_file()
    assert config["architecture"] == "denoising_autoencoder" and config["preprocessing"] == {
        "output_size": 32
    }
    loaded, loaded_config = load_autoencoder(folder)
    assert loaded_config.metrics["mode"] == "inject" and loaded_config.image_size == 32
    images = simulated[0][:4]
    np.testing.assert_allclose(denoise(loaded, images), denoise(model, images), atol=1e-6)


def test_bad_folders_and_inputs_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="empty/config.json: model config not found"):
        load_autoencoder(tmp_path / "empty")
    with pytest.raises(MissingFileError, match="nowhere: model folder not found"):
        load_autoencoder(tmp_path / "nowhere")
    classifier = tmp_path / "classifier"
    config = ModelConfig("rotinv", 2, 1, 32, {}, {"kind": "classes"})
    save_model(classifier, torch.nn.Linear(2, 2), config)
    with pytest.raises(ModelError, match="holds a 'rotinv' model, not a denoising_autoencoder"):
        load_autoencoder(classifier)
    with pytest.raises(ImageShapeError, match="training images.*NaN"):
        train_autoencoder(np.full((4, 1, 8, 8), np.nan, np.float32), epochs=1)
    with pytest.raises(ImageShapeError, match="expected a \\(n, bands, H, W\\)"):
        train_autoencoder(np.zeros((8, 8), np.float32), epochs=1)
    with pytest.raises(ConfigError, match="noise_sigma must be positive"):
        train_autoencoder(np.zeros((2, 1, 8, 8), np.float32), noise_sigma=-1.0)
    with pytest.raises(
        ImageShapeError, match="autoencoder input: 2 bands but the encoder expects 1"
    ):
        denoise(DenoisingAutoencoder(1, 4, 1), np.zeros((1, 2, 8, 8), np.float32))


def test_train_and_apply_a_denoiser_on_a_collection(tmp_path, simulated):
    from tuningfork.clustering.autoencoder import apply_denoiser, train_denoiser
    from tuningfork.data import GalaxyCollection
    from tuningfork.preprocessing import PreprocessConfig

    noisy, _ = simulated
    collection = GalaxyCollection.from_arrays(noisy[:20], {"id": [f"g{i}" for i in range(20)]})
    preprocess = PreprocessConfig(output_size=24)
    folder, metrics = train_denoiser(
        collection,
        tmp_path / "ae",
        preprocess=preprocess,
        max_images=12,
        epochs=1,
        base_channels=4,
        depth=2,
        accelerator="cpu",
    )
    assert metrics["n_train"] == 12
    output = apply_denoiser(folder, collection, tmp_path / "denoised.npz")
    denoised = GalaxyCollection.open(output)
    assert denoised.ids == collection.ids
    assert denoised[0].image.shape == (1, 24, 24)
