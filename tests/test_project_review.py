"""Projects given as paths (issue 10 review): the CLI takes `--project .` or
a subdirectory as the git root memories are stored with, and the stdio MCP
server prefers the project of its working directory in session_start."""
from __future__ import annotations

import json
from datetime import timedelta

import anyio
import pytest
from mcp.shared.memory import create_connected_server_and_client_session

from iai_mcp import mcp_server as server
from iai_mcp.project import as_given
from tests.test_server import DirectBackend


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "src" / "pkg").mkdir(parents=True)
    return root


def _list(cli, *argv):
    code, out, err = cli("list", "--json", *argv)
    assert code == 0, err
    return [item["literal_surface"] for item in json.loads(out)["items"]]


def test_list_project_dot_or_a_subdirectory_matches_the_stored_git_root(cli, repo, monkeypatch):
    assert cli("capture", "billing runs on Postgres", "--project", str(repo))[0] == 0
    assert cli("capture", "elsewhere", "--project", "/somewhere/else")[0] == 0
    monkeypatch.chdir(repo / "src")
    assert _list(cli, "--project", ".") == ["billing runs on Postgres"]
    assert _list(cli, "--project", "pkg") == ["billing runs on Postgres"]  # an existing subdirectory
    assert _list(cli, "--project", str(repo / "src" / "pkg")) == ["billing runs on Postgres"]
    # A capture given `.` stores the git root too.
    assert cli("capture", "said from src", "--project", ".")[0] == 0
    assert set(_list(cli, "--project", str(repo))) == {"billing runs on Postgres", "said from src"}


def test_a_project_that_is_not_a_path_is_kept_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert as_given("billing-service") == "billing-service"
    assert as_given("acme/web") == "acme/web"  # no such directory here: a name, not this root
    assert as_given(".") == str(tmp_path)


def test_session_start_prefers_the_servers_own_project_unless_the_host_names_one(store, monkeypatch, repo):
    backend = DirectBackend(store)
    monkeypatch.chdir(repo / "src")
    app, _ = server.build_server(lambda: backend, project=server.runtime._own_project())

    async def scenario():
        async with create_connected_server_and_client_session(
                app, read_timeout_seconds=timedelta(seconds=30)) as client:
            await client.call_tool("session_start", {})
            await client.call_tool("session_start", {"project": "/other"})

    anyio.run(scenario)
    projects = [params.get("project") for method, params in backend.calls if method == "session_start"]
    assert projects == [str(repo), "/other"]
