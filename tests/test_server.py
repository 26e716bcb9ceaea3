"""The MCP server: tool surface, structured results, tool errors, lazy start,
and `iai-mcp serve` driven over stdio by the SDK's own client."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.memory import create_connected_server_and_client_session

from iai_mcp import mcp_server as server
from iai_mcp.core import contract, dispatch, results
from iai_mcp.core.limits import MAX_BUDGET_TOKENS, MAX_K
from iai_mcp.errors import InvalidInput
from iai_mcp.types import ROLES, TIERS

TOOLS = {"memory_capture", "memory_recall", "memory_get", "session_start",
         "memory_forget", "memory_restore", "memory_update",  # forgetting and correcting (issue 9)
         "memory_list", "memory_tags"}


class DirectBackend:
    """dispatch against a test-owned store; the fixture closes the store.
    ``calls`` records each ``(method, params)`` sent."""

    def __init__(self, store) -> None:
        self.store = store
        self.closed = threading.Event()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.calls.append((method, dict(params or {})))
        return dispatch(self.store, method, params or {})

    def close(self) -> None:
        self.closed.set()


def _session(app):
    return create_connected_server_and_client_session(app, read_timeout_seconds=timedelta(seconds=30))


def _run(scenario) -> Any:
    return anyio.run(scenario)


def _accepted(store, method: str, required: dict[str, Any]) -> str:
    with pytest.raises(InvalidInput) as info:
        dispatch(store, method, {**required, "__probe__": 1})
    return str(info.value)


def _tool_list(app) -> dict[str, Any]:
    async def scenario():
        async with _session(app) as client:
            return {t.name: t for t in (await client.list_tools()).tools}

    return _run(scenario)


def test_tool_schemas_come_from_the_contract(store):
    # With embeddings exposed the tools show every contract parameter; see
    # test_cue_embedding_is_shown_only_to_hosts_that_opt_in for the default.
    app, _ = server.build_server(lambda: DirectBackend(store), expose_embeddings=True)

    async def scenario():
        async with _session(app) as client:
            return {t.name: t for t in (await client.list_tools()).tools}

    tools = _run(scenario)
    assert set(tools) == TOOLS == {name for name, m in contract.METHODS.items() if m.tool}
    for name, tool in tools.items():  # the hints a host shows its user come from the contract too
        declared = contract.method(name)
        hints = tool.annotations
        assert (hints.readOnlyHint, hints.destructiveHint, hints.idempotentHint, hints.openWorldHint) == (
            declared.read_only, declared.destructive, declared.idempotent, False)
    assert tools["memory_recall"].annotations.readOnlyHint and tools["memory_get"].annotations.readOnlyHint
    schemas = {name: tool.inputSchema for name, tool in tools.items()}
    for name, schema in schemas.items():
        fields = contract.method(name).params.model_fields
        # What dispatch accepts is exactly what the tool offers, in the same words.
        assert f"accepted: {sorted(schema['properties'])}" in _accepted(store, name, {})
        assert list(schema["properties"]) == list(fields)
        assert schema.get("required", []) == [f for f, info in fields.items() if info.is_required()]
        for field, prop in schema["properties"].items():
            info = fields[field]
            assert prop["description"] == info.description
            assert prop.get("default") == (None if info.is_required() else info.default)
    assert schemas["memory_capture"]["required"] == ["text"]
    assert schemas["memory_recall"]["required"] == ["cue"]
    assert schemas["memory_get"]["required"] == ["id"]
    capture = schemas["memory_capture"]["properties"]
    assert capture["tier"]["default"] == "episodic" and sorted(capture["tier"]["enum"]) == sorted(TIERS)
    assert sorted(capture["role"]["anyOf"][0]["enum"]) == sorted(ROLES)
    recall = schemas["memory_recall"]["properties"]
    assert (recall["k"]["default"], recall["k"]["minimum"], recall["k"]["maximum"]) == (10, 1, MAX_K)
    assert (recall["budget_tokens"]["default"], recall["budget_tokens"]["maximum"]) == (1500, MAX_BUDGET_TOKENS)
    assert schemas["session_start"]["properties"]["budget_tokens"]["maximum"] == MAX_BUDGET_TOKENS
    # Lengths are dispatch's to enforce (a typed limit_exceeded error), not the schema's.
    assert "maxLength" not in capture["text"]
    for tool in tools.values():
        assert tool.description and len(tool.description) > 80  # written for the model
        assert tool.outputSchema is not None


def test_result_types_carry_every_field_core_returns(store):
    rid = dispatch(store, "memory_capture", {"text": "a beagle named Max", "pinned": True})["record_id"]
    recalled = dispatch(store, "memory_recall", {"cue": "beagle"})
    pairs = [
        (results.CaptureResult, dispatch(store, "memory_capture", {"text": "another"})),
        (results.RecallResult, recalled),
        (results.RecallHit, recalled["hits"][0]),
        (results.Memory, dispatch(store, "memory_get", {"id": rid})),
        (results.SessionPack, dispatch(store, "session_start", {})),
        (results.PackedMemory, dispatch(store, "session_start", {})["memories"][0]),
    ]
    for result_type, result in pairs:
        assert set(result_type.__annotations__) == set(result), result_type.__name__


def test_tools_return_structured_results_and_errors_keep_serving(store):
    backend = DirectBackend(store)
    mcp_server, _ = server.build_server(lambda: backend)

    async def scenario():
        async with _session(mcp_server) as client:
            await client.initialize()
            captured = await client.call_tool("memory_capture", {"text": "Alice adopted a beagle named Max", "session_id": "s1"})
            recalled = await client.call_tool("memory_recall", {"cue": "beagle Max", "session_id": "s2"})
            got = await client.call_tool("memory_get", {"id": captured.structuredContent["record_id"]})
            errors = [
                await client.call_tool("memory_capture", {"text": "   "}),
                await client.call_tool("memory_capture", {"text": "x", "tier": "cosmic"}),
                await client.call_tool("memory_get", {"id": "not-a-uuid"}),
                await client.call_tool("memory_get", {"id": "00000000-0000-0000-0000-000000000000"}),
                await client.call_tool("memory_recall", {"cue": "x", "k": 0}),
                await client.call_tool("memory_recall", {"cue": "x", "k": 500}),
            ]
            after = await client.call_tool("memory_recall", {"cue": "beagle"})
            return captured, recalled, got, errors, after

    captured, recalled, got, errors, after = _run(scenario)
    assert not captured.isError and captured.structuredContent["status"] == "inserted"
    hit = recalled.structuredContent["hits"][0]
    assert hit["literal_surface"] == "Alice adopted a beagle named Max"
    assert json.loads(recalled.content[0].text)["hits"][0]["record_id"] == hit["record_id"]
    assert [(p["cue"], p["session_id"]) for p in got.structuredContent["provenance"]] == [("beagle Max", "s2")]
    assert all(e.isError for e in errors)
    texts = [e.content[0].text for e in errors]
    assert "invalid_input" in texts[0] and "'text' must not be empty" in texts[0]
    assert "tier" in texts[1] and "'episodic'" in texts[1]  # says what would be accepted
    assert "must be a record id" in texts[2]
    assert "not_found" in texts[3]
    # Arguments the schema refuses are explained in dispatch's words, not pydantic's.
    assert texts[4] == "invalid_input: memory_recall: 'k' must be at least 1"
    assert texts[5] == "limit_exceeded: memory_recall: 'k' is 500; the maximum is 200"
    assert not after.isError and after.structuredContent["hits"]
    assert backend.closed.is_set()  # the lifespan closed the backend


def test_a_bug_is_a_tool_error_logged_on_stderr(capfd):
    class Broken:
        def call(self, method, params=None):
            raise RuntimeError("boom")

        def close(self):
            pass

    mcp_server, _ = server.build_server(Broken)

    async def scenario():
        async with _session(mcp_server) as client:
            await client.initialize()
            return await client.call_tool("memory_get", {"id": "x"})

    result = _run(scenario)
    assert result.isError and "internal error in memory_get" in result.content[0].text
    logged = [json.loads(line) for line in capfd.readouterr().err.splitlines() if '"tool_failed"' in line]
    assert logged and logged[0]["error"] == "RuntimeError: boom"


def test_backend_opens_after_the_handshake_not_before(store):
    entered, release = threading.Event(), threading.Event()
    warmed = threading.Event()

    class Slow(DirectBackend):
        def call(self, method, params=None):
            if method == "warmup":
                warmed.set()
            return super().call(method, params)

    def connect():
        entered.set()
        assert release.wait(30)
        return Slow(store)

    mcp_server, _ = server.build_server(connect)

    async def scenario():
        async with _session(mcp_server) as client:
            with anyio.fail_after(10):
                # Answered while the backend is still (blockingly) opening.
                result = await client.initialize()
            assert await anyio.to_thread.run_sync(entered.wait, 10)
            release.set()
            assert await anyio.to_thread.run_sync(warmed.wait, 10)
            return result

    assert _run(scenario).serverInfo.name == "iai-mcp"


def test_initialized_hook_still_holds():
    """``runtime._on_initialized`` leans on the one SDK detail with no public
    API (python-sdk#2135): 1.x dispatches client notifications from
    ``Server.notification_handlers``, keyed by type. If an SDK upgrade moves
    that, this fails here rather than as a server that never warms up."""
    from mcp.server.lowlevel import Server
    from mcp.types import InitializedNotification

    from iai_mcp.mcp_server import runtime

    seen = []

    async def handler(notification):
        seen.append(notification)

    probe = Server("probe")
    runtime._on_initialized(probe, handler)

    async def scenario():
        async with _session(probe):  # the session sends `initialized` after the handshake
            with anyio.fail_after(10):
                while not seen:
                    await anyio.sleep(0.01)

    _run(scenario)
    assert isinstance(seen[0], InitializedNotification), (
        "mcp no longer dispatches notifications/initialized through Server.notification_handlers; "
        "port runtime._on_initialized to the SDK's public notification API"
    )


def test_handshake_reports_our_version_and_instructions(store):
    from iai_mcp import __version__

    mcp_server, _ = server.build_server(lambda: DirectBackend(store))

    async def scenario():
        async with _session(mcp_server) as client:
            return await client.initialize()

    init = _run(scenario)
    assert (init.serverInfo.name, init.serverInfo.version) == ("iai-mcp", __version__)
    assert init.instructions and "memory_recall" in init.instructions
    # As FastMCP.run advertised them: tools, and (empty) resources and prompts.
    assert init.capabilities.tools and init.capabilities.resources and init.capabilities.prompts


# ------------------------------------------------------------- subprocesses


def _server_env(store: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAI_MCP_")}
    return {**env, "IAI_MCP_STORE": str(store), **extra}


@pytest.mark.slow
def test_serve_over_stdio_with_the_sdk_client(tmp_path):
    """Real embedder, default backend (the store's daemon)."""
    store = tmp_path / "store"
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "iai_mcp", "serve"], env=_server_env(store)
    )

    async def scenario(errlog):
        started = time.perf_counter()
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=timedelta(seconds=120)) as client:
                init = await client.initialize()
                init_s = time.perf_counter() - started
                tools = {t.name: t.inputSchema for t in (await client.list_tools()).tools}
                captured = await client.call_tool("memory_capture", {
                    "text": "My sister Ana lives in Lisbon and teaches chemistry.", "session_id": "s1",
                })
                await client.call_tool("memory_capture", {"text": "The build server is called hopper."})
                recalled = await client.call_tool("memory_recall", {"cue": "where does Ana live?", "session_id": "s2", "k": 1})
                rid = recalled.structuredContent["hits"][0]["record_id"]
                with anyio.fail_after(10):  # provenance is written off the recall path
                    while not (got := await client.call_tool("memory_get", {"id": rid})).structuredContent["provenance"]:
                        await anyio.sleep(0.05)
                bad = await client.call_tool("memory_recall", {"cue": ""})
                after = await client.call_tool("memory_get", {"id": rid})
                return init, init_s, tools, captured, recalled, got, bad, after

    try:
        with open(tmp_path / "server.stderr", "w") as errlog:
            init, init_s, tools, captured, recalled, got, bad, after = anyio.run(scenario, errlog)
    finally:
        from iai_mcp.daemon import lifecycle as daemon

        daemon.stop(store)
    print(f"\ntime to initialize response (cold process): {init_s:.2f} s")
    assert init.serverInfo.name == "iai-mcp"
    assert init_s < 10
    assert set(tools) == TOOLS
    assert tools["memory_capture"]["required"] == ["text"] and "budget_tokens" in tools["memory_recall"]["properties"]
    assert captured.structuredContent["status"] == "inserted"
    hit = recalled.structuredContent["hits"][0]
    assert hit["literal_surface"] == "My sister Ana lives in Lisbon and teaches chemistry."
    assert hit["record_id"] == captured.structuredContent["record_id"]
    provenance = got.structuredContent["provenance"]
    assert len(provenance) == 1 and provenance[0]["cue"] == "where does Ana live?" and provenance[0]["session_id"] == "s2"
    assert bad.isError and "'cue' must not be empty" in bad.content[0].text
    assert not after.isError and after.structuredContent["literal_surface"] == hit["literal_surface"]
    assert (store / "meta.json").exists() and (store / "key").stat().st_mode & 0o777 == 0o600


