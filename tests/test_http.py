"""`iai-mcp serve --http`: the MCP tools over streamable HTTP, behind a
bearer token, on loopback unless told otherwise (issue 12)."""
from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from iai_mcp.core import contract
from iai_mcp.errors import InvalidInput, StoreError
from iai_mcp.mcp_server import http
from iai_mcp.store import http_token  # the store-level helper behind backend.http_token

TOOLS = {name for name, method in contract.METHODS.items() if method.tool}


# ------------------------------------------------------------------ units


@pytest.mark.parametrize("given, expected", [
    (None, ("127.0.0.1", http.DEFAULT_PORT)),
    ("", ("127.0.0.1", http.DEFAULT_PORT)),
    ("9000", ("127.0.0.1", 9000)),
    (":9000", ("127.0.0.1", 9000)),
    ("localhost:9001", ("localhost", 9001)),
    ("0.0.0.0", ("0.0.0.0", http.DEFAULT_PORT)),
    ("[::1]:9002", ("::1", 9002)),
    ("[::]", ("::", http.DEFAULT_PORT)),
])
def test_addresses(given, expected):
    address = http.parse_address(given)
    assert (address.host, address.port) == expected


@pytest.mark.parametrize("given", ["host:port", "1.2.3.4:70000", "::1", "[::1", "[::1]x", "a:1:2"])
def test_bad_addresses_are_typed_errors(given):
    with pytest.raises(InvalidInput, match="--http"):
        http.parse_address(given)


def test_loopback_and_remote():
    assert all(http.parse_address(a).loopback for a in ["127.0.0.1:1", "127.5.0.1:1", "localhost", "[::1]:1"])
    for remote in ["0.0.0.0", "[::]", "192.168.1.5", "example.org"]:
        address = http.parse_address(remote)
        assert not address.loopback
        with pytest.raises(InvalidInput, match="--allow-remote"):
            http.refuse_remote(address, allow_remote=False)
        http.refuse_remote(address, allow_remote=True)


def test_host_and_origin_checks_follow_the_bind_address():
    loopback = http.security_settings(http.parse_address(""), 8731)
    assert loopback.enable_dns_rebinding_protection
    assert set(loopback.allowed_hosts) == {"127.0.0.1:8731", "localhost:8731", "[::1]:8731"}
    assert "http://localhost:8731" in loopback.allowed_origins
    named = http.security_settings(http.parse_address("[fd00::5]"), 9000)
    assert named.allowed_hosts == ["[fd00::5]:9000"] and named.allowed_origins == ["http://[fd00::5]:9000"]
    assert not http.security_settings(http.parse_address("0.0.0.0"), 9000).enable_dns_rebinding_protection


def test_token_is_made_once_kept_0600_and_reused(tmp_path):
    root = tmp_path / "store"
    token, made = http_token.load_or_create(root)
    path = http_token.token_path(root)
    assert made and len(token) >= 43 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert http_token.load_or_create(root) == (token, False)
    assert http_token.load_or_create(tmp_path / "other")[0] != token  # random, per store


def test_a_token_others_can_read_is_not_used(tmp_path):
    root = tmp_path / "store"
    http_token.load_or_create(root)
    os.chmod(http_token.token_path(root), 0o644)
    with pytest.raises(StoreError, match="other users may have read"):
        http_token.load_or_create(root)


def test_cli_refuses_a_remote_bind_without_allow_remote(cli):
    code, out, err = cli("serve", "--http", "0.0.0.0:0")
    assert code == 1 and out == ""
    assert "not a loopback address" in err and "--allow-remote" in err
    assert not http_token.token_path(cli.store).exists()  # refused before anything was made
    code, _, err = cli("serve", "--allow-remote")
    assert code == 1 and "--http only" in err


def test_cli_help_names_the_default_address(capsys):
    from iai_mcp.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert f"(default {http.DEFAULT_HOST}:{http.DEFAULT_PORT})" in shown
    assert "--allow-remote" in shown and "--expose-embeddings" in shown


# ------------------------------------------------------- a real server


