"""Helpers shared by the end-to-end tests of the CLI commands."""

from __future__ import annotations

from typer.testing import CliRunner

from tuningfork.cli import app
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
