"""Streaming chat/generate: chunks, final stats, cancellation, thinking, logprobs, and stream failures."""

from __future__ import annotations

import math
import threading
import time

import pytest

from distill_gui.ollama import ChatChunk, ChatStats, OllamaClient, OllamaRequestError, OllamaStreamError, OllamaTimeout

USER = [{"role": "user", "content": "What is the capital of France?"}]
LONG_REPLY = " ".join(f"word{i}" for i in range(200))


def test_chat_streams_chunks_in_order_then_stats(ollama_server, client):
    ollama_server.add_model("teacher", reply="Paris is the capital of France.")

    items = list(client.chat("teacher", USER))

    chunks, stats = items[:-1], items[-1]
    assert all(isinstance(chunk, ChatChunk) for chunk in chunks) and isinstance(stats, ChatStats)
    assert [c.content for c in chunks] == ["Paris", " is", " the", " capital", " of", " France."]
    assert stats.content == "Paris is the capital of France." and stats.done_reason == "stop"
    elapsed = [c.elapsed_s for c in chunks]
    assert elapsed == sorted(elapsed) and stats.ttft_s == elapsed[0] <= stats.total_s


def test_stats_come_from_the_servers_nanosecond_counters(ollama_server, client):
    ollama_server.add_model("teacher", reply=LONG_REPLY[:300])

    stats = client.chat("teacher", USER).collect()

    final = ollama_server.streams[-1].final  # the done line exactly as the server sent it
    assert stats.eval_count == final["eval_count"] == len(LONG_REPLY[:300].split())
    assert stats.eval_s == final["eval_duration"] / 1e9
    assert stats.tokens_per_s == pytest.approx(final["eval_count"] / final["eval_duration"] * 1e9, rel=1e-12)
    assert stats.prompt_tokens == final["prompt_eval_count"] > 0
    assert stats.prompt_eval_s == final["prompt_eval_duration"] / 1e9
    assert stats.load_s == final["load_duration"] / 1e9
    assert stats.server_total_s == final["total_duration"] / 1e9


def test_ttft_is_measured_by_the_client_and_includes_a_cold_load(ollama_server, client):
    ollama_server.add_model("slow", load_delay=0.15, token_delay=0.01, reply="one two three")

    cold = client.chat("slow", USER).collect()
    warm = client.chat("slow", USER).collect()

    # Lower bounds only: the server sleeps that long before the first token (no upper wall-clock bound).
    assert cold.load_s >= 0.15 and cold.ttft_s >= cold.load_s   # the client's TTFT includes the cold load
    assert warm.load_s < cold.load_s                            # the second request found the model loaded
    assert cold.ttft_s <= cold.total_s and warm.ttft_s <= warm.total_s


def test_closing_the_stream_stops_generation_on_the_server(ollama_server, client):
    ollama_server.add_model("long", reply=LONG_REPLY, token_delay=0.005)
    stream = client.chat("long", USER)
    received = [next(stream) for _ in range(3)]

    stream.close()
    record = ollama_server.wait_for_stream_end()

    assert [c.content for c in received] == ["word0", " word1", " word2"]
    assert record.cancelled and not record.finished
    assert record.sent_tokens < 50 < record.planned_tokens == 200
    assert stream.cancelled and list(stream) == [] and stream.stats is None
    assert client.chat("long", USER, options={"num_predict": 2}).collect().content == "word0 word1"  # still usable


def test_close_from_another_thread_ends_the_iteration(ollama_server, client):
    ollama_server.add_model("long", reply=LONG_REPLY, token_delay=0.005)
    stream = client.chat("long", USER)
    seen = []

    def consume():
        for item in stream:
            seen.append(item)

    reader = threading.Thread(target=consume)
    reader.start()
    while len(seen) < 3:
        time.sleep(0.002)
    stream.close()  # the GUI's stop button: a different thread than the reader
    reader.join(timeout=5)

    assert not reader.is_alive()
    assert ollama_server.wait_for_stream_end().cancelled
    assert 3 <= len(seen) < 200 and all(isinstance(item, ChatChunk) for item in seen)
    with pytest.raises(OllamaStreamError, match="cancelled"):
        stream.collect()


def test_a_thinking_model_thinks_unless_told_not_to(ollama_server, client):
    ollama_server.add_model("thinker", thinking="The user wants a city.", reply="Paris.")

    default = client.chat("thinker", USER).collect()
    plain = client.chat("thinker", USER, think=False).collect()

    assert (default.thinking, default.content) == ("The user wants a city.", "Paris.")
    assert (plain.thinking, plain.content) == ("", "Paris.")
    assert default.eval_count == 5 + 1 and plain.eval_count == 1  # thinking tokens are generated tokens too
    assert ollama_server.requests_to("/api/chat")[1].body["think"] is False


def test_generate_passes_think_through(ollama_server, client):
    ollama_server.add_model("thinker", thinking="Hmm.", reply="Yes.")
    thought = client.generate("thinker", "Is it?").collect()
    plain = client.generate("thinker", "Is it?", think=False).collect()
    assert (thought.thinking, thought.content) == ("Hmm.", "Yes.") and plain.thinking == ""


def test_think_on_a_model_that_cannot_is_a_400(ollama_server, client):
    ollama_server.add_model("plain")
    with pytest.raises(OllamaRequestError) as caught:
        client.chat("plain", USER, think=True).collect()
    assert caught.value.status_code == 400 and "does not support thinking" in str(caught.value)


