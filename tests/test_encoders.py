"""Tests of the encoder contract (tuningfork.models) and the polar step: timm backbones, model folders."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from tuningfork.clustering.encoders import PolarStep, rotation_consistency
from tuningfork.errors import (
    ConfigError,
    CorruptFileError,
    ImageShapeError,
    MissingFileError,
    ModelError,
)
from tuningfork.models import (
    AstroPT,
    AstroPTConfig,
    AstroPTEncoder,
    AutoencoderEncoder,
    DenoisingAutoencoder,
    Encoder,
    ModelConfig,
    MorphologyEncoder,
    RotationInvariantNet,
    SupervisedEncoder,
    TimmEncoder,
    astropt_model_config,
    autoencoder_model_config,
    create_model,
    load_encoder,
    save_model,
)
from tuningfork.preprocessing import PreprocessConfig
from tuningfork.simulation import simulate

torch.set_num_threads(1)


ARCH = "convnext_atto"  # the smallest ConvNeXt: same code path as convnext_large


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A local ConvNeXt checkpoint, with a classification head, as users would have."""
    torch.manual_seed(0)
    model = timm.create_model(ARCH, pretrained=False, num_classes=10)
    path = tmp_path_factory.mktemp("weights") / f"{ARCH}.safetensors"
    save_file(model.state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def galaxies():
    sample = simulate(
        12,
        size=48,
        snr=(80.0, 200.0),
        seed=5,
        workers=1,
        classes=["spiral", "barred_spiral", "edge_on", "merger"],
    )
    images = sample.images
    low = images.min(axis=(1, 2, 3), keepdims=True)
    return (images - low) / (images.max(axis=(1, 2, 3), keepdims=True) - low)


def test_timm_encoder_reads_local_weights_and_pools_features(weights_file, galaxies):
    from safetensors.torch import load_file

    encoder = TimmEncoder(ARCH, weights_file, in_chans=3, input_size=48)
    images = np.repeat(galaxies[:3], 3, axis=1)
    features = encoder.encode(images)
    assert features.shape == (3, encoder.dim) == (3, 320)
    reference = timm.create_model(ARCH, pretrained=False, num_classes=0).eval()
    reference.load_state_dict(
        {k: v for k, v in load_file(str(weights_file)).items() if not k.startswith("head.fc")}
    )
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference((torch.from_numpy(images) - mean) / std).numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(TimmEncoder(ARCH, None, input_size=48).encode(images), features)


def test_torch_checkpoint_and_single_band_adaptation(weights_file, galaxies, tmp_path):
    from safetensors.torch import load_file

    checkpoint = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": load_file(str(weights_file)), "epoch": 3}, checkpoint)
    three_band = TimmEncoder(ARCH, checkpoint, in_chans=3, input_size=64)
    one_band = TimmEncoder(ARCH, weights_file, in_chans=1, input_size=64)
    assert one_band.encode(galaxies[:2]).shape == (2, 320)
    assert three_band.encode(np.repeat(galaxies[:2], 3, axis=1)).shape == (2, 320)


def test_bad_encoders_are_clear_errors(tmp_path, galaxies):
    with pytest.raises(ConfigError, match="unknown architecture 'convnext_gigantic'"):
        TimmEncoder("convnext_gigantic")
    with pytest.raises(MissingFileError, match="absent.safetensors"):
        TimmEncoder(ARCH, tmp_path / "absent.safetensors")
    wrong = tmp_path / "resnet.safetensors"
    save_file(timm.create_model("resnet10t", pretrained=False).state_dict(), str(wrong))
    with pytest.raises(
        CorruptFileError, match="resnet.safetensors: does not hold weights for convnext_atto"
    ):
        TimmEncoder(ARCH, wrong)
    (tmp_path / "not_a_model").mkdir()
    (tmp_path / "not_a_model" / "notes.txt").write_text("hello")
    with pytest.raises(MissingFileError, match="not_a_model/config.json: model config not found"):
        load_encoder(tmp_path / "not_a_model")
    with pytest.raises(ModelError, match="is a file"):
        load_encoder(wrong)
    with pytest.raises(MissingFileError, match="missing/folder: model folder not found"):
        load_encoder(tmp_path / "missing" / "folder")
    with pytest.raises(ImageShapeError, match="1 bands but the encoder expects 3"):
        TimmEncoder(ARCH, input_size=64).encode(galaxies[:1])


def test_autoencoder_folder_is_an_encoder(tmp_path, galaxies):
    torch.manual_seed(0)
    network = DenoisingAutoencoder(1, 4, 2)
    config = autoencoder_model_config(network, image_size=48, preprocess={"output_size": 48})
    folder = save_model(tmp_path / "ae", network, config)
    encoder = load_encoder(folder)
    assert isinstance(encoder, AutoencoderEncoder)
    assert encoder.preprocess == PreprocessConfig.from_dict({"output_size": 48})
    assert encoder.encode(galaxies[:3]).shape == (3, 16)


def test_rotation_is_a_column_shift_in_polar_coordinates(galaxies):
    polar = PolarStep(n_radii=16, n_angles=32, extension=0.5)
    original = polar(galaxies[:1])
    rotated = polar(np.rot90(galaxies[:1], k=1, axes=(-2, -1)).copy())
    assert original.shape == (1, 1, 16, 48)
    # np.rot90 turns the image by 90 degrees: a shift by a quarter of the turn.
    shifted = np.roll(original[..., :32], -8, axis=-1)
    np.testing.assert_allclose(rotated[..., :32], shifted, atol=1e-4)


def test_polar_step_makes_embeddings_of_rotated_copies_more_similar(weights_file, galaxies):
    encoder = TimmEncoder(ARCH, weights_file, in_chans=1, input_size=64)
    cartesian = rotation_consistency(encoder, galaxies, angles_deg=(45.0, 90.0, 160.0))
    polar = rotation_consistency(
        encoder, galaxies, polar=PolarStep(32, 64, 0.5), angles_deg=(45.0, 90.0, 160.0)
    )
    assert polar["mean"] > cartesian["mean"] + 0.1
    assert set(polar) == {"mean", "angle_45", "angle_90", "angle_160"}


def test_supervised_model_folder_encodes_with_its_penultimate_layer(tmp_path, galaxies):
    torch.manual_seed(0)
    network = RotationInvariantNet(3, in_channels=1, image_size=48, widths=(8, 16), hidden=24)
    options = {"widths": [8, 16], "hidden": 24}
    config = ModelConfig("rotinv", 3, 1, 48, {"output_size": 48}, {"kind": "classes"}, options)
    folder = save_model(tmp_path / "classifier", network, config)
    encoder = load_encoder(folder)
    assert encoder.dim == 24 and encoder.preprocess.output_size == 48
    features = encoder.encode(galaxies[:3])
    assert features.shape == (3, 24)
    with torch.no_grad():
        logits = network.eval()(torch.from_numpy(galaxies[:3]))
        from_features = network.head[-1](torch.from_numpy(features))
    np.testing.assert_allclose(from_features.numpy(), logits.numpy(), rtol=1e-4, atol=1e-5)


def _supervised_folder(folder, architecture, image_size=48, **options):
    torch.manual_seed(0)
    network = create_model(architecture, 3, in_channels=3, image_size=image_size, **options)
    plain = {key: list(value) if isinstance(value, tuple) else value for key, value in options.items()}
    config = ModelConfig(architecture, 3, 3, image_size, {"output_size": image_size}, {"kind": "classes"}, plain)
    return save_model(folder, network, config), network


def _contract_encoder(kind, folder):
    """An encoder of each kind that load_encoder opens, for 3-band 48-pixel images."""
    if kind == "morphology":
        return load_encoder("morphology")
    if kind == "astropt":
        torch.manual_seed(0)
        model = AstroPT(AstroPTConfig.from_size("tiny", bands=3, image_size=48, patch_size=8))
        return load_encoder(
            save_model(folder, model, astropt_model_config(model, PreprocessConfig(output_size=48), {})),
            device="cpu",
        )
    if kind == "supervised":
        return load_encoder(_supervised_folder(folder, "rotinv", widths=(8, 16), hidden=24)[0], device="cpu")
    torch.manual_seed(0)
    autoencoder = DenoisingAutoencoder(3, 4, 2)
    return load_encoder(
        save_model(folder, autoencoder, autoencoder_model_config(autoencoder, preprocess={"output_size": 48})),
        device="cpu",
    )


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("morphology", MorphologyEncoder),
        ("astropt", AstroPTEncoder),
        ("supervised", SupervisedEncoder),
        ("autoencoder", AutoencoderEncoder),
    ],
)
def test_every_encoder_spec_gives_the_one_contract(tmp_path, galaxies, kind, expected):
    encoder = _contract_encoder(kind, tmp_path / kind)
    assert isinstance(encoder, Encoder) and isinstance(encoder, expected)
    assert isinstance(encoder.name, str) and encoder.name
    assert isinstance(encoder.dim, int) and encoder.dim > 0
    assert isinstance(encoder.preprocess, PreprocessConfig)
    images = np.repeat(galaxies[:3], 3, axis=1)
    for features in (encoder.encode(images), encoder.encode(images, sed=None), encoder.encode(images, None)):
        assert features.shape == (3, encoder.dim) and features.dtype == np.float32
        assert np.isfinite(features).all()
    described = encoder.describe()
    assert described["encoder"] == encoder.name and described["dim"] == encoder.dim
    assert PreprocessConfig.from_dict(described["preprocessing"]) == encoder.preprocess


