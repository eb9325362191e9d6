"""The backtest's HTML report: one self-contained page (inline CSS and SVG drawn here, no
script, nothing fetched), so that it opens anywhere without a network connection. Every
text from the history or the rules is escaped."""

from __future__ import annotations

from html import escape
from typing import Any

COLOURS = ("#4c78a8", "#f58518")  # baseline, candidate
WIDTH, HEIGHT = 640, 264
SHOWN = 20  # alerts listed per table (the JSON report has up to --limit)
_LEFT, _BOTTOM, _TOP = 48, 78, 16


def render(report: dict[str, Any]) -> str:
    """The page for a `leadpulse backtest` JSON report."""
    base, cand = report["baseline"], report["candidate"]
    names = (f"baseline {base['rules_version']}", f"candidate {cand['rules_version']}")
    changes = report["changes"]
    tracks = _keys(base, cand, "nurture")
    parts = [
        f"<h1>Backtest: {escape(names[0])} against {escape(names[1])}</h1>",
        f"<p>{report['events']} events, evaluated at {escape(report['evaluated_at'])}.</p>",
        _legend(names),
        _section(
            "changes",
            "<h2>What changes</h2>",
            _table(
                ("", "contacts", "hot leads added", "hot leads removed", "hot accounts added", "hot accounts removed"),
                [
                    (
                        "changed",
                        changes["contacts"],
                        changes["hot_leads_added"]["count"],
                        changes["hot_leads_removed"]["count"],
                        changes["hot_accounts_added"]["count"],
                        changes["hot_accounts_removed"]["count"],
                    )
                ],
            ),
            '<div class="pair">',
            _table(("change", "contacts"), list(changes["by_kind"].items())),
            _table(
                ("baseline temperature", "candidate temperature", "contacts"),
                [(m["baseline"], m["candidate"], m["contacts"]) for m in changes["temperature_moves"]],
            ),
            "</div>",
        ),
        _section(
            "distributions",
            '<div class="pair"><div><h2>Score distribution</h2>',
            _bars(
                [f"{low}" for low in range(0, 101, 5)],
                [_binned(side["scores"]) for side in (base, cand)],
                "contacts per final score (bins of 5)",
            ),
            "</div><div><h2>Funnel</h2>",
            _funnel(base, cand),
            "</div></div>",
        ),
        _section(
            "alerts",
            '<div class="pair"><div><h2>Hot-lead alerts per week</h2>',
            _weekly(base["hot_leads_per_week"], cand["hot_leads_per_week"], "hot-lead alerts"),
            "</div><div><h2>Hot-account alerts per week</h2>",
            _weekly(base["hot_accounts_per_week"], cand["hot_accounts_per_week"], "hot-account alerts"),
            "</div></div>",
        ),
        _section(
            "signals",
            "<h2>Top signals by contribution</h2>",
            "<p>Points of each signal among the contacts' final reasons, summed.</p>",
            '<div class="pair">',
            *(_hbars(side["top_signals"], COLOURS[index], names[index]) for index, side in enumerate((base, cand))),
            "</div>",
        ),
        _section(
            "changed-alerts",
            "<h3>Hot leads added (the first 20), with the signals that made the difference</h3>",
            _alerts(changes["hot_leads_added"]["examples"]),
            "<h3>Hot leads removed (the first 20)</h3>",
            _alerts(changes["hot_leads_removed"]["examples"]),
        ),
        _section(
            "nurture",
            "<h2>Nurture records due at the evaluation time</h2>",
            _table(
                ("track", "baseline", "candidate"),
                [(track, base["nurture"].get(track, 0), cand["nurture"].get(track, 0)) for track in tracks],
            ),
        ),
    ]
    if "calibration" in report:
        parts.append(_calibration(report["calibration"], names))
    title = escape(f"LeadPulse backtest: {names[1]}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}.pair{display:flex;gap:2em;flex-wrap:wrap}"
    "svg{background:#fafafa;border:1px solid #eee}.key{display:inline-block;width:1em;height:1em;margin:0 .3em}"
)


def _section(name: str, *parts: str) -> str:
    return f'<section id="{name}">' + "\n".join(parts) + "</section>"


