"""The collapse check of embeddings, in the library and in ``similar`` / ``outliers``."""

import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tuningfork.cli import app
from tuningfork.data import GalaxyCollection
from tuningfork.embeddings.pretrain import DEFAULT_PREPROCESS
from tuningfork.embeddings.store import (
    CollapsedEmbeddingsWarning,
    EmbeddingWriter,
    collapse_report,
    load_embeddings,
)
from tuningfork.models import AstroPT, AstroPTConfig, AstroPTEncoder
from tuningfork.preprocessing import Preprocessor


def healthy(count=500, dim=32, seed=0, offset=5.0):
    """Clustered vectors with a common offset, as transformer embeddings have."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, dim)) * 3
    return (offset + centres[rng.integers(10, size=count)] + rng.normal(size=(count, dim))).astype(
        np.float32
    )


def near_one_point(count=500, dim=32, seed=0):
    """Every galaxy within a hair of one vector."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=dim) + 1e-5 * rng.normal(size=(count, dim))).astype(np.float32)


def along_one_line(count=500, dim=32, seed=0):
    """Galaxies that differ along a single direction only."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    spread = rng.normal(size=(count, 1)) * direction + 0.02 * rng.normal(size=(count, dim))
    return spread.astype(np.float32)


def write(path, vectors):
    with EmbeddingWriter(path, len(vectors), vectors.shape[1], {"encoder": "test"}) as writer:
        writer.write([f"g{i}" for i in range(len(vectors))], vectors)
    return path


def test_healthy_vectors_are_not_collapsed():
    report = collapse_report(healthy())
    assert not report.collapsed
    assert report.first_component < 0.5


def test_a_large_common_direction_alone_is_not_collapse():
    report = collapse_report(healthy(offset=50.0))
    assert report.mean_cosine > 0.99 and not report.collapsed


@pytest.mark.parametrize("make", [near_one_point, along_one_line])
def test_collapsed_vectors_are_flagged(make):
    report = collapse_report(make())
    assert report.collapsed
    assert "embeddings look collapsed: mean pairwise cosine" in report.message("emb.parquet")


def test_mean_cosine_matches_the_pairwise_definition():
    vectors = healthy(count=60)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosines = unit @ unit.T
    expected = (cosines.sum() - np.trace(cosines)) / (60 * 59)
    assert collapse_report(vectors).mean_cosine == pytest.approx(expected, rel=1e-6)


def test_identical_vectors_are_collapsed_and_input_is_not_modified():
    vectors = np.ones((20, 4), dtype=np.float32)
    before = vectors.copy()
    assert collapse_report(vectors).collapsed
    np.testing.assert_array_equal(vectors, before)


def test_too_few_vectors_cannot_be_judged():
    report = collapse_report(np.ones((1, 4), dtype=np.float32))
    assert not report.collapsed and np.isnan(report.mean_cosine)


def test_loading_collapsed_embeddings_warns_and_healthy_ones_do_not(tmp_path):
    with pytest.warns(
        CollapsedEmbeddingsWarning, match="collapsed.emb.parquet: embeddings look collapsed"
    ):
        load_embeddings(write(tmp_path / "collapsed.emb.parquet", near_one_point()))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapsedEmbeddingsWarning)
        load_embeddings(write(tmp_path / "healthy.parquet", healthy()))


@pytest.mark.parametrize("command", ["similar", "outliers"])
def test_cli_prints_one_warning_line_on_collapsed_embeddings(tmp_path, command):
    path = write(tmp_path / "emb.parquet", near_one_point(count=60))
    options = ["--id", "g0", "--k", "3"] if command == "similar" else ["--neighbors", "5"]
    result = CliRunner().invoke(
        app,
        [
            command,
            str(path),
            *options,
            "--out",
            str(tmp_path / "out.csv"),
            "--mosaic",
            str(tmp_path / "m.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "embeddings look collapsed" in line]
    assert len(lines) == 1 and lines[0].startswith("warning:")
    assert "results will be meaningless" in lines[0]


def test_real_galaxies_working_encoder_passes_and_a_blind_one_is_flagged(shared_data):
    galaxies = GalaxyCollection.open(shared_data / "gz2-unlabelled" / "images")
    images = galaxies.subset(np.arange(200)).read_images(Preprocessor(DEFAULT_PREPROCESS), 100)
    torch.manual_seed(0)
    network = AstroPT(AstroPTConfig.from_size("tiny", bands=3, image_size=32, patch_size=8))
    # Random weights: a working encoder (it beats pixel PCA in a linear probe,
    # benchmarks/results/pretrain_defaults.md) whose raw cosines are all ~1.
    working = collapse_report(AstroPTEncoder(network, DEFAULT_PREPROCESS).encode(images))
    assert working.mean_cosine > 0.99 and not working.collapsed
    # A dead input layer: every galaxy gets the same embedding.
    with torch.no_grad():
        network.patch_embed.weight.zero_()
    blind = collapse_report(AstroPTEncoder(network, DEFAULT_PREPROCESS).encode(images))
    assert blind.collapsed
