"""The web viewer (issue 12) in-process: Starlette's TestClient in front of
a local store with the hash embedder. Who gets in (token, Host, Origin),
what every answer carries (CSP), that memory text is never markup, and
that each page and action is the dispatch method it claims to be."""
from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from starlette.testclient import TestClient

PORT = 8765
ORIGIN = f"http://127.0.0.1:{PORT}"
TOKEN = "launch-token-abc"
SCRIPT = "<script>alert('pwned')</script>"


@pytest.fixture
def backend(store):
    from iai_mcp.backend import LocalBackend

    return LocalBackend(store)


@pytest.fixture
def app(backend, store):
    from iai_mcp.doctor import backend_checks
    from iai_mcp.viewer.app import Viewer, create_app

    return create_app(Viewer(backend, lambda b: backend_checks(b, store.root)), port=PORT, token=TOKEN)


@pytest.fixture
def anonymous(app):
    return TestClient(app, base_url=ORIGIN, follow_redirects=False)


@pytest.fixture
def client(app):
    """A browser that opened the launch link: it holds the cookie."""
    c = TestClient(app, base_url=ORIGIN, follow_redirects=False)
    assert c.get(f"/?token={TOKEN}").status_code == 303
    return c


@pytest.fixture
def memory(backend):
    return backend.call("memory_capture", {"text": f"coffee order {SCRIPT} oat milk", "cue": "what coffee",
                                           "tags": ["drinks", "<b>bold</b>"]})["record_id"]


def post(client, path, **data):
    return client.post(path, data=data, headers={"origin": ORIGIN})


# ------------------------------------------------------------ nobody else gets in


@pytest.mark.parametrize("path", ["/", "/search?cue=coffee", "/browse", "/static/viewer.css", "/memory/{rid}"])
def test_no_token_is_401_and_no_data(anonymous, memory, path):
    r = anonymous.get(path.format(rid=memory))
    assert r.status_code == 401
    assert "coffee" not in r.text and memory not in r.text


def test_a_wrong_token_is_401_and_sets_no_cookie(anonymous, memory):
    for token in ("wrong", TOKEN + "x", "", "ü"):
        r = anonymous.get(f"/?token={token}")
        assert r.status_code == 401 and "set-cookie" not in r.headers
    anonymous.cookies.set(f"iai_mcp_ui_{PORT}", "wrong")
    assert anonymous.get("/browse").status_code == 401


def test_another_local_apps_cookie_does_not_log_the_viewer_out(anonymous, memory):
    """Cookies for 127.0.0.1 are shared by every port: one that Python's
    SimpleCookie cannot read (JSON in it) must not hide the viewer's."""
    ours = f"iai_mcp_ui_{PORT}={TOKEN}"
    for header in (f'other={{"a":1}}; {ours}', f"{ours}; other={{\"a\":1}}", f'x="unterminated; {ours}; y=1'):
        r = anonymous.get("/", headers={"cookie": header})
        assert r.status_code == 200, header
        assert "Overview" in r.text


@pytest.mark.parametrize("header", [
    "garbage", ";;;", "=", f"iai_mcp_ui_{PORT}", f"iai_mcp_ui_{PORT}=", f"iai_mcp_ui_{PORT}={TOKEN}x",
    f'iai_mcp_ui_{PORT}="{TOKEN}', f"iai_mcp_ui_{PORT + 1}={TOKEN}", "\x7f\t=\x7f; ;=x",
])
def test_a_malformed_or_wrong_cookie_header_is_401_and_no_data(anonymous, memory, header):
    r = anonymous.get(f"/memory/{memory}", headers={"cookie": header})
    assert r.status_code == 401 and "coffee" not in r.text


def test_the_token_becomes_a_strict_httponly_cookie_and_leaves_the_url(anonymous):
    r = anonymous.get(f"/browse?state=all&token={TOKEN}")
    assert r.status_code == 303 and r.headers["location"] == "/browse?state=all"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"iai_mcp_ui_{PORT}={TOKEN};")
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert anonymous.get("/browse?state=all").status_code == 200


@pytest.mark.parametrize("host", ["evil.example:8765", "127.0.0.1:9999", "localhost", "127.0.0.1", "[::1]:8765"])
def test_a_foreign_host_is_refused_even_with_the_cookie(client, memory, host):
    r = client.get(f"/memory/{memory}", headers={"host": host})
    assert r.status_code == 403 and "coffee" not in r.text
    assert client.get(f"/memory/{memory}", headers={"host": f"localhost:{PORT}"}).status_code == 200


