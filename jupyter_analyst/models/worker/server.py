"""The HTTP layer: an OpenAI-compatible API on the stdlib server, guarded by a bearer secret.

It only moves JSON: it checks the secret and the body, hands the request to the
``Engine``, and turns failures into OpenAI-style error replies (in-band once a stream has
started) so that one bad request never stops the worker.
"""

from __future__ import annotations

import hmac
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .common import RequestError, log
from .engine import Engine, after_oom, is_oom

MAX_BODY = 64 * 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    """``/health``, ``/v1/models``, ``/v1/chat/completions``; every one needs the bearer secret."""

    server: WorkerServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """TCP_NODELAY: headers and body go out as two writes, and with Nagle's algorithm the
    second waited for the client's delayed ACK, about 40 ms of every non-streamed reply
    (and of each streamed chunk after the first)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log(f"{self.address_string()} {format % args}")

    def _json(self, status: int, payload: dict[str, Any], engine_seconds: float | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if engine_seconds is not None:  # the client tells the HTTP layer's share from it
            self.send_header("Server-Timing", f"engine;dur={engine_seconds * 1000:.2f}")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._json(status, {"error": {"message": message, "type": kind, "code": status}})

    def _authorized(self) -> bool:
        """Check the bearer secret in constant time; answer 401 and return False if wrong."""
        header = self.headers.get("Authorization", "")
        expected = f"Bearer {self.server.secret}".encode()
        if hmac.compare_digest(header.encode(), expected):
            return True
        self._error(401, "missing or wrong bearer token", "authentication_error")
        return False

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if not self._authorized():
            return
        path = self._path()
        engine = self.server.engine
        if path in ("/health", "/v1/health"):
            self._json(
                200,
                {
                    "status": "ok",
                    "model": engine.name,
                    "busy": engine.lock.locked(),
                    "kernels": engine.kernels,
                    "decode": engine.decode_info(),
                },
            )
        elif path in ("/v1/models", "/models"):
            self._json(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": engine.name,
                            "object": "model",
                            "created": self.server.started,
                            "owned_by": "jupyter-analyst",
                        }
                    ],
                },
            )
        else:
            self._error(404, f"no endpoint {path}", "not_found_error")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        if not self._authorized():
            return
        path = self._path()
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no endpoint {path}", "not_found_error")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                raise RequestError(400, "a JSON body with Content-Length is required")
            body = json.loads(self.rfile.read(length))
            if not isinstance(body, dict):
                raise RequestError(400, "the body must be a JSON object")
        except (ValueError, RequestError) as exc:
            self._error(getattr(exc, "status", 400), f"bad request: {exc}")
            return
        if body.get("stream"):
            self._stream(body)
            return
        try:
            t0 = time.perf_counter()
            reply = self.server.engine.complete(body)
            engine_seconds = time.perf_counter() - t0
        except RequestError as exc:
            self._error(exc.status, str(exc), exc.kind)
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the worker
            self._generation_failed(exc)
        else:
            self._json(200, reply, engine_seconds)

    def _generation_failed(self, exc: BaseException) -> None:
        """Answer a failure before any header went out: 507 for out-of-memory, else 500."""
        if is_oom(exc):
            after_oom()
            log(f"out of memory during generation: {exc}")
            self._error(
                507,
                "the model ran out of memory generating this reply; shorten the context or lower max_tokens",
                "out_of_memory",
            )
        else:
            log(f"generation failed: {type(exc).__name__}: {exc}")
            self._error(500, f"generation failed: {type(exc).__name__}: {exc}", "server_error")

    def _stream(self, body: dict[str, Any]) -> None:
        """Send the reply as server-sent events in HTTP/1.1 chunks, so the connection stays
        open for the next step's request (a run makes one per step); failures after the
        headers are sent in-band."""
        chunks = self.server.engine.stream(body)
        try:
            first = next(chunks)  # templating errors surface here, before any header is sent
        except RequestError as exc:
            self._error(exc.status, str(exc), exc.kind)
            return
        except Exception as exc:  # noqa: BLE001
            self._generation_failed(exc)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._send_event(first)
            for item in chunks:
                self._send_event(item)
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")  # the last chunk: the reply is complete, the connection stays
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            log("client went away mid-stream; generation stopped")
        except Exception as exc:  # noqa: BLE001 - headers are out: report in-band
            oom = is_oom(exc)
            if oom:
                after_oom()
            log(f"generation failed mid-stream: {type(exc).__name__}: {exc}")
            msg = "the model ran out of memory generating this reply" if oom else f"generation failed: {exc}"
            try:
                self._send_event(
                    {"error": {"message": msg, "type": "out_of_memory" if oom else "server_error"}}
                )
                self._chunk(b"")
            except OSError:
                self.close_connection = True
        finally:
            chunks.close()

    def _chunk(self, data: bytes) -> None:
        """One HTTP/1.1 chunk (empty: the terminating one), in one write."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _send_event(self, payload: dict[str, Any]) -> None:
        self._chunk(b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n")


class WorkerServer(ThreadingHTTPServer):
    """The listening server; carries the engine and the secret its handlers need."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine: Engine, secret: str) -> None:
        super().__init__(address, Handler)
        self.engine = engine
        self.secret = secret
        self.started = int(time.time())
