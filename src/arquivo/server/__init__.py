"""The Arquivo HTTP service and web console (``arquivo serve``; the ``server`` extra).

Build an app with :func:`create_app`; nothing is created when this package is imported::

    from arquivo.server import create_app
    app = create_app(store)          # an open Arquivo (its owner closes it)
    app = create_app(settings)       # or Settings: the app opens and closes its store
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arquivo.server.app import create_app as create_app
    from arquivo.server.config import ServerConfig as ServerConfig

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    # FastAPI is an optional extra: import it only when the server is asked for.
    if name == "create_app":
        from arquivo.server.app import create_app

        return create_app
    if name == "ServerConfig":
        from arquivo.server.config import ServerConfig

        return ServerConfig
    raise AttributeError(name)
