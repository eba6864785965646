"""Galaxy Zoo decision trees, written as data.

A Galaxy Zoo volunteer answers a question, and the answer decides which
question comes next.  A :class:`DecisionTree` holds the questions in the
order they can be asked, their answers, and for every answer the question it
leads to (``None`` ends the classification).  Everything that depends on the
tree (per-question normalisation, the Dirichlet-multinomial loss, the
challenge's cumulative fractions, the leaf class of a galaxy) reads it from
here, so a new survey's tree is one more constant, not new code.

Two trees ship:

* :data:`GZ2`: Galaxy Zoo 2 (Willett et al. 2013), 11 questions and 37
  answers, with the column names of the Kaggle "Galaxy Zoo - The Galaxy
  Challenge" solutions file (``Class1.1`` ... ``Class11.6``).
* :data:`GZ_DECALS`: Galaxy Zoo DECaLS DR5 (Walmsley et al. 2022), 10
  questions and 34 answers, with the count column names of the GZ DECaLS
  catalogue and Zoobot (``smooth-or-featured_smooth`` ...); fraction columns
  add ``_fraction``.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class Answer:
    """One answer of a question.

    Parameters
    ----------
    name : str
        Short identifier, unique within its question.
    column : str
        Catalog column holding the votes for this answer (counts, or
        fractions for trees whose catalogs ship only fractions).
    next_question : str or None
        Name of the question this answer leads to; ``None`` ends the tree.
    """

    name: str
    column: str
    next_question: str | None


@dataclass(frozen=True)
class Question:
    """One question and its answers.

    Parameters
    ----------
    name : str
        Identifier of the question.
    text : str
        The question as volunteers saw it.
    answers : tuple of Answer
        Its answers, in catalog order.
    """

    name: str
    text: str
    answers: tuple[Answer, ...]


@dataclass(frozen=True)
class DecisionTree:
    """A Galaxy Zoo decision tree.

    Parameters
    ----------
    name : str
        Identifier used in model folders and on the command line.
    questions : tuple of Question
        Every question, the first one being the root; a question appears
        after every question that can lead to it.
    fraction_suffix : str
        Appended to an answer's column to name its vote-fraction column
        (empty when the answer columns already hold fractions).
    """

    name: str
    questions: tuple[Question, ...]
    fraction_suffix: str = "_fraction"

    def __post_init__(self):
        names = [question.name for question in self.questions]
        seen: set[str] = set()
        for question in self.questions:
            seen.add(question.name)
            for answer in question.answers:
                if answer.next_question is not None and answer.next_question not in names:
                    raise ConfigError(
                        f"tree {self.name}: answer {question.name}/{answer.name} leads to unknown question "
                        f"'{answer.next_question}'"
                    )
                if answer.next_question in seen:
                    raise ConfigError(
                        f"tree {self.name}: answer {question.name}/{answer.name} leads back to "
                        f"'{answer.next_question}', which is asked before it"
                    )

    @property
    def answers(self) -> list[tuple[Question, Answer]]:
        """Every (question, answer) pair, in output order."""
        return [(question, answer) for question in self.questions for answer in question.answers]

    @property
    def answer_labels(self) -> list[str]:
        """``question/answer`` for every output, in output order."""
        return [f"{question.name}/{answer.name}" for question, answer in self.answers]

    @property
    def count_columns(self) -> list[str]:
        """Catalog columns holding each answer's votes, in output order."""
        return [answer.column for _, answer in self.answers]

    @property
    def fraction_columns(self) -> list[str]:
        """Catalog columns holding each answer's vote fraction, in output order."""
        return [answer.column + self.fraction_suffix for _, answer in self.answers]

    @property
    def num_answers(self) -> int:
        """Total number of answers, i.e. the number of network outputs."""
        return sum(len(question.answers) for question in self.questions)

    def question_slices(self) -> list[slice]:
        """The slice of the output vector that belongs to each question."""
        slices, start = [], 0
        for question in self.questions:
            slices.append(slice(start, start + len(question.answers)))
            start += len(question.answers)
        return slices

    def normalise(self, votes: np.ndarray) -> np.ndarray:
        """Scale votes so that each question's answers sum to one.

        Parameters
        ----------
        votes : ndarray
            (n_galaxies, num_answers) counts or unnormalised fractions.

        Returns
        -------
        ndarray
            A new float array; questions nobody answered for a galaxy are NaN.
        """
        votes = np.asarray(votes, dtype=np.float64)
        fractions = np.full_like(votes, np.nan)
        for block in self.question_slices():
            total = votes[:, block].sum(axis=1, keepdims=True)
            answered = total[:, 0] > 0
            fractions[answered, block] = votes[answered, block] / total[answered]
        return fractions

    def _position_of_question(self) -> dict[str, int]:
        return {question.name: position for position, question in enumerate(self.questions)}

    def _question_of_answer(self) -> list[int]:
        return [position for position, question in enumerate(self.questions) for _ in question.answers]

    def reach_probability(self, fractions):
        """Probability that each question is asked, from per-question fractions.

        A question is reached through every answer that leads to it, so its
        probability is the sum over those answers of (probability of the
        answer's question) x (the answer's fraction).  The root is always
        asked.  Works on numpy arrays and on torch tensors (differentiably),
        so training and evaluation share this one implementation.

        Parameters
        ----------
        fractions : ndarray or Tensor
            (n_galaxies, num_answers) fractions normalised per question, with
            no NaN.

        Returns
        -------
        ndarray or Tensor
            (n_galaxies, n_questions), of the input's type.
        """
        # A tensor exists only once torch is imported, so a prediction process need never import it.
        torch = sys.modules.get("torch")
        xp = torch if torch is not None and isinstance(fractions, torch.Tensor) else np
        index = self._position_of_question()
        incoming: list[list] = [[] for _ in self.questions]
        reach = []
        for position, (question, block) in enumerate(zip(self.questions, self.question_slices())):
            # Questions are stored so that every contribution to this one has
            # been collected by the time it is reached.
            reach.append(sum(incoming[position]) if position else xp.ones_like(fractions[:, 0]))
            for offset, answer in enumerate(question.answers):
                if answer.next_question is not None:
                    incoming[index[answer.next_question]].append(reach[position] * fractions[:, block.start + offset])
        return xp.stack(reach, 1)

    def cumulative(self, fractions):
        """Per-question fractions weighted by the probability of being asked.

        This is the form of the Galaxy Zoo challenge's solutions file (and of
        its RMSE): an answer's value is the fraction of all volunteers who
        gave it.

        Parameters
        ----------
        fractions : ndarray or Tensor
            As for :meth:`reach_probability`.

        Returns
        -------
        ndarray or Tensor
            (n_galaxies, num_answers), of the input's type.
        """
        return fractions * self.reach_probability(fractions)[:, self._question_of_answer()]

    def restricted(self, kept: tuple[str, ...] | list[str]) -> DecisionTree:
        """The tree asking only the questions ``kept``, for catalogs that hold only some questions.

        An answer that led to a dropped question leads instead to the first
        kept question that every path from there reaches (so the
        probability of reaching each kept question, and the cumulative
        fractions, are those of the full tree).  The result is named
        ``name[q1,q2,...]``, which :func:`get_tree` understands.

        Parameters
        ----------
        kept : sequence of str
            Question names; the root must be among them.

        Returns
        -------
        DecisionTree

        Raises
        ------
        ConfigError
            For an unknown question, a missing root, or a dropped question
            whose paths reach different kept questions.
        """
        names = [question.name for question in self.questions]
        unknown = [name for name in kept if name not in names]
        if unknown:
            raise ConfigError(f"tree {self.name}: no question '{unknown[0]}' (its questions: {', '.join(names)})")
        if names[0] not in kept:
            raise ConfigError(f"tree {self.name}: the root question '{names[0]}' must be kept")
        by_name = {question.name: question for question in self.questions}

        def first_kept(name: str | None) -> set[str | None]:
            if name is None or name in kept:
                return {name}
            return set().union(*(first_kept(answer.next_question) for answer in by_name[name].answers))

        questions = []
        for question in self.questions:
            if question.name not in kept:
                continue
            answers = []
            for answer in question.answers:
                reached = first_kept(answer.next_question)
                if len(reached) != 1:
                    raise ConfigError(f"tree {self.name}: after {question.name}/{answer.name} the kept questions "
                                      f"reached differ ({', '.join(sorted(map(str, reached)))})")
                answers.append(Answer(answer.name, answer.column, reached.pop()))
            questions.append(Question(question.name, question.text, tuple(answers)))
        order = [name for name in names if name in kept]
        return DecisionTree(f"{self.name}[{','.join(order)}]", tuple(questions), self.fraction_suffix)

    def questions_in(self, columns) -> list[str]:
        """The questions whose vote columns are all among ``columns`` (counts or fractions).

        Raises
        ------
        ConfigError
            For a question with some but not all of its columns.
        """
        columns = set(columns)
        present = []
        for question in self.questions:
            for names in ([a.column for a in question.answers], [a.column + self.fraction_suffix for a in question.answers]):
                found = [name for name in names if name in columns]
                if found and len(found) < len(names):
                    missing = sorted(set(names) - set(found))
                    raise ConfigError(f"tree {self.name}: question {question.name} has only some of its columns "
                                      f"(missing {', '.join(missing)})")
                if found:
                    present.append(question.name)
                    break
        return present

    def leaf(self, fractions: np.ndarray) -> list[str]:
        """Follow the most voted answer from the root to the end of the tree.

        Parameters
        ----------
        fractions : ndarray
            (n_galaxies, num_answers) fractions normalised per question.

        Returns
        -------
        list of str
            For each galaxy, the answers on its path joined by ``/`` (e.g.
            ``featured-or-disk/no/strong/...``): the class the tree implies.
        """
        fractions = np.nan_to_num(np.asarray(fractions, dtype=np.float64), nan=-1.0)
        index = self._position_of_question()
        slices = self.question_slices()
        leaves = []
        for row in fractions:
            path, position = [], 0
            while position is not None:
                question = self.questions[position]
                answer = question.answers[int(np.argmax(row[slices[position]]))]
                path.append(answer.name)
                position = index.get(answer.next_question) if answer.next_question else None
            leaves.append("/".join(path))
        return leaves


