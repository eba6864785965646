"""One registry of network constructors, in the pattern of timm's ``register_model``.

Every architecture lives in one file of :mod:`tuningfork.models.nets` and
registers its constructor with :func:`register_model`; :func:`create_model`
builds any of them by name.  A name that is not registered is read as a timm
architecture (``timm:NAME`` or a plain timm name): :func:`parse_model_name`
is the one place where that prefix is understood.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

from ..errors import ConfigError

#: Prefix naming a timm architecture explicitly, as ``tuningfork embed`` takes it.
TIMM_PREFIX = "timm:"
#: Registry name of the timm fallback constructor.
TIMM = "timm"
#: Registry name of the morphology-descriptor encoder, also a ``load_encoder`` spec.
MORPHOLOGY_ENCODER = "morphology"
#: Registry name of the ensemble wrapper that ``ensemble=K`` builds.
ENSEMBLE = "ensemble"
# Registered helpers that are not architectures of their own.
_HIDDEN = (TIMM, ENSEMBLE)


@dataclass(frozen=True)
class _Entry:
    constructor: Callable[..., Any]
    # The constructor also reads the model folder's ``target`` (the
    # generator's condition space), not only its architecture options.
    needs_target: bool


_REGISTRY: dict[str, _Entry] = {}


def _registry() -> dict[str, _Entry]:
    # Each file of .nets registers itself when imported; importing them on
    # first use keeps `import tuningfork.models` free of torch.
    from . import nets  # noqa: F401

    return _REGISTRY


def register_model(name: str, *, needs_target: bool = False) -> Callable[[Callable], Callable]:
    """Decorator registering a network constructor under ``name``.

    The constructor is called as ``constructor(num_outputs, in_channels,
    image_size, **options)`` and returns the network.

    Parameters
    ----------
    name : str
        Architecture name, as stored in a model folder's ``config.json``.
    needs_target : bool
        Pass the model folder's ``target`` dict as ``target=`` too.

    Returns
    -------
    callable
        The decorator; it returns the constructor unchanged.
    """

    def decorate(constructor: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].constructor is not constructor:
            raise ConfigError(f"architecture '{name}' is registered twice")
        _REGISTRY[name] = _Entry(constructor, needs_target)
        return constructor

    return decorate


def list_models() -> list[str]:
    """Names of the registered architectures (timm names are accepted besides).

    Returns
    -------
    list of str
        Sorted.
    """
    return sorted(name for name in _registry() if name not in _HIDDEN)


def parse_model_name(name: str) -> tuple[str, str]:
    """Split an architecture name into its source and the name there.

    Parameters
    ----------
    name : str
        A registered name, ``timm:NAME``, or a plain timm name.

    Returns
    -------
    source : {"tuningfork", "timm"}
    name : str
        The name without prefix.
    """
    text = str(name)
    if text.startswith(TIMM_PREFIX):
        return TIMM, text[len(TIMM_PREFIX) :]
    if text in _registry() and text not in _HIDDEN:
        return "tuningfork", text
    return TIMM, text


def needs_target(name: str) -> bool:
    """True when the architecture's constructor reads the folder's ``target``."""
    source, plain = parse_model_name(name)
    return source != TIMM and _REGISTRY[plain].needs_target


def create_model(
    name: str,
    num_outputs: int = 0,
    *,
    in_channels: int = 3,
    image_size: int = 64,
    weights: str | Path | None = None,
    **options: Any,
) -> nn.Module:
    """Create a network by architecture name.

    Parameters
    ----------
    name : str
        A name of :func:`list_models` (``"rotinv"``, ``"hybrid"``,
        ``"astropt"``...), or a timm architecture (``timm:NAME`` or plain).
    num_outputs : int
        Number of logits (bands for image-to-image networks; unused by
        self-supervised ones).
    in_channels : int
        Bands of the input images.
    image_size : int
        Side of the square input, in pixels.
    weights : str or Path, optional
        Local pretrained-weights file; timm backbones only.
    **options
        Architecture-specific keyword arguments, and ``ensemble=K`` for an
        :class:`~tuningfork.models.nets.ensemble.EnsembleNetwork` of K such
        networks.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ConfigError
        For an unknown name, a bad option, or weights given to a network
        that takes none.
    """
    members = options.pop("ensemble", 1)
    if not isinstance(members, int) or members < 1:
        raise ConfigError(f"ensemble must be a positive number of networks, got {members!r}")
    if members > 1:
        ensemble = _registry()[ENSEMBLE].constructor
        return ensemble([
            create_model(name, num_outputs, in_channels=in_channels, image_size=image_size, weights=weights, **options)
            for _ in range(members)
        ])
    source, plain = parse_model_name(name)
    if source == TIMM:
        if TIMM not in _REGISTRY:
            raise ConfigError(f"unknown architecture '{name}'")
        constructor = _REGISTRY[TIMM].constructor
        arguments = {"weights": weights, **options}
        try:
            return constructor(plain, num_outputs, in_channels=in_channels, image_size=image_size, **arguments)
        except TypeError as error:
            raise ConfigError(f"architecture '{name}': bad option ({error})") from error
    if weights is not None:
        raise ConfigError(f"--weights applies to timm backbones only, not to '{name}'")
    try:
        return _REGISTRY[plain].constructor(num_outputs, in_channels=in_channels, image_size=image_size, **options)
    except TypeError as error:
        raise ConfigError(f"architecture '{name}': bad option ({error})") from error
