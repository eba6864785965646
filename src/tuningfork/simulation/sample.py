"""Labelled samples of simulated galaxies: :func:`simulate` and :func:`write_sample`.

:func:`write_images` also writes the image folder of generated samples.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Row, Table

from ..data.display import display_rgb
from ..data.writers import check_output, write_fits, write_png, write_table
from ..errors import ConfigError
from .classes import BAND_WAVELENGTHS_NM, SIMULATED_CLASSES, StampFrame
from .render import NOISE_KINDS, PSF_KINDS, RenderConfig, render_all

# Catalog columns after id/label/label_index and the per-band fluxes; a
# parameter that does not apply to a class is NaN.
_PARAMETER_COLUMNS: tuple[str, ...] = (
    "flux",
    "half_light_radius_arcsec",
    "half_light_radius_pix",
    "sersic_n",
    "bulge_to_total",
    "q",
    "position_angle_deg",
    "n_arms",
    "pitch_angle_deg",
    "arm_winding",
    "bar_length_arcsec",
    "n_knots",
    "companion_separation_arcsec",
    "companion_flux_ratio",
    "x_offset_pix",
    "y_offset_pix",
    "psf_fwhm_arcsec",
    "noise_sigma",
    "snr",
)
IMAGE_FORMATS: tuple[str, ...] = ("fits", "png")


@dataclass
class SimulatedSample:
    """Rendered galaxies with their labels and true parameters.

    Parameters
    ----------
    images : ndarray
        Noisy stamps, float32 ``(n, bands, size, size)``.
    catalog : astropy.table.Table
        One row per stamp: ``id``, ``label``, ``label_index`` (position of the
        label in ``class_names``), ``flux`` (intrinsic r-band flux, image
        units), ``flux_<band>`` (flux after dust in each band), half-light
        radius of the circularised pre-PSF profile (``half_light_radius_arcsec``,
        ``half_light_radius_pix``; the primary's for mergers, 0 for stars),
        ``sersic_n`` (single-Sersic classes and merger primaries),
        ``bulge_to_total``, ``q`` (axis ratio), ``position_angle_deg``
        (counter-clockwise from +x), ``n_arms``, ``pitch_angle_deg``,
        ``arm_winding`` (+1 or -1), ``bar_length_arcsec``, ``dust_lane``,
        ``n_knots``, ``companion_separation_arcsec``, ``companion_flux_ratio``,
        ``x_offset_pix``/``y_offset_pix`` (centre offset from the stamp centre),
        ``psf_fwhm_arcsec``, ``noise_sigma`` (per pixel, image units) and
        ``snr`` (matched-filter signal-to-noise of the band stack).  NaN marks
        parameters that do not apply.
    noiseless : ndarray or None
        The stamps before noise (same shape), when requested.
    bands : tuple of str
        Band names, in the order of axis 1 of ``images``.
    pixel_scale : float
        Pixel scale (arcsec / pixel).
    class_names : tuple of str
        The simulated classes; ``label_index`` indexes this tuple.
    """

    images: np.ndarray
    catalog: Table
    noiseless: np.ndarray | None
    bands: tuple[str, ...]
    pixel_scale: float
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)


def _positive(value, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not (np.isfinite(value) and value > 0)
    ):
        raise ConfigError(f"simulate(): {name} must be a positive number, got {value!r}")
    return float(value)


def _range(value, name: str) -> tuple[float, float]:
    """A positive (low, high) range from a number or a pair."""
    pair = (value, value) if isinstance(value, numbers.Real) else tuple(value)
    if len(pair) != 2 or not all(
        isinstance(v, numbers.Real) and np.isfinite(v) and v > 0 for v in pair
    ):
        raise ConfigError(
            f"simulate(): {name} must be a positive number or a (low, high) pair, got {value!r}"
        )
    if pair[0] > pair[1]:
        raise ConfigError(f"simulate(): {name} range {value!r} has low > high")
    return float(pair[0]), float(pair[1])


def _check_choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise ConfigError(
            f"simulate(): unknown {name} '{value}' (choose from {', '.join(allowed)})"
        )
    return value


def _check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"simulate(): {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _class_counts(
    n: int, classes: tuple[str, ...], class_fractions: Sequence[float] | Mapping[str, float] | None
) -> np.ndarray:
    """Exact number of galaxies per class (largest-remainder rounding of n * fraction)."""
    if class_fractions is None:
        fractions = np.ones(len(classes))
    elif isinstance(class_fractions, Mapping):
        unknown = sorted(set(class_fractions) - set(classes))
        if unknown:
            raise ConfigError(
                f"simulate(): class_fractions names classes not simulated: {', '.join(unknown)}"
            )
        fractions = np.array([float(class_fractions.get(name, 0.0)) for name in classes])
    else:
        fractions = np.asarray(class_fractions, dtype=float)
        if fractions.shape != (len(classes),):
            raise ConfigError(
                f"simulate(): class_fractions has {fractions.size} values for {len(classes)} classes"
            )
    if not np.all(np.isfinite(fractions)) or np.any(fractions < 0) or fractions.sum() <= 0:
        raise ConfigError(
            f"simulate(): class_fractions must be non-negative with a positive sum, got {class_fractions!r}"
        )
    expected = n * fractions / fractions.sum()
    counts = np.floor(expected).astype(int)
    shortfall = n - counts.sum()
    counts[np.argsort(-(expected - counts), kind="stable")[:shortfall]] += 1
    return counts


def _catalog(
    labels: list[str],
    class_names: tuple[str, ...],
    params: list[dict],
    bands: tuple[str, ...],
    pixel_scale: float,
) -> Table:
    width = max(6, len(str(len(labels) - 1)))
    columns: dict[str, object] = {
        "id": [f"sim{index:0{width}d}" for index in range(len(labels))],
        "label": labels,
        "label_index": np.array([class_names.index(label) for label in labels], dtype=np.int64),
    }
    for name in ("flux", *(f"flux_{band}" for band in bands), *_PARAMETER_COLUMNS[1:]):
        if name == "half_light_radius_pix":
            columns[name] = columns["half_light_radius_arcsec"] / pixel_scale
        else:
            columns[name] = np.array([row.get(name, np.nan) for row in params], dtype=np.float64)
    columns["dust_lane"] = np.array([bool(row.get("dust_lane", False)) for row in params])
    return Table(columns)


def simulate(
    n: int,
    size: int = 64,
    bands: Sequence[str] = ("r",),
    pixel_scale: float = 0.2,
    psf: str = "moffat",
    psf_fwhm: float | tuple[float, float] = 0.7,
    noise: str = "gaussian",
    noise_level: float = 1.0,
    snr: float | tuple[float, float] | None = (10.0, 200.0),
    flux_range: tuple[float, float] = (1e2, 1e4),
    classes: Sequence[str] | None = None,
    class_fractions: Sequence[float] | Mapping[str, float] | None = None,
    seed: int = 0,
    workers: int = 2,
    return_noiseless: bool = False,
    progress: bool = False,
) -> SimulatedSample:
    """Render labelled galaxies with GalSim.

    Parameters
    ----------
    n : int
        Number of stamps.
    size : int
        Stamp side (pixels), at least 16.
    bands : sequence of str
        Band names among u, g, r, i, z, y, stored blue to red whatever the
        order given; colours follow each class's stellar populations
        (ellipticals red, spiral disks blue, bulges redder than disks).  The
        PSF is the same in every band.
    pixel_scale : float
        Pixel scale (arcsec / pixel).
    psf : str
        ``moffat`` (beta = 3) or ``kolmogorov``.
    psf_fwhm : float or (float, float)
        PSF full width at half maximum (arcsec), or a range to draw each
        galaxy's from uniformly.
    noise : str
        ``gaussian`` (white), ``poisson`` (sky plus source photon noise),
        ``cosmos`` (correlated noise of HST COSMOS F814W, from GalSim's
        ``acs_I_unrot_sci_20_cf.fits``) or ``none``.
    noise_level : float
        Noise standard deviation per pixel (image units) for ``gaussian`` and
        ``cosmos``; sky level per pixel (counts) for ``poisson``.  With
        ``none`` it still sets the flux scale through ``snr``.
    snr : float or (float, float) or None
        Signal-to-noise ratio, or a range drawn log-uniformly per galaxy: the
        matched-filter S/N of the band stack against the background noise,
        ``sqrt(sum(model**2)) / sigma``.  None draws the flux instead.
    flux_range : (float, float)
        Range of the intrinsic r-band flux (image units), drawn log-uniformly,
        used only when ``snr`` is None.
    classes : sequence of str, optional
        Classes to simulate (default all of :data:`SIMULATED_CLASSES`).
    class_fractions : sequence of float or mapping, optional
        Relative share of each class (aligned with ``classes`` or keyed by
        name); default equal.  Counts are exact, the order is shuffled.
    seed : int
        Seed; each galaxy's random draws derive from it and the galaxy's
        index, so results do not depend on ``workers``.
    workers : int
        Processes to render in (1 renders in the calling process).
    return_noiseless : bool
        Also keep the stamps before noise (e.g. to train denoisers).
    progress : bool
        Show a progress bar.

    Returns
    -------
    SimulatedSample

    Raises
    ------
    ConfigError
        On any invalid argument.

    Notes
    -----
    Half of the edge-on disks have a dust lane (flag ``dust_lane``).  A lane is
    as thin as the disk, so it shows as a dark band only where the PSF
    resolves the disk thickness (e.g. ``psf_fwhm=0.2`` on 128-pixel stamps);
    under 0.7" seeing on 64-pixel stamps it mainly dims and reddens the disk.
    """
    n = _check_positive_int(n, "n")
    size = _check_positive_int(size, "size", minimum=16)
    workers = _check_positive_int(workers, "workers")
    seed = _check_positive_int(seed, "seed", minimum=0)
    bands = (bands,) if isinstance(bands, str) else tuple(bands)
    if not bands:
        raise ConfigError("simulate(): bands is empty")
    for band in bands:
        _check_choice(band, tuple(BAND_WAVELENGTHS_NM), "band")
    if len(set(bands)) != len(bands):
        raise ConfigError(f"simulate(): bands {bands} contain a duplicate")
    # tuningfork orders bands blue to red everywhere (readers, previews, models).
    bands = tuple(sorted(bands, key=BAND_WAVELENGTHS_NM.__getitem__))
    class_names = (
        SIMULATED_CLASSES
        if classes is None
        else ((classes,) if isinstance(classes, str) else tuple(classes))
    )
    if not class_names:
        raise ConfigError("simulate(): classes is empty")
    for name in class_names:
        _check_choice(name, SIMULATED_CLASSES, "class")
    if len(set(class_names)) != len(class_names):
        raise ConfigError(f"simulate(): classes {class_names} contain a duplicate")
    pixel_scale = _positive(pixel_scale, "pixel_scale")
    noise_level = _positive(noise_level, "noise_level")
    config = RenderConfig(
        frame=StampFrame(size, pixel_scale, bands),
        psf=_check_choice(psf, PSF_KINDS, "psf"),
        psf_fwhm=_range(psf_fwhm, "psf_fwhm"),
        noise=_check_choice(noise, NOISE_KINDS, "noise"),
        noise_level=noise_level,
        snr=None if snr is None else _range(snr, "snr"),
        flux_range=_range(flux_range, "flux_range"),
        seed=seed,
    )

    counts = _class_counts(n, class_names, class_fractions)
    labels = list(np.repeat(np.array(class_names, dtype=object), counts))
    np.random.default_rng(np.random.SeedSequence(seed)).shuffle(labels)

    if progress:
        from rich.progress import Progress

        with Progress() as bar:
            task = bar.add_task("simulating galaxies", total=n)
            images, noiseless, params = render_all(
                labels, config, workers, return_noiseless, lambda done: bar.advance(task, done)
            )
    else:
        images, noiseless, params = render_all(labels, config, workers, return_noiseless)

    catalog = _catalog(labels, class_names, params, bands, pixel_scale)
    catalog.meta.update(
        bands=list(bands),
        pixel_scale=pixel_scale,
        psf=psf,
        noise=noise,
        noise_level=noise_level,
        seed=seed,
    )
    return SimulatedSample(images, catalog, noiseless, bands, pixel_scale, class_names)


def write_sample(
    sample: SimulatedSample, out_dir: str | Path, formats: Sequence[str] = IMAGE_FORMATS, *,
    overwrite: bool = False,
) -> Path:
    """Write a simulated sample as image files plus a catalog.

    Parameters
    ----------
    sample : SimulatedSample
        Output of :func:`simulate`.
    out_dir : str or Path
        Folder to fill: ``images/<id>.fits`` (bands-first float32, header keys
        ``BANDS``, ``PIXSCALE``, ``LABEL``), ``images/<id>.png`` (asinh-stretched
        colour preview, :func:`tuningfork.data.display_rgb`) and ``catalog.csv``.
    formats : sequence of str
        Image formats among ``fits`` and ``png``; the catalog's ``file`` column
        points at the FITS file when written, else at the PNG.
    overwrite : bool
        Replace an existing output (else ``OutputExistsError``, before any work).

    Returns
    -------
    Path
        The catalog file.

    Raises
    ------
    ConfigError
        If ``formats`` is empty or names an unknown format.
    """
    check_output(out_dir, kind="folder", overwrite=overwrite)
    catalog = write_images(
        out_dir,
        sample.catalog,
        sample.images,
        formats,
        lambda row: {
            "BANDS": ",".join(sample.bands),
            "PIXSCALE": sample.pixel_scale,
            "LABEL": str(row["label"]),
        },
    )
    return write_table(Path(out_dir) / "catalog.csv", catalog)


def write_images(
    out_dir: str | Path,
    catalog: Table,
    images: np.ndarray,
    formats: Sequence[str] | str,
    header: Callable[[Row], dict],
) -> Table:
    """Write one image file per catalog row, as ``images/<id>.<format>``.

    Parameters
    ----------
    out_dir : str or Path
        Folder that receives ``images/``.
    catalog : Table
        One row per image, with an ``id`` column; not modified.
    images : ndarray
        (n, bands, H, W), in catalog order.
    formats : sequence of str or str
        Image formats among :data:`IMAGE_FORMATS`.
    header : callable
        FITS header keys of a catalog row.

    Returns
    -------
    Table
        A copy of ``catalog`` with a ``file`` column (second) pointing at the
        FITS file when written, else at the PNG.

    Raises
    ------
    ConfigError
        If ``formats`` is empty or names an unknown format.
    """
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    if not formats:
        raise ConfigError(f"{out_dir}: no image format given (choose from {', '.join(IMAGE_FORMATS)})")
    for fmt in formats:
        if fmt not in IMAGE_FORMATS:
            raise ConfigError(
                f"{out_dir}: unknown image format '{fmt}' (choose from {', '.join(IMAGE_FORMATS)})"
            )
    folder = Path(out_dir) / "images"
    main_format = "fits" if "fits" in formats else "png"
    catalog = catalog.copy(copy_data=True)
    for row, image in zip(catalog, images):
        if "fits" in formats:
            write_fits(folder / f"{row['id']}.fits", image, header(row))
        if "png" in formats:
            write_png(folder / f"{row['id']}.png", display_rgb(image))
    catalog.add_column([f"images/{galaxy_id}.{main_format}" for galaxy_id in catalog["id"]],
                       name="file", index=1)
    return catalog