def _question(name: str, text: str, answers: list[tuple[str, str, str | None]]) -> Question:
    return Question(name, text, tuple(Answer(*answer) for answer in answers))


def _gz2_question(name: str, number: int, text: str, answers: list[tuple[str, str | None]]) -> Question:
    # The Kaggle columns number the answers of question ``number`` from 1: ``Class<number>.<answer>``.
    return _question(name, text, [(answer, f"Class{number}.{position}", nxt)
                                  for position, (answer, nxt) in enumerate(answers, start=1)])


def _decals_question(name: str, text: str, answers: list[tuple[str, str | None]]) -> Question:
    return _question(name, text, [(answer, f"{name}_{answer}", nxt) for answer, nxt in answers])


#: Galaxy Zoo 2, as in the Kaggle Galaxy Challenge (Willett et al. 2013, table 2),
#: questions in an order where each comes after every question leading to it.
#: The challenge's columns hold cumulative fractions, not counts, so
#: ``fraction_suffix`` is empty and :meth:`DecisionTree.normalise` turns them
#: into per-question fractions.
GZ2 = DecisionTree(
    name="gz2",
    fraction_suffix="",
    questions=(
        _gz2_question("smooth", 1, "Is the galaxy simply smooth and rounded, with no sign of a disk?", [
            # The challenge asked question 6 of everyone (its two columns sum
            # to one for every galaxy), stars and artefacts included.
            ("smooth", "how-rounded"), ("features-or-disk", "edge-on"), ("star-or-artifact", "odd"),
        ]),
        _gz2_question("edge-on", 2, "Could this be a disk viewed edge-on?", [
            ("yes", "bulge-shape"), ("no", "bar"),
        ]),
        _gz2_question("bar", 3, "Is there a sign of a bar feature through the centre of the galaxy?", [
            ("yes", "spiral"), ("no", "spiral"),
        ]),
        _gz2_question("spiral", 4, "Is there any sign of a spiral arm pattern?", [
            ("yes", "arm-winding"), ("no", "bulge-prominence"),
        ]),
        _gz2_question("arm-winding", 10, "How tightly wound do the spiral arms appear?", [
            ("tight", "arm-count"), ("medium", "arm-count"), ("loose", "arm-count"),
        ]),
        _gz2_question("arm-count", 11, "How many spiral arms are there?", [
            ("1", "bulge-prominence"), ("2", "bulge-prominence"), ("3", "bulge-prominence"),
            ("4", "bulge-prominence"), ("more-than-4", "bulge-prominence"), ("cant-tell", "bulge-prominence"),
        ]),
        _gz2_question("bulge-prominence", 5, "How prominent is the central bulge?", [
            ("no-bulge", "odd"), ("just-noticeable", "odd"), ("obvious", "odd"), ("dominant", "odd"),
        ]),
        _gz2_question("how-rounded", 7, "How rounded is it?", [
            ("completely-round", "odd"), ("in-between", "odd"), ("cigar-shaped", "odd"),
        ]),
        _gz2_question("bulge-shape", 9, "Does the galaxy have a bulge at its centre? If so, what shape?", [
            ("rounded", "odd"), ("boxy", "odd"), ("no-bulge", "odd"),
        ]),
        _gz2_question("odd", 6, "Is there anything odd?", [
            ("yes", "odd-feature"), ("no", None),
        ]),
        _gz2_question("odd-feature", 8, "Is the odd feature a ring, or is the galaxy disturbed or irregular?", [
            ("ring", None), ("lens-or-arc", None), ("disturbed", None), ("irregular", None), ("other", None),
            ("merger", None), ("dust-lane", None),
        ]),
    ),
)