@pytest.mark.parametrize("origin", ["http://evil.example", f"http://localhost:{PORT}", "null", f"https://127.0.0.1:{PORT}", None])
def test_a_change_from_another_origin_or_none_is_refused_and_changes_nothing(client, backend, memory, origin):
    headers = {} if origin is None else {"origin": origin}
    r = client.post(f"/memory/{memory}/forget", data={"mode": "purge", "confirm": "yes"}, headers=headers)
    assert r.status_code == 403
    r = client.post(f"/memory/{memory}/pin", headers=headers)
    assert r.status_code == 403
    got = backend.call("memory_get", {"id": memory})
    assert got["state"] == "active" and got["pinned"] is False


def test_a_read_from_another_origin_is_refused(client, memory):
    assert client.get(f"/memory/{memory}", headers={"origin": "http://evil.example"}).status_code == 403


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_request_from_another_site_or_port_is_refused(client, memory, site):
    # A page on 127.0.0.1:3000 is the same site as the viewer: its requests carry the cookie.
    r = client.get(f"/memory/{memory}", headers={"sec-fetch-site": site})
    assert r.status_code == 403 and "coffee" not in r.text
    for ok in ("same-origin", "none"):
        assert client.get(f"/memory/{memory}", headers={"sec-fetch-site": ok}).status_code == 200


def test_the_token_redirect_stays_on_the_viewer():
    """``//host`` as a path (HTTP clients normalise it away, so sent raw) must
    not become a Location that leaves the viewer."""
    import anyio
    from starlette.applications import Starlette

    from iai_mcp.viewer.security import Guard

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "//evil.example/x", "raw_path": b"//evil.example/x",
             "query_string": f"token={TOKEN}&a=1".encode(), "headers": [(b"host", f"127.0.0.1:{PORT}".encode())]}
    anyio.run(Guard(Starlette(), port=PORT, token=TOKEN), scope, receive, send)
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 303 and headers[b"location"] == b"/evil.example/x?a=1"


@pytest.mark.parametrize("path", ["/", f"/?token={TOKEN}", "/?token=bad", "/static/viewer.js", "/nowhere"])
def test_every_answer_carries_the_security_headers(client, anonymous, path):
    from iai_mcp.viewer.security import CSP

    for c in (client, anonymous):
        r = c.get(path)
        assert r.headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP and "frame-ancestors 'none'" in CSP and "unsafe-inline" not in CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        # same-origin, not no-referrer: under no-referrer a browser posts the
        # viewer's own forms with Origin: null (test_viewer_browser.py).
        assert r.headers["referrer-policy"] == "same-origin"
    r = client.get(path, headers={"host": "evil.example"})
    assert r.status_code == 403 and r.headers["content-security-policy"] == CSP


def test_a_script_memory_is_shown_as_text_everywhere(client, backend, memory):
    backend.call("memory_recall", {"cue": "coffee"})
    for path in (f"/memory/{memory}", "/search?cue=coffee", "/browse", "/", "/search?cue=" + SCRIPT):
        r = client.get(path)
        assert r.status_code == 200, path
        assert SCRIPT not in r.text and "<b>bold</b>" not in r.text, path
        # The only scripts are the viewer's own file; no inline script, no inline style.
        assert re.findall(r"<script[^>]*>", r.text) == ['<script src="/static/viewer.js" defer>'], path
        assert "style=" not in r.text and "<style" not in r.text, path
    page = client.get(f"/memory/{memory}").text
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page


# ------------------------------------------------------------ the pages


def test_search_shows_scores_reasons_budget_and_anti_hits(client, backend, memory):
    new = backend.call("memory_capture", {"text": "coffee order now black, no milk", "supersedes": [memory]})
    r = client.get("/search?cue=coffee+order&budget_tokens=400&k=5")
    assert r.status_code == 200
    direct = backend.call("memory_recall", {"cue": "coffee order", "budget_tokens": 400, "k": 5})
    hit = direct["hits"][0]
    assert f"{hit['score']:.3f}" in r.text and hit["reason"] in r.text
    assert re.search(r"budget used \d+ of 400 tokens", r.text)
    anti = r.text.split("Anti-hits", 1)[1]
    assert memory in anti and new["record_id"] in anti


def test_search_records_the_viewer_as_the_recalling_session(client, backend, memory):
    client.get("/search?cue=coffee")
    trail = backend.call("memory_get", {"id": memory})["provenance"]
    assert trail[-1]["session_id"] == "iai-mcp-ui" and trail[-1]["cue"] == "coffee"


