"""Read one galaxy image from disk into the package's image contract.

Every reader returns a new ``numpy.float32`` array shaped ``(bands, height,
width)``.  FITS pixels keep their physical values (counts, flux); 8-bit and
16-bit pixels of PNG, JPEG and NPY files are display values and are scaled to
``[0, 1]`` so that colour composites from different sources are comparable.

Failures raise the typed errors of :mod:`tuningfork.errors` with a one-line
message naming the file, never a bare astropy or PIL exception.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import (
    ConfigError,
    CorruptFileError,
    EmptyImageError,
    ImageShapeError,
    InputFileError,
    MissingFileError,
    TuningforkError,
    UnsupportedFormatError,
)

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
NUMPY_SUFFIXES = (".npy",)
IMAGE_SUFFIXES = FITS_SUFFIXES + RASTER_SUFFIXES + NUMPY_SUFFIXES

# Largest channel count treated as a trailing colour axis (RGB, RGBA) when an
# array arrives channels-last, as Galaxy10 and most image libraries store it.
_MAX_TRAILING_CHANNELS = 4
_BITPIX_DTYPES = {8: "uint8", 16: "int16", 32: "int32", 64: "int64", -32: "float32", -64: "float64"}
# EXTNAMEs of planes that accompany an image (its mask, weights, errors), not galaxies of their own.
COMPANION_EXTNAMES = frozenset(
    {"MASK", "ERR", "ERROR", "DQ", "WHT", "WEIGHT", "VAR", "VARIANCE", "IVAR", "INVVAR", "RMS",
     "SIGMA", "NOISE", "SAMP", "TIME", "BPM", "FLAGS", "PSF"}
)  # fmt: skip
# PIL modes beyond 8 bits per channel ("I;16" variants are handled by prefix).
_WIDE_RASTER_DTYPES = {"I": "int32", "F": "float32"}


def file_suffix(path: str | Path) -> str:
    """Return the lower-case suffix of ``path``, keeping ``.gz`` compounds.

    Parameters
    ----------
    path : str or Path
        Any file name.

    Returns
    -------
    str
        For example ``".fits.gz"`` for ``"a.FITS.gz"`` and ``".jpg"`` for ``"b.JPG"``.
    """
    suffixes = [s.lower() for s in Path(path).suffixes]
    if len(suffixes) >= 2 and suffixes[-1] == ".gz":
        return "".join(suffixes[-2:])
    return suffixes[-1] if suffixes else ""


def image_format(path: str | Path) -> str:
    """Name the reader that handles ``path``, judged by its suffix.

    Parameters
    ----------
    path : str or Path
        An image file name.

    Returns
    -------
    str
        ``"fits"``, ``"raster"`` (PNG/JPEG) or ``"numpy"``.

    Raises
    ------
    UnsupportedFormatError
        When the suffix is none of :data:`IMAGE_SUFFIXES`.
    """
    suffix = file_suffix(path)
    if suffix in FITS_SUFFIXES:
        return "fits"
    if suffix in RASTER_SUFFIXES:
        return "raster"
    if suffix in NUMPY_SUFFIXES:
        return "numpy"
    expected = ", ".join(IMAGE_SUFFIXES)
    raise UnsupportedFormatError(
        path, f"unsupported image type '{suffix or 'no suffix'}' (expected one of {expected})"
    )


def read_image(
    path: str | Path, hdu: int | str | None = None, *, require_finite: bool = True
) -> np.ndarray:
    """Read one image file as float32 ``(bands, height, width)``.

    Parameters
    ----------
    path : str or Path
        A FITS (``.fits``, ``.fit``, ``.fts``, optionally gzipped), PNG, JPEG
        or NPY file.
    hdu : int or str, optional
        FITS only: the extension number or name to read.  By default the
        primary HDU, or the first image extension when the primary holds no
        data.
    require_finite : bool
        Raise :class:`EmptyImageError` for an image without a finite pixel.

    Returns
    -------
    ndarray
        New float32 array ``(bands, height, width)``: a 2-D image gives one
        band, a FITS or NPY cube ``(B, H, W)`` gives B bands, RGB gives three
        (alpha is dropped) and grey one.  PNG/JPEG values are scaled to [0, 1].

    Raises
    ------
    MissingFileError
        The file does not exist.
    UnsupportedFormatError
        The suffix is not a supported image type.
    CorruptFileError
        The file is truncated or cannot be parsed.
    ImageShapeError
        The pixels are not 2-D or 3-D, or the chosen HDU holds no image.
    EmptyImageError
        No pixel is finite.
    """
    path = Path(path)
    kind = image_format(path)
    if not path.is_file():
        raise MissingFileError(path, "image file")
    if kind == "fits":
        pixels = _read_fits_pixels(path, hdu)
    elif hdu is not None:
        raise UnsupportedFormatError(path, f"hdu={hdu!r} given but only FITS files have HDUs")
    elif kind == "raster":
        pixels, _ = _read_raster_pixels(path)
    else:
        pixels = _read_numpy_pixels(path)
    return to_bands_first(pixels, path, require_finite=require_finite)


def read_bands(
    paths: Sequence[str | Path], hdu: int | str | None = None, *, require_finite: bool = True
) -> np.ndarray:
    """Stack one file per band into a single ``(bands, height, width)`` image.

    Parameters
    ----------
    paths : sequence of str or Path
        One image file per band, in band order (for example g, r, i).
    hdu : int or str, optional
        FITS extension to read from every file (see :func:`read_image`).
    require_finite : bool
        Raise :class:`EmptyImageError` for a band without a finite pixel.

    Returns
    -------
    ndarray
        float32 ``(B, H, W)`` where B is the total number of bands of all files.

    Raises
    ------
    ImageShapeError
        When a file's height and width differ from the first file's; the
        message names that file.
    ConfigError
        When ``paths`` is empty.
    """
    if len(paths) == 0:
        raise ConfigError("read_bands: no band files given")
    planes = []
    for path in paths:
        image = read_image(path, hdu=hdu, require_finite=require_finite)
        if planes and image.shape[1:] != planes[0].shape[1:]:
            expected = "x".join(map(str, planes[0].shape[1:]))
            found = "x".join(map(str, image.shape[1:]))
            raise ImageShapeError(
                path, f"band image is {found} pixels but {Path(paths[0]).name} is {expected}"
            )
        planes.append(image)
    return np.concatenate(planes, axis=0)


def to_bands_first(
    pixels: np.ndarray, source: str | Path, *, require_finite: bool = True
) -> np.ndarray:
    """Convert raw pixels of one image to a new float32 ``(bands, H, W)`` array.

    Parameters
    ----------
    pixels : ndarray
        2-D ``(H, W)``, bands-first ``(B, H, W)`` or channels-last ``(H, W, C)``
        with C <= 4 < H.  Channels-last RGB is reordered to (B, G, R) so that
        bands always run from blue to red.  ``uint8`` and ``uint16`` values are display values
        and are scaled to [0, 1]; other dtypes keep their values.
    source : str or Path
        File (or file plus index) named in error messages.
    require_finite : bool
        Raise :class:`EmptyImageError` when no pixel is finite.  Diagnostics
        that count bad pixels turn this off.

    Returns
    -------
    ndarray
        A new float32 array; ``pixels`` is never modified.

    Raises
    ------
    ImageShapeError
        When ``pixels`` is not 2-D or 3-D.
    EmptyImageError
        When no pixel is finite and ``require_finite`` is true.
    """
    array = np.asarray(pixels)
    if array.ndim == 2:
        array = array[np.newaxis]
    elif array.ndim == 3:
        if array.shape[-1] <= _MAX_TRAILING_CHANNELS < array.shape[0]:
            array = np.moveaxis(array, -1, 0)
            if array.shape[0] == 3:
                # Channels-last RGB is display order (red first); tuningfork
                # orders bands from blue to red like a FITS cube, so an SDSS
                # gri composite reads as (g, r, i).
                array = array[::-1]
    else:
        raise ImageShapeError(
            source, f"image has {array.ndim} dimensions {array.shape}; expected 2-D or 3-D"
        )
    image = _scaled_float32(array)
    # Integer pixels are always finite: only an empty one can fail the check.
    if require_finite and (image.size == 0 or (array.dtype.kind == "f" and not np.isfinite(image).any())):
        raise EmptyImageError(source, "image holds no finite pixel")
    return image


def stored_dtype(path: str | Path, hdu: int | str | None = None) -> str:
    """Name the pixel type an image file stores, reading only its header.

    Parameters
    ----------
    path : str or Path
        An image file of a type :func:`read_image` accepts.
    hdu : int or str, optional
        FITS extension, chosen as in :func:`read_image`.

    Returns
    -------
    str
        A numpy dtype name such as ``"uint8"`` (JPEG) or ``"float32"`` (FITS
        BITPIX -32), before any scaling.
    """
    path = Path(path)
    kind = image_format(path)
    if not path.is_file():
        raise MissingFileError(path, "image file")
    if kind == "fits":
        from astropy.io import fits

        with reraise_as_corrupt(path, "FITS file"), fits.open(path, memmap=False) as hdul:
            bitpix = _choose_image_hdu(hdul, hdu, path).header["BITPIX"]
        return _BITPIX_DTYPES[bitpix]
    if kind == "raster":
        from PIL import Image

        with reraise_as_corrupt(path, "image file"), Image.open(path) as opened:
            mode = opened.mode
        return "uint16" if mode.startswith("I;16") else _WIDE_RASTER_DTYPES.get(mode, "uint8")
    with reraise_as_corrupt(path, "NPY file"):
        return np.load(path, mmap_mode="r", allow_pickle=False).dtype.name


def galaxy_hdus(path: str | Path) -> list[tuple[int, str]]:
    """List the image HDUs of a FITS file that hold galaxies, reading headers only.

    Parameters
    ----------
    path : str or Path
        A FITS file.

    Returns
    -------
    list of (int, str)
        Index and EXTNAME (``""`` when unnamed) of every image HDU with data,
        except those whose EXTNAME marks a companion plane of another image
        (:data:`COMPANION_EXTNAMES`: a mask, weight or error map).

    Raises
    ------
    MissingFileError, CorruptFileError
        The file is missing or its headers cannot be parsed.
    """
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "FITS file")
    image_types = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)
    # Strict: a damaged HDU would otherwise drop out of the list without a word.
    with reraise_as_corrupt(path, "FITS file", strict=True), fits.open(path, memmap=False) as hdul:
        return [
            (index, str(candidate.header.get("EXTNAME", "")).strip())
            for index, candidate in enumerate(hdul)
            if isinstance(candidate, image_types)
            and candidate.header.get("NAXIS", 0) > 0
            and str(candidate.header.get("EXTNAME", "")).strip().upper() not in COMPANION_EXTNAMES
        ]


def is_fits_table(path: str | Path) -> bool:
    """Tell whether a FITS file is a catalog (its first HDU with data is a table).

    Parameters
    ----------
    path : str or Path
        A FITS file.

    Returns
    -------
    bool
        True for a binary or ASCII table, False for an image.

    Raises
    ------
    CorruptFileError
        When the headers cannot be parsed.
    """
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "FITS file")
    # Only a peek at the headers: the read that follows reports any damage once.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with reraise_as_corrupt(path, "FITS file"), fits.open(path, memmap=False) as hdul:
            for candidate in hdul:
                if candidate.header.get("NAXIS", 0) > 0:
                    return isinstance(candidate, (fits.BinTableHDU, fits.TableHDU))
    return False


def _scaled_float32(array: np.ndarray) -> np.ndarray:
    """Return a C-ordered float32 copy, mapping 8/16-bit display values to [0, 1]."""
    # C order even from a channels-last view: every later step (the batch
    # stack, the sky subtraction, the resize) then reads memory in order
    # instead of striding across bands, which cost a 424-pixel JPEG more than its decoding.
    full_scale = {np.dtype(np.uint8): np.float32(255.0), np.dtype(np.uint16): np.float32(65535.0)}.get(array.dtype)
    if full_scale is None:
        return np.array(array, dtype=np.float32, order="C", copy=True)
    # One pass (cast and divide in float32, as a copy then an in-place division would).
    return np.divide(array, full_scale, out=np.empty(array.shape, dtype=np.float32), dtype=np.float32)


@contextlib.contextmanager
def reraise_as_corrupt(path: str | Path, what: str, *, strict: bool = False) -> Iterator[None]:
    """Turn any parser failure inside the block into a one-line CorruptFileError.

    Parameters
    ----------
    path : str or Path
        The file being parsed, named in the message.
    what : str
        What the file should have been, e.g. ``"FITS file"``.
    strict : bool
        Also raise when the block succeeds but astropy warned that the file
        may be corrupted (it then skips the damaged HDU and reads on).

    Notes
    -----
    astropy's "File may have been truncated" warning is raised as an error too,
    because astropy goes on to return short or garbage data after it.
    Warnings raised while parsing are held back: when the block fails, the
    one-line error says all there is to say (astropy warns about a broken
    header in several raw lines before failing on it, or before finding no
    image where the broken HDU was: that becomes a CorruptFileError quoting
    the warning); when it succeeds, each is issued again as one line naming
    the file.  Tuningfork's other errors pass through unchanged.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("error", message=".*truncated.*")
        try:
            yield
        except TuningforkError as err:
            damage = [held for held in caught if "corrupt" in str(held.message).lower()]
            if damage and not isinstance(err, CorruptFileError):
                reason = _one_line(str(damage[0].message))
                raise CorruptFileError(path, f"cannot read {what}: {reason}") from err
            raise
        except Exception as err:
            reason = str(err).splitlines()[0] if str(err) else err.__class__.__name__
            raise CorruptFileError(path, f"cannot read {what}: {reason}") from err
    damage = [held for held in caught if "corrupt" in str(held.message).lower()]
    if strict and damage:
        raise CorruptFileError(path, f"cannot read {what}: {_one_line(str(damage[0].message))}")
    for held in caught:
        warnings.warn(f"{path}: {_one_line(str(held.message))}", held.category, stacklevel=3)


