"""The reading pages: Search (memory_recall), Browse (memory_list) and one
memory (memory_get), each one backend call rendered as HTML."""
from __future__ import annotations

from typing import Any, get_args

from iai_mcp.core.contract import RecallParams
from iai_mcp.types import Tier
from iai_mcp.viewer import forms
from iai_mcp.viewer.markup import Html, h, join, options, page, url

#: Recorded as the session of the viewer's recalls, so a provenance trail
#: tells a person's searches from an assistant's.
VIEWER_SESSION = "iai-mcp-ui"
TIER_CHOICES = (("", "any tier"), *((t, t) for t in get_args(Tier)))
LIST_STATES = ("active", "hidden", "superseded", "all")
ORDERS = ("newest", "oldest", "most_recalled")
#: What an action just did, shown once on the memory page (by code, so a
#: link cannot make the viewer say anything else).
DONE = {
    "hidden": "Forgotten (hidden): no longer recalled.", "restored": "Restored: recalled again.",
    "pinned": "Pinned.", "unpinned": "Unpinned.", "tagged": "Tags changed.",
    "superseded": "Replaced by the new memory below; the old one now comes back only as an anti-hit.",
}


def _filter_fields(q: Any) -> Html:
    return h(
        '<label>Tier <select name="tier">{tiers}</select></label>'
        '<label>Tags <input name="tags" value="{tags}" placeholder="a, b"></label>'
        '<label>Project <input name="project" value="{project}"></label>'
        '<label>Since <input type="date" name="since" value="{since}"></label>'
        '<label>Until <input type="date" name="until" value="{until}"></label>',
        tiers=options(TIER_CHOICES, q.get("tier")), tags=q.get("tags", ""), project=q.get("project", ""),
        since=q.get("since", ""), until=q.get("until", ""),
    )


def memory_link(record: dict[str, Any], text: str | None = None) -> Html:
    label = text if text is not None else record["literal_surface"]
    return h('<a class="memory" href="/memory/{}">{}</a>', record["record_id"], label[:300])


def _tags(tags: list[str]) -> Html:
    return join(h('<span class="tag">{}</span>', tag) for tag in tags)


# ---------------------------------------------------------------- search


def search_params(q: Any) -> dict[str, Any]:
    state = forms.choice(q, "state", ("active", "all"))
    return forms.given(
        cue=forms.text(q, "cue"), k=forms.number(q, "k"), budget_tokens=forms.number(q, "budget_tokens"),
        include_superseded=True if state == "all" else None, session_id=VIEWER_SESSION, **forms.filters(q),
    )


def search_page(q: Any, call: Any) -> Html:
    form = h(
        '<form class="filters" method="get" action="/search" role="search">'
        '<input type="search" name="cue" value="{cue}" placeholder="What are you looking for?" autofocus>'
        '{filters}<label>State <select name="state">{states}</select></label>'
        '<label>k <input type="number" name="k" min="1" value="{k}"></label>'
        '<label>Budget <input type="number" name="budget_tokens" min="1" value="{budget}"></label>'
        '<button type="submit">Search</button></form>',
        cue=q.get("cue", ""), filters=_filter_fields(q), k=q.get("k", ""), budget=q.get("budget_tokens", ""),
        states=options((("active", "active only"), ("all", "include superseded")), q.get("state")),
    )
    params = search_params(q)
    if "cue" not in params:
        return page("Search", form, active="/search")
    result = call("memory_recall", params)
    budget = params.get("budget_tokens", RecallParams.model_fields["budget_tokens"].default)
    rows = join(h(
        '<tr><td class="num">{score}</td><td>{link}{excerpt}<div class="meta">{tier} · {ts} · {tags}</div></td>'
        '<td class="reason">{reason}</td></tr>',
        score=Html(f"{hit['score']:.3f}"), link=memory_link(hit), tier=hit["tier"], ts=hit["ts"], tags=_tags(hit["tags"]),
        excerpt=h(' <span class="note">(excerpt {}-{} of {} characters)</span>', hit["excerpt"]["start"],
                  hit["excerpt"]["end"], hit["excerpt"]["length"]) if hit.get("excerpt") else "",
        reason=hit["reason"],
    ) for hit in result["hits"])
    anti = join(h('<li>{link} <span class="meta">score {score} · replaced by {by} on {when}</span></li>',
                  link=memory_link(a), score=Html(f"{a['score']:.3f}"),
                  by=h('<a href="/memory/{0}">{0}</a>', a["superseded_by"]) if a.get("superseded_by") else "?",
                  when=a.get("valid_to") or "?") for a in result["anti_hits"])
    body = h(
        '{form}<p class="summary">{n} hits · budget used {used} of {budget} tokens</p>'
        '<table class="hits"><thead><tr><th>Score</th><th>Memory</th><th>Why</th></tr></thead><tbody>{rows}</tbody></table>'
        '<h2>Anti-hits</h2>{anti}',
        form=form, n=len(result["hits"]), used=result["budget_used"], budget=budget, rows=rows,
        anti=h('<ul class="anti">{}</ul>', anti) if result["anti_hits"] else h('<p class="note">none: nothing matching was corrected</p>'),
    )
    return page("Search", body, active="/search")