def _env(store: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAI_MCP_")}
    return {**env, "IAI_MCP_STORE": str(store), **extra}


@contextmanager
def _served(tmp_path: Path, store: Path, *args: str, **env: str) -> Iterator[tuple[str, str]]:
    """`iai-mcp serve --http 127.0.0.1:0` running; yields its URL and the
    line that announces the token. Stopped with SIGTERM, which must exit 0."""
    errlog = open(tmp_path / f"http-{len(list(tmp_path.glob('http-*')))}.stderr", "w")
    proc = subprocess.Popen([sys.executable, "-m", "iai_mcp", "serve", "--http", "127.0.0.1:0", *args],
                            env=_env(store, **env), stdout=subprocess.PIPE, stderr=errlog, text=True)
    watchdog = threading.Timer(300, proc.kill)  # bounds every readline and the whole test
    watchdog.start()
    try:
        banner = proc.stdout.readline()
        token_line = proc.stdout.readline()
        found = re.search(r"at (http://\S+/mcp)$", banner.strip())
        assert found, (banner, Path(errlog.name).read_text())
        yield found.group(1), token_line.strip()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        errlog.close()


def _token_from(line: str) -> str:
    return line.rsplit(": ", 1)[1]


async def _session(url: str, token: str | None, scenario):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(120)) as client:
        async with streamable_http_client(url, http_client=client) as (read, write, _):
            async with ClientSession(read, write, read_timeout_seconds=timedelta(seconds=120)) as session:
                await session.initialize()
                return await scenario(session)


async def _every_tool(session: ClientSession) -> dict[str, Any]:
    listed = {t.name for t in (await session.list_tools()).tools}
    out: dict[str, Any] = {"listed": listed}

    async def call(name: str, args: dict[str, Any]) -> dict[str, Any]:
        result = await session.call_tool(name, args)
        assert not result.isError, (name, result.content)
        out.setdefault("called", set()).add(name)
        return result.structuredContent

    captured = await call("memory_capture", {"text": "Our cat Miso sleeps on the radiator.", "tags": ["pets"],
                                             "session_id": "h1"})
    rid = captured["record_id"]
    out["recall"] = await call("memory_recall", {"cue": "where does Miso sleep?", "session_id": "h2", "k": 3})
    with anyio.fail_after(30):  # provenance is written off the recall path
        while not (got := await call("memory_get", {"id": rid}))["provenance"]:
            await anyio.sleep(0.05)
    out["get"] = got
    out["pinned"] = await call("memory_update", {"id": rid, "pinned": True})
    out["session"] = await call("session_start", {})
    out["tags"] = await call("memory_tags", {})
    out["forgot"] = await call("memory_forget", {"ids": [rid]})
    out["hidden"] = await call("memory_list", {"state": "hidden"})
    out["restored"] = await call("memory_restore", {"ids": [rid]})
    out["listed_after"] = await call("memory_list", {})
    out["bad"] = await session.call_tool("memory_recall", {"cue": "x", "kk": 1})
    out["rid"] = rid
    return out