def _one_line(message: str) -> str:
    """astropy's multi-line warnings as one line: what failed, then why."""
    return " ".join(line.strip() for line in message.splitlines()[:2] if line.strip())


def _read_fits_pixels(path: Path, hdu: int | str | None) -> np.ndarray:
    """Return the raw pixel array of one FITS HDU, read fully into memory."""
    from astropy.io import fits

    # memmap=False so a truncated file fails here rather than later on access.
    with reraise_as_corrupt(path, "FITS file"), fits.open(path, memmap=False) as hdul:
        chosen = _choose_image_hdu(hdul, hdu, path)
        # float32 here so that integer FITS pixels keep their physical
        # values instead of being scaled like 8/16-bit display images.
        return np.array(chosen.data, dtype=np.float32)


def _choose_image_hdu(hdul, hdu: int | str | None, path: Path):
    """Pick the requested HDU, or the first one that holds image data."""
    from astropy.io import fits

    image_types = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)
    if hdu is None:
        for candidate in hdul:
            if isinstance(candidate, image_types) and candidate.header.get("NAXIS", 0) > 0:
                return candidate
        raise ImageShapeError(path, "no HDU holds image data")
    try:
        chosen = hdul[hdu]
    except (KeyError, IndexError):
        raise InputFileError(path, f"no HDU {hdu!r} (file has {len(hdul)} HDUs)") from None
    if not isinstance(chosen, image_types):
        raise ImageShapeError(path, f"HDU {hdu!r} holds a table, not an image")
    if chosen.header.get("NAXIS", 0) == 0:
        raise ImageShapeError(path, f"HDU {hdu!r} holds no data")
    return chosen