def test_options_num_predict_and_stop_shape_the_reply(ollama_server, client):
    ollama_server.add_model("m", reply="alpha beta<|im_end|> gamma delta")

    cut = client.chat("m", USER, options={"num_predict": 1}).collect()
    stopped = client.chat("m", USER, options={"stop": ["<|im_end|>"]}).collect()

    assert (cut.content, cut.done_reason) == ("alpha", "length")
    assert (stopped.content, stopped.done_reason) == ("alpha beta", "stop")
    assert ollama_server.requests_to("/api/chat")[0].body["options"] == {"num_predict": 1}


def test_system_prompt_goes_first(ollama_server, client):
    ollama_server.add_model("m")
    client.chat("m", USER, system="Answer in French.").collect()
    sent = ollama_server.requests_to("/api/chat")[0].body["messages"]
    assert sent == [{"role": "system", "content": "Answer in French."}, *USER]


def _check_logprob_shape(entry, top):
    """Each generated token carries its logprob and the top alternatives, best first, sum <= 1."""
    alternatives = entry.top_logprobs
    assert len(alternatives) == top
    assert alternatives[0].token == entry.token and alternatives[0].logprob == entry.logprob
    logprobs = [alt.logprob for alt in alternatives]
    assert logprobs == sorted(logprobs, reverse=True)
    assert math.fsum(math.exp(lp) for lp in logprobs) <= 1.0 + 1e-12
    assert all(lp <= 0 for lp in logprobs)


def test_generate_logprobs_keep_their_bytes(ollama_server, client):
    ollama_server.add_model("teacher", reply="Grüße aus Köln")

    stats = client.generate("teacher", "Say hello", logprobs=True, top_logprobs=5).collect()

    assert [lp.token for lp in stats.logprobs] == ["Grüße", " aus", " Köln"]
    for entry in stats.logprobs:
        assert bytes(entry.bytes).decode("utf-8") == entry.token
        _check_logprob_shape(entry, 5)
    assert stats.context is not None and len(stats.context) == stats.prompt_tokens + stats.eval_count
    body = ollama_server.requests_to("/api/generate")[0].body
    assert (body["logprobs"], body["top_logprobs"], body["prompt"]) == (True, 5, "Say hello")


def test_chat_logprobs_arrive_per_chunk(ollama_server, client):
    ollama_server.add_model("teacher", reply="one two three")
    items = list(client.chat("teacher", USER, logprobs=True, top_logprobs=2))
    chunks = items[:-1]
    assert [c.logprobs[0].token for c in chunks] == ["one", " two", " three"]
    for chunk in chunks:
        _check_logprob_shape(chunk.logprobs[0], 2)
    assert items[-1].logprobs == tuple(c.logprobs[0] for c in chunks)


def test_generate_without_logprobs_and_raw_rules(ollama_server, client):
    ollama_server.add_model("m", reply="done")
    stats = client.generate("m", "x").collect()
    assert stats.content == "done" and stats.logprobs == ()
    with pytest.raises(OllamaRequestError, match="raw mode does not support"):
        client.generate("m", "x", raw=True, system="no").collect()


def test_an_error_line_after_http_200_is_a_stream_error(ollama_server, client):
    ollama_server.add_model("flaky", reply="one two three four", fail_after=2,
                            fail_message="llama runner process has terminated: signal: killed")
    stream = client.chat("flaky", USER)
    first = [next(stream), next(stream)]

    with pytest.raises(OllamaStreamError) as caught:
        next(stream)

    assert [c.content for c in first] == ["one", " two"]
    assert caught.value.server_message == "llama runner process has terminated: signal: killed"
    assert "signal: killed" in str(caught.value) and "flaky" in str(caught.value)


def test_an_error_before_any_output_keeps_its_http_status(ollama_server, client):
    ollama_server.add_model("flaky", fail_after=0, fail_message="runner crashed")
    with pytest.raises(OllamaRequestError) as caught:
        client.chat("flaky", USER).collect()
    assert caught.value.status_code == 500


def test_a_server_dying_mid_stream_is_a_stream_error(ollama_server, client):
    ollama_server.add_model("crashy", reply="one two three four", die_after=2)
    stream = client.generate("crashy", "x")
    assert next(stream).content == "one"
    with pytest.raises(OllamaStreamError) as caught:
        list(stream)
    assert "broke" in str(caught.value) and "ollama serve" in str(caught.value)
    assert caught.value.server_message is None
    with pytest.raises(OllamaStreamError):
        client.chat("crashy", USER).collect()


def test_a_timeout_is_an_ollama_timeout(ollama_server):
    ollama_server.add_model("stuck", load_delay=1.0)
    with OllamaClient(ollama_server.url, stream_timeout=0.2) as impatient:
        with pytest.raises(OllamaTimeout) as caught:
            impatient.chat("stuck", USER).collect()
    # The model answers only after 1.0 s: an OllamaTimeout proves the 0.2 s limit cut the wait short.
    assert "0.2 s" in str(caught.value) and "stuck" in str(caught.value)


def test_probe_chat_reports_stop_for_a_healthy_model_and_length_for_a_rambler(ollama_server, client):
    ollama_server.add_model("good", reply="Hi!")
    ollama_server.add_model("rambler", endless=True, reply="and then")
    assert client.probe_chat("good").done_reason == "stop"
    rambled = client.probe_chat("rambler", max_tokens=16)
    assert (rambled.done_reason, rambled.eval_count) == ("length", 16)
    body = ollama_server.requests_to("/api/chat")[-1].body
    assert body["think"] is False and body["options"] == {"num_predict": 16}
