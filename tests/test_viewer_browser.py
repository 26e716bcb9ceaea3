"""The viewer as a person uses it (issue 12): ``iai-mcp ui --no-browser``
started for real against a temporary store (its daemon with the real
embedding model), driven in Debian's headless Chromium through Playwright:
search, open a memory, see its provenance, forget it, restore it, page
through a list. The run takes a screenshot of a memory's page and checks
it is a PNG; it lands in the test's tmp_path unless ``IAI_MCP_SCREENSHOT``
names a file, which is how the README's docs/viewer.png is made
(``IAI_MCP_SCREENSHOT=docs/viewer.png``), so a test run never dirties the
working tree. And what another local app can do from the same
browser: a page on another port of 127.0.0.1 (the same *site*, so the
viewer's SameSite cookie goes with its requests) posting a form and
fetching pages is refused; its cookies do not log the viewer out.

A missing browser or Playwright fails these tests; it never skips them
(``.ci/run`` installs Chromium with apt-get).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parent.parent
#: Where to keep the screenshot (relative to the repository): docs/viewer.png for the README.
SCREENSHOT_ENV = "IAI_MCP_SCREENSHOT"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Every wait in these tests has this bound (a loaded 2-core machine included).
WAIT_MS = 60_000

MEMORIES = [
    ("The user prefers oat milk in their coffee, never dairy.", "semantic", ["drinks", "preferences"]),
    ("Deploys go out on Tuesdays after the 10:00 stand-up.", "procedural", ["work", "deploy"]),
    ("Asked to keep answers short and to show the command first.", "semantic", ["preferences"]),
    ("The staging database is db-stage-02; production is db-prod-01.", "semantic", ["work", "infra"]),
    ("Debugged the flaky login test: the clock mock leaked between tests.", "episodic", ["work", "tests"]),
    ("Coffee beans: the Kenyan roast from the corner shop.", "episodic", ["drinks"]),
    ("Run the linters with `make check` before pushing.", "procedural", ["work"]),
]


def screenshot_path(tmp_path: Path) -> Path:
    wanted = os.environ.get(SCREENSHOT_ENV)
    return REPO / wanted if wanted else tmp_path / "viewer.png"


def assert_png(path: Path, width: int) -> None:
    """A PNG of the viewport's width (IHDR: big-endian width after the signature)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", path
    assert int.from_bytes(data[16:20], "big") == width and int.from_bytes(data[20:24], "big") > 0


@pytest.fixture
def chromium():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); "
                    ".ci/run does this")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[dev]'")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def seeded_store(tmp_path, monkeypatch):
    """A store with a few memories, some recalled, reached through its daemon."""
    from iai_mcp import backend

    # An integration test: the real model (the screenshot's health table names it).
    monkeypatch.delenv("IAI_MCP_TEST_EMBEDDER", raising=False)
    monkeypatch.delenv("IAI_MCP_LOCAL", raising=False)
    root = tmp_path / "store"
    connection = backend.connect(root)
    try:
        for text, tier, tags in MEMORIES:
            # Said in a project (the git root of the session's directory), as the hooks record it.
            project = "/home/me/src/shop-api" if "work" in tags else "/home/me"
            connection.call("memory_capture", {"text": text, "tier": tier, "tags": tags, "session_id": "s-seed",
                                               "project": project})
        for cue in ("coffee milk", "coffee", "deploy day", "answer style"):
            connection.call("memory_recall", {"cue": cue, "k": 3, "session_id": "s-assistant"})
    finally:
        connection.close()
    return root