@pytest.mark.parametrize(
    "architecture, options",
    [
        ("rotinv", {"widths": (8, 16), "hidden": 24}),
        ("rotinv", {"widths": (8, 16), "hidden": 24, "ensemble": 2}),
        ("hybrid", {"image_size": 64}),
        ("test_resnet", {}),
    ],
)
def test_supervised_features_come_from_the_backbone_and_head_contract(tmp_path, galaxies, architecture, options):
    folder, network = _supervised_folder(tmp_path / "model", architecture, **options)
    encoder = load_encoder(folder, device="cpu")
    assert isinstance(encoder, SupervisedEncoder)
    images = np.repeat(galaxies[:3], 3, axis=1)
    margin = (options.get("image_size", 48) - 48) // 2
    images = np.pad(images, ((0, 0), (0, 0), (margin, margin), (margin, margin)))
    features = encoder.encode(images)
    network.eval()
    with torch.no_grad():
        batch = torch.from_numpy(images)
        expected = network.forward_head(network.forward_features(batch), pre_logits=True)
        logits = network(batch)
    assert features.shape == (3, encoder.dim) == tuple(expected.shape)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-5)
    # Pre-logit features, not the outputs.
    assert encoder.dim != logits.shape[1]


def test_morphology_encoder_rejects_other_bands_and_describes_its_embeddings(galaxies):
    encoder = load_encoder("morphology", bands=1)
    assert encoder.describe()["encoder"] == "morphology" and encoder.describe()["dim"] == encoder.dim
    assert encoder.encode(galaxies[:2]).shape == (2, encoder.dim)
    with pytest.raises(ImageShapeError, match="3 bands but the encoder expects 1"):
        encoder.encode(np.repeat(galaxies[:2], 3, axis=1))
