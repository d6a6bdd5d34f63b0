"""The seed documents' interface, over a process-wide default store.

The seeds use module-level helpers (``db = get_db_session()``); they are kept working
here, opened lazily from the environment on first use, never at import time.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy.orm import Session

from arquivo.store import Arquivo
from arquivo.values import Message, MetricRecord

__all__ = [
    "DatabaseService",
    "close_default_store",
    "get_database_service",
    "get_db_session",
    "get_default_store",
]

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


class DatabaseService:
    """The seeds' service object, over a store::

    db = get_database_service()
    db.set_preference("user123", "theme", "dark")
    theme = db.get_preference("user123", "theme")  # 'dark'
    db.save_message("user123", "session456", "user", "Hello")
    history = db.get_conversation_history("user123", "session456")
    db.save_metric("chat_completion", 1234.5, success=True)
    metrics = db.get_metrics("chat_completion")
    """

    def __init__(self, store: Arquivo) -> None:
        """Serve the seeds' methods from ``store``."""
        self.store = store

    def set_preference(self, user_id: str, key: str, value: Any) -> None:
        """Store a preference (any JSON value), replacing an existing one."""
        self.store.preferences.set(user_id, key, value)

    def get_preference(self, user_id: str, key: str, default: Any = None) -> Any:
        """A preference's value, or ``default``."""
        return self.store.preferences.get(user_id, key, default)

    def save_message(
        self,
        user_id: str,
        session_id: str,
        role: str,
        content: str,
        model: str | None = None,
        workspace_path: str | None = None,
        extra_data: Any = None,
    ) -> Message:
        """Append a message to a session's history."""
        return self.store.conversations.append(
            user_id,
            session_id,
            role,
            content,
            model=model,
            workspace_path=workspace_path,
            extra_data=extra_data,
        )

    def get_conversation_history(
        self, user_id: str, session_id: str, limit: int | None = None
    ) -> list[Message]:
        """A session's messages, oldest first (the last ``limit`` when given)."""
        return self.store.conversations.history(user_id, session_id, limit=limit)

    def save_metric(
        self,
        operation: str,
        duration_ms: float,
        success: bool = True,
        error: str | None = None,
        extra_data: Any = None,
    ) -> MetricRecord:
        """Record one measurement of an operation."""
        return self.store.metrics.record(
            operation, duration_ms, success=success, error=error, extra_data=extra_data
        )

    def get_metrics(self, operation: str | None = None, limit: int = 100) -> list[MetricRecord]:
        """The latest measurements, newest first (of one operation when given)."""
        return self.store.metrics.list(operation, limit=limit)


_service: DatabaseService | None = None


def get_database_service() -> DatabaseService:
    """The process-wide :class:`DatabaseService` on the default store (``DATABASE_URL``)."""
    global _service
    store = get_default_store()
    with _lock:
        if _service is None or _service.store is not store:
            _service = DatabaseService(store)
        return _service