# ---------------------------------------------------------------- browse


def list_params(q: Any) -> dict[str, Any]:
    pinned = forms.choice(q, "pinned", ("yes", "no"))
    return forms.given(
        state=forms.choice(q, "state", LIST_STATES), order=forms.choice(q, "order", ORDERS),
        tags_any=forms.words(q, "tags_any"), session_id=forms.text(q, "session_id"),
        pinned=None if pinned is None else pinned == "yes", limit=forms.number(q, "limit"),
        cursor=forms.text(q, "cursor"), **forms.filters(q),
    )


def browse_page(q: Any, call: Any) -> Html:
    result = call("memory_list", list_params(q))
    kept = {name: q.get(name) for name in ("state", "order", "tier", "tags", "tags_any", "project", "session_id",
                                           "since", "until", "pinned", "limit")}
    form = h(
        '<form class="filters" method="get" action="/browse">'
        '<label>State <select name="state">{states}</select></label>'
        '<label>Order <select name="order">{orders}</select></label>{filters}'
        '<label>Any of tags <input name="tags_any" value="{tags_any}"></label>'
        '<label>Session <input name="session_id" value="{session}"></label>'
        '<label>Pinned <select name="pinned">{pinned}</select></label>'
        '<label>Per page <input type="number" name="limit" min="1" value="{limit}"></label>'
        '<button type="submit">List</button></form>',
        states=options(((s, s) for s in LIST_STATES), q.get("state") or "active"),
        orders=options(((o, o.replace("_", " ")) for o in ORDERS), q.get("order") or "newest"),
        filters=_filter_fields(q), tags_any=q.get("tags_any", ""), session=q.get("session_id", ""),
        pinned=options((("", "either"), ("yes", "pinned"), ("no", "not pinned")), q.get("pinned")),
        limit=q.get("limit", ""),
    )
    rows = join(h(
        '<tr><td>{link}<div class="meta">{tags}</div></td><td>{tier}</td><td>{state}{pin}</td><td>{ts}</td></tr>',
        link=memory_link(item), tags=_tags(item["tags"]), tier=item["tier"], state=item["state"], ts=item["ts"],
        pin=Html(" · pinned") if item.get("pinned") else "",
    ) for item in result["items"])
    pager = join([
        h('<a href="{}">First page</a>', url("/browse", **kept)) if q.get("cursor") else "",
        h('<a rel="next" href="{}">Next page</a>', url("/browse", **kept, cursor=result["next_cursor"]))
        if result["next_cursor"] else h('<span class="note">last page</span>'),
    ], " ")
    body = h('{form}<table class="list"><thead><tr><th>Memory</th><th>Tier</th><th>State</th><th>Said</th></tr></thead>'
             '<tbody>{rows}</tbody></table><nav class="pager">{pager}</nav>',
             form=form, rows=rows or h('<tr><td colspan="4" class="note">no memories match</td></tr>'), pager=pager)
    purged = forms.number(q, "purged")
    notice = f"Erased {purged} memory for good." if purged is not None else ""
    return page("Browse", body, active="/browse", status_line=notice)


# ---------------------------------------------------------------- one memory


