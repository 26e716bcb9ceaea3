"""serve --http on a loopback address other than 127.0.0.1 (issue 12 review):
127.0.0.2 is accepted as loopback, so requests to it must not be refused by
the Host/Origin check (they were answered 421)."""
from __future__ import annotations

from starlette.testclient import TestClient

from iai_mcp.mcp_server import build_server, http
from tests.test_server import DirectBackend

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}


def test_the_bound_loopback_address_is_an_allowed_host_and_origin():
    settings = http.security_settings(http.parse_address("127.0.0.2:9000"), 9000)
    assert "127.0.0.2:9000" in settings.allowed_hosts and "http://127.0.0.2:9000" in settings.allowed_origins
    assert "127.0.0.1:9000" in settings.allowed_hosts  # the usual loopback names still work
    assert len(settings.allowed_hosts) == len(set(settings.allowed_hosts))


def _post(client, host, origin=None):
    headers = {"Host": host, "Authorization": "Bearer t0ken", "Accept": "application/json, text/event-stream",
               "Content-Type": "application/json", **({"Origin": origin} if origin else {})}
    return client.post("/mcp", json=INITIALIZE, headers=headers)


def test_a_request_to_127_0_0_2_is_answered_and_a_foreign_host_is_not(store):
    address = http.parse_address("127.0.0.2:9000")
    server, slot = build_server(lambda: DirectBackend(store), close_after_run=False)
    app = http.build_app(server, slot, "t0ken", address, 9000)
    with TestClient(app, base_url="http://127.0.0.2:9000") as client:
        answered = _post(client, "127.0.0.2:9000", origin="http://127.0.0.2:9000")
        assert answered.status_code == 200, answered.text
        assert "serverInfo" in answered.text
        assert _post(client, "evil.example:9000").status_code == 421
        assert _post(client, "127.0.0.2:9000", origin="http://evil.example").status_code == 403