def _legend(names: tuple[str, str]) -> str:
    keys = "".join(
        f'<span class="key" style="background:{colour}"></span>{escape(name)} '
        for colour, name in zip(COLOURS, names, strict=True)
    )
    return f"<p>{keys}</p>"


def _keys(base: dict[str, Any], cand: dict[str, Any], name: str) -> list[str]:
    return sorted(set(base[name]) | set(cand[name]))


def _binned(scores: list[int]) -> list[float]:
    return [float(sum(scores[low : low + 5])) for low in range(0, 101, 5)]


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    head = "".join(f"<th>{escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(_text(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _alerts(examples: list[dict[str, Any]]) -> str:
    rows = [
        (
            alert["contact_id"],
            alert["occurred_at"][:16],
            alert["model"],
            alert["score"],
            alert["other_score"],
            "; ".join(f"{d['signal']} {d['other_points']:g} → {d['points']:g}" for d in alert["difference"]),
        )
        for alert in examples[:SHOWN]
    ]
    return _table(("contact", "at", "model", "score", "other rules' score", "difference (other → this)"), rows)


def _funnel(base: dict[str, Any], cand: dict[str, Any]) -> str:
    order = ["suspect", "lead", "prospect", "opportunity", "customer", "nurturing", "disqualified"]
    stages = [stage for stage in order if stage in base["funnel"] or stage in cand["funnel"]]
    stages += [stage for stage in _keys(base, cand, "funnel") if stage not in stages]
    values = [[float(side["funnel"].get(stage, 0)) for stage in stages] for side in (base, cand)]
    return _bars(stages, values, "contacts per final stage")


def _weekly(base: dict[str, int], cand: dict[str, int], what: str) -> str:
    weeks = sorted(set(base) | set(cand))
    if not weeks:
        return "<p>None under either rules file.</p>"
    return _lines(weeks, [[float(side.get(week, 0)) for week in weeks] for side in (base, cand)], f"{what} per week")


def _scale(values: list[list[float]]) -> float:
    top = max((value for series in values for value in series), default=0.0)
    return top if top > 0 else 1.0


def _axes(top: float, caption: str) -> list[str]:
    bottom = HEIGHT - _BOTTOM
    return [
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}" stroke="#888"/>',
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{WIDTH - 8}" y2="{bottom}" stroke="#888"/>',
        f'<text x="{_LEFT - 4}" y="{_TOP + 8}" font-size="10" text-anchor="end">{_text(round(top, 4))}</text>',
        f'<text x="{_LEFT - 4}" y="{bottom}" font-size="10" text-anchor="end">0</text>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 4}" font-size="11" text-anchor="middle">{escape(caption)}</text>',
    ]


def _svg(body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}">' + "".join(body) + "</svg>"
    )


def _bars(groups: list[str], values: list[list[float]], caption: str) -> str:
    """Grouped vertical bars: one group per label, one bar per rules file."""
    top = _scale(values)
    span = (WIDTH - _LEFT - 16) / max(len(groups), 1)
    bar = span * 0.8 / len(values)
    bottom = HEIGHT - _BOTTOM
    body = _axes(top, caption)
    for index, group in enumerate(groups):
        x = _LEFT + 4 + index * span
        for side, series in enumerate(values):
            height = (bottom - _TOP) * series[index] / top
            body.append(
                f'<rect x="{x + side * bar:.1f}" y="{bottom - height:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{COLOURS[side]}"><title>{escape(group)}: {_text(series[index])}</title></rect>'
            )
        body.append(
            f'<text x="{x + span * 0.4:.1f}" y="{bottom + 12}" font-size="10" text-anchor="end" '
            f'transform="rotate(-35 {x + span * 0.4:.1f} {bottom + 12})">{escape(group)}</text>'
        )
    return _svg(body, caption)


