"""``distill-gui export MODEL_DIR --out DIR``: GGUF + Modelfile, optionally registered into Ollama.

Exit codes: 0 done (and registered, when asked); 2 the request is wrong (nothing written); 1 writing
failed, or registering / the probe chat failed (the files are written; the message says how to
register them by hand).
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from distill_gui.errors import EXIT_FAILURE, EXIT_OK
from distill_gui.events import PhaseProgress
from distill_gui.formatting import human_bytes
from distill_gui.workflows.publish import publish


class ProgressPrinter:
    """Prints export / register progress to a stream: whole percents on a terminal line, else sparse lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self._last: tuple[str, int] | None = None

    def __call__(self, event: PhaseProgress) -> None:
        percent = int(100 * event.done / event.total) if event.total else -1
        step = 1 if self.live else 25
        key = (event.phase, percent // step if percent >= 0 else -1)
        if key == self._last:
            return
        self._last = key
        label = {"export": "writing GGUF"}.get(event.phase, event.phase.replace("register-", "ollama: "))
        text = f"{label}: {percent:3d}%" if percent >= 0 else f"{label}: {event.message}"
        if self.live:
            self.stream.write("\r\x1b[2K" + text)
            if percent == 100 or percent < 0:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def run(args: argparse.Namespace) -> int:
    done = publish(
        args.model_dir, args.out, gguf_type=args.type, name=args.name, system=args.system,
        num_ctx=getattr(args, "num_ctx", None), pre_tokenizer=args.pre_tokenizer, register=args.register,
        quantize=args.quantize, host=args.ollama_host, on_progress=ProgressPrinter(sys.stderr))
    result = done.export
    info, spec = result.gguf, result.modelfile
    print(f"wrote {result.gguf_path} ({human_bytes(info.nbytes)}, {info.gguf_type}, {info.arch}, "
          f"{human_bytes(info.nbytes / max(info.seconds, 1e-9))}/s)")
    template = f"TEMPLATE for {spec.family}" if spec.template else "no TEMPLATE (the GGUF's chat template is used)"
    print(f"wrote {result.modelfile_path} ({template}; stop {', '.join(spec.stop) or 'none'}; "
          f"num_ctx {spec.parameters['num_ctx']})")
    for warning in done.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.register:
        if done.register_error:
            print(f"error: {done.register_error}", file=sys.stderr)
            return EXIT_FAILURE
        probe = done.registration.probe
        print(f"registered {result.name} in Ollama; probe chat stopped by itself after {probe.eval_count} tokens: "
              f"{probe.content.strip()[:80]!r}")
    else:
        print(f"to register: {done.register_hint}")
    return EXIT_OK
