"""Reading galaxy data: images, catalogs, collections, and atomic writers.

The entry point is :class:`GalaxyCollection` (``GalaxyCollection.open(path)``);
:func:`read_image`, :func:`read_bands` and :func:`read_catalog` read single
files, :func:`display_rgb` turns an image into a colour preview, and
:mod:`tuningfork.data.writers` writes outputs atomically.
"""

from .batches import Batch, Galaxy
from .catalog import CatalogSchema, normalise_ids, read_catalog
from .collection import GalaxyCollection
from .display import bands_to_rgb, display_rgb
from .readers import (
    IMAGE_SUFFIXES,
    image_format,
    is_fits_table,
    read_bands,
    read_image,
    stored_dtype,
)
from .writers import atomic_path, check_output, write_fits, write_png, write_table

__all__ = [
    "IMAGE_SUFFIXES",
    "Batch",
    "CatalogSchema",
    "Galaxy",
    "GalaxyCollection",
    "atomic_path",
    "bands_to_rgb",
    "check_output",
    "display_rgb",
    "image_format",
    "is_fits_table",
    "normalise_ids",
    "read_bands",
    "read_catalog",
    "read_image",
    "stored_dtype",
    "write_fits",
    "write_png",
    "write_table",
]
