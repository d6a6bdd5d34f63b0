"""The Arquivo schema as SQLAlchemy 2 typed models, one module per aggregate.

The class and table names are the seed documents', so their query examples run as
written: ``session.query(UserPreference).filter(UserPreference.user_id == "u1")``.
"""

from arquivo.models.agents import Agent, AgentDefinition
from arquivo.models.api_keys import ApiKey
from arquivo.models.base import Base
from arquivo.models.conversations import ROLES, ConversationHistory
from arquivo.models.hitl import HITL_STATUSES, HITLAction, HITLSession
from arquivo.models.knowledge import KnowledgeChunk, KnowledgeCollection
from arquivo.models.metrics import SystemMetric
from arquivo.models.preferences import UserPreference

__all__ = [
    "HITL_STATUSES",
    "ROLES",
    "Agent",
    "AgentDefinition",
    "ApiKey",
    "Base",
    "ConversationHistory",
    "HITLAction",
    "HITLSession",
    "KnowledgeChunk",
    "KnowledgeCollection",
    "SystemMetric",
    "UserPreference",
]
