"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions protocol, for the server-generator tests.

It answers POST /v1/chat/completions with `answer(messages, body)` as choices[0].message.content (any JSON value:
a number or a list tests the client). `fail_first` requests are answered 503 first (retries must get through),
`status` answers every request with that HTTP status instead, and `delay_s` holds each answer back (timeouts).
`reply` replaces the whole JSON body (e.g. one without content); `mode` misbehaves below HTTP: "trickle" sends
the headers and then one byte every half second until the client hangs up, "not-http" answers a line that is no
HTTP, "short" announces a longer body than it sends. It records every request body it was sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatServer:
    def __init__(self, answer: Callable[[list[dict], dict], object], fail_first: int = 0, status: int | None = None,
                 delay_s: float = 0.0, reply: dict | None = None, mode: str = "json"):
        self.answer, self.fail_first, self.status, self.delay_s = answer, fail_first, status, delay_s
        self.reply, self.mode = reply, mode
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                    failing = server.fail_first > 0
                    server.fail_first -= failing
                if self.path != "/v1/chat/completions":
                    return self._reply(404, {"error": "not found"})
                if server.status is not None or failing:
                    return self._reply(server.status or 503, {"error": "unavailable"})
                time.sleep(server.delay_s)
                if server.mode != "json":
                    return self._misbehave(server.mode)
                content = server.answer(body["messages"], body)
                self._reply(200, server.reply if server.reply is not None else {
                    "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "finish_reason": "stop"}]})

            def _misbehave(self, mode: str):
                try:
                    if mode == "not-http":
                        self.wfile.write(b"hello, this is no web server\r\n\r\n")
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    if mode == "short":
                        self.wfile.write(b'{"choices": [')  # and the connection closes
                        return
                    while True:  # trickle: a byte every half second, for as long as the client listens
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.5)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _reply(self, status: int, data: dict):
                payload = json.dumps(data).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "ChatServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
