"""Reading one JSON-RPC message, or saying why it cannot be read.

Both transports take what a client sends through ``parse_line``: stdio one
line at a time, HTTP one request body at a time. The SDK's own readers turn
an unreadable message into an exception that no client ever sees (stdio: a
log notification and no reply; HTTP: a request whose reply then fails to
serialise, answered with an empty body), so a client waits for an answer
that never comes. Here such a message gets a JSON-RPC error reply with the
request's id (``null`` when even that is unreadable, as JSON-RPC prescribes
for a parse error).

Unreadable means: not UTF-8 (decoded strictly: replacing invalid bytes with
U+FFFD would store words the user never said in a verbatim memory), a lone
surrogate escape such as ``"\\ud800"`` (valid JSON syntax, not Unicode, and
it cannot be written back out), broken JSON, or JSON that is no JSON-RPC
message.
"""
from __future__ import annotations

import json
from typing import Any

import mcp.types as mcp_types
from pydantic import ValidationError

__all__ = ["parse_line"]


def parse_line(line: bytes) -> mcp_types.JSONRPCMessage | str:
    """The message on ``line``, or, if it cannot be read, the error reply to
    send instead (already serialised)."""
    try:
        return mcp_types.JSONRPCMessage.model_validate_json(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        problem = f"the message is not valid UTF-8 (byte 0x{line[exc.start]:02x} at offset {exc.start})"
        code = mcp_types.PARSE_ERROR
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        code = mcp_types.PARSE_ERROR if first["type"] == "json_invalid" else mcp_types.INVALID_REQUEST
        if code == mcp_types.INVALID_REQUEST:
            problem = "the message is not a JSON-RPC 2.0 request, notification or response"
        elif _lenient_json(line) is not None:
            # The standard library reads what pydantic refused: only a lone
            # surrogate escape (valid JSON syntax, not valid Unicode) does that.
            problem = "the message holds a lone surrogate (a \\ud800-\\udfff escape without its pair), which is not valid Unicode"
        else:
            problem = f"the message is not valid JSON: {first['msg'].removeprefix('Invalid JSON: ')}"
    return _error_reply(_request_id(line), code, problem + "; send each JSON-RPC message as UTF-8 JSON")


def _lenient_json(line: bytes) -> Any:
    """``line`` parsed by the standard library, which accepts lone surrogate
    escapes; None if even that fails."""
    try:
        return json.loads(line.decode("utf-8", "replace"))
    except ValueError:
        return None


def _request_id(line: bytes) -> str | int | None:
    """The id of the request on an unreadable ``line``, if it can be told."""
    message = _lenient_json(line)
    rid = message.get("id") if isinstance(message, dict) else None
    if isinstance(rid, bool) or not isinstance(rid, (int, str)):
        return None
    if isinstance(rid, str):
        try:
            rid.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return rid


def _error_reply(rid: str | int | None, code: int, message: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}})
