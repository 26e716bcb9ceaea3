"""The Overview page: counts by state, tier, tag and project, captures and
recalls per day (an SVG bar chart drawn here, no script), the most recalled
memories, and the store's health (the ``doctor`` checks)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from iai_mcp.viewer.markup import Html, h, join, page, url
from iai_mcp.viewer.pages import VIEWER_SESSION

CHART_W, CHART_H, LABEL_H = 720, 160, 18


def _counts(title: str, items: list[dict[str, Any]], key: str, link: Callable[[Any], str]) -> Html:
    rows = join(h('<tr><td><a href="{}">{}</a></td><td class="num">{}</td></tr>', link(item[key]),
                  item[key] if item[key] is not None else "(none)", item["count"]) for item in items)
    return h('<section class="card"><h2>{}</h2><table>{}</table></section>', title,
             rows or h('<tr><td class="note">none</td></tr>'))


def activity_chart(days: list[dict[str, Any]]) -> Html:
    """Captures and recalls per day as paired bars; each bar has a ``<title>``
    (its day and count) that a browser shows on hover and a screen reader reads."""
    peak = max([1] + [max(d["captures"], d["recalls"]) for d in days])
    slot = CHART_W / max(1, len(days))
    bar = max(1.0, slot * 0.4)
    parts = []
    for i, d in enumerate(days):
        for j, kind in enumerate(("captures", "recalls")):
            height = (CHART_H - LABEL_H) * d[kind] / peak
            x = i * slot + j * bar + slot * 0.1
            parts.append(h('<rect class="{kind}" x="{x}" y="{y}" width="{w}" height="{hgt}"><title>{day}: {n} {kind}</title></rect>',
                           kind=kind, x=f"{x:.1f}", y=f"{CHART_H - LABEL_H - height:.1f}", w=f"{bar:.1f}",
                           hgt=f"{height:.1f}", day=d["day"], n=d[kind]))
    for i in (0, len(days) - 1):
        if days:
            parts.append(h('<text x="{}" y="{}" class="{}">{}</text>', f"{i * slot:.1f}" if i == 0 else CHART_W,
                           CHART_H - 4, "start" if i == 0 else "end", days[i]["day"]))
    return h('<svg class="chart" viewBox="0 0 {w} {hgt}" role="img" aria-label="captures and recalls per day">{parts}</svg>'
             '<p class="legend"><span class="key captures"></span> captures <span class="key recalls"></span> recalls · '
             'highest day {peak}</p>', w=CHART_W, hgt=CHART_H, parts=join(parts), peak=peak)


def _health(checks: list[Any]) -> Html:
    rows = join(h('<tr class="{cls}"><td>{status}</td><td>{name}</td><td>{detail}</td></tr>', cls=c.status.lower(),
                  status=c.status, name=c.name, detail=c.detail) for c in checks)
    return h('<section class="card wide"><h2>Store health</h2><table class="health">{}</table></section>', rows)


def overview_page(call: Callable[..., dict[str, Any]], checks: list[Any]) -> Html:
    # The viewer's own searches are recorded (each memory's provenance shows
    # them) but not counted here: looking at a memory should not rank it.
    o = call("memory_overview", {"exclude_session": VIEWER_SESSION})
    states = join(h('<a class="stat" href="{}"><strong>{}</strong> {}</a>', url("/browse", state=s), n, s)
                  for s, n in o["states"].items())
    top = join(h('<li><a href="/memory/{}">{}</a> <span class="meta">recalled {} times</span></li>',
                 m["record_id"], m["excerpt"], m["count"]) for m in o["most_recalled"])
    unreadable = h('<p class="notice">{} provenance entries could not be read</p>', o["unreadable"]) if o["unreadable"] else ""
    body = h(
        '<section class="stats">{states}</section>'
        '<section class="card wide"><h2>Captures and recalls, last {n} days</h2>{chart}{unreadable}</section>'
        '<div class="cards">{tiers}{tags}{projects}</div>'
        '<section class="card wide"><h2>Most recalled</h2>{top}<p class="note">Recalls by assistants and the CLI. '
        'Searches made here are recorded in each memory\'s provenance (session {viewer}) but not counted '
        'in this list or the chart.</p></section>{health}',
        states=states, n=len(o["days"]), chart=activity_chart(o["days"]), unreadable=unreadable,
        tiers=_counts("By tier", o["tiers"], "tier", lambda v: url("/browse", tier=v)),
        tags=_counts("By tag", o["tags"], "tag", lambda v: url("/browse", tags=v)),
        projects=_counts("By project", o["projects"], "project", lambda v: url("/browse", project=v)),
        top=h("<ol>{}</ol>", top) if o["most_recalled"] else h('<p class="note">nothing recalled yet</p>'),
        health=_health(checks), viewer=VIEWER_SESSION,
    )
    return page("Overview", body, active="/")
