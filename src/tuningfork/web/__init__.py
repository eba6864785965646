"""The expert explorer: review the triage queue in a browser and label galaxies.

:func:`create_app` builds the FastAPI application (pages, JSON API, PNG
images), :func:`serve` runs it (``tuningfork explore``). Labels go to the
append-only log of :mod:`tuningfork.data.labels`, which ``tuningfork train
--labels`` reads back.
"""

from .app import create_app
from .catalog import ExplorerCatalog
from .server import serve

__all__ = ["ExplorerCatalog", "create_app", "serve"]
