# -*- test-case-name: tests.unit.web.portal.test_dashboard -*-
"""Line charts as SVG, drawn on the server: no chart library, no script.

L{line_chart} turns C{(time, value)} points into a small self-contained
SVG element (a polyline, the axis' extremes as text); every number in it
is formatted here and the title goes through Markupsafe's escaping, so
nothing from outside reaches the markup unescaped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from markupsafe import Markup, escape

__all__ = ["line_chart"]


def _fmt(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.2f}"


def line_chart(
    title: str,
    points: Sequence[tuple[float, float]],
    *,
    width: int = 420,
    height: int = 120,
    span: float = 3600.0,
    now: float | None = None,
) -> Markup:
    """An SVG line chart of C{points} over the last C{span} seconds up to C{now}."""
    now = time.time() if now is None else now
    left, right, top, bottom = 36, 6, 18, 16
    plot_w, plot_h = width - left - right, height - top - bottom
    shown = [(t, v) for t, v in points if now - span <= t <= now]
    peak = max((v for _, v in shown), default=0.0)
    ceiling = peak if peak > 0 else 1.0
    coords = []
    for t, v in shown:
        x = left + plot_w * (t - (now - span)) / span
        y = top + plot_h * (1.0 - v / ceiling)
        coords.append(f"{x:.1f},{y:.1f}")
    line = (
        f'<polyline fill="none" stroke="#1f6feb" stroke-width="1.5" points="{" ".join(coords)}"/>'
        if len(coords) > 1
        else f'<text x="{left + 8}" y="{top + plot_h // 2}" class="empty">no data yet</text>'
    )
    last = _fmt(shown[-1][1]) if shown else "-"
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f"<title>{escape(title)}</title>"
        f'<text x="2" y="12" class="title">{escape(title)} (now {last})</text>'
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#f6f8fa"'
        ' stroke="#d0d7de"/>'
        f'<text x="2" y="{top + 10}" class="axis">{_fmt(ceiling)}</text>'
        f'<text x="2" y="{top + plot_h}" class="axis">0</text>'
        f'<text x="{left}" y="{height - 3}" class="axis">-60 min</text>'
        f'<text x="{width - right - 24}" y="{height - 3}" class="axis">now</text>'
        f"{line}</svg>"
    )
    return Markup(svg)
