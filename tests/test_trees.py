"""Galaxy Zoo decision trees as data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tuningfork.errors import ConfigError
from tuningfork.training.trees import GZ2, GZ_DECALS, Answer, DecisionTree, Question, get_tree

# A three-question tree: q1 (a -> q2, b -> q3), q2 (c, d -> q3), q3 (e, f).
TOY = DecisionTree(
    name="toy",
    questions=(
        Question("q1", "?", (Answer("a", "q1_a", "q2"), Answer("b", "q1_b", "q3"))),
        Question("q2", "?", (Answer("c", "q2_c", None), Answer("d", "q2_d", "q3"))),
        Question("q3", "?", (Answer("e", "q3_e", None), Answer("f", "q3_f", None))),
    ),
)


def test_shipped_trees_have_the_published_sizes():
    assert (len(GZ2.questions), GZ2.num_answers) == (11, 37)
    assert (len(GZ_DECALS.questions), GZ_DECALS.num_answers) == (10, 34)
    assert sorted(GZ2.count_columns) == sorted(f"Class{q}.{a}" for q, n in
                                               zip(range(1, 12), (3, 2, 2, 2, 4, 2, 3, 7, 3, 3, 6))
                                               for a in range(1, n + 1))
    assert "has-spiral-arms_yes_fraction" in GZ_DECALS.fraction_columns


def test_get_tree_by_name_and_unknown_name():
    assert get_tree("gz2") is GZ2
    with pytest.raises(ConfigError, match="unknown decision tree 'gz3'"):
        get_tree("gz3")


def test_a_question_must_come_after_the_questions_leading_to_it():
    with pytest.raises(ConfigError, match="leads back"):
        DecisionTree("bad", (Question("q2", "?", (Answer("x", "x", None),)),
                             Question("q1", "?", (Answer("y", "y", "q2"),))))
    with pytest.raises(ConfigError, match="unknown question 'nowhere'"):
        DecisionTree("bad", (Question("q1", "?", (Answer("y", "y", "nowhere"),)),))


def test_normalise_per_question_with_unanswered_questions_nan():
    counts = np.array([[3, 1, 0, 0, 2, 2]], dtype=float)
    fractions = TOY.normalise(counts)
    np.testing.assert_allclose(fractions[0, :2], [0.75, 0.25])
    assert np.isnan(fractions[0, 2:4]).all()
    np.testing.assert_allclose(fractions[0, 4:], [0.5, 0.5])
    assert counts[0, 0] == 3  # input untouched


def test_reach_probability_and_cumulative_by_hand():
    fractions = np.array([[0.6, 0.4, 0.5, 0.5, 0.9, 0.1]])
    # q3 is reached through b (0.4) and through a then d (0.6 * 0.5).
    np.testing.assert_allclose(TOY.reach_probability(fractions), [[1.0, 0.6, 0.7]])
    np.testing.assert_allclose(TOY.cumulative(fractions), [[0.6, 0.4, 0.3, 0.3, 0.63, 0.07]])


def test_cumulative_is_the_same_for_numpy_and_torch():
    fractions = GZ2.normalise(np.random.default_rng(0).random((5, GZ2.num_answers)))
    from_torch = GZ2.cumulative(torch.from_numpy(fractions)).numpy()
    np.testing.assert_allclose(from_torch, GZ2.cumulative(fractions))
    # Kaggle convention: the first question's cumulative fractions sum to one.
    np.testing.assert_allclose(from_torch[:, :3].sum(axis=1), 1.0)


def test_leaf_follows_the_most_voted_answers():
    fractions = np.array([[0.2, 0.8, 0.5, 0.5, 0.3, 0.7], [0.9, 0.1, 0.7, 0.3, 0.5, 0.5]])
    assert TOY.leaf(fractions) == ["b/f", "a/c"]


def test_gz2_leaf_of_a_barred_spiral():
    fractions = np.zeros((1, GZ2.num_answers))
    chosen = {"smooth/features-or-disk", "edge-on/no", "bar/yes", "spiral/yes", "arm-winding/tight",
              "arm-count/2", "bulge-prominence/obvious", "odd/no"}
    for index, label in enumerate(GZ2.answer_labels):
        fractions[0, index] = 1.0 if label in chosen else 0.0
    assert GZ2.leaf(fractions) == ["features-or-disk/no/yes/yes/tight/2/obvious/no"]


CHALLENGE_17 = ("smooth", "edge-on", "how-rounded", "odd", "odd-feature")


def test_restricted_tree_keeps_the_cumulative_fractions_of_the_full_tree():
    fractions = GZ2.normalise(np.random.default_rng(3).random((50, GZ2.num_answers)))
    full = GZ2.cumulative(fractions)
    small = get_tree("gz2[smooth,edge-on,how-rounded,odd,odd-feature]")
    assert small.num_answers == 17 and small.name.startswith("gz2[")
    kept = [GZ2.count_columns.index(column) for column in small.count_columns]
    # Per-question fractions of the kept questions, cumulated by the small tree.
    np.testing.assert_allclose(small.cumulative(fractions[:, kept]), full[:, kept], atol=1e-12)
    # The challenge asked question 6 of everyone.
    odd = [small.count_columns.index(c) for c in ("Class6.1", "Class6.2")]
    np.testing.assert_allclose(small.cumulative(fractions[:, kept])[:, odd].sum(axis=1), 1.0)


def test_questions_in_a_catalog_and_the_tree_for_its_columns():
    from tuningfork.training.trees import tree_for_columns

    columns = [c for c in GZ2.count_columns if c.split(".")[0] in ("Class1", "Class2", "Class6", "Class7", "Class8")]
    assert len(columns) == 17
    assert tree_for_columns("gz2", columns + ["id"]).name == "gz2[" + ",".join(CHALLENGE_17) + "]"
    assert tree_for_columns("gz2", GZ2.count_columns) is GZ2
    with pytest.raises(ConfigError, match="only some of its columns"):
        tree_for_columns("gz2", columns[1:])
    assert tree_for_columns("gz2", ["id", "label"]) is GZ2


def test_restricting_refuses_a_missing_root_and_unknown_questions():
    with pytest.raises(ConfigError, match="root"):
        GZ2.restricted(("odd",))
    with pytest.raises(ConfigError, match="no question 'spin'"):
        GZ2.restricted(("smooth", "spin"))