#: Galaxy Zoo DECaLS DR5 (Walmsley et al. 2022, figure 2), with Zoobot's column names.
GZ_DECALS = DecisionTree(
    name="gz_decals",
    questions=(
        _decals_question("smooth-or-featured", "Is the galaxy simply smooth and rounded, with no sign of a disk?", [
            ("smooth", "how-rounded"), ("featured-or-disk", "disk-edge-on"), ("artifact", None),
        ]),
        _decals_question("disk-edge-on", "Could this be a disk viewed edge-on?", [
            ("yes", "edge-on-bulge"), ("no", "bar"),
        ]),
        _decals_question("bar", "Is there a bar feature through the centre of the galaxy?", [
            ("strong", "has-spiral-arms"), ("weak", "has-spiral-arms"), ("no", "has-spiral-arms"),
        ]),
        _decals_question("has-spiral-arms", "Is there any sign of a spiral arm pattern?", [
            ("yes", "spiral-winding"), ("no", "bulge-size"),
        ]),
        _decals_question("spiral-winding", "How tightly wound do the spiral arms appear?", [
            ("tight", "spiral-arm-count"), ("medium", "spiral-arm-count"), ("loose", "spiral-arm-count"),
        ]),
        _decals_question("spiral-arm-count", "How many spiral arms are there?", [
            ("1", "bulge-size"), ("2", "bulge-size"), ("3", "bulge-size"), ("4", "bulge-size"),
            ("more-than-4", "bulge-size"), ("cant-tell", "bulge-size"),
        ]),
        _decals_question("bulge-size", "How prominent is the central bulge, compared with the rest of the galaxy?", [
            ("dominant", "merging"), ("large", "merging"), ("moderate", "merging"), ("small", "merging"),
            ("none", "merging"),
        ]),
        _decals_question("how-rounded", "How rounded is it?", [
            ("round", "merging"), ("in-between", "merging"), ("cigar-shaped", "merging"),
        ]),
        _decals_question("edge-on-bulge", "Does the galaxy have a bulge at its centre? If so, what shape?", [
            ("boxy", "merging"), ("none", "merging"), ("rounded", "merging"),
        ]),
        _decals_question("merging", "Is the galaxy currently merging or is there any sign of tidal debris?", [
            ("merger", None), ("major-disturbance", None), ("minor-disturbance", None), ("none", None),
        ]),
    ),
)