def _metadata(m: dict[str, Any]) -> Html:
    fields = [("Record id", m["record_id"]), ("State", m["state"]), ("Tier", m["tier"]),
              ("Tags", _tags(m["tags"]) or "none"), ("Project", m.get("project") or "none"),
              ("Pinned", "yes" if m["pinned"] else "no"), ("Said at", m["ts"]), ("Session", m["session_id"] or "none"),
              ("Role", m["role"] or "none"), ("Language", m["language"]), ("Captured", m["created_at"]),
              ("Updated", m["updated_at"]), ("Reinforced", m["reinforcements"]), ("Valid from", m["valid_from"]),
              ("Valid to", m["valid_to"] or "now")]
    if m.get("superseded_by"):
        fields.append(("Replaced by", h('<a href="/memory/{0}">{0}</a>', m["superseded_by"])))
    return h('<dl class="meta-table">{}</dl>', join(h("<dt>{}</dt><dd>{}</dd>", k, v) for k, v in fields))


def _history(m: dict[str, Any]) -> Html:
    items = join(h('<li><time>{}</time> <strong>{}</strong> {}{}</li>', item.get("ts"), item.get("action"),
                   item.get("detail") if isinstance(item.get("detail"), str) else (item.get("detail") or ""),
                   h(" (session {})", item["session_id"]) if item.get("session_id") else "")
                 for item in reversed(m.get("history") or []))
    return h('<ol class="history">{}</ol>', items) if items else h('<p class="note">no history</p>')


def _provenance(m: dict[str, Any]) -> Html:
    entries = list(reversed(m.get("provenance") or []))  # newest first
    items = join(h('<li><time>{ts}</time> {verb} <q>{cue}</q>{session}</li>', ts=e.get("ts"), cue=e.get("cue"),
                   verb="captured with cue" if e.get("kind") == "capture" else "recalled by cue",
                   session=h(' in session <code>{}</code>', e["session_id"]) if e.get("session_id") else "")
                 for e in entries)
    return h('<ol class="provenance">{}</ol>', items) if entries else h('<p class="note">never recalled</p>')


def _actions(m: dict[str, Any]) -> Html:
    rid = m["record_id"]

    def button(action: str, label: str) -> Html:
        return h('<form method="post" action="/memory/{}/{}"><button type="submit">{}</button></form>', rid, action, label)

    if m["state"] == "hidden":
        main = button("restore", "Restore")
    else:
        main = join([
            h('<form method="post" action="/memory/{}/forget"><select name="mode" aria-label="forget mode">'
              '<option value="hide">hide (restorable)</option><option value="purge">purge (for good)</option>'
              '</select><button type="submit">Forget…</button></form>', rid),
            button("unpin", "Unpin") if m["pinned"] else button("pin", "Pin"),
        ])
    tag = h('<form method="post" action="/memory/{}/tag"><input name="tags_add" placeholder="add tags">'
            '<input name="tags_remove" placeholder="remove tags"><button type="submit">Tag</button></form>', rid)
    supersede = h('<form class="wide" method="post" action="/memory/{}/supersede"><textarea name="text" rows="3" '
                  'placeholder="The corrected memory, verbatim" required></textarea>'
                  '<button type="submit">Supersede…</button></form>', rid) if m["state"] == "active" else ""
    return h('<section class="actions"><h2>Act</h2>{}{}{}</section>', main, tag, supersede)


def memory_page(record_id: str, q: Any, call: Any) -> Html:
    m = call("memory_get", {"id": record_id})
    done = DONE.get(q.get("done", ""))
    # The undo window as the store keeps it, never a date from the address bar.
    until = m.get("undo_until") if q.get("done") == "hidden" and m["state"] == "hidden" else None
    notice = h("{} Restorable until {}.", done, until) if done and until else (done or "")
    body = h(
        '<pre class="verbatim">{text}</pre>{meta}{actions}'
        '<h2>Provenance <span class="note">(newest first)</span></h2>{prov}<h2>History</h2>{hist}',
        text=m["literal_surface"], meta=_metadata(m), actions=_actions(m), prov=_provenance(m), hist=_history(m),
    )
    return page("A memory", body, status_line=notice)