def test_search_filters_reach_recall(client, backend, memory):
    other = backend.call("memory_capture", {"text": "coffee beans from Kenya", "tier": "semantic"})["record_id"]
    r = client.get("/search?cue=coffee&tier=semantic")
    assert other in r.text and memory not in r.text
    r = client.get("/search?cue=coffee&tags=drinks")
    assert memory in r.text and other not in r.text
    r = client.get("/search?cue=coffee&until=2000-01-01")
    assert memory not in r.text and other not in r.text


def test_bad_input_is_a_clear_error_and_changes_nothing(client, backend, memory):
    before = backend.call("memory_get", {"id": memory})
    for path in ("/search?cue=coffee&k=abc", "/search?cue=coffee&k=0", "/browse?order=sideways", "/browse?cursor=zzz"):
        r = client.get(path)
        assert r.status_code == 400 and 'role="alert"' in r.text, path
    assert client.get("/memory/not-a-uuid").status_code == 400
    assert client.get("/memory/00000000-0000-4000-8000-000000000000").status_code == 404
    r = post(client, f"/memory/{memory}/explode")
    assert r.status_code == 400
    r = post(client, f"/memory/{memory}/tag")  # nothing to change
    assert r.status_code == 400
    after = backend.call("memory_get", {"id": memory})
    assert after["history"] == before["history"] and after["tags"] == before["tags"]


def test_browse_pages_through_every_memory_once_by_the_cursor(client, backend):
    ids = {backend.call("memory_capture", {"text": f"memory number {i}", "ts": f"2026-01-{i + 1:02d}T00:00:00Z"})["record_id"]
           for i in range(5)}
    seen, path = [], "/browse?limit=2&order=oldest"
    while path:
        r = client.get(path)
        assert r.status_code == 200
        seen += re.findall(r'class="memory" href="/memory/([0-9a-f-]{36})"', r.text)
        nxt = re.search(r'<a rel="next" href="([^"]+)"', r.text)
        path = nxt.group(1).replace("&amp;", "&") if nxt else None
        if path:
            assert "order=oldest" in path and "limit=2" in path
    assert len(seen) == 5 and set(seen) == ids


def test_the_memory_page_shows_text_metadata_history_and_provenance_newest_first(client, backend, memory):
    backend.call("memory_recall", {"cue": "first cue coffee", "session_id": "s-1"})
    backend.call("memory_recall", {"cue": "second cue coffee", "session_id": "s-2"})
    r = client.get(f"/memory/{memory}")
    text = r.text
    assert "oat milk" in text and "drinks" in text and "captured" in text
    prov = text.split("Provenance", 1)[1].split("History", 1)[0]
    assert prov.index("second cue coffee") < prov.index("first cue coffee") < prov.index("what coffee")
    assert "s-2" in prov and "captured with cue" in prov


def test_the_undo_window_shown_is_the_stores_not_the_address_bars(client, backend, memory):
    page = client.get(f"/memory/{memory}?done=hidden&until=2099-01-01+(trust+me)").text
    assert "Restorable until" not in page and "trust me" not in page  # not hidden at all
    until = backend.call("memory_forget", {"ids": [memory]})["undo_until"]
    page = client.get(f"/memory/{memory}?done=hidden&until=2099-01-01").text
    # Not a bare "2099": a timestamp's microseconds (".120994") or a record id can hold those digits.
    assert f"Restorable until {until}." in page and "until 2099" not in page


def test_forget_asks_first_shows_the_undo_window_then_restore_brings_it_back(client, backend, memory):
    r = post(client, f"/memory/{memory}/forget", mode="hide")
    assert r.status_code == 200 and "Are you sure?" in r.text and "restore it until" in r.text
    assert backend.call("memory_get", {"id": memory})["state"] == "active"  # asked, not done
    r = post(client, f"/memory/{memory}/forget", mode="hide", confirm="yes")
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text
    assert "Restorable until" in page and 'value="Restore"' not in page and ">Restore<" in page
    assert backend.call("memory_get", {"id": memory})["state"] == "hidden"
    r = post(client, f"/memory/{memory}/restore")
    assert r.status_code == 303
    got = backend.call("memory_get", {"id": memory})
    assert got["state"] == "active" and [h["action"] for h in got["history"]][-2:] == ["hidden", "restored"]


def test_purge_asks_first_then_erases(client, backend, memory):
    from iai_mcp.errors import NotFound

    r = post(client, f"/memory/{memory}/forget", mode="purge")
    assert "cannot be undone" in r.text
    backend.call("memory_get", {"id": memory})  # still there
    r = post(client, f"/memory/{memory}/forget", mode="purge", confirm="yes")
    assert r.status_code == 303 and r.headers["location"].startswith("/browse")
    assert "Erased 1 memory" in client.get(r.headers["location"]).text
    with pytest.raises(NotFound):
        backend.call("memory_get", {"id": memory})


