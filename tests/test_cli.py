"""The iai-mcp command: every subcommand, --json, errors as one line and a
non-zero exit, and light imports for --help."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from iai_mcp.cli import build_parser, main

COMMANDS = ["serve", "capture", "recall", "show", "stats", "export", "import", "doctor",
            "compact", "hooks", "hook", "daemon",
            "forget", "restore", "pin", "unpin", "tag",  # forgetting and correcting (issue 9)
            "supersede", "list", "tags",
            "import-transcripts",  # backfill (issue 11)
            "init"]  # issue 11: the one command besides capture, import and serve that creates a store
COMMANDS += ["ui"]  # the web viewer (issue 12)


def _subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAI_MCP_")}
    return {**env, **extra}


def test_the_command_set_is_pinned():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: iai-mcp {command}") and len(out.splitlines()) > 2


@pytest.mark.parametrize("command,method,positional,left_out", [
    ("capture", "memory_capture", "text", {"text"}),
    ("recall", "memory_recall", "cue", {"cue", "cue_embedding"}),
])
def test_method_options_come_from_the_contract(command, method, positional, left_out):
    from typing import get_args

    from iai_mcp.core import contract
    from iai_mcp.types import Role, Tier

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parser = sub.choices[command]
    parser.format_help()  # the contract's options are added on first use
    options = {a.dest: a for a in parser._actions if a.option_strings}
    fields = contract.method(method).params.model_fields
    assert set(fields) - left_out <= set(options)
    assert options["tier"].choices == list(get_args(Tier))
    assert options["tags"].option_strings == ["--tag"] and options["tags"].metavar == "TAG"
    for name in set(fields) - left_out:
        action, field = options[name], fields[name]
        assert action.default is None or action.default is False  # unset: the contract's default applies
        assert action.help.startswith(field.description.rstrip(".").split(";")[0])
        if field.default not in (None, False):
            assert f"(default {field.default})" in action.help
    if command == "capture":
        assert options["role"].choices == list(get_args(Role))
    else:
        assert options["k"].type is int and options["budget_tokens"].type is int


def test_help_and_usage_errors_load_nothing_heavy():
    script = textwrap.dedent("""
        import json, sys
        from iai_mcp.cli import main
        codes = []
        for argv in (["--help"], ["serve", "--help"], ["doctor", "--help"], ["frobnicate"]):
            try:
                main(argv)
            except SystemExit as exc:
                codes.append(exc.code)
        # What a hook runs on every turn parses without the method contract.
        from iai_mcp.cli import build_parser
        build_parser().parse_args(["hook", "stop"])
        build_parser().parse_args(["import", "-", "--batch-size", "10"])
        heavy = ("lancedb", "onnxruntime", "pyarrow", "tokenizers", "numpy", "mcp", "pydantic")
        print(json.dumps({"codes": codes, "loaded": [m for m in heavy if m in sys.modules]}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=_subprocess_env(), timeout=60)
    result = json.loads(done.stdout.splitlines()[-1])
    assert result == {"codes": [0, 0, 0, 2], "loaded": []}


def test_errors_are_one_line_with_a_non_zero_exit(tmp_path):
    env = _subprocess_env(IAI_MCP_STORE=str(tmp_path / "s"), IAI_MCP_LOCAL="1", IAI_MCP_TEST_EMBEDDER="hash")
    subprocess.run([sys.executable, "-m", "iai_mcp", "init"], capture_output=True, env=env, timeout=60, check=True)
    done = subprocess.run([sys.executable, "-m", "iai_mcp", "show", "not-a-uuid"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert lines == ["iai-mcp: error: memory_get: 'id' must be a record id (a UUID)"]
    usage = subprocess.run([sys.executable, "-m", "iai_mcp", "recall"], capture_output=True,
                           text=True, env=env, timeout=60)
    assert usage.returncode == 2 and "the following arguments are required: CUE" in usage.stderr


def test_capture_recall_show(cli):
    code, out, _ = cli("capture", "Alice adopted a beagle named Max", "--session-id", "s1",
                       "--role", "user", "--tag", "pets", "--tag", "alice")
    assert code == 0 and out.startswith("inserted ")
    rid = out.split()[1].rstrip(":")
    code, out, _ = cli("capture", "Alice adopted a beagle named Max", "--session-id", "s2", "--json")
    assert json.loads(out)["status"] == "reinforced" and json.loads(out)["record_id"] == rid
    cli("capture", "The quarterly report is due Friday")
    code, out, _ = cli("recall", "beagle named Max", "--k", "1", "--session-id", "r1")
    assert code == 0 and rid in out and "    Alice adopted a beagle named Max" in out
    code, out, _ = cli("recall", "beagle", "--json", "--tag", "pets")
    hits = json.loads(out)["hits"]
    assert [h["record_id"] for h in hits] == [rid]
    code, out, _ = cli("show", rid)
    assert code == 0
    assert "tags: pets, alice" in out and "reinforcements: 1" in out  # issue 11: no Python reprs
    assert 'recalled by cue "beagle named Max" in session r1' in out
    assert "provenance (2):" in out
    code, out, _ = cli("show", rid, "--json")
    record = json.loads(out)
    assert record["literal_surface"] == "Alice adopted a beagle named Max"
    assert [p["cue"] for p in record["provenance"]] == ["beagle named Max", "beagle"]


def test_capture_reads_stdin_for_dash_or_no_text(cli):
    code, out, _ = cli("capture", "-", "--json", stdin="line one\n  line two\n")
    assert code == 0
    rid = json.loads(out)["record_id"]
    cli("capture", stdin="from a pipe\n")
    code, out, _ = cli("show", rid, "--json")
    assert json.loads(out)["literal_surface"] == "line one\n  line two"
    code, out, _ = cli("recall", "from a pipe", "--json")
    assert json.loads(out)["hits"][0]["literal_surface"] == "from a pipe"


def test_capture_rejects_empty_text_and_writes_nothing(cli):
    code, out, err = cli("capture", "-", stdin="   \n")
    assert code == 1 and out == "" and err == "iai-mcp: error: memory_capture: 'text' must not be empty\n"
    code, out, _ = cli("stats", "--json")
    assert json.loads(out)["records"] == 0


def test_recall_on_an_empty_store(cli):
    cli("init")
    code, out, _ = cli("recall", "anything")
    assert (code, out) == (0, "no memories found\n")


def test_stats_and_compact(cli):
    for text in ("one", "two", "three"):
        cli("capture", text)
    code, out, _ = cli("stats")
    assert code == 0 and "memories: 3" in out and "lancedb: " in out and "embedder: hash-embedder-v1" in out
    stats = json.loads(cli("stats", "--json")[1])
    assert stats["records"] == 3 and stats["disk_bytes"] > 0 and stats["versions"] > 1
    code, out, _ = cli("compact")
    assert code == 0 and out.startswith(f"versions: {stats['versions']} -> 1;")
    assert json.loads(cli("compact", "--json")[1])["versions_after"] == 1


def test_export_needs_plaintext_and_says_so(cli, tmp_path):
    cli("capture", "secret-ish diary entry")
    target = tmp_path / "out.jsonl"
    code, out, err = cli("export", "-o", str(target))
    assert code == 1 and out == "" and "pass --plaintext" in err and len(err.splitlines()) == 1
    assert not target.exists()
    code, out, err = cli("export", "--plaintext", "-o", str(target))
    assert code == 0 and out == ""
    assert err == f"iai-mcp: wrote 1 memory IN PLAINTEXT to {target}\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert json.loads(target.read_text())["text"] == "secret-ish diary entry"
    code, out, err = cli("export", "--plaintext")
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["secret-ish diary entry"]
    assert "IN PLAINTEXT to stdout" in err


def test_export_import_round_trip_and_reimport_is_skipped(cli, tmp_path):
    texts = [f"memory number {i}" for i in range(7)]
    for i, text in enumerate(texts):
        cli("capture", text, "--session-id", "s", "--ts", f"2024-02-0{i + 1}T00:00:00Z")
    cli("recall", "memory number 3", "--k", "1")
    dump = tmp_path / "dump.jsonl"
    cli("export", "--plaintext", "-o", str(dump))
    other = str(tmp_path / "other")
    code, out, _ = cli("--store", other, "import", str(dump), "--batch-size", "3")
    assert code == 0 and out == "imported 7 records: 7 inserted, 0 reinforced, 0 skipped\n"
    code, out, _ = cli("--store", other, "import", str(dump), "--json")
    assert json.loads(out) == {"records": 7, "format": "iai-mcp", "dry_run": False,
                               "inserted": 0, "reinforced": 0, "skipped": 7}
    code, out, _ = cli("--store", other, "export", "--plaintext")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in records] == texts
    assert [p["cue"] for p in records[3]["provenance"]] == ["memory number 3"]


def test_import_with_a_bad_line_imports_nothing(cli, tmp_path):
    cli("init")
    good = json.dumps({"text": "fine"})
    for content, message in [
        (f"{good}\nnot json\n", "line 2: not JSON"),
        (f"{good}\n{good}\n{json.dumps({'text': 'x', 'tier': 'cosmic'})}\n", "line 3: 'tier' must be one of"),
    ]:
        path = tmp_path / "bad.jsonl"
        path.write_text(content)
        code, out, err = cli("import", str(path), "--batch-size", "2")
        assert code == 1 and message in err and len(err.splitlines()) == 1
        assert json.loads(cli("stats", "--json")[1])["records"] == 0


def test_import_reads_stdin(cli):
    code, out, _ = cli("import", "-", stdin=json.dumps({"text": "via stdin"}) + "\n\n")
    assert code == 0 and "1 inserted" in out


def test_doctor_passes_on_a_fresh_store(cli):
    # IAI_MCP_STORE names the store: doctor creates it only with --init (issue 11 review).
    code, out, _ = cli("doctor", "--init")
    assert code == 0
    names = [line.split(":")[0] for line in out.splitlines()]
    assert names == ["PASS store", "PASS provenance", "PASS key", "PASS embedder", "PASS spill", "PASS journal",
                     "PASS versions", "PASS modes", "PASS daemon"]
    assert (cli.store / "meta.json").exists()  # the first run created the store
    checks = json.loads(cli("doctor", "--json")[1])
    assert {c["status"] for c in checks} == {"PASS"}


def test_doctor_fails_on_a_readable_key_file(cli):
    cli("capture", "x")
    (cli.store / "key").chmod(0o644)
    code, out, _ = cli("doctor")
    assert code == 1
    assert any(line.startswith("FAIL key:") and "chmod 600" in line for line in out.splitlines())


def test_doctor_repair_asks_then_fixes_the_key_mode(cli, monkeypatch):
    cli("capture", "x")
    (cli.store / "key").chmod(0o644)
    code, out, err = cli("doctor", "--repair", stdin="")
    assert code == 2 and "--yes" in err
    assert (cli.store / "key").stat().st_mode & 0o777 == 0o644  # nothing changed without consent
    code, out, _ = cli("doctor", "--repair", "--yes")
    assert code == 0 and "made the key file mode 0600" in out
    assert (cli.store / "key").stat().st_mode & 0o777 == 0o600
    assert cli("doctor")[0] == 0
    assert cli("doctor", "--repair")[1].strip().splitlines()[-1] == "nothing to repair"


def test_doctor_fails_when_the_key_is_gone(cli):
    cli("capture", "x")
    (cli.store / "key").unlink()
    code, out, _ = cli("doctor")
    assert code == 1 and out.splitlines()[0].startswith("FAIL store: key file")


@pytest.mark.slow
def test_daemon_run_status_stop_and_a_thin_client(tmp_path, capsys, monkeypatch):
    """`daemon run` serves the store; a client process (doctor) reaches it
    without loading LanceDB or the model; `daemon stop` ends it."""
    store = tmp_path / "store"
    monkeypatch.setenv("IAI_MCP_STORE", str(store))
    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    env = _subprocess_env(IAI_MCP_STORE=str(store), IAI_MCP_TEST_EMBEDDER="hash")
    assert main(["daemon", "status"]) == 0 and capsys.readouterr().out == "not running\n"
    proc = subprocess.Popen([sys.executable, "-m", "iai_mcp", "daemon", "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        from iai_mcp.daemon import lifecycle as daemon

        start = time.monotonic()
        while daemon.status(store) is None:  # bounded wait for it to listen
            assert proc.poll() is None and time.monotonic() - start < 60
            time.sleep(0.05)
        assert main(["daemon", "status", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["pid"] == proc.pid
        script = textwrap.dedent("""
            import json, sys
            from iai_mcp.cli import main
            code = main(["doctor"])
            heavy = [m for m in ("lancedb", "onnxruntime", "numpy") if m in sys.modules]
            print(json.dumps({"code": code, "heavy": heavy}))
        """)
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=60)
        *lines, last = done.stdout.splitlines()
        assert json.loads(last) == {"code": 0, "heavy": []}
        assert f"PASS daemon: running: pid={proc.pid}" in "\n".join(lines)
        assert main(["daemon", "stop"]) == 0 and capsys.readouterr().out == "stopped\n"
        assert proc.wait(timeout=30) == 0
        assert main(["daemon", "stop"]) == 0 and capsys.readouterr().out == "no daemon was running\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stderr.close()



def test_export_to_a_file_never_truncates_on_failure_and_is_owner_only(cli, tmp_path):
    backup = tmp_path / "backup.jsonl"
    backup.write_text("yesterday's backup\n")
    backup.chmod(0o644)
    cli("capture", "a memory worth keeping")
    key = cli.store / "key"
    saved = key.read_bytes()
    key.unlink()
    code, _, err = cli("export", "--plaintext", "-o", str(backup))
    assert code == 1 and "key" in err
    assert backup.read_text() == "yesterday's backup\n"
    key.write_bytes(saved)
    key.chmod(0o600)
    code, _, _ = cli("export", "--plaintext", "-o", str(backup))
    assert code == 0
    assert backup.stat().st_mode & 0o777 == 0o600
    assert json.loads(backup.read_text().splitlines()[0])["text"] == "a memory worth keeping"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_purge_after_confirmation_erases_only_the_memories_it_showed(cli, monkeypatch, capsys):
    import builtins
    import io

    from iai_mcp import backend as backend_module

    _, out, _ = cli("capture", "my PIN is 4821", "--session-id", "leaky", "--json")
    shown = json.loads(out)["record_id"]
    opened = []
    real_connect = backend_module.connect
    monkeypatch.setattr(backend_module, "connect", lambda *a, **k: opened.append(real_connect(*a, **k)) or opened[-1])
    late = []

    def answer(prompt):
        # While the question is on screen, another window captures into the same session.
        late.append(opened[-1].call("memory_capture", {"text": "said after the preview", "session_id": "leaky"}))
        return "y"

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(builtins, "input", answer)
    monkeypatch.setattr(sys, "stdin", Tty())
    assert main(["forget", "--session-id", "leaky", "--mode", "purge"]) == 0
    out = capsys.readouterr().out
    assert "purged 1 of 1" in out and late[0]["record_id"] not in out
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["show", shown]) == 1
    assert main(["show", late[0]["record_id"]]) == 0  # captured after the preview: kept
