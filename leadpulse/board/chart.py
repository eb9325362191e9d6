"""The score-over-time chart, drawn on the server as inline SVG (no script, no external
asset): the temperature bands behind, the score as a line, each stage or temperature
change as a marker with its text. Styled by classes from board.css only, so the page's
CSP (no inline style) holds. Pure: points in, markup out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from leadpulse.scoring.timeutil import format_ms

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 40, 12, 12, 28
BANDS = ((0, 25, "cold"), (25, 50, "cool"), (50, 75, "warm"), (75, 100, "hot"))


def day(ms: int) -> str:
    return format_ms(ms)[:10]


def score_chart(points: Sequence[Mapping[str, Any]], title: str) -> str:
    """An SVG chart of `points` (at_ms, score, temperature, stage, change), oldest first."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y(score: float) -> float:
        return TOP + plot_h * (1 - max(0.0, min(100.0, score)) / 100)

    first = points[0]["at_ms"] if points else 0
    last = points[-1]["at_ms"] if points else 0
    span = max(1, last - first)

    def x(at_ms: int) -> float:
        return LEFT + (plot_w / 2 if last == first else plot_w * (at_ms - first) / span)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title" '
        'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(title)}</title>',
    ]
    for low, high, name in BANDS:
        parts.append(
            f'<rect class="band band-{name}" x="{LEFT}" y="{y(high):.1f}" width="{plot_w}" '
            f'height="{y(low) - y(high):.1f}"/>'
        )
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y(low) + 4:.1f}" text-anchor="end">{low}</text>')
    parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y(100) + 4:.1f}" text-anchor="end">100</text>')
    if points:
        line = " ".join(f"{x(p['at_ms']):.1f},{y(p['score']):.1f}" for p in points)
        parts.append(f'<polyline class="score-line" points="{line}"/>')
        for p in points:
            label = f"{format_ms(p['at_ms'])}: score {p['score']}, temperature {p['temperature']}"
            if p.get("stage"):
                label += f", {p['stage']}"
            kind = "change" if p["change"] else "daily"
            parts.append(
                f'<circle class="point {kind}" cx="{x(p["at_ms"]):.1f}" cy="{y(p["score"]):.1f}" '
                f'r="{4 if p["change"] else 2.5}"><title>{escape(label)}</title></circle>'
            )
        base = HEIGHT - 8
        parts.append(f'<text class="axis" x="{LEFT}" y="{base}" text-anchor="start">{day(first)}</text>')
        if last != first:
            parts.append(f'<text class="axis" x="{WIDTH - RIGHT}" y="{base}" text-anchor="end">{day(last)}</text>')
    parts.append("</svg>")
    return "".join(parts)
