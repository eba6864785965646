"""Survey cutouts: postage stamps around catalog positions or detected sources.

A survey field is one large image; the rest of tuningfork works on one stamp
per galaxy.  This module cuts those stamps, either at the ra/dec (or x/y) of a
user catalog, or around the extended sources that photutils finds in the
field.  Stamps that run over the edge of the field are padded with NaN rather
than shifted, so the source always sits at the stamp centre; the padded pixels
are marked in a mask and the stamp is flagged in the output catalog.

Pixel coordinates are 0-based with the centre of the first pixel at (0, 0),
the numpy/astropy convention (FITS cards written here say so).
"""

from __future__ import annotations

import functools
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..errors import (
    CatalogError,
    ConfigError,
    ImageShapeError,
    InputFileError,
    MissingColumnError,
    MissingWCSError,
    NoSourcesError,
)
from .catalog import DEC_NAMES, RA_NAMES, find_column, normalise_ids, read_catalog
from .display import display_rgb
from .readers import (
    _choose_image_hdu,
    galaxy_hdus,
    image_format,
    read_image,
    reraise_as_corrupt,
    to_bands_first,
)
from .writers import atomic_path, check_output, write_png, write_table

log = logging.getLogger(__name__)

#: Name of the catalog that :func:`write_stamps` writes into the output folder.
CATALOG_NAME = "catalog.csv"
#: Stamp side (pixels) used for catalog positions when the caller gives none.
DEFAULT_STAMP_SIZE = 64
#: How in-memory images and tables are named in error messages.
ARRAY_NAME = "<array>"
TABLE_NAME = "<table>"
#: Smallest background box side, pixels: fewer pixels give a noisy sky estimate.
MIN_BACKGROUND_BOX = 16
#: Header cards of the field copied into every stamp: where and how it was observed.
PROVENANCE_CARDS = (
    "TELESCOP",
    "INSTRUME",
    "DETECTOR",
    "FILTER",
    "FILTER1",
    "FILTER2",
    "EXPTIME",
    "DATE-OBS",
    "MJD-OBS",
    "BUNIT",
    "GAIN",
    "PHOTFLAM",
    "PHOTPLAM",
    "PHOTZPT",
    "MAGZERO",
)
#: Without deblending, a detection at most 1/FRAGMENT_FLUX_RATIO as bright as
#: another and within FRAGMENT_REACH of its semimajor axes is a piece of it (an
#: arm knot above the threshold but detached at that level).  Four semimajor
#: axes lie well inside the brighter galaxy's own stamp (twelve across).
FRAGMENT_FLUX_RATIO = 10.0
FRAGMENT_REACH = 4.0


@dataclass
class StampSet:
    """Stamps cut from one field, with one catalog row per stamp.

    Attributes
    ----------
    images : list of ndarray
        One float32 array (bands, h, w) per stamp; NaN where the stamp extends
        beyond the field.
    masks : list of ndarray
        One bool array (h, w) per stamp, True on padded pixels.
    table : astropy.table.Table
        One row per stamp, in the same order: ``id`` (str); ``x``, ``y``
        (pixel position of the source in the field); ``ra``, ``dec`` (deg,
        only when a WCS is known); ``size`` (stamp side, pixels); ``x_stamp``,
        ``y_stamp`` (source position inside the stamp); ``edge`` (the stamp
        was padded); ``frac_outside`` (fraction of the stamp outside the
        field); then any per-source properties passed along (detection
        measurements).
    wcs : list of astropy.wcs.WCS or None
        The WCS of each stamp, or None for every stamp when the field has none.
    outside_ids : list of str
        Ids of positions that fell entirely outside the field and were left
        out (empty when they were kept).
    cards : dict of str to (value, comment)
        Header cards of the field (:data:`PROVENANCE_CARDS`) written into
        every FITS stamp; empty for an array field.
    """

    images: list[np.ndarray]
    masks: list[np.ndarray]
    table: Table
    wcs: list
    outside_ids: list[str] = field(default_factory=list)
    cards: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def n_outside(self) -> int:
        """Number of positions left out because they lie entirely outside the field."""
        return len(self.outside_ids)


