"""OpenAIAgent against a real local HTTP server on 127.0.0.1 (no mocked client)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import turngym
from turngym.agents import ExpertAgent
from turngym.agents.openai import EndpointError, OpenAIAgent, _retry_after
from turngym.agents.sampling import SamplingConfig
from turngym.prompts import REACT_FORMAT

httpx = pytest.importorskip("httpx")

Reply = tuple[int, dict[str, str], Any]  # status, headers, JSON payload
CONVERSATION = [{"role": "system", "content": "rules"}, {"role": "user", "content": "hello"}]


def chat_reply(content: str | None = None, tool_calls: list[dict] | None = None) -> Reply:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return 200, {}, {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": message}]}


class FakeServer:
    """A chat-completions endpoint: `respond(body, n)` answers the n-th request (0-based); the server
    records every request (body, headers, arrival time) and the most requests in flight at once."""

    def __init__(self) -> None:
        self.respond: Callable[[dict, int], Reply] = lambda body, n: chat_reply("ok")
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    n = len(server.requests)
                    server.requests.append(
                        {"body": body, "headers": dict(self.headers), "t": time.monotonic()}
                    )
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(server.delay)
                    if self.path != "/v1/chat/completions":
                        status, headers, payload = 404, {}, {"error": f"no route {self.path}"}
                    else:
                        status, headers, payload = server.respond(body, n)
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    for key, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 64  # the default backlog of 5 drops bursts of connections
        self.httpd.server_bind()
        self.httpd.server_activate()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    with FakeServer() as fake:
        yield fake


def agent_for(server: FakeServer, **kwargs: Any) -> OpenAIAgent:
    kwargs = {"base_url": server.base_url, "api_key": "sk-test", "timeout": 5.0, "seed": 0, **kwargs}
    return OpenAIAgent("fake-model", **kwargs)


def test_request_body_sampling_and_stop(server):
    server.respond = lambda body, n: chat_reply("  pick up the red key\nand more text")
    sampling = SamplingConfig(temperature=0.0, top_p=0.9, max_new_tokens=12)
    with agent_for(server, sampling=sampling, extra_body={"top_k": 5}) as agent:
        assert agent.act([CONVERSATION]) == ["pick up the red key"]  # cut at the "\n" stop, stripped
    (request,) = server.requests
    body = request["body"]
    assert body["model"] == "fake-model" and body["messages"] == CONVERSATION
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.0, 0.9, 12)
    assert body["stop"] == ["\n"] and body["top_k"] == 5 and body["seed"] == 0
    assert request["headers"]["Authorization"] == "Bearer sk-test"


def test_base_url_and_key_from_env_vars(server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url + "/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    with OpenAIAgent("m") as agent:
        assert agent.url == server.base_url + "/chat/completions"
        assert agent.act([CONVERSATION]) == ["ok"]
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-env"
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("OPENAI_MODEL", "env-model")
    agent = turngym.agents.make_agent("openai")  # what `turngym eval ID --agent openai` builds
    agent.act([CONVERSATION])  # local servers need no key: no Authorization header at all
    agent.close()
    assert "Authorization" not in server.requests[1]["headers"]
    assert server.requests[1]["body"]["model"] == "env-model"
    monkeypatch.delenv("OPENAI_MODEL")
    with pytest.raises(turngym.ConfigError, match="OPENAI_MODEL"):
        OpenAIAgent()


def test_429_is_retried_after_retry_after(server):
    server.respond = lambda body, n: (
        (429, {"Retry-After": "0.3"}, {"error": "slow down"}) if n == 0 else chat_reply("done")
    )
    with agent_for(server, backoff=0.01, max_retries=3) as agent:
        assert agent.act([CONVERSATION]) == ["done"]
    assert len(server.requests) == 2
    gap = server.requests[1]["t"] - server.requests[0]["t"]
    assert 0.3 <= gap < 2.0  # waited what the server asked (not the 10 ms backoff), and not much more


def test_500_exhausts_retries_with_a_one_line_error(server):
    server.respond = lambda body, n: (500, {}, {"error": "boom\nwith a traceback"})
    with agent_for(server, backoff=0.01, max_retries=2) as agent, pytest.raises(EndpointError) as err:
        agent.act([CONVERSATION])
    assert len(server.requests) == 3
    message = str(err.value)
    assert "\n" not in message
    assert "failed after 3 attempts: HTTP 500" in message and "boom" in message and server.base_url in message


def test_client_errors_are_not_retried(server):
    server.respond = lambda body, n: (400, {}, {"error": "bad model"})
    with (
        agent_for(server, backoff=0.01) as agent,
        pytest.raises(EndpointError, match=r"HTTP 400: .*bad model"),
    ):
        agent.act([CONVERSATION])
    assert len(server.requests) == 1
    wrong_path = server.base_url.removesuffix("/v1")
    with agent_for(server, base_url=wrong_path) as agent, pytest.raises(EndpointError, match="HTTP 404"):
        agent.act([CONVERSATION])


def test_timeout_is_retried_then_reported(server):
    server.delay = 1.0
    start = time.monotonic()
    expected = r"failed after 2 attempts: timed out after 0\.2 s"
    agent = agent_for(server, timeout=0.2, backoff=0.0, max_retries=1)
    with agent, pytest.raises(EndpointError, match=expected):
        agent.act([CONVERSATION])
    assert len(server.requests) == 2
    assert time.monotonic() - start < 1.5  # bounded by the per-request timeout, not the server


def test_connection_errors_are_retried_and_reported():
    with FakeServer() as fake:
        dead_url = fake.base_url
    agent = OpenAIAgent("m", base_url=dead_url, backoff=0.0, max_retries=1, timeout=1.0)
    with agent, pytest.raises(EndpointError, match="failed after 2 attempts: ConnectError"):
        agent.act([CONVERSATION])


def test_batch_is_concurrent_up_to_the_limit_and_keeps_order(server):
    server.delay = 0.2
    server.respond = lambda body, n: chat_reply(body["messages"][-1]["content"].upper())
    conversations = [[{"role": "user", "content": f"obs {i}"}] for i in range(12)]
    start = time.monotonic()
    with agent_for(server, max_concurrency=4) as agent:
        actions = agent.act(conversations)
    elapsed = time.monotonic() - start
    assert actions == [f"OBS {i}" for i in range(12)]
    assert server.max_in_flight == 4
    assert elapsed < 12 * 0.2  # concurrent: about 3 rounds of 0.2 s, far below 12 sequential requests


def test_tool_calls_become_tool_call_blocks(server):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "search",
                "description": "search the catalogue",
                "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
            },
        }
    ]
    calls = [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "search", "arguments": '{"query": "red shoes"}'},
        },
        {"id": "c2", "type": "function", "function": {"name": "search", "arguments": "{not json"}},
    ]
    deep = {"id": "c3", "type": "function", "function": {"name": "search", "arguments": '{"a":' * 1000}}
    replies = [
        chat_reply(None, calls[:1]),
        chat_reply(None, calls),
        chat_reply("final answer: 42"),
        chat_reply(None, [deep]),  # issue 17: RecursionError in the agent aborted the rollout
    ]
    server.respond = lambda body, n: replies[n]
    with agent_for(server, tools=tools) as agent:
        (single,) = agent.act([CONVERSATION])
        (double,) = agent.act([CONVERSATION])
        (answer,) = agent.act([CONVERSATION])
        (nested,) = agent.act([CONVERSATION])
    assert server.requests[0]["body"]["tools"] == tools
    assert single == '<tool_call>{"name": "search", "arguments": {"query": "red shoes"}}</tool_call>'
    first, second = double.split("\n")
    assert first == single
    assert second == '<tool_call>{"name": "search", "arguments": "{not json"}</tool_call>'
    assert answer == "final answer: 42"
    assert nested == json.dumps({"name": "search", "arguments": '{"a":' * 1000}).join(
        ["<tool_call>", "</tool_call>"]
    )


def test_malformed_success_and_bad_config(server):
    server.respond = lambda body, n: (200, {}, {"choices": []})
    with agent_for(server) as agent, pytest.raises(EndpointError, match="without choices"):
        agent.act([CONVERSATION])
    with pytest.raises(turngym.ConfigError, match="max_concurrency"):
        OpenAIAgent("m", base_url=server.base_url, max_concurrency=0)
    assert _retry_after("2.5") == 2.5 and _retry_after("soon") is None and _retry_after(None) is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait


def keydoor_expert_reply(messages: list[dict[str, str]]) -> str:
    """The KeyDoor expert's move, read from the conversation alone (the real episode's task is the
    last `Task:` line: few-shot examples come before it)."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    target = re.findall(r"Task: open the (\w+) door", "\n".join(users))[-1]
    carried = re.findall(r"You carry: (?:the (\w+) key|nothing)", users[-1])[-1]
    if carried == target:
        return f"open the {target} door"
    return f"drop the {carried} key" if carried else f"pick up the {target} key"