@pytest.mark.slow
def test_every_tool_over_http_with_the_sdk_client_and_only_with_the_token(tmp_path):
    """Real embedder, default backend (the store's daemon)."""
    store = tmp_path / "store"
    with _served(tmp_path, store) as (url, token_line):
        assert "(new, kept in" in token_line
        token = _token_from(token_line)
        assert (store / "http_token").read_text().strip() == token
        done = anyio.run(_session, url, token, _every_tool)

        with httpx.Client(timeout=30) as raw:
            initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
            accept = {"Accept": "application/json, text/event-stream"}
            refused = [
                raw.post(url, json=initialize, headers=accept),
                raw.post(url, json=initialize, headers={**accept, "Authorization": f"Bearer {token[:-1]}x"}),
                raw.post(url, json=initialize, headers={**accept, "Authorization": token}),
                raw.get(url, headers={"Authorization": "Basic dXNlcjpwYXNz"}),
                raw.get(url.removesuffix("/mcp") + "/other"),
            ]
            authorized = {**accept, "Authorization": f"bearer {token}"}  # the scheme is case-insensitive
            ok = raw.post(url, json=initialize, headers=authorized)
            port = url.split(":")[2].split("/")[0]
            foreign_host = raw.post(url, json=initialize, headers={**authorized, "Host": f"evil.example:{port}"})
            foreign_origin = raw.post(url, json=initialize, headers={**authorized, "Origin": "http://evil.example"})
            # Raw bytes the SDK would answer with an empty body: a lone surrogate
            # echoed back in "Unknown tool: ..." cannot be written out.
            surrogate = raw.post(url, content=b'{"jsonrpc":"2.0","id":7,"method":"tools/call",'
                                              b'"params":{"name":"memory_\\ud800","arguments":{}}}',
                                 headers={**authorized, "Content-Type": "application/json"})

        async def refused_by_the_sdk_client() -> BaseException | None:
            try:
                with anyio.fail_after(60):
                    await _session(url, "wrong", lambda s: s.list_tools())
            except BaseException as exc:  # noqa: BLE001 - anyio wraps it in an ExceptionGroup
                return exc
            return None

        sdk_refusal = anyio.run(refused_by_the_sdk_client)
    from iai_mcp.daemon import lifecycle as daemon

    daemon.stop(store)

    assert done["listed"] == TOOLS and done["called"] == TOOLS
    assert done["recall"]["hits"][0]["record_id"] == done["rid"]
    assert [(p["cue"], p["session_id"]) for p in done["get"]["provenance"]] == [("where does Miso sleep?", "h2")]
    assert done["session"]["memories"][0]["record_id"] == done["rid"]
    assert done["tags"]["tags"][0]["tag"] == "pets"
    assert [m["record_id"] for m in done["hidden"]["items"]] == [done["rid"]]
    assert [m["record_id"] for m in done["listed_after"]["items"]] == [done["rid"]]
    assert done["bad"].isError and done["bad"].content[0].text.startswith("invalid_input: ")

    for response in refused:
        assert response.status_code == 401, response
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "Miso" not in response.text and "jsonrpc" not in response.text
    assert ok.status_code == 200 and "iai-mcp" in ok.text
    assert foreign_host.status_code == 421 and foreign_origin.status_code == 403
    assert surrogate.status_code == 400 and surrogate.json()["id"] == 7
    assert surrogate.json()["error"]["code"] == -32700 and "lone surrogate" in surrogate.json()["error"]["message"]
    assert sdk_refusal is not None and "401" in repr(sdk_refusal) + str(getattr(sdk_refusal, "exceptions", ""))


@pytest.mark.slow
def test_the_token_survives_a_restart(tmp_path):
    store = tmp_path / "store"
    env = {"IAI_MCP_LOCAL": "1", "IAI_MCP_TEST_EMBEDDER": "hash"}

    async def capture(session: ClientSession):
        return (await session.call_tool("memory_capture", {"text": "kept across restarts"})).structuredContent

    async def listed(session: ClientSession):
        return (await session.call_tool("memory_list", {})).structuredContent

    with _served(tmp_path, store, **env) as (url, line):
        token = _token_from(line)
        assert anyio.run(_session, url, token, capture)["status"] == "inserted"
    assert stat.S_IMODE((store / "http_token").stat().st_mode) == 0o600
    with _served(tmp_path, store, **env) as (url, line):
        assert token not in line and "the one in" in line and str(store / "http_token") in line
        items = anyio.run(_session, url, token, listed)["items"]
    assert [m["literal_surface"] for m in items] == ["kept across restarts"]
    assert (store / "http_token").read_text().strip() == token


@pytest.mark.slow
def test_a_remote_bind_refuses_to_start_and_says_why(tmp_path):
    store = tmp_path / "store"
    refused = subprocess.run([sys.executable, "-m", "iai_mcp", "serve", "--http", "0.0.0.0:0"],
                             env=_env(store), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "not a loopback address" in refused.stderr and "--allow-remote" in refused.stderr
    assert not (store / "http_token").exists()


def test_a_port_in_use_is_a_clear_error_and_makes_no_token(cli):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, out, err = cli("serve", "--http", f"127.0.0.1:{port}")
    assert code == 1 and out == ""
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert not http_token.token_path(cli.store).exists()  # so the first real start still prints it
