"""Act on one memory: forget (hide or purge), restore, pin, unpin, tag,
supersede. Each is one dispatch method through the backend, the same call
the MCP tool and the CLI make, so it lands in the memory's history.

Forgetting and superseding ask first: the form posts without ``confirm``,
and the answer is a page that says what will happen (for a hide, until when
it can be undone, from a dry run) with a button that posts the same fields
again plus ``confirm=yes``. After an action the browser is sent (303) to a
page that shows the result, so reloading it does not act twice.
"""
from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse

from iai_mcp.errors import InvalidInput
from iai_mcp.viewer import forms
from iai_mcp.viewer.markup import Html, h, hidden_fields, page, url

ACTIONS = ("forget", "restore", "pin", "unpin", "tag", "supersede")
#: Actions that ask first.
CONFIRMED = ("forget", "supersede")


def _done(record_id: str, done: str) -> RedirectResponse:
    return RedirectResponse(url(f"/memory/{record_id}", done=done), status_code=303)


def _new_text(form: Any) -> str:
    """The corrected memory, verbatim (a browser sends a textarea's line
    breaks as CRLF; the person typed LF)."""
    text = str(form.get("text") or "").replace("\r\n", "\n")
    if not text.strip():
        raise InvalidInput("supersede: write the corrected memory first")
    return text


def _confirm_page(record_id: str, action: str, form: Any, call: Any) -> Html:
    if action == "forget":
        mode = forms.choice(form, "mode", ("hide", "purge")) or "hide"
        preview = call("memory_forget", {"ids": [record_id], "mode": mode, "dry_run": True})
        if mode == "purge":
            question = h("Erase this memory for good? Its text, metadata and provenance are deleted from disk "
                         "now. <strong>This cannot be undone.</strong>")
        elif preview["undo_until"]:
            question = h("Forget this memory? It is no longer recalled, listed or packed. You can restore it "
                         "until <strong>{}</strong>; after that it is erased for good.", preview["undo_until"])
        else:
            question = h("This memory is already forgotten; forgetting it again changes nothing.")
        fields, label = {"mode": mode}, "Erase for good" if mode == "purge" else "Forget"
    else:
        new_text = _new_text(form)
        question = h("Replace this memory with the text below? The old one stops being recalled as a hit and "
                     "comes back as an anti-hit.<pre class=\"verbatim\">{}</pre>", new_text)
        fields, label = {"text": new_text}, "Supersede"
    body = h(
        '<p class="question">{question}</p><form method="post" action="/memory/{rid}/{action}">{fields}'
        '<input type="hidden" name="confirm" value="yes"><button type="submit" class="danger">{label}</button>'
        ' <a href="/memory/{rid}">Cancel</a></form>',
        question=question, rid=record_id, action=action, fields=hidden_fields(fields), label=label,
    )
    return page("Are you sure?", body)


def act(record_id: str, action: str, form: Any, call: Any) -> Html | RedirectResponse:
    """Run ``action`` on the memory (or, for one that asks first and is not
    yet confirmed, the question page)."""
    if action not in ACTIONS:
        raise InvalidInput(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    if action in CONFIRMED and form.get("confirm") != "yes":
        return _confirm_page(record_id, action, form, call)
    if action == "forget":
        mode = forms.choice(form, "mode", ("hide", "purge")) or "hide"
        result = call("memory_forget", {"ids": [record_id], "mode": mode})
        if mode == "purge":
            return RedirectResponse(url("/browse", purged=len(result["forgotten"])), status_code=303)
        return _done(record_id, "hidden")
    if action == "restore":
        call("memory_restore", {"ids": [record_id]})
        return _done(record_id, "restored")
    if action in ("pin", "unpin"):
        call("memory_update", {"id": record_id, "pinned": action == "pin"})
        return _done(record_id, f"{action}ned")
    if action == "tag":
        call("memory_update", forms.given(id=record_id, tags_add=forms.words(form, "tags_add"),
                                          tags_remove=forms.words(form, "tags_remove")))
        return _done(record_id, "tagged")
    old = call("memory_get", {"id": record_id})
    result = call("memory_capture", forms.given(
        text=_new_text(form), supersedes=[record_id], tier=old["tier"], tags=old["tags"] or None,
        project=old.get("project")))
    return _done(result["record_id"], "superseded")
