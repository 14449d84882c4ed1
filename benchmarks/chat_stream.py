"""Per-token cost of our chat iterator against the bare ``ollama`` client, side by side, one run.

Streams the same long reply from the loopback test server (tests/ollama_server.py) through:

- ``ollama.Client.chat(stream=True)``: the official client, parsing each line into pydantic models;
- ``OllamaClient.chat``: ours, the same official stream wrapped in ChatStream (typed chunks, timing,
  error translation, cross-thread close);
- ``OllamaClient.generate``: ours over httpx directly (keeps logprob bytes);
- raw ``httpx`` ``iter_lines`` + ``json.loads``: the floor for any Python client on this server.

Every number includes the test server's own time per token (it runs in this process), so the
ratios understate the relative overhead; the per-token difference is the honest figure.

Run: ``python benchmarks/chat_stream.py [--tokens 3000] [--repeats 7]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import ollama  # noqa: E402

from distill_gui.ollama import OllamaClient  # noqa: E402
from tests.ollama_server import OllamaTestServer  # noqa: E402

MESSAGES = [{"role": "user", "content": "Tell me a long story."}]


def bare_ollama(client: ollama.Client) -> int:
    return sum(1 for part in client.chat(model="bench", messages=MESSAGES, stream=True) if part.message.content)


def ours_chat(client: OllamaClient) -> int:
    with client.chat("bench", MESSAGES) as stream:
        return sum(1 for item in stream if getattr(item, "content", None) and not hasattr(item, "done_reason"))


def ours_generate(client: OllamaClient) -> int:
    with client.generate("bench", "Tell me a long story.") as stream:
        return sum(1 for item in stream if not hasattr(item, "done_reason"))


def raw_httpx(http: httpx.Client) -> int:
    count = 0
    body = {"model": "bench", "messages": MESSAGES}
    with http.stream("POST", "/api/chat", json=body) as response:
        for line in response.iter_lines():
            if line and json.loads(line)["message"]["content"]:
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    reply = " ".join(f"tok{i}" for i in range(args.tokens))
    with OllamaTestServer() as server, OllamaClient(server.url) as client, \
            ollama.Client(server.url) as bare, httpx.Client(base_url=server.url) as http:
        server.add_model("bench", reply=reply)
        runners = {  # every client made once: connection set-up is not what is measured
            "ollama.Client.chat (bare)": lambda: bare_ollama(bare),
            "OllamaClient.chat (ours)": lambda: ours_chat(client),
            "OllamaClient.generate (ours, httpx)": lambda: ours_generate(client),
            "httpx iter_lines + json (floor)": lambda: raw_httpx(http),
        }
        timings: dict[str, list[float]] = {name: [] for name in runners}
        for name, run in runners.items():  # warm-up: imports, connections, server code paths
            assert run() == args.tokens, name
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits every variant alike
            for name, run in runners.items():
                started = time.perf_counter()
                count = run()
                timings[name].append((time.perf_counter() - started) / count)
    base = statistics.median(timings["ollama.Client.chat (bare)"])
    print(f"chat stream, {args.tokens} tokens, median of {args.repeats} runs, loopback test server")
    print(f"{'variant':<38}{'us/token':>10}{'vs bare':>10}{'diff us':>10}")
    for name, values in timings.items():
        per_token = statistics.median(values)
        print(f"{name:<38}{per_token * 1e6:>10.1f}{per_token / base:>10.2f}{(per_token - base) * 1e6:>+10.1f}")
    wrapper_only(args.tokens * 10, args.repeats)


def wrapper_only(tokens: int, repeats: int) -> None:
    """The wrapper's own cost without I/O: ChatStream over already-parsed ollama.ChatResponse objects."""
    from distill_gui.ollama.client import _chat_part
    from distill_gui.ollama.stream import ChatStream

    parts = [ollama.ChatResponse(model="m", created_at="t", message={"role": "assistant", "content": "tok"},
                                 done=False) for _ in range(tokens)]
    parts.append(ollama.ChatResponse(model="m", created_at="t", message={"role": "assistant", "content": ""},
                                     done=True, done_reason="stop", eval_count=tokens, eval_duration=10**9))
    plain, wrapped = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        for part in iter(parts):
            _ = part.message.content
        plain.append((time.perf_counter() - started) / tokens)
        started = time.perf_counter()
        for _ in ChatStream(lambda: iter(parts), _chat_part, host="h", model="m"):
            pass
        wrapped.append((time.perf_counter() - started) / tokens)
    base, ours = statistics.median(plain), statistics.median(wrapped)
    print(f"\nwrapper only, no I/O, {tokens} parsed chunks: plain loop {base * 1e6:.2f} us/token, "
          f"ChatStream {ours * 1e6:.2f} us/token (+{(ours - base) * 1e6:.2f} us)")


if __name__ == "__main__":
    main()
