"""Preprocessing: from survey pixels to network-ready float32 arrays.

Each step is a function usable on its own (the input is never modified and
float32 comes out); :class:`Preprocessor` chains them as a
:class:`PreprocessConfig` says, and that config travels with every model.
"""

from .augment import (
    D4_ELEMENTS,
    D4_ORDER,
    d4_apply,
    d4_apply_each,
    d4_apply_torch,
    d4_compose,
    d4_element,
    d4_inverse,
    random_d4,
)
from .background import estimate_background, subtract_background, typical_noise
from .config import PreprocessConfig
from .geometry import center_crop, resize
from .noise import estimate_noise_sigma
from .nonfinite import band_medians, fill_masked, fill_nonfinite, nonfinite_mask
from .normalise import NORMALISATIONS, normalise
from .pipeline import Preprocessor
from .polar import extension_columns, from_polar, to_polar
from .stretch import STRETCHES, asinh_stretch, stretch

__all__ = [
    "D4_ELEMENTS",
    "D4_ORDER",
    "NORMALISATIONS",
    "STRETCHES",
    "PreprocessConfig",
    "Preprocessor",
    "asinh_stretch",
    "band_medians",
    "center_crop",
    "d4_apply",
    "d4_apply_each",
    "d4_apply_torch",
    "d4_compose",
    "d4_element",
    "d4_inverse",
    "estimate_background",
    "estimate_noise_sigma",
    "extension_columns",
    "fill_masked",
    "fill_nonfinite",
    "from_polar",
    "nonfinite_mask",
    "normalise",
    "random_d4",
    "resize",
    "stretch",
    "subtract_background",
    "to_polar",
    "typical_noise",
]
