"""Model folders written before the redesign still load, and give the same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tuningfork.models import LoadedModel, load_model

LEGACY = Path(__file__).parent / "data" / "legacy_models"


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(LEGACY / "reference_outputs.npz"))


def _load(name: str) -> LoadedModel:
    loaded = load_model(LEGACY / name)
    assert isinstance(loaded, LoadedModel) and loaded.folder == LEGACY / name
    return loaded


@pytest.mark.parametrize("name", ["rotinv", "rotinv_ensemble"])
def test_supervised_folders_give_the_reference_logits(name, reference):
    network = _load(name).network
    with torch.no_grad():
        logits = network(torch.from_numpy(reference["images"])).numpy()
        # Backbone and head built separately: the same logits through both.
        split = network.forward_head(network.forward_features(torch.from_numpy(reference["images"]))).numpy()
    np.testing.assert_allclose(logits, reference[name], atol=1e-5)
    np.testing.assert_allclose(split, reference[name], atol=1e-5)


def test_astropt_folder_gives_the_reference_embeddings(reference):
    with torch.no_grad():
        embedded = _load("astropt").network.embed(torch.from_numpy(reference["images"])).numpy()
    np.testing.assert_allclose(embedded, reference["astropt"], atol=1e-5)


def test_autoencoder_folder_gives_the_reference_outputs(reference):
    network = _load("autoencoder").network
    images = torch.from_numpy(reference["images"])
    with torch.no_grad():
        np.testing.assert_allclose(network(images).numpy(), reference["autoencoder"], atol=1e-5)
        np.testing.assert_allclose(network.embed(images).numpy(), reference["autoencoder_embed"], atol=1e-5)


def test_generator_folder_gives_the_reference_noise_prediction(reference):
    unet = _load("generator").network
    images = torch.from_numpy(reference["images"][:, :, :16, :16])
    with torch.no_grad():
        predicted = unet(images, torch.tensor([3, 50]), torch.tensor([0, 1])).numpy()
    np.testing.assert_allclose(predicted, reference["generator"], atol=1e-5)
