"""Opt-in: list and chat against a real Ollama when OLLAMA_HOST is set and answers (skipped otherwise).

Run: ``OLLAMA_HOST=http://127.0.0.1:11434 python -m pytest -m real_ollama tests/ollama/test_real_ollama.py``
It needs at least one chat model installed for the chat test (the smallest one is used).
"""

from __future__ import annotations

import os
import re

import pytest

from distill_gui.ollama import ChatChunk, ModelNotFound, OllamaClient

pytestmark = pytest.mark.real_ollama


@pytest.fixture(scope="module")
def real_client():
    host = os.environ.get("OLLAMA_HOST")
    if not host:
        pytest.skip("OLLAMA_HOST is not set: no real Ollama to test against")
    client = OllamaClient(host, timeout=15, stream_timeout=300)
    if not client.is_running():
        client.close()
        pytest.skip(f"no Ollama answers at {client.host}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def chat_model(real_client):
    models = [m for m in real_client.list_models() if "embedding" not in m.capabilities]
    if not models:
        pytest.skip("no chat model installed in the real Ollama (try `ollama pull qwen2.5:0.5b`)")
    return min(models, key=lambda m: m.size)


def test_real_version_and_list(real_client):
    assert re.match(r"\d+\.\d+", real_client.version())
    for model in real_client.list_models():
        assert model.name and model.size > 0 and model.digest
        assert model.modified_at is not None


def test_real_show(real_client, chat_model):
    info = real_client.show(chat_model.name)
    assert info.architecture and info.model_info
    assert info.context_length is None or info.context_length > 0


def test_real_chat_streams_and_reports_stats(real_client, chat_model):
    stream = real_client.chat(chat_model.name, [{"role": "user", "content": "Say hi in three words."}],
                              think=False, options={"num_predict": 24, "temperature": 0})
    items = list(stream)
    stats = items[-1]
    assert any(isinstance(item, ChatChunk) and item.content for item in items[:-1])
    assert stats.done_reason in ("stop", "length") and 0 < stats.eval_count <= 24
    assert stats.ttft_s is not None and 0 < stats.ttft_s <= stats.total_s
    assert stats.tokens_per_s and stats.tokens_per_s > 0
    loaded = {m.name for m in real_client.ps()}
    assert chat_model.name in loaded


def test_real_missing_model(real_client):
    with pytest.raises(ModelNotFound):
        real_client.show("distill-gui-no-such-model:0b")
