"""How the HTTP service behaves: limits, session lifetime, the cookie signing secret."""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, field

__all__ = ["SECRET_ENV", "ServerConfig", "is_loopback"]

#: Environment variable holding the console's cookie signing secret. ``arquivo serve``
#: sets a random one for its worker processes when the operator gave none, so every
#: worker accepts the cookies of the others.
SECRET_ENV = "ARQUIVO_SESSION_SECRET"


def _secret_from_environment() -> bytes:
    given = os.environ.get(SECRET_ENV)
    return given.encode() if given else secrets.token_bytes(32)


@dataclass(frozen=True)
class ServerConfig:
    """Tuning of one app.

    Attributes:
        max_body_bytes: Request bodies larger than this get 413 (a message may hold
            1,000,000 characters, up to 4 bytes each in UTF-8).
        session_secret: Signs the console's session cookies.
        session_ttl_s: How long a console login lasts.
        auth_cache_ttl_s: How long a checked API key is trusted without reading it again
            (a revoked key stops working within this time).
        wait_max_s: The longest a long-poll ``wait`` may be asked to block.
        console_poll_s: How often the console's inbox refreshes itself.
        concurrent_writes: Writes one worker process runs at once on a database that
            takes several writers (PostgreSQL); SQLite takes one.
    """

    max_body_bytes: int = 5 * 1024 * 1024
    session_secret: bytes = field(default_factory=_secret_from_environment, repr=False)
    session_ttl_s: int = 12 * 3600
    auth_cache_ttl_s: float = 2.0
    wait_max_s: float = 60.0
    console_poll_s: float = 2.0
    concurrent_writes: int = 4


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the service on this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
