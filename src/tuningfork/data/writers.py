"""Writing outputs without ever destroying what a previous run wrote.

Every writer goes through :func:`atomic_path`: the content is written to a
temporary sibling and renamed over the target only once it is complete, so a
crash or an error half-way leaves the old file intact.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path that replaces ``target`` when the block succeeds.

    Parameters
    ----------
    target : str or Path
        Final location.  Parent folders are created.

    Yields
    ------
    Path
        A path in the same folder (so the final rename is atomic) with the same
        suffix as ``target`` (so writers that dispatch on the suffix work).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates owner-only files; outputs get the usual permissions.
        tmp_path.chmod(0o666 & ~_current_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def check_output(path: str | Path, *, kind: str = "file", overwrite: bool = False) -> Path:
    """Refuse, before any work, an output that could not be written or would replace a result.

    Parameters
    ----------
    path : str or Path
        The output file or folder; missing parent folders are fine (the
        writers create them).
    kind : {"file", "folder"}
        What the output is.  An empty existing folder counts as no output.
    overwrite : bool
        Allow replacing an existing output (the writers still replace it
        atomically, so a failed run leaves it intact).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError
        The output exists and ``overwrite`` is false.
    OutputError
        A file stands where a folder is needed (or the reverse), or the
        folder that would hold the output is not writable.
    """
    from ..errors import ConfigError, OutputError, OutputExistsError

    if kind not in ("file", "folder"):
        raise ConfigError(f"{path}: output kind must be 'file' or 'folder', not '{kind}'")
    path = Path(path)
    if path.is_dir() and kind == "file":
        raise OutputError(path, "is a folder; give a file name")
    if path.exists() and not path.is_dir() and kind == "folder":
        raise OutputError(path, "is a file; give a folder name")
    if path.exists() and not overwrite and not (path.is_dir() and not any(path.iterdir())):
        raise OutputExistsError(path)
    # The writers write into the nearest folder that exists (creating the
    # rest inside it), so that is the one that must be writable.
    holder = path if path.is_dir() else path.parent
    while not holder.exists() and holder != holder.parent:
        holder = holder.parent
    if not holder.is_dir():
        raise OutputError(holder, f"is a file, so {path} cannot be written inside it")
    try:
        # os.access alone is not enough: root passes it on any folder, and it
        # knows nothing of read-only mounts.  A real file settles it.
        if not os.access(holder, os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied")
        with tempfile.TemporaryFile(dir=holder, prefix=".tuningfork-probe."):
            pass
    except OSError as error:
        raise OutputError(holder, f"folder is not writable ({error.strerror or error}), "
                                  f"so {path} cannot be written") from None
    return path


def write_fits(path: str | Path, image: np.ndarray, header: dict | None = None) -> Path:
    """Write an image (2-D, or 3-D bands-first) to a FITS file atomically.

    Parameters
    ----------
    path : str or Path
        Output file.
    image : ndarray
        Pixel data; written as float32.
    header : dict, optional
        Extra header cards (keys of at most 8 characters).

    Returns
    -------
    Path
        The written file.
    """
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.asarray(image, dtype=np.float32))
    for key, value in (header or {}).items():
        hdu.header[key] = value
    with atomic_path(path) as tmp:
        hdu.writeto(tmp, overwrite=True)
    return Path(path)


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an 8-bit PNG from an array scaled to [0, 1].

    Parameters
    ----------
    path : str or Path
        Output file.
    image : ndarray
        (H, W), (1, H, W), (3, H, W) bands-first from blue to red, or (H, W, 3)
        RGB, with values in [0, 1]; values outside are clipped, non-finite
        values become 0.

    Returns
    -------
    Path
        The written file.
    """
    from PIL import Image

    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        # Bands run blue to red; PNG channels are red first.
        array = np.moveaxis(array[::-1], 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    array = np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=0.0)
    pixels = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
    return Path(path)


def write_table(path: str | Path, table) -> Path:
    """Write an astropy Table as CSV, Parquet or FITS, chosen by the suffix.

    Parameters
    ----------
    path : str or Path
        Output file ending in ``.csv``, ``.parquet`` or ``.fits``.
    table : astropy.table.Table
        The catalog.

    Returns
    -------
    Path
        The written file.
    """
    from ..errors import UnsupportedFormatError

    path = Path(path)
    formats = {".csv": "ascii.csv", ".parquet": "parquet", ".fits": "fits", ".fit": "fits"}
    fmt = formats.get(path.suffix.lower())
    if fmt is None:
        raise UnsupportedFormatError(path, "catalog must end in .csv, .parquet or .fits")
    with atomic_path(path) as tmp:
        table.write(tmp, format=fmt, overwrite=True)
    return path
