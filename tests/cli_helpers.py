"""Helpers shared by the end-to-end tests of the CLI commands."""

from __future__ import annotations

from typer.testing import CliRunner

from tuningfork.cli import app
from tuningfork.models import ModelConfig, create_model, save_model
from tuningfork.simulation import simulate, write_sample

runner = CliRunner()


def invoke(*args):
    """Run ``tuningfork ARGS...`` in-process; return the result and stdout plus stderr."""
    result = runner.invoke(app, [str(arg) for arg in args])
    return result, result.output + (result.stderr if result.stderr_bytes is not None else "")


def write_simulated(folder, n, **settings):
    """Simulate ``n`` 32-pixel galaxies on one worker and write them as FITS files.

    Returns the catalog path and the sample.
    """
    sample = simulate(n, size=32, workers=1, **settings)
    return write_sample(sample, folder, formats=("fits",)), sample


def save_tiny_rotinv(folder, class_names):
    """Save an untrained one-band, 24-pixel rotinv classifier of ``class_names``; return the folder."""
    network = create_model("rotinv", len(class_names), in_channels=1, image_size=24, widths=(8, 16),
                           view_features=8, hidden=8)
    config = ModelConfig(
        architecture="rotinv", num_outputs=len(class_names), in_channels=1, image_size=24,
        preprocessing={"output_size": 24}, target={"kind": "classes", "column": "label",
                                                    "class_names": list(class_names)},
        architecture_options={"widths": [8, 16], "view_features": 8, "hidden": 8},
    )
    return save_model(folder, network, config)
