"""The embedded worker's HTTP layer: its share of a request, with and without TCP_NODELAY.

Not a test: prints figures measured in one run. One tiny local model (built here, no
download) behind two ``WorkerServer``s in this process, the worker's own handler and the
same handler with Nagle's algorithm back on (the layer before the fix, the baseline of
the ratios). Each gets the same requests from one keep-alive client: non-streamed and
streamed, ``max_tokens`` 1 and 16. The engine's own time comes from the reply's
``Server-Timing`` header (non-streamed); the rest of the request is the HTTP layer.

    python benchmarks/worker_http.py [--requests 40]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from jupyter_analyst.models.worker.engine import Engine
from jupyter_analyst.models.worker.server import Handler, WorkerServer
from jupyter_analyst.testing.tiny_model import build_tiny_model

SECRET = "bench-secret"
MESSAGES = [{"role": "user", "content": "Describe the data in one short sentence."}]


class NagleHandler(Handler):
    """The handler as it was: headers and body in two writes, Nagle's algorithm on."""

    disable_nagle_algorithm = False


def serve(engine: Engine, handler: type[Handler]) -> WorkerServer:
    server = WorkerServer(("127.0.0.1", 0), engine, SECRET)
    server.RequestHandlerClass = handler
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def timed(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[float, float | None]:
    """(seconds for the whole request, the engine's seconds when the server says)."""
    t0 = time.perf_counter()
    if body.get("stream"):
        with client.stream("POST", url, json=body) as response:
            for _ in response.iter_lines():
                pass
        return time.perf_counter() - t0, None
    response = client.post(url, json=body)
    total = time.perf_counter() - t0
    response.raise_for_status()
    timing = response.headers.get("server-timing", "")
    engine = float(timing.split("dur=")[1]) / 1000 if "dur=" in timing else None
    return total, engine


def measure(server: WorkerServer, body: dict[str, Any], n: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions"
    with httpx.Client(headers={"Authorization": f"Bearer {SECRET}"}, timeout=120) as client:
        timed(client, url, body)  # warm up: connection, caches
        runs = [timed(client, url, body) for _ in range(n)]
    totals = [t for t, _ in runs]
    engines = [e for _, e in runs if e is not None]
    out = {"total_ms": statistics.median(totals) * 1000}
    if engines:
        out["engine_ms"] = statistics.median(engines) * 1000
        out["http_ms"] = out["total_ms"] - out["engine_ms"]
        out["http_share"] = out["http_ms"] / out["total_ms"]
    return out


def compare(engine: Engine, requests: int, out: Any = None) -> list[dict[str, Any]]:
    """Both servers, the four request kinds; one row per kind (printed as it goes)."""
    servers = {
        "TCP_NODELAY (the worker)": serve(engine, Handler),
        "Nagle (before)": serve(engine, NagleHandler),
    }
    rows = []
    try:
        for stream in (False, True):
            for max_tokens in (1, 16):
                body = {"messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0, "stream": stream}
                print(f"\n{'streamed' if stream else 'non-streamed'}, max_tokens {max_tokens}", file=out)
                figures = {name: measure(server, body, requests) for name, server in servers.items()}
                for name, f in figures.items():
                    line = f"  {name:26} {f['total_ms']:8.1f} ms"
                    if "http_ms" in f:
                        http = f"HTTP {f['http_ms']:.1f} ms = {f['http_share']:.0%}"
                        line += f"  (engine {f['engine_ms']:.1f} ms, {http})"
                    print(line, file=out)
                new, old = (figures[n] for n in servers)
                print(f"  before/now: {old['total_ms'] / new['total_ms']:.2f}x", file=out)
                rows.append({"stream": stream, "max_tokens": max_tokens, "now": new, "before": old})
    finally:
        for server in servers.values():
            server.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_model(Path(tmp) / "tiny")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder)
        engine = Engine(tokenizer, model, "tiny", max_new_tokens=16, enable_thinking=False)
        print(f"median of {args.requests} requests each, one keep-alive client, tiny local model")
        compare(engine, args.requests)


if __name__ == "__main__":
    main()
