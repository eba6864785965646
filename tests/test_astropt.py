"""The AstroPT patch transformer: learning, causality, SED tokens, model folders."""

import json

import pytest
import torch

from tuningfork.errors import ConfigError, CorruptFileError, MissingFileError, ModelError
from tuningfork.models import AstroPT, AstroPTConfig, astropt_model_config, load_model, save_model
from tuningfork.preprocessing import PreprocessConfig

torch.set_num_threads(1)


def save_astropt(model, folder, preprocess, metrics):
    return save_model(folder, model, astropt_model_config(model, preprocess, metrics))


def load_astropt(folder):
    return load_model(folder, architecture="astropt")


def tiny(**overrides):
    settings = {"bands": 2, "image_size": 16, "patch_size": 4, **overrides}
    return AstroPTConfig.from_size("tiny", **settings)


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    model = AstroPT(tiny())
    images = torch.randn(8, 2, 16, 16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model.loss(images).item()
    for _ in range(40):
        loss = model.loss(images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.loss(images).item() < 0.7 * first


def test_prediction_is_causal():
    torch.manual_seed(0)
    # Without per-image scaling: the scale of an image depends on all its pixels.
    model = AstroPT(tiny(input_scaling="none")).eval()
    images = torch.randn(2, 2, 16, 16)
    changed = images.clone()
    changed[:, :, :4, :4] += 5.0  # a corner patch: read late in the spiral
    with torch.no_grad():
        before, after = model.hidden_states(images), model.hidden_states(changed)
    moved = (before - after).abs().amax(dim=(0, 2))
    first_changed = int(torch.nonzero(moved > 1e-6)[0])
    assert first_changed > 0
    assert torch.all(moved[:first_changed] == 0)


def test_sed_tokens_change_the_embedding_and_missing_bands_are_allowed():
    torch.manual_seed(0)
    model = AstroPT(tiny(sed_columns=["mag_g", "mag_r"])).eval()
    images = torch.randn(3, 2, 16, 16)
    sed = torch.zeros(3, 2)
    with torch.no_grad():
        base = model.embed(images, sed)
        shifted = model.embed(images, sed + 1.0)
        missing = model.embed(images, torch.tensor([[float("nan"), 0.0]] * 3))
        loss = model.loss(images, torch.tensor([[float("nan"), 0.0]] * 3))
    assert base.shape == (3, model.config.embedding_dim)
    assert (base - shifted).abs().max() > 1e-4
    assert torch.isfinite(missing).all() and torch.isfinite(loss)


def test_galaxy_scaling_ignores_brightness_and_keeps_colours():
    model = AstroPT(tiny())
    images = torch.rand(2, 2, 16, 16)
    images[:, 1] *= 3.0  # a redder band
    original = images.clone()
    scaled = model.scale_images(images)
    brighter = model.scale_images(10.0 * images + 4.0)
    assert torch.allclose(scaled, brighter, atol=1e-5)
    ratio = (scaled[:, 1] - scaled[:, 1].median()).abs().mean() / (
        scaled[:, 0] - scaled[:, 0].median()
    ).abs().mean()
    assert ratio > 2.0  # one scale for all bands: the red band stays brighter
    assert torch.equal(images, original)
    blank = model.scale_images(torch.zeros(1, 2, 16, 16))
    assert torch.isfinite(blank).all()


def test_patch_targets_are_standardised_and_pixel_targets_are_not():
    patches = torch.rand(2, 5, 12) * 7.0 + 3.0
    standardised = AstroPT(tiny())._targets(patches)
    assert torch.allclose(standardised.mean(-1), torch.zeros(2, 5), atol=1e-5)
    assert torch.allclose(standardised.std(-1), torch.ones(2, 5), atol=1e-2)
    assert torch.equal(AstroPT(tiny(target="pixels"))._targets(patches), patches)


@pytest.mark.parametrize("pooling, dim", [("layers", 2 * 32), ("final", 32)])
def test_embedding_length_follows_the_pooling(pooling, dim):
    model = AstroPT(tiny(pooling=pooling)).eval()
    assert model.config.embedding_dim == dim
    with torch.no_grad():
        assert model.embed(torch.randn(3, 2, 16, 16)).shape == (3, dim)


def test_sed_model_without_sed_is_a_clear_error():
    model = AstroPT(tiny(sed_columns=["mag_g"]))
    with pytest.raises(ConfigError, match="trained with SED columns \\['mag_g'\\]"):
        model.embed(torch.zeros(1, 2, 16, 16))


def test_wrong_image_size_is_a_clear_error():
    with pytest.raises(ConfigError, match="set the preprocessing resize to 16 px"):
        AstroPT(tiny()).embed(torch.zeros(1, 2, 32, 32))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"patch_size": 5}, "does not divide image size"),
        ({"heads": 3}, "heads do not divide"),
        ({"order": "zigzag"}, "patch order 'zigzag'"),
        ({"input_scaling": "band"}, "input_scaling 'band' is unknown"),
        ({"target": "flux"}, "target 'flux' is unknown"),
        ({"pooling": "max"}, "pooling 'max' is unknown"),
    ],
)
def test_inconsistent_config_is_a_clear_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny(**overrides)


def test_unknown_size_is_a_clear_error():
    with pytest.raises(ConfigError, match="size 'huge' is unknown"):
        AstroPTConfig.from_size("huge")


def test_model_folder_round_trip(tmp_path):
    torch.manual_seed(0)
    model = AstroPT(tiny(sed_columns=["g"], sed_center=[20.0], sed_scale=[2.0])).eval()
    preprocess = PreprocessConfig(output_size=16)
    folder = save_astropt(model, tmp_path / "model", preprocess, {"train_loss": [1.0]})
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "astropt" and "torch" in config["versions"]
    assert config["in_channels"] == 2 and config["image_size"] == 16
    loaded = load_astropt(folder)
    assert loaded.preprocess == preprocess and loaded.config.metrics == {"train_loss": [1.0]}
    images, sed = torch.randn(2, 2, 16, 16), torch.randn(2, 1)
    with torch.no_grad():
        assert torch.equal(model.embed(images, sed), loaded.network.embed(images, sed))


def test_pretrained_folder_is_a_regular_model_folder(tmp_path):
    folder = save_astropt(AstroPT(tiny()), tmp_path / "model", PreprocessConfig(output_size=16), {})
    assert isinstance(load_model(folder).network, AstroPT)


def test_broken_model_folders_are_clear_errors(tmp_path):
    with pytest.raises(MissingFileError, match="nothere: model folder not found"):
        load_astropt(tmp_path / "nothere")
    folder = save_astropt(AstroPT(tiny()), tmp_path / "model", PreprocessConfig(output_size=16), {})
    (folder / "config.json").write_text("{broken")
    with pytest.raises(CorruptFileError, match="config.json: not valid JSON"):
        load_astropt(folder)
    save_astropt(AstroPT(tiny(embed_dim=64)), folder, PreprocessConfig(output_size=16), {})
    config = json.loads((folder / "config.json").read_text())
    config["architecture_options"]["embed_dim"] = 32
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CorruptFileError, match="weights.safetensors: cannot load into astropt"):
        load_astropt(folder)
    config["architecture"] = "rotinv"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="holds a 'rotinv' model, not an astropt model"):
        load_astropt(folder)
