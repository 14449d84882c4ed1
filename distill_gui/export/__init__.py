"""HF folder -> GGUF + Ollama Modelfile (numpy + gguf; torch is never imported here).

::

    from distill_gui.export import export_model

    result = export_model("runs/qwen05/final", "runs/qwen05/export", gguf_type="f16")
    print(result.gguf_path, result.modelfile.template is not None, result.register_hint())

The GUI's Export page uses the same functions: ``estimate_gguf_size`` for the size column,
``build_modelfile`` for the preview, ``validate_ollama_name`` for the name field, ``export_model``
to run it (in a worker thread; progress arrives as ``PhaseProgress`` events). Registering the result
into Ollama is ``distill_gui.workflows.publish``.
"""

from __future__ import annotations

from distill_gui.export.gguf_file import GGUF_TYPE_NAMES, GGUFExportInfo, estimate_gguf_size, export_gguf
from distill_gui.export.modelfile import ModelfileSpec, build_modelfile
from distill_gui.export.names import default_model_name, validate_ollama_name
from distill_gui.export.pipeline import OLLAMA_QUANTIZE_TYPES, ExportResult, check_quantize, export_model

__all__ = [
    "GGUF_TYPE_NAMES",
    "OLLAMA_QUANTIZE_TYPES",
    "ExportResult",
    "GGUFExportInfo",
    "ModelfileSpec",
    "build_modelfile",
    "check_quantize",
    "default_model_name",
    "estimate_gguf_size",
    "export_gguf",
    "export_model",
    "validate_ollama_name",
]
