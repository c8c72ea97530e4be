"""The matrix timeline as an inline SVG line plot, drawn in Python: no JavaScript and no
CDN, so it renders in an offline Airflow UI. Every text is escaped."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from html import escape

from markupsafe import Markup

from foundryflow.ui.data import NICE_SECONDS, SERIES, SERIES_MEANING, Timeline

WIDTH, HEIGHT = 800, 320
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 44, 44
"""Plot margins: y labels on the left, the legend on top, time labels below."""

COLORS = {
    "pending": "#64748b",
    "running": "#2563eb",
    "completed": "#16a34a",
    "failed": "#dc2626",
}
"""Fallback strokes; the page's stylesheet sets them (``.s-<status>``), dark mode too."""


def nice_step(top: float, ticks: int = 5) -> int:
    """An integer tick step of 1, 2 or 5 times a power of ten, giving about ``ticks``."""
    raw = max(top / ticks, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return int(factor * power)
    return int(10 * power)


def time_ticks(start: float, end: float, ticks: int = 6) -> tuple[list[float], str]:
    """Round times (epoch seconds) between start and end, and their strftime format."""
    span = max(end - start, 1.0)
    step = next((s for s in NICE_SECONDS if span / s <= ticks), NICE_SECONDS[-1])
    first = math.ceil(start / step) * step
    values = [float(t) for t in range(int(first), int(end) + 1, step)]
    if step >= 86400:
        fmt = "%m-%d"
    elif span >= 86400:
        fmt = "%m-%d %H:%M"
    elif step < 60:
        fmt = "%H:%M:%S"
    else:
        fmt = "%H:%M"
    return values, fmt


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def timeline_svg(data: Timeline) -> Markup:
    """One polyline per status (``data-status``), axes with ticks, and a legend whose
    entries carry the current count."""
    points = data.points
    start = points[0].at.timestamp()
    end = max(points[-1].at.timestamp(), start + max(data.bucket_seconds, 1))
    top = max((p.count(s) for p in points for s in SERIES), default=0)
    y_step = nice_step(top)
    y_max = max(math.ceil(top / y_step) * y_step, y_step)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: float) -> float:
        return LEFT + (at - start) / (end - start) * plot_w

    def y(count: float) -> float:
        return TOP + plot_h - count / y_max * plot_h

    last = points[-1]
    summary = ", ".join(f"{s} {last.count(s)}" for s in SERIES)
    parts = [
        f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg" '
        'role="img" aria-labelledby="plot-title plot-desc" preserveAspectRatio="xMidYMid meet">',
        '<title id="plot-title">Matrix configs by status over time</title>',
        f'<desc id="plot-desc">{len(points)} points, one every '
        f"{escape(span_label(data.bucket_seconds))}; now: {escape(summary)}</desc>",
        '<g class="grid">',
    ]
    for value in range(0, y_max + 1, y_step):
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{_num(y(value))}" y2="{_num(y(value))}"/>'
        )
    parts.append('</g><g class="axis axis-y">')
    for value in range(0, y_max + 1, y_step):
        parts.append(
            f'<text x="{LEFT - 8}" y="{_num(y(value) + 4)}" text-anchor="end">{value}</text>'
        )
    parts.append(
        f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}"/>'
        f'<text class="axis-title" x="12" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {TOP + plot_h / 2})">configs</text>'
        '</g><g class="axis axis-x">'
        f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>'
    )
    ticks, fmt = time_ticks(start, end)
    for tick in ticks:
        label = datetime.fromtimestamp(tick, tz=UTC).strftime(fmt)
        parts.append(
            f'<line x1="{_num(x(tick))}" x2="{_num(x(tick))}" y1="{TOP + plot_h}" '
            f'y2="{TOP + plot_h + 5}"/>'
            f'<text x="{_num(x(tick))}" y="{TOP + plot_h + 18}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    parts.append(
        f'<text class="axis-title" x="{LEFT + plot_w / 2}" y="{HEIGHT - 6}" '
        'text-anchor="middle">time (UTC)</text></g><g class="series">'
    )
    for status in SERIES:
        coords = " ".join(f"{_num(x(p.at.timestamp()))},{_num(y(p.count(status)))}" for p in points)
        parts.append(
            f'<polyline class="series-line s-{status}" data-status="{status}" '
            f'data-points="{len(points)}" points="{coords}" fill="none" '
            f'stroke="{COLORS[status]}" stroke-width="2" stroke-linejoin="round">'
            f"<title>{escape(status)}: {escape(SERIES_MEANING[status])}</title></polyline>"
            f'<circle class="s-{status}" cx="{_num(x(last.at.timestamp()))}" '
            f'cy="{_num(y(last.count(status)))}" r="3" fill="{COLORS[status]}">'
            f"<title>{escape(status)} now: {last.count(status)}</title></circle>"
        )
    parts.append('</g><g class="legend">')
    for i, status in enumerate(SERIES):
        lx = LEFT + i * (plot_w / len(SERIES))
        parts.append(
            f'<g class="legend-entry" data-status="{status}">'
            f'<rect class="s-{status}" x="{_num(lx)}" y="12" width="14" height="14" rx="3" '
            f'fill="{COLORS[status]}"/>'
            f'<text x="{_num(lx + 20)}" y="24">{escape(status)} ({last.count(status)})</text></g>'
        )
    parts.append("</g></svg>")
    return Markup("".join(parts))


def span_label(seconds: float) -> str:
    """A round span in its largest whole unit: ``30 s``, ``5 min``, ``2 h``, ``1 d``."""
    value = timedelta(seconds=seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if value >= timedelta(seconds=size) and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"