def test_keydoor_rollout_end_to_end(server):
    server.respond = lambda body, n: chat_reply(keydoor_expert_reply(body["messages"]) + "\nextra line")
    with agent_for(server, sampling=SamplingConfig(temperature=0.0)) as agent:
        trajectories = turngym.rollout(
            "turngym/KeyDoor-v0", agent, num_episodes=12, batch_size=6, split="test"
        )
    expert = turngym.rollout("turngym/KeyDoor-v0", ExpertAgent(), num_episodes=12, split="test")
    assert all(t.success for t in trajectories)
    assert [t.actions for t in trajectories] == [t.actions for t in expert]
    assert trajectories[0].agent == "openai"
    assert len(server.requests) == sum(t.num_turns for t in trajectories)


def test_keydoor_rollout_with_react_and_few_shot(server):
    examples = turngym.rollout("turngym/KeyDoor-v0", ExpertAgent(), num_episodes=2, seed=500)

    def react_reply(body: dict, n: int) -> Reply:
        move = keydoor_expert_reply(body["messages"])
        return chat_reply(f"Thought: the rules say what to do.\nAction: {move}\nObservation: (invented)")

    server.respond = react_reply
    with agent_for(server, react=True, few_shot=examples, sampling=SamplingConfig(temperature=0.0)) as agent:
        trajectories = turngym.rollout("turngym/KeyDoor-v0", agent, num_episodes=6, split="test")
    assert all(t.success for t in trajectories)
    body = server.requests[0]["body"]
    assert body["messages"][0]["content"].endswith(REACT_FORMAT)
    assert "\n" not in body["stop"] and "\nObservation" in body["stop"]
    example_actions = [m["content"] for m in body["messages"][1:] if m["role"] == "assistant"]
    assert example_actions == [f"Action: {a}" for t in examples for a in t.actions]