def load_hubble_deep_field() -> tuple[np.ndarray, None]:
    """Load the Hubble (eXtreme) Deep Field colour image that scikit-image ships.

    Returns
    -------
    image : ndarray
        float32 (3, 872, 1000), the B, G, R channels (blue to red, as tuningfork orders bands) of the 8-bit composite
        scaled to [0, 1].
    wcs : None
        The image carries no WCS; returned so the pair mirrors
        :func:`read_field`.
    """
    from skimage.data import hubble_deep_field

    return to_bands_first(hubble_deep_field(), "skimage.data.hubble_deep_field"), None


def read_field(path: str | Path, hdu: int | str | None = None):
    """Read a survey field, with its celestial WCS when the file has one.

    Parameters
    ----------
    path : str or Path
        FITS file holding a 2-D image or a (bands, H, W) cube, or any other
        image that :func:`tuningfork.data.readers.read_image` reads (PNG,
        JPEG, NPY: these have no WCS).
    hdu : int or str, optional
        FITS only: index or EXTNAME of the HDU to read; by default the one
        HDU with image data (masks and weight maps aside).

    Returns
    -------
    image : ndarray
        float32 (bands, H, W).
    wcs : astropy.wcs.WCS or None
        The celestial part of the header's WCS, or None when there is none.

    Raises
    ------
    MissingFileError, UnsupportedFormatError, CorruptFileError, ImageShapeError
    InputFileError
        ``hdu`` is not given and the file holds several images.
    """
    from astropy.wcs import WCS, FITSFixedWarning

    if image_format(path) == "fits" and hdu is None:
        hdus = galaxy_hdus(path)
        if len(hdus) > 1:
            listed = ", ".join(name or str(index) for index, name in hdus[:5])
            more = ", ..." if len(hdus) > 5 else ""
            raise InputFileError(
                path, f"{len(hdus)} image HDUs ({listed}{more}); choose the field with --hdu"
            )
    image = read_image(path, hdu=hdu)
    if image_format(path) != "fits":
        return image, None
    header = _field_header(path, hdu)
    with warnings.catch_warnings():
        # astropy reports each non-standard card it repairs (DATE-OBS, RADECSYS...);
        # the repaired WCS is what is wanted, so the notes are only noise.
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header)
    return image, (wcs.celestial if wcs.has_celestial else None)


def field_cards(path: str | Path, hdu: int | str | None = None) -> dict:
    """The provenance cards of a FITS field, to copy into its stamps.

    Parameters
    ----------
    path : str or Path
        FITS file of the field (other formats have no header: empty dict).
    hdu : int or str, optional
        HDU holding the image, as in :func:`read_field`.

    Returns
    -------
    dict of str to (value, comment)
        Each of :data:`PROVENANCE_CARDS` present in the image HDU's header or,
        failing that, the primary header (HST keeps TELESCOP there and the
        pixels in a SCI extension).
    """
    if image_format(path) != "fits":
        return {}
    header = _field_header(path, hdu)
    return {
        name: (header[name], header.comments[name])
        for name in PROVENANCE_CARDS
        if name in header and header[name] is not None
    }


def _field_header(path: str | Path, hdu: int | str | None):
    """The image HDU's header, with the primary header's cards it lacks."""
    from astropy.io import fits

    path = Path(path)
    with reraise_as_corrupt(path, "FITS file"), fits.open(path) as hdul:
        chosen = _choose_image_hdu(hdul, hdu, path)
        header = chosen.header.copy()
        if chosen is not hdul[0]:
            for card in hdul[0].header.cards:
                if card.keyword not in header and card.keyword in PROVENANCE_CARDS:
                    header.append(card)
    return header


def _coordinate_pair(first, second, names: str) -> tuple[np.ndarray, np.ndarray]:
    """Two coordinates of each source as float64 arrays, checked to be 1-D and of equal length."""
    first = np.atleast_1d(np.asarray(first, dtype=np.float64))
    second = np.atleast_1d(np.asarray(second, dtype=np.float64))
    if first.shape != second.shape or first.ndim != 1:
        raise ConfigError(
            f"{names} must be 1-D and of equal length, got shapes {first.shape} and {second.shape}"
        )
    return first, second


