"""Capture only what was said (issue 11): Claude Code's own markup in a
transcript is not a memory. One fixture per case, in Claude Code's JSONL
format, each with real turns around the markup."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from iai_mcp import hooks
from iai_mcp.store import MemoryStore

CASES = Path(__file__).parent / "data" / "transcripts" / "claude-code"

EXPECTED = {
    # <command-name>/model</command-name> ... and its <local-command-stdout> (the caveat is isMeta).
    "slash-command": [
        ("user", "Use Postgres 16 for the new service."),
        ("assistant", "Understood: the new service targets Postgres 16."),
        ("user", "Which migration tool do we use?"),
        ("assistant", "Alembic, configured in migrations/env.py."),
    ],
    # "[Request interrupted by user]" and "... for tool use".
    "interrupted": [
        ("user", "Rename the package to billing_core everywhere."),
        ("user", "Only in src/, leave the docs alone."),
        ("assistant", "Renamed in src/ only; docs untouched."),
    ],
    # The summary Claude Code writes after /compact (isCompactSummary).
    "compact-summary": [
        ("user", "The staging database lives on db-staging-2."),
        ("user", "Now point the app at it."),
        ("assistant", "Done: DATABASE_URL now points at db-staging-2."),
    ],
    # <system-reminder> blocks are cut out; the person's words stay, verbatim.
    "system-reminder": [
        ("user", "Lower the request timeout to 5 seconds."),
        ("assistant", "Set REQUEST_TIMEOUT = 5 in settings.py."),
        ("user", "And the retries to 2."),
        ("assistant", "MAX_RETRIES is now 2."),
    ],
    # "API Error: 529 ..." written as an assistant turn (isApiErrorMessage).
    "api-error": [
        ("user", "Deploy windows are Tuesdays after 14:00."),
        ("assistant", "Noted: deploys on Tuesdays after 14:00."),
        ("user", "Retry the last step."),
        ("assistant", "Retried: the release is tagged v2.3.1."),
    ],
    # A "!" shell passthrough: <bash-input>, then <bash-stdout>/<bash-stderr>.
    "bash-passthrough": [
        ("user", "The release branch is release/2.4."),
        ("assistant", "Noted: release/2.4 is the release branch."),
        ("user", "Add a lint target to the Makefile."),
        ("assistant", "Added `lint: ruff check src tests` to the Makefile."),
    ],
    # The note a finished background task leaves as a user turn.
    "task-notification": [
        ("user", "Run the integration suite in the background."),
        ("assistant", "Started the integration suite in the background."),
        ("assistant", "The integration suite passed: 212 tests, no failures."),
    ],
    # What a UserPromptSubmit hook added to the prompt (the person's words stay).
    "prompt-hook": [
        ("user", "Bump the API version to v3."),
        ("assistant", "API_VERSION is now v3 in config.py."),
    ],
    # Turns Claude Code writes in the model's place (message.model "<synthetic>").
    "synthetic": [
        ("user", "Our staging region is eu-west-3."),
        ("user", "Deploy the worker there."),
        ("user", "Try again."),
        ("assistant", "Deployed the worker to eu-west-3."),
    ],
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_claude_code_markup_is_not_captured(case):
    turns, end = hooks.read_turns(CASES / f"{case}.jsonl")
    assert [(t.role, t.text) for t in turns] == EXPECTED[case]
    assert end == (CASES / f"{case}.jsonl").stat().st_size


def test_every_fixture_has_its_case():
    assert {p.stem for p in CASES.glob("*.jsonl")} == set(EXPECTED)


def test_words_around_markup_keep_their_own_text():
    """Only a whole markup block goes: a turn that merely mentions a tag, or
    has no markup, is kept exactly as written (verbatim)."""
    from iai_mcp.hooks.claude_code import said_by_user

    plain = "  Why does <system-reminder> show up in my logs?\n"
    assert said_by_user(plain) == plain
    assert said_by_user("[Request interrupted by user] was shown, why?") == "[Request interrupted by user] was shown, why?"
    assert said_by_user("Keep it.<system-reminder>x</system-reminder>") == "Keep it."


def test_the_stop_hook_stores_only_what_was_said(cli, tmp_path):
    transcript = tmp_path / "s.jsonl"
    transcript.write_bytes((CASES / "system-reminder.jsonl").read_bytes() + (CASES / "slash-command.jsonl").read_bytes())
    payload = {"session_id": "s", "transcript_path": str(transcript), "hook_event_name": "Stop"}
    code, out, err = cli("hook", "stop", "--json", stdin=json.dumps(payload))
    assert code == 0, err
    assert json.loads(out)["inserted"] == len(EXPECTED["system-reminder"]) + len(EXPECTED["slash-command"])
    with MemoryStore(path=cli.store) as store:
        texts = sorted(r.literal_surface for r in store.rows())
    assert texts == sorted(t for _, t in EXPECTED["system-reminder"] + EXPECTED["slash-command"])