def read_image_scaled(
    path: str | Path, scale_for: Callable[[int, int], int]
) -> tuple[np.ndarray, int]:
    """Read one image file, decoding a PNG or JPEG at a reduced resolution where allowed.

    Parameters
    ----------
    path : str or Path
        As in :func:`read_image`.
    scale_for : callable
        ``scale_for(height, width)`` gives the reduction (1, 2, 4 or 8) the
        stored image may be decoded at, e.g.
        :meth:`~tuningfork.preprocessing.PreprocessConfig.decode_scale`.
        A JPEG is reduced in its DCT (several times faster than decoding it
        whole), another 8-bit raster by averaging blocks of pixels; FITS and
        NPY files are read whole (their values are physical).

    Returns
    -------
    image : ndarray
        float32 ``(bands, h, w)``, ``h = ceil(height / scale)``.
    scale : int
        The reduction applied.

    Raises
    ------
    As :func:`read_image`.
    """
    path = Path(path)
    if image_format(path) != "raster" or not path.is_file():
        return read_image(path), 1
    pixels, scale = _read_raster_pixels(path, scale_for)
    return to_bands_first(pixels, path, require_finite=True), scale


def _read_raster_pixels(
    path: Path, scale_for: Callable[[int, int], int] | None = None
) -> tuple[np.ndarray, int]:
    """Decode a PNG/JPEG to (H, W) grey or (H, W, 3) RGB, alpha dropped, and the reduction applied."""
    from PIL import Image

    with reraise_as_corrupt(path, "image file"):
        data = path.read_bytes()
        decoded = _decode_jpeg(data, scale_for) if data.startswith(_JPEG_START) else None
    if decoded is not None:
        return decoded
    # The whole file at once: PIL reads an open file in many small chunks,
    # which cost about a sixth of decoding a 424-pixel JPEG at half size.
    with reraise_as_corrupt(path, "image file"), Image.open(io.BytesIO(data)) as opened:
        width, height = opened.size
        scale = 1 if scale_for is None or opened.mode not in ("1", "L", "LA", "RGB", "RGBA", "P", "CMYK", "YCbCr") \
            else int(scale_for(height, width))
        reduced = (-(-width // scale), -(-height // scale))
        if scale > 1:
            opened.draft(opened.mode, reduced)
        opened.load()  # decode now: PIL is lazy and would hide truncation
        if opened.mode.startswith("I;16"):
            return np.asarray(opened).astype(np.uint16), 1
        if opened.mode in ("I", "F"):
            # 32-bit integer or float rasters carry physical values: no scaling.
            return np.asarray(opened, dtype=np.float32), 1
        wanted = "L" if opened.mode in ("1", "L", "LA") else "RGB"
        image = opened if opened.mode == wanted else opened.convert(wanted)
        done = round(width / image.size[0])
        if done != scale:
            # Not a JPEG, or one PIL reduced less than asked: block averages make up the rest.
            image = image.reduce(scale // done)
        return np.asarray(image), scale


#: The start-of-image marker every JPEG file begins with.
_JPEG_START = b"\xff\xd8"
#: JPEG colour spaces libjpeg-turbo gives as grey or RGB, as PIL does; CMYK and YCCK are left to PIL.
_JPEG_DECODED = {"Gray": "GRAY", "RGB": "RGB", "YCbCr": "RGB"}


def _decode_jpeg(data: bytes, scale_for: Callable[[int, int], int] | None) -> tuple[np.ndarray, int] | None:
    """Decode a JPEG with simplejpeg, reduced in its DCT by ``scale_for``; None to leave it to PIL.

    The same libjpeg-turbo decoding as PIL's (same pixels, the reduction
    included), without PIL's marker parsing in Python: two thirds of the
    time of a 424-pixel JPEG decoded at half size.  A damaged file raises
    (``strict``), as PIL's truncation check does.
    """
    import simplejpeg

    height, width, colourspace, _ = simplejpeg.decode_jpeg_header(data)
    if colourspace not in _JPEG_DECODED:
        return None
    scale = 1 if scale_for is None else int(scale_for(height, width))
    pixels = simplejpeg.decode_jpeg(data, colorspace=_JPEG_DECODED[colourspace], strict=True,
                                    min_height=-(-height // scale), min_width=-(-width // scale))
    if pixels.shape[:2] != (-(-height // scale), -(-width // scale)):
        return None  # a reduction libjpeg-turbo did not make exactly
    return (pixels[..., 0] if pixels.shape[-1] == 1 else pixels), scale


def _read_numpy_pixels(path: Path) -> np.ndarray:
    """Load a single-image NPY file without allowing pickled objects."""
    with reraise_as_corrupt(path, "NPY file"):
        return np.load(path, allow_pickle=False)
