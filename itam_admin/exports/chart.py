"""The export history as a picture: an SVG chart of recent runs (records sent and failed, duration), drawn on the
server so it shows under a strict Content-Security-Policy and without JavaScript. It only draws the runs it is given;
it never queries anything, and every text in it is escaped. The page puts the same numbers in a table beside it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from itam_admin.exports.models import ExportRun

WIDTH = 760
LEFT, RIGHT, TOP = 64, 16, 56
RECORDS_HEIGHT, DURATION_HEIGHT, GAP, BOTTOM = 150, 80, 44, 40
MAX_BAR = 28


@dataclass(frozen=True)
class ChartPoint:
    """One run as the chart shows it."""

    run_id: int
    status: str
    sent: int
    failed: int
    duration_seconds: float | None
    when: str  # queued at, 'YYYY-MM-DD HH:MM' UTC


def chart_points(runs: Sequence[ExportRun], limit: int = 20) -> list[ChartPoint]:
    """The most recent `limit` runs, oldest first (time reads left to right)."""
    newest_first = sorted(runs, key=lambda run: run.id, reverse=True)[:limit]
    return [
        ChartPoint(
            run_id=run.id,
            status=run.status,
            sent=sum(dt.sent for dt in run.data_types),
            failed=sum(dt.failed for dt in run.data_types),
            duration_seconds=run.duration_seconds,
            when=run.queued_at.strftime("%Y-%m-%d %H:%M") if run.queued_at else "",
        )
        for run in reversed(newest_first)
    ]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above value (an axis maximum people read at a glance)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # not reached: value <= 10 * power always


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "no duration"
    if seconds < 0.1:
        return "under 0.1 s" if seconds > 0 else "0 s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _axis_label(value: float, seconds: bool) -> str:
    return duration_text(value).replace(".0 s", " s") if seconds else _number(value)


def summary(points: Sequence[ChartPoint]) -> str:
    """The chart in one or two sentences, for screen readers (its <desc>)."""
    if not points:
        return "No export has run yet."
    last = points[-1]
    total_sent = sum(p.sent for p in points)
    total_failed = sum(p.failed for p in points)
    return (
        f"The last {len(points)} export{'s' if len(points) != 1 else ''}, oldest first: {_number(total_sent)} records "
        f"sent and {_number(total_failed)} failed in all. The latest, run #{last.run_id}, sent {_number(last.sent)} "
        f"and failed {_number(last.failed)} records in {duration_text(last.duration_seconds)}. The table below lists "
        "every run's numbers."
    )


def history_chart(points: Sequence[ChartPoint], chart_id: str = "history-chart") -> Markup:
    """The SVG: stacked bars of records sent and failed per run above bars of each run's duration."""
    plot_width = WIDTH - LEFT - RIGHT
    records_top = TOP
    duration_top = records_top + RECORDS_HEIGHT + GAP
    height = duration_top + DURATION_HEIGHT + BOTTOM
    slot = plot_width / max(len(points), 1)
    bar = min(MAX_BAR, slot * 0.6)
    records_max = nice_ceiling(max((p.sent + p.failed for p in points), default=0))
    duration_max = nice_ceiling(max((p.duration_seconds or 0 for p in points), default=0))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="history-chart" id="{escape(chart_id)}" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" preserveAspectRatio="xMinYMin meet" '
        f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc">',
        f'<title id="{escape(chart_id)}-title">Recent exports: records sent and failed per run, and how long each '
        "took</title>",
        f'<desc id="{escape(chart_id)}-desc">{escape(summary(points))}</desc>',
        '<defs><pattern id="failed-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" class="bar-failed"/>'
        '<line x1="0" y1="0" x2="0" y2="6" class="hatch"/></pattern></defs>',
    ]
    parts += _legend()
    parts += _axis(records_top, RECORDS_HEIGHT, records_max, "Records", seconds=False)
    parts += _axis(duration_top, DURATION_HEIGHT, duration_max, "Duration", seconds=True)
    for index, point in enumerate(points):
        x = LEFT + index * slot + (slot - bar) / 2
        parts.append(f'<g class="run" data-run="{point.run_id}">')
        parts.append(
            f"<title>Run #{point.run_id} ({escape(point.when)} UTC, {escape(point.status.replace('_', ' '))}): "
            f"{_number(point.sent)} sent, {_number(point.failed)} failed, {duration_text(point.duration_seconds)}"
            "</title>"
        )
        sent_h = RECORDS_HEIGHT * point.sent / records_max
        failed_h = RECORDS_HEIGHT * point.failed / records_max
        base = records_top + RECORDS_HEIGHT
        if point.sent:
            parts.append(_rect(x, base - sent_h, bar, sent_h, "bar-sent"))
        if point.failed:
            top = base - sent_h - failed_h
            parts.append(_rect(x, top, bar, failed_h, "bar-failed-hatched", fill="url(#failed-hatch)"))
        if point.duration_seconds:
            duration_h = DURATION_HEIGHT * point.duration_seconds / duration_max
            parts.append(_rect(x, duration_top + DURATION_HEIGHT - duration_h, bar, duration_h, "bar-duration"))
        label_x = LEFT + index * slot + slot / 2
        parts.append(
            f'<text x="{label_x:.1f}" y="{duration_top + DURATION_HEIGHT + 16}" class="tick run-label" '
            f'text-anchor="middle">#{point.run_id}</text>'
        )
        parts.append("</g>")
    if not points:
        parts.append(
            f'<text x="{LEFT + plot_width / 2:.1f}" y="{records_top + RECORDS_HEIGHT / 2:.1f}" class="empty" '
            'text-anchor="middle">No export has run yet</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_width / 2:.1f}" y="{height - 6}" class="axis-title" text-anchor="middle">'
        "Export run, oldest on the left</text>"
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def _rect(x: float, y: float, width: float, height: float, css_class: str, fill: str | None = None) -> str:
    fill_attribute = f' fill="{fill}"' if fill else ""
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{max(height, 1):.1f}" class="{css_class}"'
        f"{fill_attribute}/>"
    )


def _legend() -> list[str]:
    items = (("bar-sent", None, "Records sent"), ("bar-failed-hatched", "url(#failed-hatch)", "Records failed"))
    items += (("bar-duration", None, "Duration"),)
    parts, x = ['<g class="legend">'], LEFT
    for css_class, fill, label in items:
        parts.append(_rect(x, 12, 14, 14, css_class, fill))
        parts.append(f'<text x="{x + 20}" y="24" class="legend-label">{label}</text>')
        x += 40 + 8 * len(label)
    parts.append("</g>")
    return parts


def _axis(top: float, height: float, maximum: float, title: str, seconds: bool) -> list[str]:
    parts = [f'<g class="axis" aria-hidden="true"><text x="4" y="{top - 8}" class="axis-title">{title}</text>']
    for fraction in (0, 0.5, 1):
        y = top + height - height * fraction
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
            f"{_axis_label(maximum * fraction, seconds)}</text>"
        )
    parts.append("</g>")
    return parts
