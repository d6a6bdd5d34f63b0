"""Arquivo: the persistence layer for AI assistants and agents.

Preferences, conversations, metrics, agents, human-in-the-loop decisions and RAG
knowledge in one database (SQLite by default, PostgreSQL in production), with
migrations, backups and repair built in.
"""

from importlib.metadata import PackageNotFoundError, version

from arquivo.aio import AsyncArquivo
from arquivo.backup import BackupInfo, BackupManager, Backups
from arquivo.compat import DatabaseService, get_database_service, get_db_session
from arquivo.domain.retention import RetentionPolicy, RetentionReport
from arquivo.domain.users import ForgetReport
from arquivo.errors import (
    ArquivoError,
    ConfigurationError,
    ConflictError,
    CorruptDatabaseError,
    DatabaseUnavailableError,
    DuplicateError,
    MigrationError,
    MissingDependencyError,
    NotFoundError,
    SchemaOutOfDateError,
    SchemaTooNewError,
    StorageFullError,
    ValidationError,
    WaitTimeoutError,
)
from arquivo.knowledge import (
    Chunk,
    CollectionInfo,
    DocumentInfo,
    Hit,
    MiniLMEmbedder,
    OpenAIEmbedder,
)
from arquivo.models import (
    Agent,
    ConversationHistory,
    HITLAction,
    HITLSession,
    SystemMetric,
    UserPreference,
)
from arquivo.settings import Settings
from arquivo.store import Arquivo
from arquivo.values import (
    AgentRecord,
    AgentVersion,
    HITLActionRecord,
    HITLRequest,
    Message,
    MetricBucket,
    MetricRecord,
    OperationStats,
    SessionInfo,
)

try:
    __version__ = version("arquivo")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "Agent",
    "AgentRecord",
    "AgentVersion",
    "Arquivo",
    "ArquivoError",
    "AsyncArquivo",
    "BackupInfo",
    "BackupManager",
    "Backups",
    "Chunk",
    "CollectionInfo",
    "ConfigurationError",
    "ConflictError",
    "ConversationHistory",
    "CorruptDatabaseError",
    "DatabaseService",
    "DatabaseUnavailableError",
    "DocumentInfo",
    "DuplicateError",
    "ForgetReport",
    "HITLAction",
    "HITLActionRecord",
    "HITLRequest",
    "HITLSession",
    "Hit",
    "Message",
    "MetricBucket",
    "MetricRecord",
    "MigrationError",
    "MiniLMEmbedder",
    "MissingDependencyError",
    "NotFoundError",
    "OpenAIEmbedder",
    "OperationStats",
    "RetentionPolicy",
    "RetentionReport",
    "SchemaOutOfDateError",
    "SchemaTooNewError",
    "SessionInfo",
    "Settings",
    "StorageFullError",
    "SystemMetric",
    "UserPreference",
    "ValidationError",
    "WaitTimeoutError",
    "__version__",
    "get_database_service",
    "get_db_session",
]
