"""Tests of tuningfork.clustering.voting: alignment, voting, bagging, scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from tuningfork.clustering.voting import (
    VotingClustering,
    align_labels,
    cluster_member,
    consensus_vote,
    score_groups,
    vote_aligned,
    voting_clustering,
)
from tuningfork.errors import (
    ConfigError,
    CorruptFileError,
    FeatureError,
    MissingFileError,
    ModelError,
)


@pytest.fixture(scope="module")
def blobs():
    features, labels = make_blobs(150, n_features=5, centers=3, cluster_std=0.5, random_state=0)
    return features, labels


def test_alignment_undoes_a_permutation_of_labels():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 5, size=200)
    permutation = np.array([3, 0, 4, 1, 2])
    aligned = align_labels(permutation[reference], reference, 5)
    np.testing.assert_array_equal(aligned, reference)


def test_alignment_matches_the_majority_when_labels_are_noisy():
    rng = np.random.default_rng(1)
    reference = np.repeat(np.arange(4), 50)
    noisy = reference.copy()
    flipped = rng.choice(reference.size, size=30, replace=False)
    noisy[flipped] = rng.integers(0, 4, size=30)
    permuted = np.array([2, 3, 1, 0])[noisy]
    aligned = align_labels(permuted, reference, 4)
    assert (aligned == reference).mean() > 0.85
    assert sorted(np.unique(aligned)) == [0, 1, 2, 3]


def test_everything_is_classified_when_members_agree():
    labels = np.array([0, 1, 2, 1, 0])
    result = consensus_vote(np.tile(labels, (6, 1)), 3, threshold=0.8)
    assert result.classified.all()
    np.testing.assert_array_equal(result.group, labels)
    np.testing.assert_allclose(result.vote_fraction, 1.0)
    assert not result.has_second.any()


def test_nothing_is_classified_when_members_disagree():
    # Three members, each putting every galaxy in a different group.
    members = np.array([[0, 1, 2, 0], [1, 2, 0, 1], [2, 0, 1, 2]])
    result = consensus_vote(members, 3, threshold=0.5)
    assert not result.classified.any()
    assert (result.group == -1).all()
    np.testing.assert_allclose(result.vote_fraction, 1 / 3)
    assert result.fraction_classified == 0.0


def test_vote_records_the_second_choice():
    members = np.array([[0], [0], [0], [1]])
    result = consensus_vote(members, 2, threshold=0.7)
    assert result.group[0] == 0 and result.vote_fraction[0] == 0.75
    assert result.second_group[0] == 1 and result.second_fraction[0] == 0.25


def test_vote_aligned_handles_members_with_permuted_labels():
    truth = np.repeat(np.arange(3), 10)
    members = np.stack([np.roll(np.arange(3), shift)[truth] for shift in range(3)])
    result = vote_aligned(members, 3, threshold=0.9)
    assert result.classified.all()
    assert score_groups(result.group, truth)["ari"] == pytest.approx(1.0)


def test_bagging_voting_recovers_separated_blobs(blobs):
    features, labels = blobs
    result = voting_clustering(features, 3, n_bootstrap=2, seed=0)
    assert result.fraction_classified > 0.95
    scores = score_groups(result.group, labels, result.classified)
    assert scores["purity"] == pytest.approx(1.0)
    assert scores["ari"] == pytest.approx(1.0)


def test_each_clustering_model_labels_every_galaxy(blobs):
    features, labels = blobs
    for model in ("kmeans", "ward", "gmm", "birch"):
        member = cluster_member(model, features[::2], features, 3, seed=0)
        assert member.shape == labels.shape
        assert score_groups(member, labels)["ari"] > 0.9, model


def test_group_table_masks_unclassified_galaxies():
    members = np.array([[0, 1, 0], [0, 0, 1]])
    table = consensus_vote(members, 2, threshold=1.0).to_table(["a", "b", "c"])
    assert list(table["classified"]) == [True, False, False]
    assert table["group"][0] == 0
    assert table["group"].mask.tolist() == [False, True, True]
    assert table.colnames == [
        "id",
        "group",
        "classified",
        "vote_fraction",
        "second_group",
        "second_fraction",
    ]


def test_k_larger_than_the_sample_is_a_clear_error(blobs):
    features, _ = blobs
    with pytest.raises(ConfigError, match="K=200 groups requested but the sample has only 150"):
        voting_clustering(features, 200)


def test_nan_features_are_a_clear_error(blobs):
    features = blobs[0].copy()
    features[7, 2] = np.nan
    with pytest.raises(FeatureError, match="embeddings.parquet: 1 rows hold NaN.*row 7"):
        voting_clustering(features, 3, name="embeddings.parquet")


def test_invalid_settings_are_config_errors(blobs):
    features, _ = blobs
    with pytest.raises(ConfigError, match="spectral"):
        voting_clustering(features, 3, models=("kmeans", "spectral"))
    with pytest.raises(ConfigError, match="threshold"):
        voting_clustering(features, 3, threshold=1.5, n_bootstrap=1, models=("kmeans",))
    with pytest.raises(ConfigError, match="K must be an integer >= 2"):
        voting_clustering(features, 1)


def test_caller_features_are_not_modified(blobs):
    features = blobs[0].copy()
    before = features.copy()
    voting_clustering(features, 3, n_bootstrap=1, models=("kmeans",))
    np.testing.assert_array_equal(features, before)


def test_scores_count_only_classified_galaxies():
    groups = np.array([0, 0, 1, 1, -1, -1])
    labels = np.array(["s", "s", "e", "s", "e", "e"])
    scores = score_groups(groups, labels, groups >= 0)
    assert scores["fraction_classified"] == pytest.approx(4 / 6)
    assert scores["purity"] == pytest.approx(3 / 4)
    nothing = score_groups(groups, labels, np.zeros(6, bool))
    assert np.isnan(nothing["purity"])


def test_group_catalog_round_trips_through_csv(tmp_path):
    from tuningfork.clustering.voting import read_groups
    from tuningfork.data.writers import write_table
    from tuningfork.errors import MissingFileError

    members = np.array([[0, 1, 0], [0, 0, 1]])
    table = consensus_vote(members, 2, threshold=1.0).to_table(["007", "b", "c"])
    back = read_groups(write_table(tmp_path / "groups.csv", table))
    assert list(back["id"]) == ["007", "b", "c"]
    assert back["classified"].dtype == bool and list(back["classified"]) == [True, False, False]
    assert back["group"][0] == 0 and back["group"].mask.tolist() == [False, True, True]
    with pytest.raises(MissingFileError, match="nothing.csv: group catalog not found"):
        read_groups(tmp_path / "nothing.csv")


def test_predict_puts_unseen_rows_from_the_fitted_clusters_in_their_group():
    features, labels = make_blobs(400, n_features=5, centers=3, cluster_std=0.5, random_state=3)
    fitted, unseen = slice(0, 300), slice(300, None)
    clustering = VotingClustering(3, n_bootstrap=2, seed=1).fit(features[fitted])
    training = clustering.fit_predict(features[fitted])
    vote = clustering.predict(features[unseen])
    assert vote.classified.all() and vote.group.shape == (100,)
    # The group of each true blob on the fitted rows is the group its unseen rows get.
    group_of_blob = {b: np.bincount(training.group[labels[fitted] == b]).argmax() for b in range(3)}
    np.testing.assert_array_equal(vote.group, [group_of_blob[b] for b in labels[unseen]])


def test_predict_on_the_fitted_rows_repeats_the_fit_vote(blobs):
    features, _ = blobs
    clustering = VotingClustering(3, n_bootstrap=2, seed=0)
    fitted = clustering.fit_predict(features)
    again = clustering.predict(features)
    np.testing.assert_array_equal(again.votes, fitted.votes)
    np.testing.assert_array_equal(
        fitted.votes, voting_clustering(features, 3, n_bootstrap=2, seed=0).votes
    )
    assert clustering.alignment_.shape == (8, 3) and len(clustering.members_) == 8


def test_a_saved_clustering_predicts_like_the_fitted_one(blobs, tmp_path):
    features, _ = blobs
    rng = np.random.default_rng(5)
    unseen = features[rng.choice(150, 40)] + rng.normal(0, 0.8, (40, 5))
    clustering = VotingClustering(3, n_bootstrap=2, threshold=0.7, seed=2).fit(features)
    loaded = VotingClustering.load(clustering.save(tmp_path / "voting"))
    assert loaded.settings == clustering.settings and loaded.n_features_in_ == 5
    expected, got = clustering.predict(unseen), loaded.predict(unseen)
    for name in ("group", "classified", "vote_fraction", "second_group", "votes"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    assert sorted(p.name for p in (tmp_path / "voting").iterdir()) == ["voting.json", "voting.npz"]


def test_predict_and_load_errors_are_clear(blobs, tmp_path):
    features, _ = blobs
    with pytest.raises(ModelError, match="call fit"):
        VotingClustering(3).predict(features)
    clustering = VotingClustering(3, n_bootstrap=1, models=("kmeans",)).fit(features)
    with pytest.raises(FeatureError, match="4 features, the clustering was fitted on 5"):
        clustering.predict(features[:, :4])
    with pytest.raises(MissingFileError, match="voting settings not found"):
        VotingClustering.load(tmp_path / "nothing")
    folder = clustering.save(tmp_path / "voting")
    (folder / "voting.json").write_text('{"n_clusters": 3, "n_groups": 2}')
    with pytest.raises(ConfigError, match="unknown key.*n_groups"):
        VotingClustering.load(folder)
    (folder / "voting.json").write_text('{"n_clusters": 3, "n_bootstrap": 2, "models": ["kmeans"]}')
    with pytest.raises(CorruptFileError, match="members do not match"):
        VotingClustering.load(folder)
