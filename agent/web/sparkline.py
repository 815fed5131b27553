"""Small line charts as inline SVG, drawn on the server (no script, no external asset).

A gap in the data (a reading without the value, e.g. the device did not answer) breaks the
line. Colours come from the page's CSS classes, so the chart follows the theme.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 320, 72, 4


@dataclass(frozen=True)
class Chart:
    svg: Markup
    last: float | None
    low: float | None
    high: float | None


def sparkline(points: list[tuple[datetime, float | None]], label: str) -> Chart:
    """An SVG polyline of (time, value) points; `label` is its accessible name."""
    known = [(t, v) for t, v in points if v is not None]
    title = escape(label)
    if not known:
        empty = (
            f'<svg class="spark" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}">'
            f'<line class="spark-axis" x1="0" y1="{HEIGHT - 1}" x2="{WIDTH}" y2="{HEIGHT - 1}"/>'
            "</svg>"
        )
        return Chart(Markup(empty), None, None, None)
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    low, high = min(v for _, v in known), max(v for _, v in known)
    span_t, span_v = max(t1 - t0, 1e-9), max(high - low, 1e-9)

    def xy(t: datetime, v: float) -> str:
        x = (
            PAD + (t.timestamp() - t0) / span_t * (WIDTH - 2 * PAD)
            if len(points) > 1
            else WIDTH / 2
        )
        y = HEIGHT - PAD - (v - low) / span_v * (HEIGHT - 2 * PAD) if high > low else HEIGHT / 2
        return f"{x:.1f},{y:.1f}"

    runs: list[list[str]] = [[]]
    for t, v in points:
        if v is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append(xy(t, v))
    lines = "".join(_run_svg(run) for run in runs if run)
    cx, cy = xy(*known[-1]).split(",")
    svg = (
        f'<svg class="spark" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{title}">'
        f'<line class="spark-axis" x1="0" y1="{HEIGHT - 1}" x2="{WIDTH}" y2="{HEIGHT - 1}"/>'
        f'{lines}<circle class="spark-last" cx="{cx}" cy="{cy}" r="4"/></svg>'
    )
    return Chart(Markup(svg), known[-1][1], low, high)


def _run_svg(run: list[str]) -> str:
    if len(run) > 1:
        return f'<polyline class="spark-line" points="{" ".join(run)}"/>'
    x, y = run[0].split(",")
    return f'<circle class="spark-dot" cx="{x}" cy="{y}" r="3"/>'
