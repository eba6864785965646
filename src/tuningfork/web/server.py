"""``tuningfork explore``: serve the explorer with uvicorn, safely by default."""

from __future__ import annotations

import ipaddress
import secrets
import socket
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: The annotator a token given without a name labels as.
DEFAULT_ANNOTATOR = "expert"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None))
        except (socket.gaierror, ValueError):
            return False


def parse_tokens(specs: Sequence[str]) -> dict[str, str]:
    """Turn ``NAME:TOKEN`` (or a bare ``TOKEN``, for annotator ``expert``) options into token -> name.

    Raises
    ------
    ConfigError
        An empty token, or two annotators sharing a name or a token.
    """
    tokens: dict[str, str] = {}
    for spec in specs:
        name, _, token = spec.rpartition(":")
        name = name or DEFAULT_ANNOTATOR
        if not token:
            raise ConfigError(f"token option '{spec}': the token is empty")
        if token in tokens or name in tokens.values():
            raise ConfigError(f"token option '{spec}': each annotator needs a name and token of their own")
        tokens[token] = name
    return tokens


def check_host(host: str, tokens: dict[str, str]) -> None:
    """Refuse to listen beyond this machine unless the operator chose the tokens."""
    if not tokens and not is_loopback(host):
        raise ConfigError(f"--host {host} accepts connections from other machines: give annotator tokens "
                          "(--token NAME:TOKEN) to serve there, or keep the default 127.0.0.1")


def serve(
    catalog: str | Path,
    labels: str | Path = Path("labels.sqlite"),
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    tokens: Sequence[str] = (),
    data: str | Path | None = None,
    data_root: str | Path | None = None,
    echo=print,
) -> None:
    """Serve the explorer until interrupted.

    Parameters
    ----------
    catalog : str or Path
        A catalog folder (``tuningfork catalog``) or a predictions Parquet
        (``tuningfork predict``).
    labels : str or Path
        The label database (created when missing).
    host, port
        Where to listen.  A host other than loopback needs ``tokens``.
    tokens : sequence of str
        ``NAME:TOKEN`` per annotator (a bare ``TOKEN`` is annotator
        ``expert``).  Without any, one random token is made and printed.
    data, data_root : optional
        See :class:`~tuningfork.web.catalog.ExplorerCatalog`.
    echo : callable
        Where the address and token are printed.

    Raises
    ------
    ConfigError
        A non-loopback host without tokens, or bad tokens (before anything starts).
    """
    import uvicorn

    from .app import create_app

    parsed = parse_tokens(tokens)
    check_host(host, parsed)
    if not parsed:
        parsed = {secrets.token_urlsafe(16): DEFAULT_ANNOTATOR}
        echo(f"annotator token (random, for this run): {next(iter(parsed))}")
    app = create_app(catalog, labels, parsed, data=data, data_root=data_root)
    shown = f"[{host}]" if ":" in host else host
    for token, name in parsed.items():
        echo(f"{name}: open http://{shown}:{port}/?token={token}")
    echo(f"labels: {Path(labels).resolve()}")
    uvicorn.run(app, host=host, port=port, log_level="warning")
