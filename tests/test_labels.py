"""The append-only label log: undo, current labels, consensus, kappa, export, and training labels."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from tuningfork.data import GalaxyCollection
from tuningfork.data.labels import LabelLog, apply_expert_labels, fleiss_kappa
from tuningfork.errors import CatalogError, ConfigError, CorruptFileError, MissingFileError


@pytest.fixture
def log(tmp_path):
    return LabelLog(tmp_path / "labels.sqlite")


def test_undo_appends_and_cancels_the_last_label(log):
    log.append("a", "spiral", "alice", predicted_class="elliptical", confidence=0.4)
    log.append("b", "edge_on", "alice")
    log.append("c", None, "alice", action="skip")
    undone = log.undo("alice")
    assert (undone["action"], undone["galaxy_id"], undone["cancels"]) == ("undo", "b", 2)
    assert log.undo("alice")["galaxy_id"] == "a"
    assert log.undo("alice") is None
    rows = log.rows()
    # Nothing was deleted: 3 rows appended, 2 undos.
    assert list(rows["action"]) == ["label", "label", "skip", "undo", "undo"]
    assert rows["predicted_class"].iloc[0] == "elliptical"
    assert log.current().empty


def test_the_database_is_in_wal_mode_and_other_files_are_refused(tmp_path):
    path = tmp_path / "labels.sqlite"
    LabelLog(path).append("a", "spiral", "alice")
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    (tmp_path / "bad.sqlite").write_text("not a database at all" * 50)
    with pytest.raises(CorruptFileError, match="bad.sqlite"):
        LabelLog(tmp_path / "bad.sqlite")
    with pytest.raises(MissingFileError, match="missing.sqlite"):
        LabelLog(tmp_path / "missing.sqlite", create=False)


def test_a_label_action_needs_a_label(log):
    with pytest.raises(ConfigError, match="needs a label"):
        log.append("a", "", "alice")
    with pytest.raises(ConfigError, match="action"):
        log.append("a", "spiral", "alice", action="undo")


def test_relabelling_keeps_the_latest_and_consensus_is_the_majority(log):
    log.append("a", "spiral", "alice")
    log.append("a", "edge_on", "alice")
    log.append("a", "edge_on", "bob")
    log.append("a", "spiral", "carol")
    log.append("b", "spiral", "alice")
    log.append("b", "edge_on", "bob")
    current = log.current()
    assert len(current) == 5
    consensus = log.consensus().set_index("galaxy_id")
    assert consensus.loc["a", "label"] == "edge_on" and consensus.loc["a", "votes"] == 2
    # A tie has no consensus.
    assert not isinstance(consensus.loc["b", "label"], str)


def test_cohen_kappa_for_two_annotators_matches_sklearn(log):
    alice = ["s", "s", "e", "e", "s", "e"]
    bob = ["s", "e", "e", "e", "s", "s"]
    for index, (first, second) in enumerate(zip(alice, bob)):
        log.append(f"g{index}", first, "alice")
        log.append(f"g{index}", second, "bob")
    result = log.agreement()
    assert result["method"] == "cohen" and result["galaxies"] == 6
    assert result["kappa"] == pytest.approx(cohen_kappa_score(alice, bob))


def test_fleiss_kappa_of_a_published_example():
    # Fleiss (1971) as tabulated on Wikipedia: 10 subjects, 14 raters, 5 categories, kappa 0.210.
    counts = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                       [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(counts) == pytest.approx(0.2099, abs=1e-3)
    with pytest.raises(ConfigError):
        fleiss_kappa(np.array([[1, 0]]))


def test_three_annotators_get_fleiss_kappa_and_pairs(log):
    for index in range(6):
        for who in ("alice", "bob", "carol"):
            log.append(f"g{index}", "s" if (index + (who == "carol")) % 2 else "e", who)
    result = log.agreement()
    assert result["method"] == "fleiss" and len(result["pairs"]) == 3
    assert -1.0 <= result["kappa"] < 1.0


def test_export_to_csv_and_parquet(log, tmp_path):
    log.append("a", "spiral", "alice")
    log.append("b", "edge_on", "bob")
    log.undo("bob")
    csv = log.export(tmp_path / "log.csv", "log")
    assert len(pd.read_csv(csv)) == 3
    parquet = log.export(tmp_path / "annotators.parquet", "annotators")
    assert list(pd.read_parquet(parquet)["galaxy_id"]) == ["a"]
    assert list(pd.read_csv(log.export(tmp_path / "consensus.csv"))["label"]) == ["spiral"]
    with pytest.raises(ConfigError, match="csv or .parquet"):
        log.export(tmp_path / "labels.txt")


def test_expert_labels_replace_catalog_labels_and_drop_others(log):
    images = np.zeros((4, 1, 8, 8), dtype=np.float32)
    collection = GalaxyCollection.from_arrays(images, {"id": ["a", "b", "c", "d"],
                                                       "label": ["spiral", "spiral", "edge_on", "spiral"]})
    log.append("a", "edge_on", "alice")
    log.append("b", "other", "alice")
    log.append("zz", "spiral", "alice")
    labelled = apply_expert_labels(collection, log, "label")
    assert labelled.ids == ["a", "c", "d"]
    assert list(labelled.catalog["label"]) == ["edge_on", "edge_on", "spiral"]
    assert labelled.class_names == ["edge_on", "spiral"]
    # The caller's collection keeps its labels.
    assert list(collection.catalog["label"]) == ["spiral", "spiral", "edge_on", "spiral"]


def test_without_catalog_labels_only_expert_labelled_galaxies_remain(log):
    images = np.zeros((3, 1, 8, 8), dtype=np.float32)
    collection = GalaxyCollection.from_arrays(images, {"id": ["a", "b", "c"]})
    log.append("c", "spiral", "alice")
    labelled = apply_expert_labels(collection, log, "label")
    assert labelled.ids == ["c"] and list(labelled.catalog["label"]) == ["spiral"]
    empty = LabelLog(log.path.with_name("empty.sqlite"))
    with pytest.raises(CatalogError, match="no galaxy has a label"):
        apply_expert_labels(collection, empty, "label")


@pytest.mark.slow
def test_train_command_fine_tunes_on_the_expert_consensus(tmp_path):
    import json

    import torch

    from cli_helpers import invoke

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:24, :24] - 11.5
    truth = np.array(["compact", "extended"] * 20)
    widths = np.where(truth == "compact", 1.5, 5.0)
    images = (np.exp(-np.hypot(x, y)[None] / widths[:, None, None]) + rng.normal(0, 0.02, (40, 24, 24)))
    labelled, unlabelled = tmp_path / "labelled.npz", tmp_path / "every_one_compact.npz"
    split = np.where(np.arange(40) < 30, "train", "val")
    np.savez(labelled, images=images.astype(np.float32), labels=truth, split=split)
    # The catalog says every galaxy is compact; the experts correct the wide ones.
    np.savez(unlabelled, images=images.astype(np.float32), labels=np.full(40, "compact"), split=split)
    ids = GalaxyCollection.open(unlabelled).ids
    log = LabelLog(tmp_path / "labels.sqlite")
    for galaxy_id, label in zip(ids, truth):
        if label == "extended":
            log.append(galaxy_id, label, "alice")
    base = tmp_path / "base"
    options = ["--image-size", "24", "--epochs", "1", "--batch-size", "10"]
    result, output = invoke("train", labelled, "--out", base, *options)
    assert result.exit_code == 0, output
    tuned = tmp_path / "tuned"
    result, output = invoke("train", unlabelled, "--out", tuned, "--labels", log.path, "--init-from", base, *options)
    assert result.exit_code == 0, output
    config = json.loads((tuned / "config.json").read_text())
    assert config["target"]["class_names"] == ["compact", "extended"]
    assert config["metrics"]["initialised_from"] == str(base)
    result, output = invoke("train", unlabelled, "--out", tmp_path / "x", "--labels", tmp_path / "none.sqlite")
    assert result.exit_code == 2 and "none.sqlite" in output