#: Trees by name, as given on the command line and stored in model folders.
TREES = {tree.name: tree for tree in (GZ2, GZ_DECALS)}


@functools.lru_cache(maxsize=64)
def get_tree(name: str) -> DecisionTree:
    """Return a shipped decision tree by name.

    Parameters
    ----------
    name : str
        ``"gz2"`` or ``"gz_decals"``, optionally restricted to some
        questions: ``"gz2[smooth,edge-on,odd,how-rounded,odd-feature]"``
        (:meth:`DecisionTree.restricted`).

    Returns
    -------
    DecisionTree
    """
    base, _, kept = name.partition("[")
    if base not in TREES:
        raise ConfigError(f"unknown decision tree '{base}' (choose from {', '.join(TREES)})")
    if kept:
        return TREES[base].restricted(tuple(kept.rstrip("]").split(",")))
    return TREES[name]


def tree_for_columns(name: str, columns) -> DecisionTree:
    """Tree ``name``, restricted to the questions whose columns a catalog holds.

    A catalog with every question gets the whole tree; one with some (the
    Galaxy Zoo challenge's 17-column subset, say) gets
    :meth:`DecisionTree.restricted` to them.

    Parameters
    ----------
    name : str
        A tree name (:func:`get_tree`).
    columns : iterable of str
        The catalog's column names.

    Returns
    -------
    DecisionTree
        The whole tree also when the catalog has none of its columns.
    """
    tree = get_tree(name)
    present = tree.questions_in(columns)
    # With none of its columns, the whole tree is returned: reading its
    # votes then names the first missing column.
    if not present or len(present) == len(tree.questions):
        return tree
    return tree.restricted(present)
