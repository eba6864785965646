"""Embeddings on disk: Parquet + NPY, batches, atomic writes."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from tuningfork.embeddings.store import EmbeddingWriter, fingerprint, load_embeddings, npy_path_for
from tuningfork.errors import InputFileError, MissingFileError, UnsupportedFormatError


def test_batches_round_trip_through_parquet_and_npy(tmp_path):
    path = tmp_path / "emb.parquet"
    vectors = np.arange(30, dtype=np.float32).reshape(10, 3)
    ids = [f"g{i}" for i in range(10)]
    with EmbeddingWriter(path, 10, 3, {"encoder": "unit"}) as writer:
        writer.write(ids[:4], vectors[:4])
        writer.write(ids[4:], vectors[4:])
    loaded = load_embeddings(path)
    assert loaded.ids == ids and loaded.metadata == {"encoder": "unit"}
    np.testing.assert_array_equal(loaded.vectors, vectors)
    assert np.load(npy_path_for(path)).dtype == np.float32
    npy_path_for(path).unlink()  # the Parquet alone is enough
    np.testing.assert_array_equal(load_embeddings(path).vectors, vectors)
    assert pq.read_table(path).column_names == ["id", "embedding"]


def test_failed_run_keeps_the_earlier_output(tmp_path):
    path = tmp_path / "emb.parquet"
    with EmbeddingWriter(path, 2, 2, {}) as writer:
        writer.write(["a", "b"], np.ones((2, 2)))
    with pytest.raises(RuntimeError), EmbeddingWriter(path, 2, 2, {}) as writer:
        writer.write(["c"], np.zeros((1, 2)))
        raise RuntimeError("encoder crashed")
    assert load_embeddings(path).ids == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy", "emb.parquet"]


def test_incomplete_writing_is_an_error(tmp_path):
    writer = EmbeddingWriter(tmp_path / "emb.parquet", 2, 2, {})
    with pytest.raises(InputFileError, match="only 1 of 2 embeddings"), writer:
        writer.write(["a"], np.ones((1, 2)))
    assert not (tmp_path / "emb.parquet").exists()


def test_fingerprint_sees_ids_and_values():
    vectors = np.ones((2, 2), dtype=np.float32)
    base = fingerprint(["a", "b"], vectors)
    assert base != fingerprint(["a", "c"], vectors)
    assert base != fingerprint(["a", "b"], vectors * 2)


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(MissingFileError, match="nothere.parquet: embeddings file not found"):
        load_embeddings(tmp_path / "nothere.parquet")
    with pytest.raises(UnsupportedFormatError, match="emb.csv"):
        load_embeddings(tmp_path / "emb.csv")
