"""Talking to a local Ollama server: one client, typed results, one exception tree (Qt-free).

::

    from distill_gui.ollama import OllamaClient, register_model

    with OllamaClient() as client:               # host: argument, settings, OLLAMA_HOST, default
        for model in client.list_models():
            print(model.name, model.parameter_size)
        stats = client.chat("qwen2.5:0.5b", [{"role": "user", "content": "Hi"}]).collect()
        result = register_model(client, "student:latest", {"student.gguf": gguf_path},
                                template=go_template, parameters={"stop": ["<|im_end|>"]})
"""

from __future__ import annotations

from distill_gui.ollama.client import OllamaClient
from distill_gui.ollama.errors import (
    ModelNotFound,
    OllamaError,
    OllamaInputError,
    OllamaRequestError,
    OllamaStreamError,
    OllamaTimeout,
    OllamaUnavailable,
    RegisterError,
)
from distill_gui.ollama.register import check_model_name, register_model
from distill_gui.ollama.stream import ChatStream
from distill_gui.ollama.types import (
    ChatChunk,
    ChatStats,
    LoadedModel,
    ModelEntry,
    ModelInfo,
    RegisterProgress,
    RegisterResult,
    TokenLogprob,
)

__all__ = [
    "ChatChunk",
    "ChatStats",
    "ChatStream",
    "LoadedModel",
    "ModelEntry",
    "ModelInfo",
    "ModelNotFound",
    "OllamaClient",
    "OllamaError",
    "OllamaInputError",
    "OllamaRequestError",
    "OllamaStreamError",
    "OllamaTimeout",
    "OllamaUnavailable",
    "RegisterError",
    "RegisterProgress",
    "RegisterResult",
    "TokenLogprob",
    "check_model_name",
    "register_model",
]
