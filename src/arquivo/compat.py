"""The seed documents' interface, over a process-wide default store.

The seeds use module-level helpers (``db = get_db_session()``); they are kept working
here, opened lazily from the environment on first use, never at import time.
"""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session

from arquivo.store import Arquivo

__all__ = ["close_default_store", "get_db_session", "get_default_store"]

_lock = threading.Lock()
_default: Arquivo | None = None


def get_default_store() -> Arquivo:
    """The process-wide store opened from ``DATABASE_URL`` (created on first call)."""
    global _default
    with _lock:
        if _default is None:
            _default = Arquivo.open()
        return _default


def close_default_store() -> None:
    """Close the process-wide store; the next call to a helper opens it again."""
    global _default
    with _lock:
        if _default is not None:
            _default.close()
            _default = None


def get_db_session() -> Session:
    """A new ORM session on the default store, as the seeds use it.

    The caller commits and closes it::

        db = get_db_session()
        try:
            db.add(UserPreference(user_id="user123", key="theme", value="dark"))
            db.commit()
        finally:
            db.close()
    """
    return get_default_store().session()
