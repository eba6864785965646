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


@app.command()
def cutout(
    image: Annotated[Path, typer.Argument(help="Survey field: FITS (with WCS for ra/dec), PNG/JPEG or NPY.")],
    out: Annotated[Path, typer.Option(help="Folder for the stamps and catalog.csv.")],
    catalog: Annotated[Optional[Path], typer.Option(help="Positions (ra/dec or x/y) to cut at; "
                                                         "without it, sources are detected.")] = None,
    size: Annotated[Optional[int], typer.Option(help="Stamp side in pixels (default: 64 at catalog "
                                                     "positions, scaled to each detected source).")] = None,
    hdu: Annotated[Optional[str], typer.Option(help="FITS extension, by name or number.")] = None,
    nsigma: Annotated[float, typer.Option(help="Detection threshold above the background rms.")] = 3.0,
    npixels: Annotated[int, typer.Option(help="Minimum connected pixels of a source.")] = 20,
    psf_fwhm: Annotated[float, typer.Option(help="PSF FWHM in pixels; extended sources are wider.")] = 3.0,
    all_sources: Annotated[bool, typer.Option(help="Also cut point-like sources.")] = False,
    keep_outside: Annotated[bool, typer.Option(help="Keep positions outside the field as "
                                                    "flagged empty stamps.")] = False,
    format: Annotated[str, typer.Option(help="Stamp format: fits or npy.")] = "fits",
) -> None:
    """Cut stamps from a survey image at catalog positions or around detected galaxies."""
    from .data.cutouts import cutout_field

    hdu_key = int(hdu) if hdu is not None and hdu.isdigit() else hdu
    stamps = cutout_field(image, catalog=catalog, size=size, out_dir=out, hdu=hdu_key,
                          keep_outside=keep_outside, extended_only=not all_sources, nsigma=nsigma,
                          npixels=npixels, psf_fwhm=psf_fwhm, format=format)
    edge = int(sum(bool(flag) for flag in stamps.table["edge"]))
    console.print(f"wrote {len(stamps.images)} stamps ({edge} at the field edge, padded and flagged) "
                  f"and {out / 'catalog.csv'}")
    if stamps.outside_ids:
        console.print(f"left out {len(stamps.outside_ids)} positions outside the field")


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Folder for images/ and catalog.csv.")],
    n: Annotated[int, typer.Option(help="Number of galaxies.")] = 1000,
    size: Annotated[int, typer.Option(help="Stamp side in pixels.")] = 64,
    bands: Annotated[str, typer.Option(help="Comma-separated band names, e.g. g,r,i.")] = "r",
    pixel_scale: Annotated[float, typer.Option(help="Arcsec per pixel.")] = 0.2,
    psf: Annotated[str, typer.Option(help="moffat or kolmogorov.")] = "moffat",
    psf_fwhm: Annotated[float, typer.Option(help="PSF FWHM in arcsec.")] = 0.7,
    noise: Annotated[str, typer.Option(help="gaussian, poisson, cosmos or none.")] = "gaussian",
    classes: Annotated[Optional[str], typer.Option(help="Comma-separated subset of classes.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same galaxies.")] = 0,
    workers: Annotated[int, typer.Option(help="Processes to render with.")] = 2,
    formats: Annotated[str, typer.Option(help="Comma-separated image formats: fits, png.")] = "fits,png",
) -> None:
    """Render labelled galaxies with GalSim (8 classes) and write images plus a catalog."""
    from .simulation import simulate as render, write_sample

    sample = render(n, size=size, bands=_split(bands), pixel_scale=pixel_scale, psf=psf,
                    psf_fwhm=psf_fwhm, noise=noise, classes=_split(classes) if classes else None,
                    seed=seed, workers=workers, progress=True)
    catalog_path = write_sample(sample, out, formats=_split(formats))
    console.print(f"wrote {n} galaxies and {catalog_path}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for every demo output.")] = Path("tuningfork-demo"),
    n_simulated: Annotated[int, typer.Option(help="Simulated galaxies to add to the real ones.")] = 400,
    seed: Annotated[int, typer.Option(help="Seed of every random step.")] = 0,
) -> None:
    """Run the tour on shipped data: Hubble Deep Field cutouts plus GalSim galaxies."""
    from .demo import run_demo

    run_demo(out, n_simulated=n_simulated, seed=seed, console=console)


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main() -> None:
    """Entry point of the ``tuningfork`` console script."""
    app()


if __name__ == "__main__":
    main()
