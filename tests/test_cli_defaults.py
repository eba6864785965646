"""Every command-line default is the library's default.

`cluster` and `denoise train` read theirs from :class:`ClusterConfig` at
import. The other commands spell their defaults out, because reading them
from the training or embedding modules would import torch for
``tuningfork --help``; this test is what keeps the two in step: an option
and the library parameter of the same name must default to the same value.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from tuningfork import cli

#: Command -> the library functions it calls with its options.
CALLS = {
    "train": ["tuningfork.training.fit:train"],
    "predict": ["tuningfork.training.predict:predict", "tuningfork.pipeline.commands:predict_distributed"],
    "catalog": ["tuningfork.pipeline.catalog:build_catalog"],
    "explore": ["tuningfork.web.server:serve"],
    "evaluate": ["tuningfork.training.evaluate:evaluate"],
    "pretrain": ["tuningfork.embeddings.pretrain:pretrain"],
    "embed": ["tuningfork.embeddings.embed:extract_embeddings", "tuningfork.pipeline.commands:embed_distributed"],
    "similar": ["tuningfork.embeddings.search:open_or_build_index"],
    "outliers": ["tuningfork.embeddings:outlier_scores"],
    "probe": ["tuningfork.embeddings.probes:probe_catalog"],
    "morphometry": ["tuningfork.morphometry:morphometry_catalog", "tuningfork.pipeline.commands:morphometry_distributed"],
    "simulate": ["tuningfork.simulation.sample:simulate"],
    "cutout": ["tuningfork.data.cutouts:cutout_field"],
    "preview": ["tuningfork.plots:preview_collection"],
    "denoise train": ["tuningfork.clustering:train_denoiser"],
    "denoise apply": ["tuningfork.clustering:apply_denoiser"],
    "generate train": ["tuningfork.generation:train_generator"],
    "generate sample": ["tuningfork.generation:generate"],
    "generate evaluate": ["tuningfork.generation:evaluate_generator"],
}

#: Options whose CLI spelling differs from the library's on purpose.
DIFFERENT_ON_PURPOSE = {
    # None on the command line means "let the library decide" ("auto").
    ("morphometry", "sky"),
    # The path is an argument of the command but optional in the plot function.
    ("preview", "path"),
}


def _commands() -> dict:
    commands = {info.name or info.callback.__name__: info.callback for info in cli.app.registered_commands}
    for group in cli.app.registered_groups:
        for info in group.typer_instance.registered_commands:
            commands[f"{group.name} {info.name or info.callback.__name__}"] = info.callback
    return commands


def _comparable(value):
    """CLI lists are comma-separated strings, and None stands for an empty list."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(","))
    if isinstance(value, (list, tuple)):
        return tuple(value)
    if value is None:
        return ()
    return value


def _shared_defaults(command: str):
    callback = _commands()[command]
    options = inspect.signature(callback).parameters
    for target in CALLS[command]:
        module, name = target.split(":")
        function = getattr(importlib.import_module(module), name)
        for parameter in inspect.signature(function).parameters.values():
            if parameter.name in options and parameter.default is not inspect.Parameter.empty:
                yield parameter.name, options[parameter.name].default, parameter.default


def test_every_command_is_covered():
    checked = set(CALLS) | {"cluster", "info", "demo", "models", "export"}
    assert set(_commands()) <= checked, sorted(set(_commands()) - checked)


@pytest.mark.parametrize("command", sorted(CALLS))
def test_option_defaults_match_the_library(command):
    shared = list(_shared_defaults(command))
    assert shared, f"{command}: no option shares a name with the library function"
    mismatched = [
        f"{name}: command line {cli_default!r}, library {library_default!r}"
        for name, cli_default, library_default in shared
        if (command, name) not in DIFFERENT_ON_PURPOSE
        and cli_default is not inspect.Parameter.empty
        and _comparable(cli_default) != _comparable(library_default)
    ]
    assert not mismatched, f"{command}: " + "; ".join(mismatched)


def test_cluster_defaults_come_from_the_library():
    from tuningfork.clustering.config import ClusterConfig

    options = inspect.signature(_commands()["cluster"]).parameters
    config = ClusterConfig()
    assert options["k"].default == config.n_clusters
    assert options["bootstrap"].default == config.n_bootstrap
    assert options["encoder"].default == config.encoder
