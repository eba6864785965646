"""The ``tuningfork`` command line: parse arguments, call the library, report.

Everything here is a thin layer over the Python API; no science happens in
this file.  Every command is registered through :class:`_App`, which turns
any :class:`~tuningfork.errors.TuningforkError` into a single ``error:`` line
on stderr and exit status 2, so users never see a traceback for a problem
with their own input.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .errors import TuningforkError

console = Console()
error_console = Console(stderr=True)


def _one_line_errors(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except TuningforkError as error:
            error_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper


class _App(typer.Typer):
    """A Typer app whose commands print tuningfork errors as one line."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)

        def decorator(func):
            register(_one_line_errors(func))
            return func

        return decorator


app = _App(
    name="tuningfork",
    help="Turn survey cutouts of galaxies into a morphology catalog.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="Catalog, HDF5, NPY/NPZ, image file or folder.")],
    label_column: Annotated[Optional[str], typer.Option(help="Column holding class labels.")] = None,
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
) -> None:
    """Describe a data set: counts, shapes, bands, dtypes, NaN fraction, label balance."""
    from rich.table import Table

    from .data import GalaxyCollection

    collection = GalaxyCollection.open(path, label_column=label_column, skip_missing=skip_missing)
    table = Table(title=str(path), show_header=False)
    for key, value in collection.describe().items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)


@app.command()
def preview(
    path: Annotated[Path, typer.Argument(help="Catalog, HDF5, NPY/NPZ, image file or folder.")],
    out: Annotated[Path, typer.Option(help="Output PNG.")] = Path("preview.png"),
    n: Annotated[int, typer.Option(help="Galaxies to show (per group with --group-by).")] = 36,
    stretch: Annotated[str, typer.Option(help="asinh, linear, sqrt or log.")] = "asinh",
    size: Annotated[Optional[int], typer.Option(help="Resize every cutout to this many pixels.")] = None,
    group_by: Annotated[Optional[str], typer.Option(help="Catalog column to group rows by.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for picking galaxies.")] = 0,
    skip_missing: Annotated[bool, typer.Option(help="Leave out rows whose image file is missing.")] = False,
) -> None:
    """Save a mosaic PNG of cutouts with the chosen stretch."""
    from .data import GalaxyCollection
    from .plots import preview_collection

    collection = GalaxyCollection.open(path, skip_missing=skip_missing)
    written = preview_collection(collection, out, n=n, stretch=stretch, size=size, group_by=group_by,
                                 seed=seed)
    console.print(f"wrote {written}")


def main() -> None:
    """Entry point of the ``tuningfork`` console script."""
    app()


if __name__ == "__main__":
    main()
