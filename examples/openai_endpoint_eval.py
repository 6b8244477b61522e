"""Evaluate an OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, ...) on the Household env.

    python examples/openai_endpoint_eval.py --base-url http://localhost:8000/v1 --model Qwen/Qwen2.5-7B-Instruct
    OPENAI_API_KEY=sk-... python examples/openai_endpoint_eval.py --model gpt-4o-mini
    python examples/openai_endpoint_eval.py --tiny     # seconds, offline: a scripted local "model"

`--tiny` starts a small chat-completions server on 127.0.0.1 whose "model" reads the conversation,
recognises the episode from its text and answers with the env's scripted expert action. It shows
the whole path (HTTP requests, parsing, the eval table with 95% intervals) without a real model;
it talks to 127.0.0.1 only and stops with the script.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import turngym
from turngym.agents.openai import OpenAIAgent
from turngym.agents.sampling import SamplingConfig
from turngym.cli import print_result

ENV_ID = "turngym/HouseholdEasy-v0"
SPLIT = "test"  # turngym.evaluate plays held-out test tasks


# ---- the scripted "model" behind the local server (only for --tiny) ------------------------------


class ExpertModel:
    """Answers a conversation with the expert's next action. It sees only the messages, as a real
    model does: it finds which eval episode they belong to by replaying the conversation's actions
    on each candidate seed and keeping the one whose observations match the conversation's."""

    def __init__(self, env_id: str, seeds: Sequence[int]) -> None:
        self.env = turngym.make(env_id)
        self.seeds_by_first_observation: dict[str, list[int]] = {}
        for seed in seeds:
            observation, _ = self.env.reset(seed=seed, options={"split": SPLIT})
            self.seeds_by_first_observation.setdefault(observation, []).append(seed)
        self.lock = threading.Lock()  # one env, many server threads

    def reply(self, messages: list[dict[str, str]]) -> str:
        observations = [m["content"] for m in messages if m["role"] == "user"]
        actions = [m["content"] for m in messages if m["role"] == "assistant"]
        with self.lock:
            for seed in self.seeds_by_first_observation.get(observations[0], []):
                replayed = [self.env.reset(seed=seed, options={"split": SPLIT})[0]]
                replayed += [self.env.step(action)[0] for action in actions]
                if replayed == observations:
                    return self.env.unwrapped.expert_action()
        return "look"  # not an episode it knows: a harmless action


def start_local_server(model: ExpertModel) -> tuple[ThreadingHTTPServer, list[int]]:
    """`POST /v1/chat/completions` on 127.0.0.1 (a free port) in a daemon thread; returns the server
    and a one-element list counting the requests it answered."""
    served = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the agent's pooled client expects

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions":
                status, payload = 404, {"error": {"message": f"no route {self.path}"}}
            else:
                content = model.reply(body["messages"])
                message = {"role": "assistant", "content": content}
                status = 200
                payload = {
                    "id": f"local-{served[0]}",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                }
                served[0] += 1
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # no access log on stderr
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, served


# ---- the evaluation: what you run against a real endpoint ---------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base-url", default=os.environ.get("OPENAI_BASE_URL"), help="e.g. http://localhost:8000/v1"
    )
    parser.add_argument(
        "--model", default=os.environ.get("OPENAI_MODEL"), help="the model name the endpoint serves"
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("OPENAI_API_KEY"), help="default: $OPENAI_API_KEY"
    )
    parser.add_argument("--episodes", type=int, default=100, help="held-out episodes (seeds 0..N-1)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    parser.add_argument("--tiny", action="store_true", help="scripted local server, 8 episodes (seconds)")
    args = parser.parse_args()

    server = None
    if args.tiny:
        args.episodes = 8
        expert = ExpertModel(ENV_ID, seeds=range(args.episodes))
        server, served = start_local_server(expert)
        host, port = server.server_address[:2]
        args.base_url, args.model, args.api_key = f"http://{host}:{port}/v1", "scripted-expert", "sk-local"
        print(f"local scripted model on {args.base_url}")
    elif not args.model:
        parser.error("--model is required (or set OPENAI_MODEL); --tiny runs without an endpoint")

    # Greedy, at most 48 new tokens; OpenAIAgent cuts the reply at the first newline (one action per
    # turn). Every request has a timeout and bounded retries, so the eval always ends.
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    agent = OpenAIAgent(
        args.model,
        base_url=args.base_url,
        api_key=args.api_key,
        sampling=SamplingConfig(temperature=0.0, max_new_tokens=48),
        max_concurrency=args.concurrency,
        timeout=60.0,
        max_retries=4,
    )
    try:
        with agent:
            # batch_size: episodes in flight; each turn sends their conversations concurrently
            result = turngym.evaluate(
                ENV_ID, agent, args.episodes, batch_size=16, progress=sys.stderr.isatty()
            )
    except turngym.TurnGymError as exc:  # e.g. a 401 from the endpoint: one line, no traceback
        sys.exit(f"error: {exc}")
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    print_result(result, title=f"{args.model} on {ENV_ID} ({result.split} split)")
    if server is not None:
        print(f"the local server answered {served[0]} chat-completion requests")


if __name__ == "__main__":
    main()
