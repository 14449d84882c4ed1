"""Host resolution (argument > settings > OLLAMA_HOST > default), proxies, and parsing server JSON."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest

from distill_gui.ollama import ModelEntry, OllamaClient
from distill_gui.ollama._host import DEFAULT_HOST, is_loopback, normalize_host, resolve_host
from distill_gui.ollama.types import LoadedModel, parse_parameters, parse_time
from distill_gui.settings import AppSettings, save_settings
from tests.ollama_server import show_parameters


@pytest.mark.parametrize("text, url", [
    ("localhost", "http://localhost:11434"),
    ("127.0.0.1:11500", "http://127.0.0.1:11500"),
    (":11500", "http://127.0.0.1:11500"),
    ("0.0.0.0", "http://127.0.0.1:11434"),
    ("0.0.0.0:8080", "http://127.0.0.1:8080"),
    ("http://example.com", "http://example.com:80"),
    ("https://example.com", "https://example.com:443"),
    ("https://example.com:8443/ollama/", "https://example.com:8443/ollama"),
    ("[::1]:11434", "http://[::1]:11434"),
    ("http://[::]:11434", "http://[::1]:11434"),
    ("  localhost:1  ", "http://localhost:1"),
])
def test_normalize_host_like_ollama(text, url):
    assert normalize_host(text) == url


@pytest.mark.parametrize("bad", ["ftp://host", "localhost:notaport"])
def test_normalize_host_rejects_garbage(bad):
    with pytest.raises(ValueError):
        normalize_host(bad)


def test_resolution_order_argument_settings_environment_default(monkeypatch):
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert resolve_host() == DEFAULT_HOST
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:7000")
    assert resolve_host() == "http://127.0.0.1:7000"
    save_settings(AppSettings(ollama_host="http://gpu-box:11434"))
    assert resolve_host() == "http://gpu-box:11434"
    assert resolve_host("localhost:9") == "http://localhost:9"
    assert OllamaClient().host == "http://gpu-box:11434"


def test_loopback_detection():
    assert is_loopback("http://127.0.0.1:1") and is_loopback("http://localhost:1") and is_loopback("http://[::1]:1")
    assert not is_loopback("http://192.168.1.5:11434") and not is_loopback("http://example.com:1")


def test_loopback_bypasses_a_configured_proxy(ollama_server, monkeypatch, dead_url):
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(variable, dead_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(httpx.ConnectError):  # the dead proxy really is in force for a plain httpx client
        httpx.get(ollama_server.url, timeout=2)
    with OllamaClient(ollama_server.url) as client:
        assert client.is_running() and client.list_models() == []


@pytest.mark.parametrize("text, expected", [
    ("2024-05-01T12:00:00.123456789-07:00", datetime(2024, 5, 1, 12, 0, 0, 123456,
                                                     tzinfo=timezone(timedelta(hours=-7)))),
    ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
    ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=timezone.utc)),
    ("yesterday", None), (None, None),
])
def test_parse_go_times(text, expected):
    assert parse_time(text) == expected


def test_parse_parameters_of_an_ollama_show_block():
    # as `ollama show` prints a llama3 model's parameters (Go %-30s %#v per value)
    block = ('num_ctx                        8192\n'
             'stop                           "<|start_header_id|>"\n'
             'stop                           "<|end_header_id|>"\n'
             'stop                           "<|eot_id|>"\n'
             'temperature                    0.6\n'
             'num_predict                    1.048576e+06\n'
             'use_mmap                       false')
    assert parse_parameters(block) == {
        "num_ctx": 8192, "stop": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "temperature": 0.6, "num_predict": 1048576.0, "use_mmap": False}


def test_parameters_round_trip_through_the_servers_go_formatting():
    sent = {"stop": ['say "stop"', "tab\there", "line\nbreak", "Köln", "\x01"], "seed": 42, "top_p": 0.95,
            "num_ctx": 131072}
    assert parse_parameters(show_parameters(sent)) == sent
    assert parse_parameters(show_parameters({"stop": ["<|im_end|>"]})) == {"stop": ["<|im_end|>"]}


def test_old_servers_missing_fields_become_none():
    entry = ModelEntry.from_json({"name": "llama3:latest", "model": "llama3:latest", "size": 1,
                                  "digest": "d", "details": {"family": "llama"}})
    assert entry.capabilities == () and entry.context_length is None and entry.family == "llama"
    loaded = LoadedModel.from_json({"name": "m", "size": 0})
    assert loaded.context_length is None and loaded.gpu_fraction == 0.0 and loaded.expires_at is None