@pytest.fixture
def viewer_link(seeded_store):
    proc = subprocess.Popen([sys.executable, "-m", "iai_mcp", "--store", str(seeded_store), "ui", "--no-browser"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    got = threading.Event()

    def read() -> None:
        lines.append(proc.stdout.readline())
        got.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert got.wait(WAIT_MS / 1000), "iai-mcp ui printed no link"
        link = lines[0].strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[\w-]{40,}", link), (link, proc.stderr.read() if proc.poll() is not None else "")
        yield link
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.slow
def test_a_person_searches_opens_forgets_restores_and_pages(chromium, viewer_link, tmp_path):
    from playwright.sync_api import expect

    readme_picture = REPO / "docs" / "viewer.png"
    before = readme_picture.stat() if readme_picture.exists() else None
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT_MS)
    base = viewer_link.split("/?", 1)[0]

    # Opening the link trades the token for a cookie and drops it from the address.
    page.goto(viewer_link)
    assert page.url == base + "/"
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".stat").first).to_contain_text("7")
    expect(page.locator("table.health")).to_contain_text("PASS")
    expect(page.locator("table.health")).to_contain_text("MiniLM")
    expect(page.locator("table.health")).not_to_contain_text("hash-embedder")

    # Search: hits with scores and reasons, the budget.
    page.get_by_role("link", name="Search").click()
    page.locator('input[name="cue"]').fill("oat milk coffee")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("p.summary")).to_contain_text("budget used")
    first = page.locator("table.hits tbody tr").first
    expect(first.locator("td.num")).to_have_text(re.compile(r"\d\.\d{3}"))
    expect(first.locator("td.reason")).not_to_be_empty()

    # Open the memory: verbatim text and its provenance, newest first.
    page.get_by_role("link", name=re.compile("oat milk")).first.click()
    expect(page.locator("pre.verbatim")).to_have_text(MEMORIES[0][0])
    trail = page.locator("ol.provenance li")
    expect(trail.first).to_contain_text("oat milk coffee")  # the search just made
    expect(trail.first).to_contain_text("iai-mcp-ui")
    expect(page.locator("ol.provenance")).to_contain_text("s-assistant")
    memory_url = page.url
    # The README's picture: one memory, verbatim, with its history and provenance.
    shot = screenshot_path(tmp_path)
    shot.unlink(missing_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert_png(shot, 1280)
    if SCREENSHOT_ENV not in os.environ and before is not None:  # a test run leaves the tree clean
        after = readme_picture.stat()
        assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)

    # Forget it: the viewer asks first and shows the undo window.
    page.get_by_role("button", name="Forget…").click()
    expect(page.get_by_role("heading", name="Are you sure?")).to_be_visible()
    expect(page.locator("p.question")).to_contain_text("restore it until")
    page.get_by_role("button", name="Forget", exact=True).click()
    expect(page.locator(".notice")).to_contain_text("Restorable until")
    expect(page.locator(".meta-table")).to_contain_text("hidden")
    page.get_by_role("link", name="Search").click()
    page.locator('input[name="cue"]').fill("oat milk coffee")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("p.summary")).to_be_visible()
    expect(page.locator("table.hits")).not_to_contain_text("oat milk in their coffee")

    # Restore it.
    page.goto(memory_url)
    page.get_by_role("button", name="Restore").click()
    expect(page.locator(".notice")).to_contain_text("Restored")
    expect(page.locator(".meta-table")).to_contain_text("active")
    expect(page.locator("ol.history")).to_contain_text("restored")

    # Page through a list, two at a time: every memory once.
    page.get_by_role("link", name="Browse").click()
    page.locator('input[name="limit"]').fill("2")
    with page.expect_navigation():
        page.get_by_role("button", name="List").click()
    seen: list[str] = []
    while True:
        seen += page.locator("a.memory").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        following = page.locator('a[rel="next"]')
        if following.count() == 0:
            break
        # Reading the links again before the next page has replaced this one
        # would count some twice and others never.
        with page.expect_navigation():
            following.click()
    assert len(seen) == len(MEMORIES) == len(set(seen))
    expect(page.locator(".pager")).to_contain_text("last page")


@pytest.mark.slow
def test_a_browser_without_the_cookie_gets_nothing(chromium, viewer_link):
    """A fresh browser context (no cookie) and a wrong token see no memory."""
    base = viewer_link.split("/?", 1)[0]
    page = chromium.new_page()
    for url in (base + "/", base + "/browse", base + "/?token=guess"):
        response = page.goto(url)
        assert response.status == 401
        assert "oat milk" not in page.content()


