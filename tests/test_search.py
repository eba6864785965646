"""faiss similarity search: exact and approximate indexes, saving, clear errors."""

import numpy as np
import pytest

from tuningfork.embeddings.search import (
    SimilarityIndex,
    index_path_for,
    open_or_build_index,
    recall_at_k,
)
from tuningfork.embeddings.store import EmbeddingSet, EmbeddingWriter, load_embeddings
from tuningfork.errors import ConfigError, InputFileError, MissingFileError


def clustered(count=2000, dim=16, clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * 3
    vectors = centres[rng.integers(clusters, size=count)] + rng.normal(size=(count, dim))
    return EmbeddingSet([f"g{i}" for i in range(count)], vectors.astype(np.float32))


def write_embeddings(path, embeddings, batch=300):
    with EmbeddingWriter(path, len(embeddings), embeddings.dim, {"encoder": "test"}) as writer:
        for start in range(0, len(embeddings), batch):
            writer.write(
                embeddings.ids[start : start + batch], embeddings.vectors[start : start + batch]
            )
    return load_embeddings(path)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_search_returns_the_query_itself_first(metric):
    embeddings = clustered(300)
    index = SimilarityIndex.build(embeddings, metric=metric)
    assert index.settings.kind == "flat"
    result = index.neighbours("g42", k=5)
    assert result["id"][0] == "g42"
    assert result["distance"][0] == pytest.approx(0.0, abs=1e-5)
    assert np.all(np.diff(result["distance"]) >= 0)
    assert list(result["rank"]) == [1, 2, 3, 4, 5]


def test_exact_l2_distances_match_numpy():
    embeddings = clustered(200)
    index = SimilarityIndex.build(embeddings, metric="l2")
    distances, rows = index.search(embeddings.vectors[:3], k=4)
    expected = np.linalg.norm(embeddings.vectors[rows[1]] - embeddings.vectors[1], axis=1)
    np.testing.assert_allclose(distances[1], expected, rtol=1e-4, atol=1e-4)


def test_auto_switches_to_approximate_above_threshold():
    embeddings = clustered(2000)
    assert SimilarityIndex.build(embeddings, exact_below=1000).settings.kind == "ivf"
    assert SimilarityIndex.build(embeddings, exact_below=5000).settings.kind == "flat"
    assert SimilarityIndex.build(embeddings, kind="hnsw", exact_below=5000).settings.kind == "hnsw"


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_recall_is_high(kind):
    embeddings = clustered(3000)
    exact = SimilarityIndex.build(embeddings, kind="flat")
    approximate = SimilarityIndex.build(embeddings, kind=kind, nprobe=8)
    recall = recall_at_k(approximate, exact, embeddings.vectors[:200], k=10)
    assert recall > 0.9
    assert approximate.settings.recall_at_10 > 0.9  # measured at build time
    assert exact.settings.recall_at_10 == 1.0


def test_save_and_load_beside_the_embeddings(tmp_path):
    embeddings = write_embeddings(tmp_path / "emb.parquet", clustered(1500))
    built = SimilarityIndex.build(embeddings, kind="ivf", nprobe=4)
    path = built.save()
    assert path == index_path_for(tmp_path / "emb.parquet") and path.is_file()
    reopened = SimilarityIndex.load(load_embeddings(tmp_path / "emb.parquet"))
    assert reopened.settings.kind == "ivf" and reopened.settings.nprobe == 4
    query = embeddings.vectors[:5]
    np.testing.assert_array_equal(built.search(query, 5)[1], reopened.search(query, 5)[1])


def test_index_built_on_other_embeddings_is_detected(tmp_path):
    first = write_embeddings(tmp_path / "emb.parquet", clustered(200, seed=0))
    SimilarityIndex.build(first).save()
    write_embeddings(tmp_path / "emb.parquet", clustered(200, seed=1))
    with pytest.raises(InputFileError, match="emb.faiss: index was built on other embeddings"):
        SimilarityIndex.load(load_embeddings(tmp_path / "emb.parquet"))


def test_missing_index_is_a_clear_error(tmp_path):
    embeddings = write_embeddings(tmp_path / "emb.parquet", clustered(50))
    with pytest.raises(MissingFileError, match="emb.faiss: similarity index"):
        SimilarityIndex.load(embeddings)


def test_query_id_not_in_index_is_a_clear_error(tmp_path):
    embeddings = write_embeddings(tmp_path / "emb.parquet", clustered(50))
    index = SimilarityIndex.build(embeddings)
    with pytest.raises(InputFileError, match="emb.parquet: no galaxy with id 'nope'"):
        index.neighbours("nope")


def test_query_dimension_mismatch_is_a_clear_error():
    index = SimilarityIndex.build(clustered(50, dim=16))
    with pytest.raises(InputFileError, match="dimension 8 but the index holds dimension 16"):
        index.search(np.zeros((1, 8), dtype=np.float32))


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ConfigError, match="index kind 'tree'"):
        SimilarityIndex.build(clustered(20), kind="tree")


def test_query_vectors_are_not_modified():
    index = SimilarityIndex.build(clustered(100))
    queries = np.full((2, 16), 3.0, dtype=np.float32)
    index.search(queries, 3)
    assert np.all(queries == 3.0)


def test_open_or_build_reuses_the_saved_index_until_asked_to_rebuild(tmp_path):
    embeddings = write_embeddings(tmp_path / "emb.parquet", clustered(300))
    built = open_or_build_index(embeddings, kind="hnsw")
    assert index_path_for(embeddings.path).is_file()
    reopened = open_or_build_index(embeddings, kind="flat")
    assert reopened.settings.kind == "hnsw" and reopened.path == built.path
    assert open_or_build_index(embeddings, rebuild=True, kind="flat").settings.kind == "flat"
