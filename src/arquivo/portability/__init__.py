"""Portable export and import of a store's data (JSON Lines), across SQLite and PostgreSQL.

::

    from arquivo.portability import export_data, import_data

    export_data(sqlite_store, "all.jsonl.gz")          # or user_id="u1" for one user
    report = import_data(postgres_store, "all.jsonl.gz")
    report.inserted   # {"user_preferences": 12, "conversation_history": 48210, ...}

The format is described in :mod:`arquivo.portability.fileformat`; which tables hold a
user's rows is derived from the schema in :mod:`arquivo.portability.scope`.
"""

from arquivo.portability.export import export_data
from arquivo.portability.fileformat import (
    FORMAT,
    FORMAT_VERSION,
    ExportReport,
    ImportReport,
    Progress,
    ProgressCallback,
)
from arquivo.portability.importer import import_data
from arquivo.portability.scope import TableScope, schema_tables, user_scope

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ExportReport",
    "ImportReport",
    "Progress",
    "ProgressCallback",
    "TableScope",
    "export_data",
    "import_data",
    "schema_tables",
    "user_scope",
]