def cut_stamps_at_pixels(
    image: np.ndarray,
    x,
    y,
    size_px,
    ids=None,
    wcs=None,
    properties: Table | None = None,
    keep_outside: bool = False,
) -> StampSet:
    """Cut square stamps centred on pixel positions, padding over the edges.

    Every band gets the same cut (astropy ``Cutout2D``, ``mode='partial'``,
    NaN fill).

    Parameters
    ----------
    image : ndarray
        (bands, H, W) or (H, W) field; not modified.
    x, y : float or array_like
        Source positions in field pixels (0-based).
    size_px : int or array_like of int
        Stamp side in pixels, one for all or one per source.
    ids : array_like of str, optional
        One id per source; default ``"0"``, ``"1"``...
    wcs : astropy.wcs.WCS, optional
        Celestial WCS of the field; adds ``ra``/``dec`` columns (deg) and a WCS
        per stamp.
    properties : astropy.table.Table, optional
        One row per source of extra columns (e.g. detection measurements)
        carried into the stamp table.
    keep_outside : bool
        Keep positions that lie entirely outside the field as all-NaN stamps
        (mask all True, ``frac_outside`` 1) instead of leaving them out.

    Returns
    -------
    StampSet
        The stamps; positions left out are counted in ``n_outside``.
    """
    bands = to_bands_first(image, ARRAY_NAME)
    x, y = _coordinate_pair(x, y, "x and y")
    ra = dec = None
    if wcs is not None:
        ra, dec = wcs.pixel_to_world_values(x, y)
    return _cut_stamps(bands, x, y, size_px, ids, wcs, ra, dec, properties, keep_outside)


def cut_stamps_at_sky_positions(
    image: np.ndarray,
    wcs,
    ra,
    dec,
    size_px,
    ids=None,
    properties: Table | None = None,
    keep_outside: bool = False,
) -> StampSet:
    """Cut square stamps centred on sky positions.

    Parameters
    ----------
    image : ndarray
        (bands, H, W) or (H, W) field; not modified.
    wcs : astropy.wcs.WCS
        Celestial WCS of the field.
    ra, dec : float or array_like
        Source positions in degrees (in the WCS's celestial frame).
    size_px : int or array_like of int
        Stamp side in pixels, one for all or one per source.
    ids : array_like of str, optional
        One id per source; default ``"0"``, ``"1"``...
    properties : astropy.table.Table, optional
        One row per source of extra columns carried into the stamp table.
    keep_outside : bool
        Keep positions entirely outside the field as all-NaN stamps.

    Returns
    -------
    StampSet
        As :func:`cut_stamps_at_pixels`; ``ra``/``dec`` are the values given.
    """
    if wcs is None or not wcs.has_celestial:
        raise MissingWCSError(ARRAY_NAME, "no celestial WCS given; cannot place ra/dec positions")
    bands = to_bands_first(image, ARRAY_NAME)
    ra, dec = _coordinate_pair(ra, dec, "ra and dec")
    x, y = wcs.world_to_pixel_values(ra, dec)
    return _cut_stamps(
        bands, np.asarray(x), np.asarray(y), size_px, ids, wcs, ra, dec, properties, keep_outside
    )


