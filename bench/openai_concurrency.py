"""OpenAIAgent: one `act` call for 32 conversations, 1 / 4 / 16 / 32 requests in flight, against a local
chat-completions server that answers each request after 100 ms (a model's latency, no compute).

    python bench/openai_concurrency.py
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from turngym.agents.openai import OpenAIAgent

LATENCY_S = 0.1
CONVERSATIONS = 32
REPEATS = 3


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(LATENCY_S)
        data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "look"}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default listen backlog of 5 drops bursts of connections
    daemon_threads = True


def main() -> None:
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    conversations = [[{"role": "user", "content": f"observation {i}"}] for i in range(CONVERSATIONS)]
    print(f"{CONVERSATIONS} conversations per act() call, server latency {LATENCY_S * 1000:.0f} ms")
    print(f"{'max_concurrency':>16} {'s per act (best of 3)':>22} {'requests/s':>11} {'speedup':>8}")
    baseline = None
    for concurrency in (1, 4, 16, 32):
        with OpenAIAgent("bench", base_url=base_url, max_concurrency=concurrency) as agent:
            agent.act(conversations[:concurrency])  # open the connections
            best = float("inf")
            for _ in range(REPEATS):
                start = time.perf_counter()
                actions = agent.act(conversations)
                best = min(best, time.perf_counter() - start)
            assert actions == ["look"] * CONVERSATIONS
        baseline = baseline or best
        print(f"{concurrency:>16} {best:>22.3f} {CONVERSATIONS / best:>11.1f} {baseline / best:>7.1f}x")
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
