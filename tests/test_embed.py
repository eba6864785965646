"""Encoders and batched embedding extraction."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import timm
import torch
from astropy.table import Table
from safetensors.torch import save_file

from tuningfork.data import GalaxyCollection
from tuningfork.embeddings.embed import embed_query_image, extract_embeddings
from tuningfork.errors import (
    ConfigError,
    CorruptFileError,
    MissingFileError,
    ModelError,
    UnsupportedFormatError,
)
from tuningfork.models import (
    AstroPT,
    AstroPTConfig,
    AstroPTEncoder,
    TimmEncoder,
    astropt_model_config,
    autoencoder_model_config,
    embed_arrays,
    load_encoder,
    save_model,
)
from tuningfork.preprocessing import PreprocessConfig

torch.set_num_threads(1)


def astropt_folder(path, **overrides):
    torch.manual_seed(0)
    config = AstroPTConfig.from_size("tiny", bands=1, image_size=16, patch_size=4, **overrides)
    model = AstroPT(config)
    return save_model(path, model, astropt_model_config(model, PreprocessConfig(output_size=16), {}))


def blobs(count=10, size=24, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - size / 2
    widths = rng.uniform(1.5, 5, count)
    images = np.exp(-(x**2 + y**2)[None] / (2 * widths[:, None, None] ** 2)) + 0.01 * rng.normal(
        size=(count, size, size)
    )
    return images[:, None].astype(np.float32)


def test_extraction_in_batches_matches_one_pass(tmp_path):
    encoder = load_encoder(astropt_folder(tmp_path / "model"), device="cpu")
    collection = GalaxyCollection.from_arrays(
        blobs(10), Table({"id": [f"b{i}" for i in range(10)]})
    )
    embeddings = extract_embeddings(collection, encoder, tmp_path / "emb.parquet", batch_size=3)
    assert embeddings.ids == [f"b{i}" for i in range(10)]
    assert embeddings.vectors.shape == (10, encoder.dim) and embeddings.vectors.dtype == np.float32
    assert encoder.dim == 2 * 32  # tiny: 2 blocks of width 32, concatenated
    np.testing.assert_allclose(
        embeddings.vectors, embed_arrays(encoder, blobs(10)), rtol=1e-4, atol=1e-5
    )
    assert embeddings.metadata["encoder"].startswith("astropt:")
    assert pq.read_table(tmp_path / "emb.parquet").num_rows == 10


def test_sed_columns_come_from_the_catalog(tmp_path):
    folder = astropt_folder(
        tmp_path / "model", sed_columns=["mag_r"], sed_center=[20.0], sed_scale=[1.0]
    )
    encoder = load_encoder(folder, device="cpu")
    images = np.repeat(blobs(1), 2, axis=0)
    collection = GalaxyCollection.from_arrays(
        images, Table({"id": ["bright", "faint"], "mag_r": [18.0, 23.0]})
    )
    vectors = extract_embeddings(collection, encoder, tmp_path / "emb.parquet").vectors
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-4  # same pixels, different SED


def test_timm_backbone_with_local_weights(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "resnet.safetensors"
    backbone = timm.create_model("test_resnet", pretrained=False)
    save_file(
        {name: value.contiguous() for name, value in backbone.state_dict().items()}, str(weights)
    )
    # Small images keep the test fast.
    encoder = load_encoder("timm:test_resnet", weights=weights, bands=1, image_size=32)
    assert isinstance(encoder, TimmEncoder) and encoder.dim == backbone.num_features
    assert encoder.preprocess.output_size == 32
    vectors = embed_arrays(encoder, blobs(4))
    assert vectors.shape == (4, encoder.dim) and np.isfinite(vectors).all()
    assert np.abs(vectors[0] - vectors[1]).max() > 0


def test_autoencoder_folder_is_an_encoder(tmp_path):
    from tuningfork.models import DenoisingAutoencoder

    preprocess = PreprocessConfig(output_size=16)
    autoencoder = DenoisingAutoencoder(in_channels=1, base_channels=4, depth=2)
    folder = save_model(
        tmp_path / "ae", autoencoder, autoencoder_model_config(autoencoder, preprocess=preprocess.to_dict())
    )
    encoder = load_encoder(folder)
    assert encoder.preprocess == preprocess
    collection = GalaxyCollection.from_arrays(blobs(3))
    embeddings = extract_embeddings(collection, encoder, tmp_path / "ae.parquet")
    assert embeddings.vectors.shape == (3, encoder.dim)


def test_encode_raw_preprocesses_a_single_image(tmp_path):
    encoder = load_encoder(astropt_folder(tmp_path / "model"), device="cpu")
    image = blobs(1)[0]
    np.testing.assert_allclose(
        encoder.encode_raw(image), embed_arrays(encoder, image[None])[0], rtol=1e-5
    )


def test_real_galaxies_embed(shared_data, tmp_path):
    collection = GalaxyCollection.open(shared_data / "gz2-spirals" / "catalog.csv").subset(
        np.arange(6)
    )
    config = AstroPTConfig.from_size("tiny", bands=3, image_size=32, patch_size=8)
    encoder = AstroPTEncoder(
        AstroPT(config), PreprocessConfig(crop_pixels=208, output_size=32), device="cpu"
    )
    embeddings = extract_embeddings(collection, encoder, tmp_path / "gz2.parquet", batch_size=4)
    assert embeddings.ids == collection.ids
    assert np.isfinite(embeddings.vectors).all()


def test_bad_encoders_are_clear_errors(tmp_path):
    with pytest.raises(MissingFileError, match="nothere: model folder not found"):
        load_encoder(tmp_path / "nothere")
    with pytest.raises(ConfigError, match="needs a local weights file"):
        load_encoder("timm:test_resnet")
    with pytest.raises(MissingFileError, match="missing.pth: pretrained weights file not found"):
        load_encoder("timm:test_resnet", weights=tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not weights")
    with pytest.raises(CorruptFileError, match="junk.pth: not a readable weights file"):
        load_encoder("timm:test_resnet", weights=tmp_path / "junk.pth")
    model = AstroPT(AstroPTConfig.from_size("tiny", bands=1, image_size=16, patch_size=4))
    with pytest.raises(
        ModelError, match="output_size 64 px differs from the model's image size 16 px"
    ):
        AstroPTEncoder(model, PreprocessConfig(output_size=64))


def test_output_must_be_parquet(tmp_path):
    encoder = load_encoder(astropt_folder(tmp_path / "model"), device="cpu")
    collection = GalaxyCollection.from_arrays(blobs(2))
    with pytest.raises(
        UnsupportedFormatError, match="emb.csv: embeddings output must end in .parquet"
    ):
        extract_embeddings(collection, encoder, tmp_path / "emb.csv")


def test_query_image_is_embedded_like_the_stored_embeddings(tmp_path):
    folder = astropt_folder(tmp_path / "model", sed_columns=["mag_r"])
    encoder = load_encoder(folder, device="cpu")
    images = blobs(3)
    collection = GalaxyCollection.from_arrays(
        images, Table({"id": ["a", "b", "c"], "mag_r": [20.0, 21.0, 22.0]})
    )
    embeddings = extract_embeddings(collection, encoder, tmp_path / "emb.parquet")
    np.save(tmp_path / "query.npy", images[1])
    image, vector = embed_query_image(embeddings, tmp_path / "query.npy", folder, device="cpu")
    assert image.shape == images[1].shape and vector.shape == (embeddings.dim,)
    assert np.isfinite(vector).all()  # no catalog row: SED tokens are "missing"
    other = astropt_folder(tmp_path / "other")
    with pytest.raises(ModelError, match="emb.parquet: embeddings were made by encoder 'astropt:"):
        embed_query_image(embeddings, tmp_path / "query.npy", other, device="cpu")


@pytest.mark.parametrize("architecture", ["rotinv", "test_resnet"])
def test_supervised_folder_gives_penultimate_features(tmp_path, architecture):
    from tuningfork.models import ModelConfig, create_model

    network = create_model(architecture, 4, in_channels=1, image_size=32)
    config = ModelConfig(
        architecture=architecture,
        num_outputs=4,
        in_channels=1,
        image_size=32,
        preprocessing=PreprocessConfig(output_size=32).to_dict(),
        target={"kind": "classes", "column": "label", "class_names": list("abcd")},
    )
    encoder = load_encoder(save_model(tmp_path / architecture, network, config), device="cpu")
    vectors = embed_arrays(encoder, blobs(3))
    assert vectors.shape == (3, encoder.dim) and encoder.dim != 4
    assert np.isfinite(vectors).all()
