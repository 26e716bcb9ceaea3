"""The stdio transport: JSON-RPC lines on stdin, replies on stdout.

Our own reader and writer, not the SDK's ``stdio_server``, for two reasons:

- A line the SDK cannot read gets no reply from it; here it gets a JSON-RPC
  error reply and one log line (see ``messages.parse_line``).
- ``stdio_server()`` reads stdin on a worker thread that a cancelled task
  still waits for (see ``_StdinLines``), so SIGTERM would not stop it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any, BinaryIO

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from mcp.server.lowlevel import Server
from mcp.shared.message import SessionMessage
from iai_mcp.log import logger
from iai_mcp.mcp_server.messages import parse_line

__all__ = ["claim_stdout", "serve_stdio"]

_log = logger("iai_mcp.mcp_server")


class _StdinLines:
    """Lines of stdin, as bytes, read on a daemon thread.

    ``FastMCP.run_stdio_async`` (and ``stdio_server()`` without a ``stdin``)
    reads stdin through ``anyio.wrap_file``, on a worker thread that a
    cancelled task still waits for (modelcontextprotocol/python-sdk#3551):
    measured with mcp 1.30, a bare ``run_stdio_async`` sent SIGTERM while its
    stdin pipe stayed open was still running 10 s later and left only when
    stdin closed. This reader hands lines over a memory stream, which
    shutdown cancels at once; its thread is a daemon, abandoned at exit.
    """

    def __init__(self, fd: int = 0) -> None:
        self._fd = fd
        self._send, self._receive = anyio.create_memory_object_stream[bytes](16)

    def start(self) -> None:
        token = anyio.lowlevel.current_token()
        threading.Thread(target=self._pump, args=(token,), name="iai-mcp-stdin", daemon=True).start()

    def _pump(self, token: Any) -> None:
        pending = b""
        try:
            while chunk := os.read(self._fd, 65536):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    anyio.from_thread.run(self._send.send, line, token=token)
            if pending.strip():
                anyio.from_thread.run(self._send.send, pending, token=token)
        except Exception:
            pass  # the loop has finished or the stream was closed: nobody is reading
        finally:
            with contextlib.suppress(Exception):
                anyio.from_thread.run_sync(self._send.close, token=token)

    def __aiter__(self) -> _StdinLines:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


async def _read(lines: _StdinLines, to_server: ObjectSendStream[SessionMessage | Exception],
                to_client: ObjectSendStream[SessionMessage | str]) -> None:
    async with to_server, to_client:
        async for line in lines:
            if not line.strip():
                continue
            parsed = parse_line(line)
            if isinstance(parsed, str):
                _log.warning("unreadable_message", reply=parsed, bytes=len(line))
                await to_client.send(parsed)
            else:
                await to_server.send(SessionMessage(parsed))


async def _write(replies: ObjectReceiveStream[SessionMessage | str], out: BinaryIO) -> None:
    async with replies:
        async for reply in replies:
            text = reply if isinstance(reply, str) else reply.message.model_dump_json(by_alias=True, exclude_none=True)
            await anyio.to_thread.run_sync(_write_line, out, text.encode("utf-8"))


def _write_line(out: BinaryIO, data: bytes) -> None:
    out.write(data + b"\n")
    out.flush()


def claim_stdout() -> BinaryIO:
    """Keep the real stdout for JSON-RPC and point fd 1 at stderr, so a stray
    print (ours or a native library's) can never corrupt the protocol."""
    rpc = os.fdopen(os.dup(1), "wb")
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return rpc


async def serve_stdio(server: Server, rpc_out: BinaryIO) -> None:
    """``server.run`` over stdio until stdin closes, SIGTERM or SIGINT; either
    way ``server.run`` leaves through its lifespan's ``finally``."""
    stdin = _StdinLines()
    stdin.start()
    to_server, from_client = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    to_client, replies = anyio.create_memory_object_stream[SessionMessage | str](0)
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    _log("shutdown", signal=signal.Signals(signum).name)
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(stop_on_signal)
        tg.start_soon(_read, stdin, to_server, to_client.clone())
        tg.start_soon(_write, replies, rpc_out)
        async with to_client:
            await server.run(from_client, to_client, server.create_initialization_options())
        tg.cancel_scope.cancel()
