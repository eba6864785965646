"""Few-label probes on embeddings."""

import numpy as np
import pytest

from tuningfork.embeddings.probes import (
    chance_accuracy,
    label_subsets,
    regression_metrics,
    run_probes,
)
from tuningfork.errors import ConfigError


def labelled(count=600, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    classes = rng.integers(3, size=count)
    centres = rng.normal(size=(3, dim)) * 2
    vectors = (centres[classes] + rng.normal(size=(count, dim))).astype(np.float32)
    names = np.array(["elliptical", "spiral", "edge_on"])[classes]
    rows = rng.permutation(count)
    return vectors, names, rows[: count // 2], rows[count // 2 :]


def test_classification_probes_beat_chance():
    vectors, names, train, test = labelled()
    table = run_probes(vectors, names, train, test, fractions=(0.05, 1.0), repeats=2)
    assert len(table) == 4
    assert set(table["probe"]) == {"linear", "knn"}
    assert np.all(table["accuracy"] > chance_accuracy(names) + 0.3)
    assert "balanced_accuracy_std" in table.colnames
    full = table[(table["fraction"] == 1.0) & (table["probe"] == "linear")]
    assert full["n_labels"][0] == len(train)


def test_regression_probe_recovers_a_redshift():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(500, 6)).astype(np.float32)
    redshift = 0.5 + 0.1 * vectors[:, 0] + 0.01 * rng.normal(size=500)
    redshift[3] = np.nan  # a galaxy without a redshift is left out
    table = run_probes(
        vectors, redshift, np.arange(300), np.arange(300, 500), fractions=(1.0,), probes=("linear",)
    )
    assert table["nmad"][0] < 0.02
    assert table["outlier_fraction"][0] == 0.0
    assert table["rmse"][0] < 0.03


def test_photoz_metrics_match_hand_computation():
    truth = np.array([1.0, 1.0, 1.0, 1.0])
    predicted = np.array([1.0, 1.2, 1.0, 2.0])
    metrics = regression_metrics(truth, predicted)
    residual = (predicted - truth) / 2.0
    assert metrics["outlier_fraction"] == pytest.approx(0.25)
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean(residual**2)))
    assert metrics["nmad"] == pytest.approx(
        1.4826 * np.median(np.abs(residual - np.median(residual)))
    )
    plain = regression_metrics(truth, predicted, redshift_like=False)
    assert plain["rmse"] == pytest.approx(np.sqrt(np.mean((predicted - truth) ** 2)))


def test_label_subsets_are_stratified_and_keep_every_class():
    labels = np.array(["a"] * 95 + ["b"] * 5)
    subsets = label_subsets(labels, np.arange(100), 0.1, repeats=3, seed=0)
    assert len(subsets) == 3
    for subset in subsets:
        assert set(labels[subset]) == {"a", "b"}
        assert 10 <= len(subset) <= 11  # the rare class keeps one galaxy
    assert not np.array_equal(subsets[0], subsets[1])


def test_bad_inputs_are_clear_errors():
    vectors, names, train, test = labelled(60)
    with pytest.raises(ConfigError, match="label fraction must be in \\(0, 1\\]"):
        run_probes(vectors, names, train, test, fractions=(0.0,))
    with pytest.raises(ConfigError, match="probes \\['forest'\\] unknown"):
        run_probes(vectors, names, train, test, probes=("forest",))
    with pytest.raises(ConfigError, match="one label per embedding"):
        run_probes(vectors, names[:-1], train, test)
    with pytest.raises(ConfigError, match="at least two classes"):
        run_probes(vectors, np.array(["a"] * 60), train, test)


def test_probe_catalog_matches_ids_and_uses_the_split_column():
    from astropy.table import Table

    from tuningfork.embeddings.probes import probe_catalog
    from tuningfork.embeddings.store import EmbeddingSet

    vectors, names, train, _ = labelled(200)
    embeddings = EmbeddingSet([f"g{i}" for i in range(200)], vectors)
    split = np.where(np.isin(np.arange(200), train), "train", "val")
    # The catalog is shuffled and has one galaxy without an embedding.
    order = np.random.default_rng(5).permutation(200)
    catalog = Table(
        {
            "id": [f"g{i}" for i in order] + ["extra"],
            "label": list(names[order]) + ["spiral"],
            "split": list(split[order]) + ["train"],
        }
    )
    table = probe_catalog(embeddings, catalog, "label", fractions=(1.0,), probes=("linear",))
    assert table["n_labels"][0] == len(train)
    assert table["accuracy"][0] > 0.8


def test_probe_catalog_errors_name_the_embeddings():
    from astropy.table import Table

    from tuningfork.embeddings.probes import probe_catalog
    from tuningfork.embeddings.store import EmbeddingSet
    from tuningfork.errors import CatalogError, MissingColumnError

    embeddings = EmbeddingSet(["a", "b"], np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(MissingColumnError, match="no column 'redshift'"):
        probe_catalog(embeddings, Table({"id": ["a"], "label": ["x"]}), "redshift")
    with pytest.raises(CatalogError, match="none of its 2 ids is in the catalog"):
        probe_catalog(embeddings, Table({"id": ["z"], "label": ["x"]}), "label")
