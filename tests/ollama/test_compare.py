"""The side-by-side core under `distill-gui compare`: events in arrival order, early close cancels both."""

from __future__ import annotations

from distill_gui.ollama.compare import compare_models, stream_side_by_side

USER = [{"role": "user", "content": "Hi"}]
LONG = " ".join(f"w{i}" for i in range(300))


def test_results_carry_stats_errors_and_memory(ollama_server, client):
    ollama_server.add_model("good", reply="fine thanks", size=2_000_000_000)
    events = []
    good, missing = compare_models(client, ["good", "absent:1b"], USER, on_event=events.append)
    assert good.ok and good.stats.content == "fine thanks" and good.memory.size == 2_000_000_000
    assert not missing.ok and missing.stats is None and "absent:1b" in str(missing.error)
    assert [e.chunk.content for e in events if e.chunk] == ["fine", " thanks"]


def test_closing_early_cancels_every_stream(ollama_server, client):
    ollama_server.add_model("a", reply=LONG, token_delay=0.005)
    ollama_server.add_model("b", reply=LONG, token_delay=0.005)
    events = stream_side_by_side(client, ["a", "b"], USER)
    seen_sides = set()
    for event in events:
        seen_sides.add(event.side)
        if seen_sides == {0, 1}:
            break
    events.close()
    for record in ollama_server.streams:
        assert _ended(ollama_server, record)
        assert record.cancelled and record.sent_tokens < record.planned_tokens


def _ended(server, record, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (record.cancelled or record.finished):
        time.sleep(0.005)
    return record.cancelled or record.finished