def test_pin_unpin_and_tag_go_through_memory_update(client, backend, memory):
    assert post(client, f"/memory/{memory}/pin").status_code == 303
    assert backend.call("memory_get", {"id": memory})["pinned"] is True
    assert post(client, f"/memory/{memory}/unpin").status_code == 303
    assert backend.call("memory_get", {"id": memory})["pinned"] is False
    assert post(client, f"/memory/{memory}/tag", tags_add="work, morning", tags_remove="drinks").status_code == 303
    got = backend.call("memory_get", {"id": memory})
    assert got["tags"] == ["<b>bold</b>", "work", "morning"]
    assert [h["action"] for h in got["history"]].count("updated") == 3


def test_supersede_asks_first_and_keeps_the_text_verbatim(client, backend, memory):
    text = "coffee: now a flat white\r\n  with two shots "
    r = post(client, f"/memory/{memory}/supersede", text=text)
    assert r.status_code == 200 and "Are you sure?" in r.text
    r = post(client, f"/memory/{memory}/supersede", text=text, confirm="yes")
    assert r.status_code == 303
    new_id = re.match(r"/memory/([0-9a-f-]{36})", r.headers["location"]).group(1)
    assert backend.call("memory_get", {"id": new_id})["literal_surface"] == text.replace("\r\n", "\n")
    old = backend.call("memory_get", {"id": memory})
    assert old["state"] == "superseded" and old["superseded_by"] == new_id


def test_overview_shows_counts_chart_most_recalled_and_health(client, backend, memory):
    backend.call("memory_capture", {"text": "a procedure for tea", "tier": "procedural", "tags": ["drinks"]})
    recalled = len(backend.call("memory_recall", {"cue": "coffee order"})["hits"])
    today = datetime.now(UTC).date().isoformat()
    r = client.get("/")
    assert r.status_code == 200
    assert re.search(r"<strong>2</strong> active", r.text)
    assert "procedural" in r.text and "episodic" in r.text
    assert re.search(r'<a href="/browse\?tags=drinks">drinks</a></td><td class="num">2<', r.text)
    assert "<svg" in r.text and f"{today}: {recalled} recalls</title>" in r.text
    assert f"{today}: 2 captures</title>" in r.text
    assert f'/memory/{memory}">coffee order' in r.text and "recalled 1 times" in r.text


def test_most_recalled_counts_recalls_only_per_memory(client, backend, memory):
    """Not the capture's cue (``memory`` was captured with one), and not the
    viewer's own searches, which are recorded but said not to be counted."""
    tea = backend.call("memory_capture", {"text": "tea: assam, no sugar"})["record_id"]
    for cue in ("coffee order", "coffee oat milk"):
        backend.call("memory_recall", {"cue": cue, "k": 1, "session_id": "assistant"})
    backend.call("memory_recall", {"cue": "assam tea", "k": 1, "session_id": "assistant"})
    for _ in range(3):
        assert client.get("/search?cue=assam+tea&k=1").status_code == 200
    r = client.get("/")
    counts = dict(re.findall(r'<a href="/memory/([0-9a-f-]{36})">[^<]*</a> <span class="meta">recalled (\d+) times', r.text))
    assert counts == {memory: "2", tea: "1"}
    assert "Searches made here are recorded in each memory's provenance (session iai-mcp-ui)" in r.text
    trail = backend.call("memory_get", {"id": tea})["provenance"]
    assert [e["session_id"] for e in trail].count("iai-mcp-ui") == 3  # recorded all the same
    assert "Store health" in r.text and ">PASS<" in r.text and "embedder" in r.text


