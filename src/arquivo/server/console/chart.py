"""A latency-over-time line chart as inline SVG (no script, no library)."""

from __future__ import annotations

from datetime import datetime

from markupsafe import Markup, escape

from arquivo.values import MetricBucket

__all__ = ["latency_chart"]

_W, _H = 720, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 16, 28


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 < value:
        step *= 10
    for factor in (1, 2, 5, 10):
        if step * factor >= value:
            return step * factor
    return step * 10


def latency_chart(
    buckets: list[MetricBucket], start: datetime, end: datetime, *, title: str
) -> Markup:
    """Mean and max duration per bucket, over ``start``..``end``, as an ``<svg>``."""
    span = max((end - start).total_seconds(), 1.0)
    top = _nice_max(max((b.max_ms for b in buckets), default=0.0))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(moment: datetime) -> float:
        return _LEFT + plot_w * min(max((moment - start).total_seconds() / span, 0.0), 1.0)

    def y(ms: float) -> float:
        return _TOP + plot_h * (1 - min(ms / top, 1.0))

    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-labelledby="chart-title chart-desc" preserveAspectRatio="xMidYMid meet">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">Mean (solid) and maximum (dashed) duration in milliseconds '
        f"for {len(buckets)} time buckets; the table below has the numbers.</desc>",
    ]
    for i in range(5):
        value = top * i / 4
        gy = y(value)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" y1="{gy:.1f}" x2="{_W - _RIGHT}" y2="{gy:.1f}"/>'
        )
        parts.append(
            f'<text class="axis" x="{_LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end">'
            f"{value:g} ms</text>"
        )
    for moment, anchor in ((start, "start"), (end, "end")):
        parts.append(
            f'<text class="axis" x="{x(moment):.1f}" y="{_H - 8}" text-anchor="{anchor}">'
            f"{moment:%Y-%m-%d %H:%M} UTC</text>"
        )
    if buckets:
        for cls, attr in (("line-avg", "avg_ms"), ("line-max", "max_ms")):
            points = " ".join(f"{x(b.start):.1f},{y(getattr(b, attr)):.1f}" for b in buckets)
            parts.append(f'<polyline class="{cls}" points="{points}"/>')
        for b in buckets:
            parts.append(
                f'<circle class="dot" cx="{x(b.start):.1f}" cy="{y(b.avg_ms):.1f}" r="3">'
                f"<title>{b.start:%H:%M}: mean {b.avg_ms:.1f} ms, max {b.max_ms:.1f} ms, "
                f"{b.count} calls</title></circle>"
            )
    else:
        parts.append(
            f'<text class="axis" x="{_W / 2}" y="{_H / 2}" text-anchor="middle">'
            "no measurements in this range</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