def _rpc(proc: subprocess.Popen, message: dict[str, Any]) -> None:
    proc.stdin.write((json.dumps(message) + "\n").encode())
    proc.stdin.flush()


def _reply(proc: subprocess.Popen) -> dict[str, Any]:
    line = proc.stdout.readline()
    assert line, "server closed stdout"
    return json.loads(line)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_drains_provenance_of_returned_recalls(tmp_path, fake_embedder, signum):
    """The server owns the store (local backend): SIGTERM (or SIGINT) with
    stdin still open runs the lifespan's finally, so the queued provenance
    reaches disk."""
    store = tmp_path / "store"
    env = _server_env(store, IAI_MCP_LOCAL="1", IAI_MCP_TEST_EMBEDDER="hash")
    proc = subprocess.Popen(
        [sys.executable, "-m", "iai_mcp", "serve"], env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    watchdog = threading.Timer(120, proc.kill)  # bounds every readline: a hung server is killed, stdout closes
    watchdog.start()
    try:
        _rpc(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
        assert _reply(proc)["result"]["serverInfo"]["name"] == "iai-mcp"
        _rpc(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        texts = [f"note {i} about the garden shed" for i in range(3)]
        for i, text in enumerate(texts):
            _rpc(proc, {"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call",
                        "params": {"name": "memory_capture", "arguments": {"text": text}}})
            assert _reply(proc)["result"]["structuredContent"]["status"] == "inserted"
        _rpc(proc, {"jsonrpc": "2.0", "id": 20, "method": "tools/call",
                    "params": {"name": "memory_recall", "arguments": {"cue": "garden shed", "session_id": "term"}}})
        hits = _reply(proc)["result"]["structuredContent"]["hits"]
        assert len(hits) == 3
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == 0
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    rest = proc.stdout.read()
    err = proc.stderr.read().decode()
    assert rest == b""  # nothing but JSON-RPC replies ever reached stdout
    assert f'"event": "shutdown", "signal": "{signal.Signals(signum).name}"' in err
    from iai_mcp.store import MemoryStore

    with MemoryStore(path=store, embedder=fake_embedder) as reopened:
        for hit in hits:
            entries = reopened.get(hit["record_id"]).provenance
            assert [(e["cue"], e["session_id"]) for e in entries] == [("garden shed", "term")]


# ------------------------------------------- what the model sees (issue 11)


def _call_all(app, calls: list[tuple[str, dict[str, Any]]]):
    async def scenario():
        async with _session(app) as client:
            await client.initialize()
            return [await client.call_tool(name, args) for name, args in calls]

    return _run(scenario)


def test_tool_descriptions_are_dedented(store):
    tools = _tool_list(server.build_server(lambda: DirectBackend(store))[0])
    for tool in tools.values():
        lines = tool.description.splitlines()
        assert len(lines) > 2, tool.name
        # No line keeps the source's indentation; the text is otherwise the docstring.
        assert all(line == line.lstrip() for line in lines), tool.name
        assert tool.description == tool.description.strip()
    assert "\nUse it when the user states a preference" in tools["memory_capture"].description


def test_instructions_name_session_start(store):
    app, _ = server.build_server(lambda: DirectBackend(store))

    async def scenario():
        async with _session(app) as client:
            return await client.initialize()

    instructions = _run(scenario).instructions
    assert "session_start" in instructions and "memory_recall" in instructions


def test_unknown_arguments_are_rejected_and_change_nothing(store):
    app, _ = server.build_server(lambda: DirectBackend(store))
    rid = dispatch(store, "memory_capture", {"text": "the shed key is under the blue pot"})["record_id"]
    results_ = _call_all(app, [
        ("memory_capture", {"text": "the garage code is 4512", "tiers": "semantic"}),
        ("memory_forget", {"ids": [rid], "dryrun": True}),
        ("memory_recall", {"cue": "shed key", "kk": 3}),
        ("session_start", {"budget": 100}),
        ("memory_tags", {"x": 1}),
    ])
    texts = [r.content[0].text for r in results_]
    assert all(r.isError for r in results_), texts
    assert texts[0] == ("invalid_input: memory_capture: unknown parameter(s) ['tiers']; accepted: "
                        f"{sorted(contract.method('memory_capture').params.model_fields)}")
    assert "unknown parameter(s) ['dryrun']" in texts[1] and "'dry_run'" in texts[1]
    assert all(t.startswith("invalid_input: ") and "unknown parameter(s)" in t for t in texts)
    # Nothing was captured and nothing forgotten.
    assert [m["record_id"] for m in dispatch(store, "memory_list", {})["items"]] == [rid]


def test_schema_errors_come_back_typed_like_value_errors(store):
    """Every wrong-typed argument of every tool gets dispatch's typed error,
    never pydantic's own text (its error URL, its ``type=`` tags)."""
    app, _ = server.build_server(lambda: DirectBackend(store), expose_embeddings=True)
    wrong = {"string": 12345, "integer": "many", "boolean": "maybe", "array": {"not": "a list"}, "number": "x"}
    calls = []
    for name, tool in _tool_list(app).items():
        required = {f: "x" for f in tool.inputSchema.get("required", [])}
        if name in ("memory_get", "memory_update"):
            required = {"id": "00000000-0000-0000-0000-000000000000"}
        for field, prop in tool.inputSchema["properties"].items():
            kinds = [prop.get("type")] + [alt.get("type") for alt in prop.get("anyOf", [])]
            kind = next((k for k in kinds if k in wrong), None)
            if kind is not None:
                calls.append((name, {**required, field: wrong[kind]}))
    assert len(calls) > 30
    for (name, args), result in zip(calls, _call_all(app, calls)):
        text = result.content[0].text
        assert result.isError, (name, args)
        assert text.startswith(("invalid_input: ", "limit_exceeded: ")), (name, args, text)
        assert "pydantic" not in text and "http" not in text and "type=" not in text, (name, args, text)


def test_cue_embedding_is_shown_only_to_hosts_that_opt_in(store, monkeypatch):
    hidden = _tool_list(server.build_server(lambda: DirectBackend(store))[0])
    assert all("cue_embedding" not in t.inputSchema["properties"] for t in hidden.values())
    shown = _tool_list(server.build_server(lambda: DirectBackend(store), expose_embeddings=True)[0])
    assert "cue_embedding" in shown["memory_recall"].inputSchema["properties"]
    # Not shown means not accepted either, with the parameters the model does see.
    (refused,) = _call_all(server.build_server(lambda: DirectBackend(store))[0],
                           [("memory_recall", {"cue": "x", "cue_embedding": [0.0] * 384})])
    assert refused.isError and "unknown parameter(s) ['cue_embedding']" in refused.content[0].text
    assert "'cue_embedding'" not in refused.content[0].text.split("accepted:")[1]
    # The environment variable is the opt-in for hosts that start `iai-mcp serve` themselves.
    from iai_mcp.mcp_server import runtime

    monkeypatch.setenv(runtime.EXPOSE_EMBEDDINGS_ENV, "1")
    assert runtime.expose_embeddings_default()
    monkeypatch.setenv(runtime.EXPOSE_EMBEDDINGS_ENV, "")
    assert not runtime.expose_embeddings_default()


@pytest.mark.slow
def test_a_lone_surrogate_gets_an_error_reply_over_stdio(tmp_path, fake_embedder):
    """Raw bytes on the real stdio transport: a request the SDK cannot read
    (a lone surrogate, escaped or as its UTF-8-style bytes; broken JSON) is
    answered with a JSON-RPC error for its id, nothing is stored, and the
    server serves on."""
    store = tmp_path / "store"
    env = _server_env(store, IAI_MCP_LOCAL="1", IAI_MCP_TEST_EMBEDDER="hash")
    proc = subprocess.Popen([sys.executable, "-m", "iai_mcp", "serve"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watchdog = threading.Timer(120, proc.kill)  # a silent server is killed: readline then fails the test
    watchdog.start()

    def raw(line: bytes) -> dict[str, Any]:
        proc.stdin.write(line + b"\n")
        proc.stdin.flush()
        return _reply(proc)

    def capture(text_json: bytes, rid: int) -> bytes:
        return (b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"memory_capture",'
                b'"arguments":{"text":"%s"}}}' % (rid, text_json))

    try:
        _rpc(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
        assert _reply(proc)["result"]["serverInfo"]["name"] == "iai-mcp"
        _rpc(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        escaped = raw(capture(b"my PIN is \\ud800 1234", 2))
        as_bytes = raw(capture(b"my PIN is \xed\xa0\x80 1234", 3))
        broken = raw(b'{"jsonrpc":"2.0","id":4,"method":')
        surrogate_id = raw(b'{"jsonrpc":"2.0","id":"\\udc00","method":"tools/list"}')
        fine = raw(capture(b"my PIN is 1234", 5))
        listed = raw(b'{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"memory_list","arguments":{}}}')
    finally:
        watchdog.cancel()
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    assert escaped["id"] == 2 and escaped["error"]["code"] == -32700
    assert "surrogate" in escaped["error"]["message"]
    assert as_bytes["id"] == 3 and "not valid UTF-8 (byte 0xed at offset" in as_bytes["error"]["message"]
    assert broken["id"] is None and broken["error"]["code"] == -32700
    assert surrogate_id["id"] is None and "error" in surrogate_id
    assert fine["result"]["structuredContent"]["status"] == "inserted"
    # Only the well-formed capture was stored: nothing replaced the bad bytes with U+FFFD.
    assert [m["literal_surface"] for m in listed["result"]["structuredContent"]["items"]] == ["my PIN is 1234"]
    assert proc.stderr.read().decode().count('"event": "unreadable_message"') == 4


def test_value_errors_and_schema_errors_have_one_form(store):
    """What dispatch refuses (a value) and what the schema refuses (a type,
    a bound) read alike: ``<code>: <method>: <what to fix>``."""
    app, _ = server.build_server(lambda: DirectBackend(store))
    refused = _call_all(app, [
        ("memory_capture", {"text": "   "}),  # value: dispatch
        ("memory_capture", {"text": 5}),  # type: the schema
        ("memory_recall", {"cue": "x", "k": 0}),  # bound: the schema
        ("memory_get", {"id": "00000000-0000-0000-0000-000000000000"}),  # not found: the store
        ("memory_forget", {}),  # value: dispatch
    ])
    texts = [r.content[0].text for r in refused]
    assert texts[0] == "invalid_input: memory_capture: 'text' must not be empty"
    assert texts[1] == "invalid_input: memory_capture: 'text' must be a string, got int"
    assert texts[2] == "invalid_input: memory_recall: 'k' must be at least 1"
    assert re.fullmatch(r"not_found: .+", texts[3]) and "Error executing" not in texts[3]
    assert re.fullmatch(r"invalid_input: memory_forget: .+", texts[4]), texts[4]


def test_serve_flags_reach_the_server(monkeypatch):
    import iai_mcp.mcp_server as package
    from iai_mcp.cli import main
    from iai_mcp.mcp_server import http

    seen = []
    monkeypatch.setattr(package, "serve", lambda store, **kw: seen.append(("stdio", kw)))
    monkeypatch.setattr(http, "serve_http", lambda store, where, **kw: seen.append((where, kw)))
    assert main(["serve"]) == 0 and main(["serve", "--expose-embeddings"]) == 0
    assert main(["serve", "--http"]) == 0 and main(["serve", "--http", "[::1]:9000", "--allow-remote"]) == 0
    assert seen == [
        ("stdio", {"expose_embeddings": None}),  # None: IAI_MCP_EXPOSE_EMBEDDINGS decides
        ("stdio", {"expose_embeddings": True}),
        ("", {"allow_remote": False, "expose_embeddings": None}),
        ("[::1]:9000", {"allow_remote": True, "expose_embeddings": None}),
    ]
