"""Fixtures for the Ollama client tests: a client pointed at the loopback test server."""

from __future__ import annotations

import socket

import pytest

from distill_gui.ollama import OllamaClient


@pytest.fixture
def client(ollama_server):
    with OllamaClient(ollama_server.url, timeout=5, stream_timeout=5) as ollama_client:
        yield ollama_client
    assert ollama_server.errors == []  # no request crashed the test server's handler


@pytest.fixture
def dead_url():
    """A loopback URL where nothing listens (the port was just free)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"

