"""Models shipped inside the package, resolvable by name wherever a model folder is accepted.

Each shipped model is an ordinary model folder under ``models/shipped/<name>/``
(``weights.safetensors`` + ``config.json``) with a ``card.json`` beside them:
what the model expects as input, the exact command that trained it, a
fingerprint of its training catalog and the metrics measured on held-out
galaxies.  ``tuningfork predict gzc-5class DATA`` opens it as if the folder's
path had been given; a path that exists always wins over a shipped name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Folder holding one sub-folder per shipped model.
SHIPPED_ROOT = Path(__file__).resolve().parent / "shipped"
CARD_FILE = "card.json"


@dataclass(frozen=True)
class ShippedModel:
    """One shipped model: its name, folder and card.

    Attributes
    ----------
    name : str
        The name it resolves by (the folder's name).
    folder : Path
        The model folder inside the package.
    card : dict
        ``description``, ``input`` (what images it expects), ``command``
        (how it was trained), ``training_catalog`` (file and SHA-256),
        ``metrics`` (held-out scores) and ``files`` (SHA-256 of each file).
    """

    name: str
    folder: Path
    card: dict[str, Any] = field(default_factory=dict)


def shipped_models() -> dict[str, ShippedModel]:
    """Every shipped model, by name.

    Returns
    -------
    dict of str to ShippedModel
    """
    models = {}
    if SHIPPED_ROOT.is_dir():
        for folder in sorted(SHIPPED_ROOT.iterdir()):
            card = folder / CARD_FILE
            if card.is_file():
                models[folder.name] = ShippedModel(folder.name, folder, json.loads(card.read_text()))
    return models


def resolve_model_folder(spec: str | Path) -> Path:
    """The folder a model argument names: an existing path, else a shipped model's folder.

    Parameters
    ----------
    spec : str or Path
        A model folder's path, or the name of a shipped model
        (:func:`shipped_models`).

    Returns
    -------
    Path
        ``spec`` itself when it exists or names no shipped model (the caller
        then reports it missing).
    """
    path = Path(spec)
    if path.exists() or path.name != str(spec):
        return path
    shipped = shipped_models().get(str(spec))
    return shipped.folder if shipped is not None else path


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_shipped(model: ShippedModel) -> list[str]:
    """Files of a shipped model whose SHA-256 differs from its card's (empty: intact).

    Parameters
    ----------
    model : ShippedModel

    Returns
    -------
    list of str
        Names of the changed or missing files.
    """
    changed = []
    for name, digest in model.card.get("files", {}).items():
        path = model.folder / name
        if not path.is_file() or file_sha256(path) != digest:
            changed.append(name)
    return changed
