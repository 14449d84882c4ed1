"""The test server itself answers as Ollama does, checked through the bare ``ollama`` package and httpx.

Other engineers' tests (export, GUI) rely on this server; these tests pin its wire behaviour to
docs/ollama.md and Ollama's routes.go/create.go rather than to our client.
"""

from __future__ import annotations

import hashlib
import json

import httpx
import ollama
import pytest

from tests.ollama_server import go_value, show_parameters


@pytest.fixture
def raw(ollama_server):
    with httpx.Client(base_url=ollama_server.url, timeout=5) as http:
        yield http
    assert ollama_server.errors == []


def test_liveness_and_version(ollama_server, raw):
    assert raw.get("/").text == "Ollama is running"
    assert raw.head("/").status_code == 200
    assert raw.get("/api/version").json() == {"version": ollama_server.version}
    assert raw.post("/").status_code == 405
    assert raw.get("/api/unknown").status_code == 404


def test_the_official_client_streams_chat_from_it(ollama_server):
    ollama_server.add_model("teacher", reply="one two three")
    parts = list(ollama.Client(ollama_server.url).chat(
        model="teacher", messages=[{"role": "user", "content": "count"}], stream=True))
    assert "".join(p.message.content for p in parts) == "one two three"
    assert [p.done for p in parts] == [False, False, False, True]
    final = parts[-1]
    assert final.done_reason == "stop" and final.eval_count == 3
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(getattr(final, key), int)  # nanoseconds, as integers


def test_chunked_ndjson_one_object_per_line(ollama_server, raw):
    ollama_server.add_model("teacher", reply="a b")
    with raw.stream("POST", "/api/generate", json={"model": "teacher", "prompt": "x"}) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        assert response.headers["transfer-encoding"] == "chunked"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [line["response"] for line in lines] == ["a", " b", ""]
    assert lines[-1]["done"] is True and isinstance(lines[-1]["context"], list)


def test_non_streaming_replies_accumulate(ollama_server, raw):
    ollama_server.add_model("thinker", thinking="hm", reply="a b")
    body = raw.post("/api/chat", json={"model": "thinker", "messages": [{"role": "user", "content": "x"}],
                                        "stream": False, "logprobs": True}).json()
    assert body["message"] == {"role": "assistant", "content": "a b", "thinking": "hm"}
    assert [lp["token"] for lp in body["logprobs"]] == ["hm", "a", " b"] and body["done_reason"] == "stop"


def test_request_errors_use_ollamas_statuses_and_texts(ollama_server, raw):
    ollama_server.add_model("m")
    chat = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert raw.post("/api/chat", json={**chat, "top_logprobs": 21}).json() == {
        "error": "top_logprobs must be between 0 and 20"}
    missing = raw.post("/api/chat", json={**chat, "model": "nope"})
    assert (missing.status_code, missing.json()) == (404, {"error": "model 'nope' not found"})
    assert raw.post("/api/show", json={}).json() == {"error": "model is required"}
    assert raw.post("/api/chat", content=b"").json() == {"error": "missing request body"}
    wrong_type = raw.post("/api/chat", json={**chat, "options": {"num_predict": "ten"}})
    assert wrong_type.status_code == 500 and "num_predict" in wrong_type.json()["error"]


def test_load_and_unload_with_empty_messages(ollama_server, raw):
    ollama_server.add_model("m")
    loaded = raw.post("/api/chat", json={"model": "m", "messages": []}).json()
    assert loaded["done_reason"] == "load" and len(raw.get("/api/ps").json()["models"]) == 1
    unloaded = raw.post("/api/generate", json={"model": "m", "prompt": "", "keep_alive": 0}).json()
    assert unloaded["done_reason"] == "unload" and raw.get("/api/ps").json()["models"] == []


def test_blobs_check_their_digest(ollama_server, raw):
    data = b"GGUF" + bytes(100)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert raw.head(f"/api/blobs/{digest}").status_code == 404
    assert raw.post(f"/api/blobs/{digest}", content=data).status_code == 201
    assert raw.post(f"/api/blobs/{digest}", content=data).status_code == 200
    assert raw.head(f"/api/blobs/{digest}").status_code == 200
    other = "sha256:" + "0" * 64
    mismatch = raw.post(f"/api/blobs/{other}", content=data)
    assert mismatch.status_code == 400
    assert mismatch.json()["error"] == f'digest mismatch, expected "{other}", got "{digest}"'
    assert raw.post("/api/blobs/md5:abc", content=data).status_code == 400


def test_create_refuses_the_removed_modelfile_field(raw):
    response = raw.post("/api/create", json={"model": "x", "modelfile": "FROM ./x.gguf"})
    assert (response.status_code, response.json()) == (400, {"error": "neither 'from' or 'files' was specified"})


def test_create_errors_after_the_first_line_are_error_lines(ollama_server, raw):
    digest = ollama_server.add_blob(b"not a gguf at all")
    with raw.stream("POST", "/api/create", json={"model": "x", "files": {"x.gguf": digest}}) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert response.status_code == 200
    assert lines == [{"status": "parsing GGUF"}, {"error": "supplied file was not in GGUF format"}]
    missing = raw.post("/api/create", json={"model": "x", "files": {"x.gguf": "sha256:" + "1" * 64},
                                             "stream": False})
    assert missing.status_code == 500 and "no such file or directory" in missing.json()["error"]


def test_create_from_an_existing_model(ollama_server):
    ollama_server.add_model("base", template="{{ .Prompt }}", parameters={"temperature": 0.1})
    client = ollama.Client(ollama_server.url)
    statuses = [p.status for p in client.create(model="derived", from_="base", system="Be terse.", stream=True)]
    assert statuses[-1] == "success"
    shown = client.show("derived")
    assert shown.template == "{{ .Prompt }}" and shown.parameters == "temperature                    0.1"
    with pytest.raises(ollama.ResponseError) as caught:
        list(client.create(model="y", from_="absent", stream=True))
    assert caught.value.status_code == -1 and "pull model manifest" in caught.value.error


@pytest.mark.parametrize("value, go", [
    (8192, "8192"), (0.7, "0.7"), (100000, "100000"), (1048576, "1.048576e+06"), (1e-05, "1e-05"),
    (0.0001, "0.0001"), (-2, "-2"), (True, "true"), ("<|im_end|>", '"<|im_end|>"'), ('say "hi"\n', r'"say \"hi\"\n"'),
])
def test_parameters_print_like_gos_percent_sharp_v(value, go):
    assert go_value(value) == go


def test_show_parameters_block_layout():
    text = show_parameters({"stop": ["<|im_end|>", "<|endoftext|>"], "num_ctx": 4096})
    assert text.splitlines() == ['num_ctx                        4096', 'stop                           "<|im_end|>"',
                                 'stop                           "<|endoftext|>"']
