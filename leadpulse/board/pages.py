"""The board's HTML, rendered on the server from the read model's rows: every value escaped,
no inline script or style (the CSP forbids both), landmarks, labels and table headers for
screen readers, one column on phones (board.css). Pure: rows in, markup out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from leadpulse.board.chart import score_chart
from leadpulse.board.model import Funnel
from leadpulse.scoring.timeutil import format_ms

Row = Mapping[str, Any]
CURRENT = ' aria-current="page"'


def when(ms: int) -> str:
    text = format_ms(ms)
    return f'<time datetime="{text}">{text[:10]} {text[11:16]} UTC</time>'


def contact_link(contact_id: str) -> str:
    return f'<a href="/contacts/{quote(contact_id, safe="")}">{escape(contact_id)}</a>'


def account_link(account_id: str | None) -> str:
    if not account_id:
        return "—"
    return f'<a href="/accounts/{quote(account_id, safe="")}">{escape(account_id)}</a>'


def reason_text(reason: Row) -> str:
    return f"{reason['signal']} {float(reason['points']):+g} ({reason['part']})"


def reasons_list(reasons: Sequence[Row], limit: int = 3) -> str:
    if not reasons:
        return '<span class="muted">—</span>'
    items = "".join(f"<li>{escape(reason_text(r))}</li>" for r in reasons[:limit])
    return f'<ul class="reasons">{items}</ul>'


def badge(label: str) -> str:
    return f'<span class="badge badge-{escape(label)}">{escape(label)}</span>'


def layout(title: str, body: str, *, csrf: str | None, current: str = "", query: str = "") -> str:
    nav = "".join(
        f'<li><a href="{href}"{CURRENT if name == current else ""}>{label}</a></li>'
        for name, href, label in (("hot", "/", "Hot now"), ("funnel", "/funnel", "Funnel"))
    )
    logout = (
        ""
        if csrf is None
        else '<form method="post" action="/logout" class="logout">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}"><button type="submit">Log out</button></form>'
    )
    search = (
        '<form method="get" action="/search" role="search" class="search">'
        '<label for="q" class="visually-hidden">Search by e-mail, domain or id</label>'
        f'<input id="q" name="q" type="search" placeholder="e-mail, domain or id" value="{escape(query)}" '
        'maxlength="256" required><button type="submit">Search</button></form>'
        if csrf is not None
        else ""
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · LeadPulse</title>"
        '<link rel="stylesheet" href="/static/board.css">'
        '<script src="/static/board.js" defer></script></head><body>'
        '<a class="skip" href="#main">Skip to content</a>'
        '<header><span class="brand">LeadPulse</span>'
        f'<nav aria-label="Main"><ul>{nav}</ul></nav>{search}{logout}</header>'
        f'<main id="main"><h1>{escape(title)}</h1>{body}</main></body></html>'
    )


def _select(name: str, label: str, options: Sequence[str], chosen: str | None) -> str:
    items = [f'<option value=""{" selected" if not chosen else ""}>any</option>']
    items += [f'<option value="{escape(o)}"{" selected" if o == chosen else ""}>{escape(o)}</option>' for o in options]
    return f'<label>{label} <select name="{name}">{"".join(items)}</select></label>'


def hot_page(
    contacts: Sequence[Row], accounts: Sequence[Row], facets: Mapping[str, list[str]], filters: Mapping[str, str]
) -> str:
    form = (
        '<form method="get" action="/" class="filters" aria-label="Filter hot contacts">'
        + _select("segment", "Segment / territory", facets["segments"], filters.get("segment"))
        + _select("model", "Model", facets["models"], filters.get("model"))
        + _select("stage", "Stage", facets["stages"], filters.get("stage"))
        + '<button type="submit">Filter</button></form>'
    )
    live = (
        '<section aria-labelledby="live-title" class="live"><h2 id="live-title">Just now</h2>'
        '<p class="muted" id="live-status">Hot leads appear here as they arrive.</p>'
        '<ol id="live" aria-live="polite"></ol></section>'
    )
    rows = "".join(
        f"<tr><td>{contact_link(c['contact_id'])}</td><td class='num'>{c['score']}</td>"
        f"<td>{escape(c['stage'])}</td><td>{account_link(c.get('account_id'))}</td>"
        f"<td>{escape(', '.join(c['segments']))}</td><td>{reasons_list(c['reasons'])}</td></tr>"
        for c in contacts
    )
    table = (
        '<section aria-labelledby="hot-contacts"><h2 id="hot-contacts">Hot contacts</h2>'
        + (
            '<div class="scroll"><table id="hot-table"><thead><tr><th scope="col">Contact</th>'
            '<th scope="col" class="num">Score</th><th scope="col">Stage</th><th scope="col">Account</th>'
            f'<th scope="col">Segments</th><th scope="col">Top reasons</th></tr></thead><tbody>{rows}</tbody>'
            "</table></div>"
            if contacts
            else '<p class="muted">No hot contact matches.</p>'
        )
        + "</section>"
    )
    account_rows = "".join(
        f"<tr><td>{account_link(a['account_id'])}</td><td class='num'>{a['score']}</td>"
        f"<td class='num'>{a['engaged_contacts']} / {a['contacts']}</td>"
        f"<td class='num'>{round(100 * float(a['coverage']))}%</td>"
        f"<td>{escape(', '.join(a['missing'])) or '—'}</td></tr>"
        for a in accounts
    )
    accounts_table = (
        '<section aria-labelledby="hot-accounts"><h2 id="hot-accounts">Hot accounts</h2>'
        + (
            '<div class="scroll"><table><thead><tr><th scope="col">Account</th><th scope="col" class="num">Score</th>'
            '<th scope="col" class="num">Engaged</th><th scope="col" class="num">Committee</th>'
            f'<th scope="col">Missing roles</th></tr></thead><tbody>{account_rows}</tbody></table></div>'
            if accounts
            else '<p class="muted">No hot account yet.</p>'
        )
        + "</section>"
    )
    return form + live + table + accounts_table


def contact_page(contact: Row) -> str:
    snapshot = (
        '<dl class="snapshot">'
        f"<dt>Score</dt><dd>{contact['score']} {badge(contact['temperature_label'])}</dd>"
        f"<dt>Fit</dt><dd>{float(contact['fit']):g}</dd><dt>Engagement</dt><dd>{float(contact['engagement']):g}</dd>"
        f"<dt>Stage</dt><dd>{escape(contact['stage'])}</dd><dt>Account</dt><dd>{account_link(contact['account_id'])}</dd>"
        f"<dt>Segments</dt><dd>{escape(', '.join(contact['segments'])) or '—'}</dd>"
        f"<dt>Interests</dt><dd>{escape(', '.join(i['name'] for i in contact['interests'])) or '—'}</dd>"
        f"<dt>Updated</dt><dd>{when(contact['updated_ms'])}</dd></dl>"
    )
    reasons = f'<section aria-labelledby="why"><h2 id="why">Why</h2>{reasons_list(contact["reasons"], 5)}</section>'
    models = "".join(
        f"<tr><td>{escape(m['model'])}</td><td class='num'>{m['score']}</td><td class='num'>{m['temperature']}</td>"
        f"<td>{reasons_list(m['reasons'])}</td></tr>"
        for m in contact["models"]
    )
    models_table = (
        '<section aria-labelledby="models"><h2 id="models">Models</h2><div class="scroll"><table><thead><tr>'
        '<th scope="col">Model</th><th scope="col" class="num">Score</th><th scope="col" class="num">Temperature</th>'
        f'<th scope="col">Top reasons</th></tr></thead><tbody>{models}</tbody></table></div></section>'
        if models
        else ""
    )
    history = _history(contact["history"], f"Score of {contact['contact_id']} over time")
    alerts = "".join(
        f"<li>{when(h['occurred_ms'])} — hot ({escape(h['model'])}), score {h['score']}, {escape(h['stage'])}"
        f"{reasons_list(h['reasons'])}</li>"
        for h in contact["hot_leads"]
    )
    changes = "".join(
        f"<li>{when(s['occurred_ms'])} — {escape(s['from_stage'] or 'new')} → {escape(s['to_stage'])}</li>"
        for s in contact["stage_changes"]
    )
    nurture = "".join(
        f"<li>{when(n['occurred_ms'])} — {escape(n['track'])}: {escape(n['title'])}</li>" for n in contact["nurture"]
    )
    return (
        snapshot
        + reasons
        + history
        + models_table
        + _list_section("alerts", "Hot-lead alerts", alerts)
        + _list_section("stages", "Stage changes", changes)
        + _list_section("nurture", "Nurture", nurture)
    )


def _list_section(anchor: str, title: str, items: str) -> str:
    inner = f"<ol class='events'>{items}</ol>" if items else '<p class="muted">None kept.</p>'
    return f'<section aria-labelledby="{anchor}"><h2 id="{anchor}">{title}</h2>{inner}</section>'


def _history(points: Sequence[Row], title: str) -> str:
    rows = "".join(
        f"<tr><td>{when(p['at_ms'])}</td><td class='num'>{p['score']}</td><td class='num'>{p['temperature']}</td>"
        f"<td>{escape(p['stage'] or '—')}</td></tr>"
        for p in points
    )
    return (
        f'<section aria-labelledby="history"><h2 id="history">Score over time</h2>{score_chart(points, title)}'
        "<details><summary>As a table</summary><div class='scroll'><table><thead><tr><th scope='col'>When</th>"
        "<th scope='col' class='num'>Score</th><th scope='col' class='num'>Temperature</th>"
        f"<th scope='col'>Stage</th></tr></thead><tbody>{rows}</tbody></table></div></details></section>"
    )


def account_page(account: Row) -> str:
    covered, missing = account["covered"], account["missing"]
    summary = (
        '<dl class="snapshot">'
        f"<dt>Score</dt><dd>{account['score']} {badge(account['temperature_label'])}</dd>"
        f"<dt>Contacts</dt><dd>{account['contacts']} ({account['engaged_contacts']} engaged)</dd>"
        f"<dt>Committee</dt><dd>{round(100 * float(account['coverage']))}% covered</dd>"
        f"<dt>Roles covered</dt><dd>{escape(', '.join(covered)) or '—'}</dd>"
        f"<dt>Roles missing</dt><dd>{escape(', '.join(missing)) or '—'}</dd>"
        f"<dt>Updated</dt><dd>{when(account['updated_ms'])}</dd></dl>"
    )
    members = "".join(
        f"<tr><td>{contact_link(m['contact_id'])}</td><td class='num'>{m['score']}</td>"
        f"<td>{escape(m['temperature_label'])}</td><td>{escape(m['stage'])}</td><td>{reasons_list(m['reasons'])}</td></tr>"
        for m in account["members"]
    )
    table = (
        '<section aria-labelledby="members"><h2 id="members">Members</h2><div class="scroll"><table><thead><tr>'
        '<th scope="col">Contact</th><th scope="col" class="num">Score</th><th scope="col">Temperature</th>'
        f'<th scope="col">Stage</th><th scope="col">Top reasons</th></tr></thead><tbody>{members}</tbody></table>'
        "</div></section>"
    )
    return summary + _history(account["history"], f"Score of {account['account_id']} over time") + table


def funnel_page(result: Funnel) -> str:
    top = max([s.reached for s in result.stages] + [1])
    rows = "".join(
        f"<tr><th scope='row'>{escape(s.stage)}</th><td class='num'>{s.now}</td><td class='num'>{s.reached}</td>"
        f"<td class='num'>{'—' if s.conversion is None else f'{100 * s.conversion:.0f}%'}</td>"
        f"<td class='bar-cell'><meter min='0' max='{top}' value='{s.reached}'>{s.reached}</meter></td></tr>"
        for s in result.stages
    )
    stages = [s.stage for s in result.stages]
    table = (
        '<section aria-labelledby="stages"><h2 id="stages">Stages</h2><div class="scroll"><table id="funnel">'
        '<thead><tr><th scope="col">Stage</th><th scope="col" class="num">Now</th>'
        '<th scope="col" class="num">Reached</th><th scope="col" class="num">From the stage before</th>'
        f'<th scope="col">Reached</th></tr></thead><tbody>{rows}</tbody></table></div>'
        + (
            "<p>Outside the funnel now: "
            + escape(", ".join(f"{name} {count}" for name, count in result.other))
            + "</p>"
            if result.other
            else ""
        )
        + "</section>"
    )
    head = "".join(f"<th scope='col' class='num'>{escape(s)}</th>" for s in stages)
    weeks = "".join(
        f"<tr><th scope='row'>{format_ms(start)[:10]}</th>"
        + "".join(f"<td class='num'>{n}</td>" for n in counts)
        + "</tr>"
        for start, counts in reversed(result.weeks)
    )
    weekly = (
        '<section aria-labelledby="weeks"><h2 id="weeks">Entries per week</h2><div class="scroll"><table>'
        f"<thead><tr><th scope='col'>Week of</th>{head}</tr></thead><tbody>{weeks}</tbody></table></div></section>"
    )
    return table + weekly


def search_page(query: str, found: Mapping[str, Sequence[Row]]) -> str:
    contacts = "".join(
        f"<li>{contact_link(c['contact_id'])} — {c['score']} {escape(c['temperature_label'])}, "
        f"{escape(c['stage'])}</li>"
        for c in found["contacts"]
    )
    accounts = "".join(
        f"<li>{account_link(a['account_id'])} — {a['score']} {escape(a['temperature_label'])}, "
        f"{a['contacts']} contacts</li>"
        for a in found["accounts"]
    )
    if not contacts and not accounts:
        return f'<p id="results">Nothing found for “{escape(query)}”.</p>'
    return (
        '<div id="results">'
        + _list_section("found-contacts", "Contacts", contacts)
        + _list_section("found-accounts", "Accounts", accounts)
        + "</div>"
    )


def login_page(csrf: str, error: str | None) -> str:
    alert = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = (
        f'{alert}<form method="post" action="/login" class="login">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        '<label for="token">Access token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" required>'
        '<button type="submit">Log in</button></form>'
        '<p class="muted">A token from the board\'s tokens file (LEADPULSE_API_TOKENS_FILE).</p>'
    )
    return layout("Log in", body, csrf=None)
