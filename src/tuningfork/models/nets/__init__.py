"""Every network of tuningfork, one file per architecture.

Importing this package registers them all with
:func:`tuningfork.models.registry.register_model`; adding an architecture
is one new file here, imported below.
"""

from . import astropt, autoencoder, descriptors, ensemble, hybrid, rotinv, timm_backbone, unet

__all__ = ["astropt", "autoencoder", "descriptors", "ensemble", "hybrid", "rotinv", "timm_backbone", "unet"]
