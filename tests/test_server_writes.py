"""How many writes a server process runs at once, per database."""

from __future__ import annotations

from arquivo import Arquivo
from arquivo.server.config import ServerConfig
from arquivo.server.writes import writer_limiter


def test_one_write_at_a_time_on_sqlite_a_few_on_postgresql(store: Arquivo) -> None:
    limiter = writer_limiter(store, ServerConfig().concurrent_writes)
    expected = 1 if store.dialect == "sqlite" else ServerConfig().concurrent_writes
    assert limiter.total_tokens == expected
    assert writer_limiter(store, 9).total_tokens == (1 if store.dialect == "sqlite" else 9)
