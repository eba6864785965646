"""Non-parametric morphology (Gini, M20, CAS, Sersic...) with statmorph.

:func:`segment_central_source` finds the galaxy at the centre of a cutout with
photutils; :func:`measure_morphology` runs statmorph on one image;
:func:`morphometry_catalog` does it for a whole collection across processes.
"""

from .measure import (
    ALL_QUANTITIES,
    DEFAULT_QUANTITIES,
    DOUBLESERSIC_QUANTITIES,
    measure_morphology,
    morphometry_catalog,
)
from .segmentation import CentralSource, segment_central_source

__all__ = [
    "ALL_QUANTITIES",
    "DEFAULT_QUANTITIES",
    "DOUBLESERSIC_QUANTITIES",
    "CentralSource",
    "measure_morphology",
    "morphometry_catalog",
    "segment_central_source",
]