def detect_sources(
    image: np.ndarray,
    nsigma: float = 3.0,
    npixels: int = 20,
    deblend: bool = False,
    psf_fwhm: float = 3.0,
    extended_ratio: float = 1.5,
    box_size: int = 64,
    contrast: float = 0.001,
    nlevels: int = 32,
    mask: np.ndarray | None = None,
    name: str | Path = ARRAY_NAME,
) -> Table:
    """Detect and measure sources with photutils image segmentation.

    The background and its noise are mapped with a sigma-clipped
    ``Background2D``; the background-subtracted image is smoothed with a
    Gaussian of the PSF's FWHM (the matched filter for unresolved sources),
    thresholded at ``nsigma`` times the background noise, segmented, optionally
    deblended, and measured with ``SourceCatalog``.

    Deblending is off by default: photutils' multi-threshold deblending splits
    a resolved face-on spiral into its nucleus and arm knots (an HST COSMOS
    F814W spiral gave 5 pieces at the photutils defaults), and for morphology
    one galaxy must stay one source.  Turn it on for crowded fields, where
    touching galaxies would otherwise share one segment.  Multi-band fields are
    detected on the sum of their bands.

    A source is flagged ``extended`` (a galaxy rather than a star or noise
    peak) when its moment FWHM exceeds ``extended_ratio`` times the PSF FWHM.
    Saturated stars with bright wings can pass this cut; faint compact
    galaxies can fail it.

    Parameters
    ----------
    image : ndarray
        (bands, H, W) or (H, W) field; not modified.  NaN pixels are ignored.
    nsigma : float
        Detection threshold in units of the local background noise.
    npixels : int
        Minimum number of connected pixels above threshold for a source.
    deblend : bool
        Split blended sources with photutils ``deblend_sources``.
    psf_fwhm : float
        FWHM of the point-spread function, pixels; sets the smoothing kernel
        and the point/extended boundary.
    extended_ratio : float
        A source is extended when its FWHM exceeds this multiple of ``psf_fwhm``.
    box_size : int
        Largest side of the background mesh boxes, pixels; smaller images get
        boxes of a quarter of their side (but at least 16 pixels).
    contrast : float
        Deblending contrast: the fraction of a blend's flux a component needs
        to be split off (photutils' default 0.001 splits aggressively; 0.1 or
        more keeps knots attached).
    nlevels : int
        Number of multi-threshold levels of the deblending.
    mask : ndarray of bool, optional
        (H, W), True on pixels to ignore.
    name : str or Path
        Name of the image in error messages (its file, when there is one).

    Returns
    -------
    astropy.table.Table
        One row per source: ``id`` (str), ``x``, ``y`` (centroid, pixels),
        ``area`` (pixels), ``flux`` (image units, background-subtracted, band
        sum), ``semimajor``, ``semiminor`` (1-sigma moment axes, pixels),
        ``ellipticity``, ``orientation`` (deg, counter-clockwise from +x),
        ``fwhm`` (pixels), ``extended`` (bool).

    Raises
    ------
    NoSourcesError
        Nothing rose above the threshold.
    """
    from astropy.convolution import convolve
    from astropy.stats import SigmaClip
    from photutils import segmentation
    from photutils.background import Background2D, MedianBackground
    from photutils.utils.exceptions import NoDetectionsWarning

    bands = to_bands_first(image, name)
    if psf_fwhm <= 0 or nsigma <= 0 or npixels < 1:
        raise ConfigError(
            f"detection needs psf_fwhm > 0, nsigma > 0 and npixels >= 1, got {psf_fwhm}, {nsigma}, {npixels}"
        )
    if deblend and not (0 <= contrast <= 1 and nlevels >= 1):
        raise ConfigError(
            f"deblending needs 0 <= contrast <= 1 and nlevels >= 1, got {contrast} and {nlevels}"
        )
    detection = bands.sum(axis=0)
    invalid = ~np.isfinite(detection)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != detection.shape:
            raise ImageShapeError(
                name, f"mask shape {mask.shape} differs from image shape {detection.shape}"
            )
        invalid |= mask
    # Aim for four or more boxes per axis: with fewer, one bright galaxy can spoil every
    # box and leave no background estimate at all.
    box = tuple(min(box_size, max(MIN_BACKGROUND_BOX, side // 4)) for side in detection.shape)
    try:
        background = Background2D(
            detection,
            box,
            mask=invalid,
            filter_size=(3, 3),
            sigma_clip=SigmaClip(sigma=3.0),
            bkg_estimator=MedianBackground(),
        )
    except ValueError as exc:
        raise InputFileError(
            name,
            f"cannot estimate the background in {box} pixel boxes ({str(exc).splitlines()[0]})",
        ) from exc
    subtracted = detection - background.background
    kernel = segmentation.make_2dgaussian_kernel(psf_fwhm, size=2 * int(np.ceil(psf_fwhm)) + 1)
    smoothed = convolve(subtracted, kernel)
    with warnings.catch_warnings():
        # An empty detection raises NoSourcesError below, which says more than photutils' warning.
        warnings.simplefilter("ignore", NoDetectionsWarning)
        segments = segmentation.detect_sources(
            smoothed, nsigma * background.background_rms, n_pixels=npixels, mask=invalid
        )
    if segments is None:
        raise NoSourcesError(
            name, f"no sources above {nsigma} sigma with at least {npixels} connected pixels"
        )
    if deblend:
        segments = segmentation.deblend_sources(
            smoothed,
            segments,
            n_pixels=npixels,
            n_levels=nlevels,
            contrast=contrast,
            progress_bar=False,
        )
    measured = segmentation.SourceCatalog(
        subtracted, segments, convolved_data=smoothed, mask=invalid
    )
    fwhm = _plain(measured.fwhm)
    table = Table(
        {
            "id": np.array([str(label) for label in measured.label]),
            "x": _plain(measured.x_centroid),
            "y": _plain(measured.y_centroid),
            "area": _plain(measured.area),
            "flux": _plain(measured.segment_flux),
            "semimajor": _plain(measured.semimajor_axis),
            "semiminor": _plain(measured.semiminor_axis),
            "ellipticity": _plain(measured.ellipticity),
            "orientation": _plain(measured.orientation),
            "fwhm": fwhm,
            "extended": fwhm > extended_ratio * psf_fwhm,
        }
    )
    # Segments made only of masked pixels have no centroid; nothing can be cut there.
    return table[np.isfinite(table["x"]) & np.isfinite(table["y"])]


def stamp_sizes(
    semimajor, per_semimajor: float = 12.0, min_size: int = 32, max_size: int = 256
) -> np.ndarray:
    """Stamp sides that scale with each source's size.

    Parameters
    ----------
    semimajor : array_like
        1-sigma semimajor axes, pixels (as from :func:`detect_sources`).
    per_semimajor : float
        Stamp side in units of the semimajor axis; 12 reaches six sigma either
        side of the centre, past the visible outskirts of most galaxies.
    min_size, max_size : int
        Bounds on the side, pixels; non-finite axes get ``min_size``.

    Returns
    -------
    ndarray of int
        One side per source, pixels.
    """
    if not 1 <= min_size <= max_size:
        raise ConfigError(
            f"stamp sizes need 1 <= min_size <= max_size, got {min_size} and {max_size}"
        )
    wanted = np.ceil(per_semimajor * np.asarray(semimajor, dtype=np.float64))
    wanted = np.where(np.isfinite(wanted), wanted, min_size)
    return np.clip(wanted, min_size, max_size).astype(int)


def cutout_field(
    image,
    catalog=None,
    size: int | None = None,
    out_dir: str | Path | None = None,
    hdu: int | str | None = None,
    wcs=None,
    keep_outside: bool = False,
    extended_only: bool = True,
    nsigma: float = 3.0,
    npixels: int = 20,
    psf_fwhm: float = 3.0,
    deblend: bool = False,
    contrast: float = 0.001,
    nlevels: int = 32,
    format: str = "fits",
    also_png: bool = True,
    overwrite: bool = False,
) -> StampSet:
    """Cut stamps from a survey field, at catalog positions or around detections.

    With a catalog that has ``ra``/``dec`` columns the field needs a celestial
    WCS; a catalog with ``x``/``y`` columns gives pixel positions directly.
    Without a catalog, sources are found with :func:`detect_sources` and a
    stamp is cut around each extended one (or each one, if
    ``extended_only`` is False).  Without deblending, a detection much fainter
    than a neighbour and inside its light (:data:`FRAGMENT_FLUX_RATIO`,
    :data:`FRAGMENT_REACH`) is taken for a detached piece of it and gets no
    stamp of its own, so one galaxy gives one stamp.

    A FITS field's provenance cards (:data:`PROVENANCE_CARDS`: TELESCOP,
    INSTRUME, FILTER, EXPTIME...) are copied into every FITS stamp.

    Parameters
    ----------
    image : str, Path or ndarray
        FITS file of the field, or a (bands, H, W) / (H, W) array.
    catalog : str, Path or astropy.table.Table, optional
        Positions to cut at (CSV, Parquet or FITS table).  An ``id`` column is
        used for the stamp ids when present.
    size : int, optional
        Stamp side, pixels.  Default: 64 at catalog positions, scaled to each
        source (:func:`stamp_sizes`) for detections.
    out_dir : str or Path, optional
        When given, the stamps and ``catalog.csv`` are written there by
        :func:`write_stamps`.
    hdu : int or str, optional
        HDU of the FITS file to read (see :func:`read_field`).
    wcs : astropy.wcs.WCS, optional
        WCS of an array field (a FITS file's own WCS is used otherwise).
    keep_outside : bool
        Keep catalog positions entirely outside the field as flagged all-NaN
        stamps instead of leaving them out.
    extended_only : bool
        With detection, cut only sources flagged ``extended``.
    nsigma, npixels, psf_fwhm : float, int, float
        Detection settings, see :func:`detect_sources`.
    deblend, contrast, nlevels : bool, float, int
        Deblending settings, see :func:`detect_sources`; off by default so
        that knotty spirals are not cut into pieces.
    format : {"fits", "npy"}
        Stamp file format when writing.
    also_png : bool
        Also write a PNG preview of each stamp when writing.
    overwrite : bool
        Replace an existing output (else ``OutputExistsError``, before any work).

    Returns
    -------
    StampSet
        The stamps; with ``out_dir``, their catalog is ``out_dir / CATALOG_NAME``.

    Raises
    ------
    MissingFileError, MissingWCSError, MissingColumnError, EmptyCatalogError, NoSourcesError
    OutputExistsError, OutputError
        If ``out_dir`` holds files and ``overwrite`` is false, or cannot be written.
    """
    if out_dir is not None:
        check_output(out_dir, kind="folder", overwrite=overwrite)
    if isinstance(image, (str, Path)):
        name: str | Path = Path(image)
        field_image, field_wcs = read_field(image, hdu=hdu)
        cards = field_cards(image, hdu=hdu)
    else:
        cards = {}
        name = ARRAY_NAME
        field_image, field_wcs = to_bands_first(image, name), wcs
    if catalog is None:
        detection = {
            "nsigma": nsigma,
            "npixels": npixels,
            "psf_fwhm": psf_fwhm,
            "deblend": deblend,
            "contrast": contrast,
            "nlevels": nlevels,
        }
        stamps = _cut_detections(field_image, field_wcs, name, size, extended_only, detection)
    else:
        stamps = _cut_catalog(field_image, field_wcs, name, catalog, size, keep_outside)
    stamps.cards = cards
    if out_dir is not None:
        write_stamps(stamps, out_dir, format=format, also_png=also_png)
    return stamps


def write_stamps(
    stamps: StampSet, out_dir: str | Path, format: str = "fits", also_png: bool = True
) -> Path:
    """Write one file per stamp and a catalog of them, each file atomically.

    FITS stamps hold the image in the primary HDU (2-D for one band) and the
    mask (uint8, 1 = padded) in an HDU named ``MASK``; the header carries the
    field's provenance cards (``stamps.cards``), the id, source position, edge
    flag and padded fraction, and the stamp WCS when known.  NPY stamps write the mask to a ``<id>_mask.npy`` sibling.
    Previews go to ``previews/<id>.png``.

    Parameters
    ----------
    stamps : StampSet
        Stamps to write.
    out_dir : str or Path
        Output folder (created).
    format : {"fits", "npy"}
        Stamp file format.
    also_png : bool
        Also write an arcsinh-stretched PNG preview of each stamp.

    Returns
    -------
    Path
        ``out_dir / "catalog.csv"``: the stamp table with ``file`` (and
        ``mask_file``, ``preview``) columns, paths relative to ``out_dir``.
    """
    if format not in ("fits", "npy"):
        raise ConfigError(f"stamp format must be 'fits' or 'npy', got {format!r}")
    out_dir = Path(out_dir)
    stems = [_file_stem(stamp_id) for stamp_id in stamps.table["id"]]
    duplicated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if duplicated:
        raise CatalogError(
            f"{out_dir}: stamp ids collide as file names: {', '.join(duplicated[:5])}"
        )
    files, mask_files, previews = [], [], []
    for stem, image, mask, stamp_wcs, row in zip(
        stems, stamps.images, stamps.masks, stamps.wcs, stamps.table
    ):
        if format == "fits":
            files.append(f"{stem}.fits")
            _write_stamp_fits(out_dir / files[-1], image, mask, stamp_wcs, row, stamps.cards)
        else:
            files.append(f"{stem}.npy")
            mask_files.append(f"{stem}_mask.npy")
            _write_npy(out_dir / files[-1], image)
            _write_npy(out_dir / mask_files[-1], mask)
        if also_png:
            previews.append(f"previews/{stem}.png")
            write_png(out_dir / previews[-1], display_rgb(image))
    table = stamps.table.copy()
    written = {"file": files, "mask_file": mask_files, "preview": previews}
    for name in written:
        # A user catalog may already point at its own files; keep those under another name.
        if name in table.colnames:
            table.rename_column(name, f"input_{name}")
    for index, (name, paths) in enumerate(
        (name, paths) for name, paths in written.items() if paths
    ):
        table.add_column(paths, name=name, index=1 + index)
    return write_table(out_dir / CATALOG_NAME, table)


def _cut_stamps(bands, x, y, size_px, ids, wcs, ra, dec, properties, keep_outside) -> StampSet:
    """Cut every position of an already validated (bands, H, W) field."""
    from astropy.nddata import Cutout2D, NoOverlapError

    count = len(x)
    sizes = _sizes_per_source(size_px, count)
    ids = np.array([str(i) for i in range(count)] if ids is None else [str(i) for i in ids])
    if len(ids) != count:
        raise ConfigError(f"{len(ids)} ids given for {count} positions")
    if properties is not None and len(properties) != count:
        raise ConfigError(f"properties table has {len(properties)} rows for {count} positions")

    kept, images, masks, stamp_wcs, x_stamp, y_stamp, outside_ids = [], [], [], [], [], [], []
    for index in range(count):
        side = int(sizes[index])
        cuts = None
        if np.isfinite(x[index]) and np.isfinite(y[index]):
            try:
                # Only the first band carries the WCS: the geometry is the same for all.
                cuts = [
                    Cutout2D(
                        band,
                        (x[index], y[index]),
                        side,
                        wcs=wcs if b == 0 else None,
                        mode="partial",
                        fill_value=np.nan,
                        copy=True,
                    )
                    for b, band in enumerate(bands)
                ]
            except NoOverlapError:
                cuts = None
        if cuts is None:
            outside_ids.append(ids[index])
            if not keep_outside:
                continue
            images.append(np.full((len(bands), side, side), np.nan, dtype=np.float32))
            masks.append(np.ones((side, side), dtype=bool))
            stamp_wcs.append(None)
            x_stamp.append(np.nan)
            y_stamp.append(np.nan)
        else:
            padded = np.ones(cuts[0].shape, dtype=bool)
            padded[cuts[0].slices_cutout] = False
            images.append(np.stack([cut.data for cut in cuts]).astype(np.float32, copy=False))
            masks.append(padded)
            stamp_wcs.append(cuts[0].wcs)
            x_stamp.append(cuts[0].input_position_cutout[0])
            y_stamp.append(cuts[0].input_position_cutout[1])
        kept.append(index)

    if outside_ids:
        action = "kept as empty flagged stamps" if keep_outside else "left out"
        log.warning(
            "%d of %d positions lie entirely outside the field (%s)",
            len(outside_ids),
            count,
            action,
        )
    kept = np.array(kept, dtype=int)
    frac_outside = np.array([mask.mean() for mask in masks], dtype=np.float64)
    columns = {"id": ids[kept], "x": x[kept], "y": y[kept]}
    if ra is not None:
        columns["ra"] = np.asarray(ra, dtype=np.float64)[kept]
        columns["dec"] = np.asarray(dec, dtype=np.float64)[kept]
    columns.update(
        size=sizes[kept],
        x_stamp=np.array(x_stamp, dtype=np.float64),
        y_stamp=np.array(y_stamp, dtype=np.float64),
        edge=frac_outside > 0,
        frac_outside=frac_outside,
    )
    table = Table(columns)
    if properties is not None:
        for name in properties.colnames:
            if name not in table.colnames:
                table[name] = properties[name][kept]
    return StampSet(images=images, masks=masks, table=table, wcs=stamp_wcs, outside_ids=outside_ids)


def _cut_detections(image, wcs, name, size, extended_only, detection: dict) -> StampSet:
    """Detect sources in the field and cut a stamp around each selected one."""
    sources = detect_sources(image, name=name, **detection)
    if not detection["deblend"]:
        sources = sources[~_fragments(sources)]
    if extended_only:
        sources = sources[sources["extended"]]
        if len(sources) == 0:
            raise NoSourcesError(
                name, "sources were detected but none is extended (try extended_only=False)"
            )
    sides = stamp_sizes(sources["semimajor"]) if size is None else size
    return cut_stamps_at_pixels(
        image, sources["x"], sources["y"], sides, ids=sources["id"], wcs=wcs, properties=sources
    )


def _cut_catalog(image, wcs, name, catalog, size, keep_outside) -> StampSet:
    """Cut a stamp at each row of a position catalog (ra/dec or x/y columns)."""
    if isinstance(catalog, Table):
        catalog_name: str | Path = TABLE_NAME
        table = normalise_ids(catalog, catalog_name)
    else:
        catalog_name = Path(catalog)
        table = read_catalog(catalog_name)
    side = DEFAULT_STAMP_SIZE if size is None else size
    ra_column, dec_column = (
        find_column(table.colnames, RA_NAMES),
        find_column(table.colnames, DEC_NAMES),
    )
    x_column, y_column = find_column(table.colnames, ("x",)), find_column(table.colnames, ("y",))
    if ra_column and dec_column:
        if wcs is None:
            raise MissingWCSError(
                name, f"no celestial WCS in the header; cannot place ra/dec of {catalog_name}"
            )
        columns = (ra_column, dec_column)
        cut = functools.partial(cut_stamps_at_sky_positions, image, wcs)
    elif x_column and y_column:
        columns = (x_column, y_column)
        cut = functools.partial(cut_stamps_at_pixels, image, wcs=wcs)
    else:
        # Name the columns this field could use: sky positions need a WCS.
        raise MissingColumnError(catalog_name, "ra" if wcs is not None else "x", table.colnames)
    stamps = cut(
        *(table[column] for column in columns),
        side,
        ids=table["id"],
        properties=_without(table, *columns),
        keep_outside=keep_outside,
    )
    if len(stamps) == 0:
        raise CatalogError(
            f"{catalog_name}: all {len(table)} positions lie outside the field {name}"
        )
    return stamps


def _fragments(sources: Table) -> np.ndarray:
    """True for each source that is a detached piece of a much brighter neighbour."""
    x, y = np.asarray(sources["x"]), np.asarray(sources["y"])
    flux, semimajor = np.asarray(sources["flux"]), np.asarray(sources["semimajor"])
    distance = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    # [i, j]: source j outshines source i and source i lies within source j's light.
    inside_brighter = (flux[None, :] >= FRAGMENT_FLUX_RATIO * flux[:, None]) & (
        distance < FRAGMENT_REACH * semimajor[None, :]
    )
    return inside_brighter.any(axis=1)


def _without(table: Table, *columns: str) -> Table:
    """The table minus the position columns, whose values the stamp table restates."""
    rest = table.copy(copy_data=False)
    rest.remove_columns(list(columns))
    return rest


def _sizes_per_source(size_px, count: int) -> np.ndarray:
    """Broadcast stamp sides to one positive integer per source."""
    sizes = np.broadcast_to(np.asarray(size_px), (count,))
    if (
        not np.all(np.isfinite(sizes.astype(np.float64)))
        or np.any(sizes < 1)
        or np.any(sizes != np.round(sizes))
    ):
        raise ConfigError(f"stamp sizes must be positive whole numbers of pixels, got {size_px!r}")
    return sizes.astype(int)


def _plain(values) -> np.ndarray:
    """Float array from a photutils column, dropping its astropy unit."""
    return np.asarray(getattr(values, "value", values), dtype=np.float64)


def _file_stem(stamp_id: str) -> str:
    """A file-name-safe version of a stamp id."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", str(stamp_id)) or "_"


def _write_stamp_fits(
    path: Path, image: np.ndarray, mask: np.ndarray, stamp_wcs, row, cards: dict
) -> None:
    """Write one stamp (image + MASK HDU) with its provenance in the header."""
    from astropy.io import fits

    primary = fits.PrimaryHDU(image[0] if image.shape[0] == 1 else image)
    for name, (value, comment) in cards.items():
        primary.header[name] = (value, comment)
    if stamp_wcs is not None:
        primary.header.update(stamp_wcs.to_header())
    header = primary.header
    header["ID"] = (str(row["id"]), "source id")
    header["XSRC"] = (float(row["x"]), "source x in the field, 0-based pixels")
    header["YSRC"] = (float(row["y"]), "source y in the field, 0-based pixels")
    header["XSTAMP"] = (_finite_or_none(row["x_stamp"]), "source x in this stamp, 0-based pixels")
    header["YSTAMP"] = (_finite_or_none(row["y_stamp"]), "source y in this stamp, 0-based pixels")
    if "ra" in row.colnames:
        header["RA_SRC"] = (_finite_or_none(row["ra"]), "source right ascension, deg")
        header["DEC_SRC"] = (_finite_or_none(row["dec"]), "source declination, deg")
    header["EDGE"] = (bool(row["edge"]), "stamp runs over the field edge (padded)")
    header["FRACOUT"] = (float(row["frac_outside"]), "fraction of stamp outside the field")
    mask_hdu = fits.ImageHDU(mask.astype(np.uint8), name="MASK")
    mask_hdu.header["COMMENT"] = "1 = padded pixel outside the field"
    with atomic_path(path) as tmp:
        fits.HDUList([primary, mask_hdu]).writeto(tmp, overwrite=True)


def _write_npy(path: Path, array: np.ndarray) -> None:
    """Save one array to ``.npy`` atomically."""
    with atomic_path(path) as tmp:
        np.save(tmp, array)


def _finite_or_none(value):
    """FITS cards cannot hold NaN; an undefined card value is written instead."""
    value = float(value)
    return value if np.isfinite(value) else None
