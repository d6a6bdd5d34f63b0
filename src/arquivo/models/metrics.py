"""``system_metrics``: the timing and outcome of every measured operation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Index, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column

from arquivo.db.types import BigIntPK, JSONType
from arquivo.models.base import Base, CreatedAtMixin

__all__ = ["SystemMetric"]


class SystemMetric(CreatedAtMixin, Base):
    """One measurement of one operation."""

    __tablename__ = "system_metrics"
    __table_args__ = (
        # Per operation over time: summaries, time series, "metrics of X since T".
        Index(None, "operation", "created_at"),
        # Across operations by time: dashboards and retention.
        Index(None, "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    operation: Mapped[str] = mapped_column(String(255))
    duration_ms: Mapped[float]
    success: Mapped[bool] = mapped_column(default=True, server_default=true())
    error: Mapped[str | None] = mapped_column(Text)
    extra_data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    def __repr__(self) -> str:
        return (
            f"SystemMetric(operation={self.operation!r}, duration_ms={self.duration_ms!r}, "
            f"success={self.success!r})"
        )
