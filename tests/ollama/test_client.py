"""OllamaClient's non-streaming operations and its error mapping, against the loopback test server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import ollama
import pytest

from distill_gui.errors import EXIT_FAILURE, EXIT_USER_ERROR, DistillError, UserInputError
from distill_gui.ollama import (
    ModelNotFound,
    OllamaClient,
    OllamaError,
    OllamaInputError,
    OllamaRequestError,
    OllamaUnavailable,
)

USER = [{"role": "user", "content": "Hi"}]


def test_running_and_version(ollama_server, client):
    assert client.is_running() is True
    assert client.version() == ollama_server.version


def test_is_running_is_false_and_calls_raise_unavailable_when_nothing_listens(dead_url):
    with OllamaClient(dead_url) as client:
        assert client.is_running() is False
        with pytest.raises(OllamaUnavailable) as caught:
            client.list_models()
    message = str(caught.value)
    assert dead_url in message and "ollama serve" in message
    assert caught.value.exit_code == EXIT_FAILURE


def test_every_operation_maps_a_refused_connection_to_unavailable(dead_url):
    """Non-streaming ollama calls raise the builtin ConnectionError, streams an httpx.ConnectError: both map."""
    with OllamaClient(dead_url) as client:
        calls = [client.version, client.list_models, client.ps, lambda: client.show("m"),
                 lambda: client.delete("m"), lambda: client.copy("a", "b"),
                 lambda: client.chat("m", USER).collect(), lambda: client.generate("m", "x").collect()]
        for call in calls:
            with pytest.raises(OllamaUnavailable):
                call()


def test_list_models_keeps_the_fields_the_ollama_package_drops(ollama_server, client):
    ollama_server.add_model("older", context_length=8192, embedding_length=896, family="qwen2",
                            parameter_size="494.03M", quantization_level="Q8_0", size=531_000_000,
                            modified_at=datetime(2025, 1, 2, tzinfo=timezone.utc))
    ollama_server.add_model("newer:7b", thinking="hmm", modified_at=datetime(2026, 3, 4, tzinfo=timezone.utc))

    models = client.list_models()

    assert [m.name for m in models] == ["newer:7b", "older:latest"]  # newest first, as the server orders
    older = models[1]
    assert (older.family, older.parameter_size, older.quantization_level) == ("qwen2", "494.03M", "Q8_0")
    assert (older.context_length, older.embedding_length, older.size) == (8192, 896, 531_000_000)
    assert older.modified_at == datetime(2025, 1, 2, tzinfo=timezone.utc)
    assert models[0].capabilities == ("completion", "thinking")
    # the reason we read /api/tags ourselves: the official client loses these
    bare = ollama.Client(ollama_server.url).list().models[1]
    assert not hasattr(bare, "name") and not hasattr(bare, "capabilities")


def test_show_returns_template_system_parameters_and_context_length(ollama_server, client):
    ollama_server.add_model("student", template="{{ .Prompt }}", system="Be brief.", family="qwen2",
                            context_length=32768,
                            parameters={"stop": ["<|im_end|>", "<|endoftext|>"], "num_ctx": 8192,
                                        "temperature": 0.7, "top_k": 20})

    info = client.show("student")

    assert info.template == "{{ .Prompt }}" and info.system == "Be brief."
    assert info.parameters == {"stop": ["<|im_end|>", "<|endoftext|>"], "num_ctx": 8192, "temperature": 0.7,
                               "top_k": 20}
    assert info.stop == ["<|im_end|>", "<|endoftext|>"]
    assert info.architecture == "qwen2" and info.context_length == 32768
    assert info.capabilities == ("completion",)
    assert "num_ctx" in info.parameters_text and "PARAMETER stop" in info.modelfile


def test_show_of_a_missing_model_is_model_not_found_with_exit_code_2(ollama_server, client):
    with pytest.raises(ModelNotFound) as caught:
        client.show("ghost:1b")
    error = caught.value
    assert isinstance(error, UserInputError) and isinstance(error, OllamaRequestError)
    assert error.exit_code == EXIT_USER_ERROR and error.status_code == 404
    assert "ghost:1b" in str(error) and "ollama pull ghost:1b" in str(error) and ollama_server.url in str(error)


def test_ps_lists_loaded_models_with_memory_and_expiry(ollama_server, client):
    ollama_server.add_model("gpu", size=4_000_000_000, size_vram=3_000_000_000, context_length=8192)
    assert client.ps() == []

    client.chat("gpu", USER, options={"num_ctx": 2048}, keep_alive="10m").collect()
    (loaded,) = client.ps()

    assert loaded.name == "gpu:latest"
    assert (loaded.size, loaded.size_vram, loaded.context_length) == (4_000_000_000, 3_000_000_000, 2048)
    assert loaded.gpu_fraction == pytest.approx(0.75)
    expected = datetime.now(timezone.utc) + timedelta(minutes=10)
    assert abs((loaded.expires_at - expected).total_seconds()) < 5


def test_keep_alive_zero_with_no_messages_unloads(ollama_server, client):
    ollama_server.add_model("m")
    client.chat("m", USER).collect()
    assert [m.name for m in client.ps()] == ["m:latest"]
    stream = client.chat("m", [], keep_alive=0)
    stats = stream.collect()
    assert stats.done_reason == "unload" and client.ps() == []


def test_delete_and_copy(ollama_server, client):
    ollama_server.add_model("base:1b", reply="same")
    client.copy("base:1b", "alias")
    assert {m.name for m in client.list_models()} == {"base:1b", "alias:latest"}
    assert client.chat("alias", USER).collect().content == "same"

    client.delete("base:1b")
    assert [m.name for m in client.list_models()] == ["alias:latest"]
    with pytest.raises(ModelNotFound):
        client.delete("base:1b")
    with pytest.raises(ModelNotFound):
        client.copy("base:1b", "other")


def test_a_load_failure_is_a_request_error_naming_the_cause(ollama_server, client):
    ollama_server.add_model("huge", load_error="model requires more system memory (64 GiB) than is available")
    with pytest.raises(OllamaRequestError) as caught:
        client.chat("huge", USER).collect()
    assert caught.value.status_code == 500
    assert "more system memory" in str(caught.value) and "log" in str(caught.value)
    assert not isinstance(caught.value, UserInputError)


def test_something_that_is_not_ollama_gives_a_clear_request_error(ollama_server, client):
    """A route the server does not have answers Go's plain-text 404: not a 'model not found'."""
    response = client._http.get("/api/nonexistent")
    assert response.status_code == 404 and response.text == "404 page not found"
    with pytest.raises(OllamaRequestError) as caught:
        client._get_json("GET", "/api/nonexistent", action="probing")
    assert not isinstance(caught.value, ModelNotFound)
    assert "recent enough" in str(caught.value)


def test_input_errors_are_raised_before_anything_is_sent(ollama_server, client):
    for call in (lambda: client.show(""), lambda: client.chat("", USER),
                 lambda: client.chat("m", USER, top_logprobs=21), lambda: client.chat("m", ["hi"])):
        with pytest.raises(OllamaInputError) as caught:
            call()
        assert caught.value.exit_code == EXIT_USER_ERROR
    assert ollama_server.requests == []


def test_an_invalid_host_is_an_input_error():
    with pytest.raises(OllamaInputError) as caught:
        OllamaClient("ftp://example.com")
    assert "ftp://example.com" in str(caught.value)


def test_the_tree_roots_at_distill_error():
    for error_type in (OllamaUnavailable, ModelNotFound, OllamaRequestError, OllamaInputError):
        assert issubclass(error_type, OllamaError) and issubclass(error_type, DistillError)


def test_the_public_surface_is_what_all_lists():
    import distill_gui.ollama as package

    public = sorted(name for name in vars(package) if not name.startswith("_")
                    and not isinstance(getattr(package, name), type(package)) and name != "annotations")
    assert package.__all__ == public