@pytest.fixture
def other_site():
    """Another local app: an HTTP server on another port of 127.0.0.1
    serving whatever page a test gives it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    pages: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path, "").encode()
            self.send_response(200 if self.path in pages else 404)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", pages
    finally:
        server.shutdown()
        server.server_close()


def _memory_id(store: Path, text: str) -> str:
    from iai_mcp import backend

    connection = backend.connect(store)
    try:
        items = connection.call("memory_list", {"state": "all", "limit": 100})["items"]
    finally:
        connection.close()
    return next(m["record_id"] for m in items if m["literal_surface"] == text)


def _state(store: Path, record_id: str) -> str:
    from iai_mcp import backend

    connection = backend.connect(store)
    try:
        return connection.call("memory_get", {"id": record_id})["state"]
    finally:
        connection.close()


@pytest.mark.slow
def test_a_page_on_another_port_cannot_post_or_read_with_the_persons_cookie(
    chromium, viewer_link, seeded_store, other_site
):
    """The person opened the viewer (their browser holds its cookie), then a
    page of another local app, which posts a purge form to the viewer and
    fetches its pages: refused by Origin / Sec-Fetch-Site, nothing changed."""
    base = viewer_link.split("/?", 1)[0]
    origin, pages = other_site
    rid = _memory_id(seeded_store, MEMORIES[0][0])
    pages["/post"] = (
        f'<form id="f" method="post" action="{base}/memory/{rid}/forget">'
        '<input name="mode" value="purge"><input name="confirm" value="yes"></form>'
        '<script>document.getElementById("f").submit()</script>'
    )
    pages["/read"] = (
        "<script>const tries = [];"
        f'for (const path of ["/", "/browse", "/memory/{rid}"]) {{'
        f'  tries.push(fetch("{base}" + path + "?as=no-cors", {{credentials: "include", mode: "no-cors"}}));'
        f'  tries.push(fetch("{base}" + path + "?as=cors", {{credentials: "include"}}).then(r => r.text())'
        '    .then(t => { document.body.dataset.leak = t; }));'
        "}"
        f'tries.push(fetch("{base}/memory/{rid}/forget", {{method: "POST", credentials: "include", mode: "no-cors",'
        '  body: new URLSearchParams({mode: "hide", confirm: "yes"})}));'
        'Promise.allSettled(tries).then(() => { document.title = "settled"; });'
        "</script>"
    )
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    assert page.goto(viewer_link).status == 200  # the person's browser now holds the cookie
    cookies = [c["name"] for c in context.cookies(base)]
    assert any(name.startswith("iai_mcp_ui_") for name in cookies)

    statuses: dict[str, list[int]] = {}
    page.on("response", lambda r: statuses.setdefault(r.request.method + " " + r.url, []).append(r.status)
            if r.url.startswith(base) else None)
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url) if r.url.startswith(base) else None)
    with page.expect_response(lambda r: r.url.endswith("/forget")) as posted:
        page.goto(origin + "/post")
    assert posted.value.status == 403
    assert "another origin" in posted.value.text() or "another site" in posted.value.text()
    assert "oat milk" not in page.content()

    page.goto(origin + "/read")
    page.wait_for_function("() => document.title === 'settled'")
    paths = ["/", "/browse", f"/memory/{rid}"]
    assert statuses == {  # every answer the page could see was a refusal
        **{f"GET {base}{path}?as=no-cors": [403] for path in paths},
        f"POST {base}/memory/{rid}/forget": [403, 403],  # the form, then the fetch
    }, statuses
    # A CORS read gets no response at all (the viewer sends no CORS headers), and no text.
    assert {f"{base}{path}?as=cors" for path in paths} <= set(failed), failed
    assert page.evaluate("document.body.dataset.leak") is None
    assert _state(seeded_store, rid) == "active"  # neither the purge nor the hide happened
    context.close()


@pytest.mark.slow
def test_another_local_apps_cookies_do_not_log_the_viewer_out(chromium, viewer_link):
    """Cookies for 127.0.0.1 are shared by every port; one Python's
    SimpleCookie cannot parse (JSON in it) sits beside the viewer's."""
    base = viewer_link.split("/?", 1)[0]
    context = chromium.new_context()
    context.add_cookies([{"name": "other", "value": '{"a":1}', "url": base},
                         {"name": "session", "value": "a b", "url": base}])
    page = context.new_page()
    assert page.goto(viewer_link).status == 200
    assert page.get_by_role("heading", name="Overview").is_visible()
    assert {c["name"] for c in context.cookies(base)} >= {"other", "session"}  # all sent along
    assert page.goto(base + "/browse").status == 200
    assert "oat milk" in page.content()
    context.close()


@pytest.mark.slow
def test_a_malformed_cookie_header_is_401_and_the_viewer_keeps_serving(viewer_link):
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(viewer_link)
    # Bytes HTTP allows in a header (obs-text included) that are no cookie of ours.
    for header in (b"\xff\xfe=\xfe", b"=;=;;", b'iai_mcp_ui_1="unterminated', b"a" * 8000, b'x={"a":1'):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT_MS / 1000)
        try:
            conn.putrequest("GET", "/browse")
            conn.putheader("Cookie", header)
            conn.endheaders()
            response = conn.getresponse()
            assert response.status == 401 and b"oat milk" not in response.read()
        finally:
            conn.close()
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT_MS / 1000)
    conn.request("GET", f"/?{parts.query}")
    assert conn.getresponse().status == 303  # still up, still answering the launch link
    conn.close()