def test_the_ui_command_takes_a_port_and_no_browser(capsys):
    from iai_mcp.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["ui", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "--port P" in out and "--no-browser" in out
    for bad in ("70000", "-1", "http"):
        with pytest.raises(SystemExit) as exc:
            main(["ui", "--port", bad])
        assert exc.value.code == 2


def test_project_and_the_other_filters_are_sent_only_when_set():
    from iai_mcp.viewer.pages import list_params, search_params

    empty = {"cue": "tea", "tier": "", "tags": " , ", "project": "", "since": "", "until": "", "state": ""}
    assert search_params(empty) == {"cue": "tea", "session_id": "iai-mcp-ui"}
    full = {**empty, "tier": "semantic", "tags": "a, b", "project": "iai", "since": "2026-01-01",
            "until": "2026-01-31", "state": "all", "k": "3"}
    assert search_params(full) == {
        "cue": "tea", "session_id": "iai-mcp-ui", "k": 3, "include_superseded": True, "tier": "semantic",
        "tags": ["a", "b"], "project": "iai", "since": "2026-01-01", "until": "2026-01-31T23:59:59.999999+00:00",
    }
    assert list_params({"project": "iai", "pinned": "no", "state": "hidden"}) == {
        "project": "iai", "pinned": False, "state": "hidden"}
    assert list_params({"project": " ", "pinned": ""}) == {}


def test_the_browser_is_opened_once_the_server_answers(tmp_path, monkeypatch):
    """``ui`` without --no-browser: the link is opened from a thread after
    the server is up, so the first page never races the server's start."""
    import http.client
    import threading
    from urllib.parse import urlsplit

    import uvicorn

    from iai_mcp.store import MemoryStore
    from iai_mcp.viewer import app as viewer_app

    monkeypatch.setenv("IAI_MCP_LOCAL", "1")
    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    from iai_mcp.embed import HashEmbedder

    MemoryStore(path=tmp_path / "store", embedder=HashEmbedder()).close()
    servers, opened = [], []

    class Recorded(uvicorn.Server):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            servers.append(self)

    def browser(link):
        parts = urlsplit(link)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        try:
            conn.request("GET", f"{parts.path}?{parts.query}")
            opened.append(conn.getresponse().status)
        except OSError as exc:
            opened.append(exc)
        finally:
            conn.close()
            servers[0].should_exit = True
        return True

    monkeypatch.setattr(uvicorn, "Server", Recorded)
    monkeypatch.setattr(viewer_app.webbrowser, "open", browser)
    links: list[str] = []
    thread = threading.Thread(target=viewer_app.serve, args=(str(tmp_path / "store"), 0),
                              kwargs={"open_browser": True, "say": links.append}, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    assert opened == [303] and len(links) == 1  # the launch link: its token set as a cookie


# ------------------------------------------------------------ projects, end to end

PROJECT_A, PROJECT_B = "/home/u/src/espresso-app", "/home/u/src/tea-shop"


@pytest.fixture
def projects(backend):
    """Three near-tie coffee memories (the project prior reorders near ties
    only): one per project and one said outside any."""
    said = {"a": ("coffee order number one", PROJECT_A),
            "b": ("coffee order number two", PROJECT_B),
            "none": ("coffee order number six", None)}
    return {name: backend.call("memory_capture", {"text": text, **({"project": p} if p else {})})["record_id"]
            for name, (text, p) in said.items()}


def _listed(html: str) -> list[str]:
    return re.findall(r'class="memory" href="/memory/([0-9a-f-]{36})"', html)


def test_browse_with_a_project_lists_only_that_projects_memories(client, projects):
    r = client.get("/browse", params={"project": PROJECT_A})
    assert r.status_code == 200 and _listed(r.text) == [projects["a"]]
    assert f'name="project" value="{PROJECT_A}"' in r.text  # the form keeps what was typed
    assert sorted(_listed(client.get("/browse").text)) == sorted(projects.values())


def test_search_with_a_project_ranks_its_memories_first_and_filters_nothing(client, backend, projects):
    """The contract: ``project`` on memory_recall is a preference, not a filter."""
    for project, first in ((PROJECT_A, projects["a"]), (PROJECT_B, projects["b"])):
        r = client.get("/search", params={"cue": "coffee order", "project": project})
        assert r.status_code == 200
        shown = list(dict.fromkeys(_listed(r.text)))
        assert shown[0] == first and sorted(shown) == sorted(projects.values()), (project, shown)
        direct = backend.call("memory_recall", {"cue": "coffee order", "project": project})
        assert shown == [hit["record_id"] for hit in direct["hits"]]


def test_overview_counts_memories_by_project(client, projects):
    r = client.get("/")
    by_project = r.text.split("<h2>By project</h2>", 1)[1].split("</section>", 1)[0]
    rows = re.findall(r'<a href="([^"]+)">([^<]+)</a></td><td class="num">(\d+)<', by_project)
    assert sorted((name, int(n)) for _, name, n in rows) == [("(none)", 1), (PROJECT_A, 1), (PROJECT_B, 1)]
    link = next(href for href, name, _ in rows if name == PROJECT_A).replace("&amp;", "&")
    assert _listed(client.get(link).text) == [projects["a"]]  # each count links to its memories