def _lines(labels: list[str], values: list[list[float]], caption: str) -> str:
    top = _scale(values)
    bottom = HEIGHT - _BOTTOM
    step = (WIDTH - _LEFT - 16) / max(len(labels) - 1, 1)
    body = _axes(top, caption)
    for side, series in enumerate(values):
        points = " ".join(
            f"{_LEFT + 4 + index * step:.1f},{bottom - (bottom - _TOP) * value / top:.1f}"
            for index, value in enumerate(series)
        )
        body.append(f'<polyline points="{points}" fill="none" stroke="{COLOURS[side]}" stroke-width="2"/>')
    every = max(1, len(labels) // 12)
    for index in range(0, len(labels), every):
        x = _LEFT + 4 + index * step
        body.append(
            f'<text x="{x:.1f}" y="{bottom + 12}" font-size="10" text-anchor="end" '
            f'transform="rotate(-35 {x:.1f} {bottom + 12})">{escape(labels[index])}</text>'
        )
    return _svg(body, caption)


def _hbars(items: list[dict[str, Any]], colour: str, caption: str) -> str:
    """Horizontal bars, one per signal (negative points drawn from the same axis, leftwards)."""
    rows = items[:12]
    width, label_width = 460, 150
    height = 20 * len(rows) + 30
    top = max((abs(item["points"]) for item in rows), default=1.0) or 1.0
    body = [f'<text x="{width / 2}" y="14" font-size="11" text-anchor="middle">{escape(caption)}</text>']
    for index, item in enumerate(rows):
        y = 22 + index * 20
        length = (width - label_width - 70) * abs(item["points"]) / top
        body.append(
            f'<text x="{label_width - 4}" y="{y + 12}" font-size="11" text-anchor="end">{escape(item["signal"])}</text>'
        )
        body.append(f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="14" fill="{colour}"/>')
        body.append(
            f'<text x="{label_width + length + 4:.1f}" y="{y + 12}" font-size="10">{_text(item["points"])}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(caption)}">' + "".join(body) + "</svg>"
    )


def _calibration(found: dict[str, Any], names: tuple[str, str]) -> str:
    base, cand = found["baseline"], found["candidate"]
    metrics = [
        ("scoring times", "scoring_times"),
        ("samples (contact, time)", "samples"),
        ("converted in the horizon", "converted"),
        ("conversion rate", "conversion_rate"),
        ("lift of hot over all", "hot_lift"),
        ("ROC AUC", "roc_auc"),
        ("hot threshold precision", "hot_precision"),
        ("hot threshold recall", "hot_recall"),
    ]
    rows: list[tuple[Any, ...]] = [(label, base[key], cand[key]) for label, key in metrics]
    rows.append(
        (
            "median days, first hot alert → conversion",
            base["hot_to_conversion_days"]["median"],
            cand["hot_to_conversion_days"]["median"],
        )
    )
    bands = [band["band"] for band in base["bands"]]
    return _section(
        "calibration",
        "<h2>Calibration against outcomes</h2>",
        f"<p>Every contact scored at each scoring time from the events before it only, converted when it opens an "
        f"opportunity or wins a deal within {_text(base['horizon_days'])} days after "
        f"({escape(str(base['first_scoring_time']))} to {escape(str(base['last_scoring_time']))}).</p>",
        _table(("", names[0], names[1]), rows),
        '<div class="pair"><div><h3>Conversion rate per temperature band</h3>',
        _bars(
            bands,
            [[band["conversion_rate"] or 0.0 for band in side["bands"]] for side in (base, cand)],
            "conversion rate per band",
        ),
        "</div><div><h3>Conversion rate per score decile (1 = highest scores)</h3>",
        _bars(
            [str(row["decile"]) for row in base["deciles"]],
            [[row["conversion_rate"] or 0.0 for row in side["deciles"]] for side in (base, cand)],
            "conversion rate per decile",
        ),
        "</div></div>",
        "<h3>Which behaviours and attributes precede conversions (lift among converters)</h3>",
        '<div class="pair">',
        *(_features(side, name) for side, name in zip((base, cand), names, strict=True)),
        "</div>",
    )


def _features(side: dict[str, Any], name: str) -> str:
    rows = [(row["feature"], row["samples"], row["conversion_rate"], row["lift"]) for row in side["features"][:20]]
    return f"<div><p>{escape(name)}</p>" + _table(("feature", "samples", "conversion", "lift"), rows) + "</div>"
