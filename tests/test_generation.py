"""Conditional diffusion generator: training, sampling, inverse preprocessing, errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from astropy.io import fits

from tuningfork.data import GalaxyCollection
from tuningfork.errors import ConfigError, MissingFileError, ModelError
from tuningfork.generation import (
    ConditionalUNet,
    ConditionSpace,
    DiffusionScaling,
    Generator,
    UNetConfig,
    diffusion_loss,
    generate,
    inverse_stretch,
    load_generator,
    noise_schedule,
    real_in_data_units,
    sample_model_space,
    train_generator,
    write_generated,
)
from tuningfork.models import ModelConfig
from tuningfork.preprocessing import PreprocessConfig, Preprocessor, stretch
from tuningfork.simulation import simulate

TINY_UNET = {"channels": (8, 16), "layers_per_block": 1, "attention_levels": 0, "norm_groups": 4}
TINY_PREPROCESS = PreprocessConfig(output_size=16, stretch="asinh", normalisation="none")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def simulated():
    sample = simulate(16, size=24, bands=("g", "r"), classes=("elliptical", "edge_on"), snr=(50.0, 200.0),
                      seed=0, workers=1)
    return GalaxyCollection.from_arrays(sample.images, sample.catalog)


@pytest.fixture(scope="module")
def class_generator(simulated, tmp_path_factory):
    folder = tmp_path_factory.mktemp("generator")
    train_generator(simulated, folder, preprocess=TINY_PREPROCESS, unet=TINY_UNET, max_epochs=12,
                    batch_size=8, learning_rate=3e-3, accelerator="cpu", seed=0)
    return folder


def untrained_feature_generator() -> Generator:
    space = ConditionSpace.fit_features(["q", "size"], np.array([[0.2, 1.0], [0.9, 3.0]]))
    model = ConditionalUNet(UNetConfig(image_size=16, bands=2, **TINY_UNET), space)
    scaling = DiffusionScaling(TINY_PREPROCESS, (0.0, 0.0), (1.0, 1.0), (-1.5, -1.5), (1.5, 1.5))
    schedule = dict(noise_schedule(100, clip_range=1.5).config)
    return Generator(model.eval(), scaling, schedule, name="feature-generator")


def test_training_loss_decreases_on_fixed_batch(class_generator):
    metrics = load_generator(class_generator).metrics
    assert metrics["fixed_batch_loss_after"] < 0.9 * metrics["fixed_batch_loss_before"]
    assert len(metrics["loss_per_epoch"]) == 12


def test_diffusion_loss_is_reproducible_with_a_generator():
    model = ConditionalUNet(UNetConfig(image_size=16, bands=1, **TINY_UNET), ConditionSpace.from_classes(["a"]))
    images, condition = torch.zeros(4, 1, 16, 16), torch.zeros(4, dtype=torch.int64)
    losses = [float(diffusion_loss(model, noise_schedule(50), images, condition,
                                   generator=torch.Generator().manual_seed(1))) for _ in range(2)]
    assert losses[0] == losses[1]


def test_sampling_is_deterministic_for_a_seed(class_generator):
    generator = load_generator(class_generator)
    first = generate(generator, ["edge_on"], n=2, steps=3, seed=7)
    again = generate(generator, ["edge_on"], n=2, steps=3, seed=7)
    other = generate(generator, ["edge_on"], n=2, steps=3, seed=8)
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.allclose(first.images, other.images)


@pytest.mark.parametrize("sampler", ["ddim", "dpm-solver"])
def test_classifier_free_guidance_changes_the_output(class_generator, sampler):
    generator = load_generator(class_generator)
    unguided = generate(generator, ["elliptical"], n=2, steps=3, seed=1, guidance=0.0, sampler=sampler)
    guided = generate(generator, ["elliptical"], n=2, steps=3, seed=1, guidance=4.0, sampler=sampler)
    assert np.abs(guided.images - unguided.images).max() > 1e-3


def test_samples_come_back_in_data_units_and_shape(class_generator):
    generator = load_generator(class_generator)
    conditions = ["elliptical"] * 3 + ["edge_on"] * 3
    sample = generate(generator, ["elliptical", "edge_on"], n=3, steps=2, seed=0)
    assert sample.images.shape == (6, 2, 16, 16) and sample.images.dtype == np.float32
    assert list(sample.catalog["label"]) == conditions
    model_space = sample_model_space(generator, conditions, steps=2, seed=0)
    scaling = generator.scaling
    assert np.all(model_space >= np.array(scaling.model_min)[:, None, None])
    assert np.all(model_space <= np.array(scaling.model_max)[:, None, None])
    # Data units stretch and scale back to exactly the model-space samples.
    restretched = stretch(sample.images, "asinh", q=TINY_PREPROCESS.asinh_q, softening=TINY_PREPROCESS.stretch_softening)
    np.testing.assert_allclose(scaling.to_model(restretched), model_space, rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("kind", ["linear", "asinh", "sqrt", "log"])
def test_inverse_stretch_undoes_every_stretch(kind):
    image = np.random.default_rng(0).normal(0, 30, (3, 8, 8)).astype(np.float32)
    original = image.copy()
    restored = inverse_stretch(stretch(image, kind, q=8.0, softening=2.0), kind, q=8.0, softening=2.0)
    np.testing.assert_allclose(restored, image, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(image, original)


def test_preprocessing_round_trip_returns_data_units(simulated):
    raw = np.stack([galaxy.image for galaxy in simulated])
    stretched = Preprocessor(TINY_PREPROCESS).batch(raw)
    scaling = DiffusionScaling.fit(stretched, TINY_PREPROCESS)
    model_space = scaling.to_model(stretched)
    assert model_space.shape == (16, 2, 16, 16)
    assert np.percentile(model_space, 99.9) == pytest.approx(1.0, abs=0.05)
    # Data units: the background-subtracted, resized pixels before the stretch.
    linear = Preprocessor(PreprocessConfig(output_size=16, stretch="linear", normalisation="none")).batch(raw)
    np.testing.assert_allclose(scaling.to_data(model_space), linear, rtol=1e-3, atol=1e-3)


def test_per_image_normalisation_is_refused(simulated, tmp_path):
    with pytest.raises(ConfigError, match="normalisation must be 'none'"):
        train_generator(simulated, tmp_path / "g", preprocess=PreprocessConfig(output_size=16))


def test_written_samples_open_as_a_collection(class_generator, tmp_path):
    sample = generate(class_generator, ["edge_on", "elliptical"], n=2, steps=2, seed=0)
    catalog = write_generated(sample, tmp_path / "out")
    collection = GalaxyCollection.open(catalog)
    assert collection.class_names == ["edge_on", "elliptical"] and len(collection) == 4
    np.testing.assert_allclose(fits.getdata(tmp_path / "out" / "images" / "gen000000.fits"), sample.images[0])
    assert (tmp_path / "out" / "images" / "gen000003.png").is_file()
    assert {p.name for p in (tmp_path / "out").glob("mosaic_*.png")} == {
        "mosaic_edge_on.png", "mosaic_elliptical.png"}


def test_feature_conditioning_flags_extrapolation():
    generator = untrained_feature_generator()
    sample = generate(generator, [[0.5, 2.0], [0.05, 2.0]], n=1, steps=2)
    assert list(sample.catalog["extrapolated"]) == [False, True]
    assert list(sample.catalog["q"]) == [0.5, 0.05]
    parsed = generator.conditions.parse("0.3, 1.5", generator.name)
    np.testing.assert_array_equal(parsed[0], [0.3, 1.5])


def test_feature_generator_trains_on_catalog_columns(simulated, tmp_path):
    folder = train_generator(simulated, tmp_path / "g", feature_columns=["q", "half_light_radius_pix"],
                             preprocess=TINY_PREPROCESS, unet=TINY_UNET, max_epochs=1, batch_size=8,
                             accelerator="cpu")
    space = load_generator(folder).conditions
    assert space.kind == "features" and space.names == ("q", "half_light_radius_pix")
    assert space.minimum[0] == pytest.approx(float(np.min(simulated.catalog["q"])))


def test_unknown_condition_is_a_clear_error(class_generator):
    with pytest.raises(ConfigError, match=r"unknown condition 'spiral' \(classes: edge_on, elliptical\)"):
        generate(class_generator, ["spiral"], n=1, steps=1)


def test_feature_vector_of_wrong_length_is_a_clear_error():
    generator = untrained_feature_generator()
    with pytest.raises(ConfigError, match="feature-generator: feature vector has 3 values, expected 2"):
        generate(generator, [[0.5, 2.0, 1.0]], n=1, steps=1)


def test_folder_that_is_not_a_generator(tmp_path):
    with pytest.raises(MissingFileError, match="generator folder not found"):
        load_generator(tmp_path / "absent")
    with pytest.raises(ModelError, match="not a generator folder"):
        load_generator(tmp_path)
    classifier = ModelConfig("rotinv", 2, 3, 64, PreprocessConfig().to_dict(), {"kind": "classes"})
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(classifier)))
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match=r"not a generator folder \(architecture 'rotinv'"):
        load_generator(tmp_path)


def test_generator_folder_keeps_the_training_preprocessing(class_generator):
    config = json.loads((class_generator / "config.json").read_text())
    assert config["architecture"] == "conditional-diffusion"
    assert PreprocessConfig.from_dict(config["preprocessing"]) == TINY_PREPROCESS
    assert config["conditions"]["names"] == ["edge_on", "elliptical"]
