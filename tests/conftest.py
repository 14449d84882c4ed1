"""Shared test setup: offline, headless, a private user data folder, tiny models built on the spot."""

from __future__ import annotations

import os

# Before anything imports transformers / Qt: no network, no display, quiet progress bars.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    """Each test gets its own user data folder, so runs, logs and settings never leak between tests."""
    home = tmp_path / "home"
    monkeypatch.setenv("DISTILL_GUI_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_texts():
    from distill_gui.workflows.tiny import sample_text

    return sample_text(1500, seed=0)


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory, tiny_texts):
    """(teacher_dir, student_dir): Qwen2-architecture HF folders, 4 and 2 layers, one shared BPE (ChatML)."""
    from distill_gui.workflows.tiny import build_tiny_pair

    return build_tiny_pair(tmp_path_factory.mktemp("tiny_qwen"), style="qwen", arch="qwen2", texts=tiny_texts)


@pytest.fixture(scope="session")
def tiny_llama_pair(tmp_path_factory, tiny_texts):
    """(teacher_dir, student_dir): Llama-architecture HF folders with a Llama-3 style tokenizer."""
    from distill_gui.workflows.tiny import build_tiny_pair

    return build_tiny_pair(tmp_path_factory.mktemp("tiny_llama"), style="llama", arch="llama", texts=tiny_texts)


@pytest.fixture
def ollama_server():
    """A started loopback Ollama test server (tests/ollama_server.py), empty; add models with
    ``ollama_server.add_model(name, ...)`` and point ``OllamaClient(ollama_server.url)`` at it."""
    from tests.ollama_server import OllamaTestServer

    with OllamaTestServer() as server:
        yield server
