"""Command line: argparse over the same functions the GUI calls. No logic of its own.

Each subcommand lives in ``distill_gui/commands/<name>.py`` as ``run(args) -> int`` and is
imported only when used, so ``distill-gui --help`` and the GUI start fast.

Exit codes: 0 success; 2 the user's input is wrong (short message, no traceback); 1 a failure
while working (short message; ``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from distill_gui import __version__
from distill_gui.errors import EXIT_FAILURE, EXIT_USER_ERROR, DistillError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distill-gui",
        description="Distill a big local LLM into a small fast one, export it to GGUF + Ollama, "
                    "and compare them side by side. Without a command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"distill-gui {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="distill a student from a teacher as the config says")
    p.add_argument("config", help="RunConfig TOML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.max_steps=100 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")

    p = sub.add_parser("plan", help="memory plan: will teacher + student + activations fit, and what to change")
    p.add_argument("config", help="RunConfig TOML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")

    p = sub.add_parser("export", help="write <name>.gguf + Modelfile from a HF model folder; optionally register")
    p.add_argument("model_dir", help="a Hugging Face model folder (e.g. a run's final/)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--type", default="f16", help="f32 | f16 | bf16 | q8_0 | q4_0 | q4_1 | q5_0 | q5_1 (default f16)")
    p.add_argument("--name", default=None, help="model name (file name and Ollama name); default from the folder")
    p.add_argument("--system", default=None, help="default SYSTEM prompt for the Modelfile")
    p.add_argument("--register", action="store_true", help="register the model into Ollama and verify it")
    p.add_argument("--quantize", default=None, help="ask Ollama to quantize on create, e.g. q4_K_M")
    p.add_argument("--pre-tokenizer", dest="pre_tokenizer", default=None,
                   help="llama.cpp pre-tokenizer name to use when it cannot be detected")
    p.add_argument("--num-ctx", dest="num_ctx", type=int, default=None,
                   help="context window written to the Modelfile (default min(4096, trained context))")
    p.add_argument("--ollama-host", dest="ollama_host", default=None, help="Ollama URL (default OLLAMA_HOST or "
                                                                           "127.0.0.1:11434)")

    p = sub.add_parser("compare", help="send one prompt to two Ollama models at once and compare speed")
    p.add_argument("model_a")
    p.add_argument("model_b")
    p.add_argument("--prompt", required=True)
    p.add_argument("--system", default=None)
    p.add_argument("--ollama-host", dest="ollama_host", default=None)

    p = sub.add_parser("eval", help="perplexity (+ agreement with a teacher) of a model as JSON; a run folder's "
                                     "teacher and students, and its report.md")
    p.add_argument("model_dir", help="a model folder, or a run folder (its teacher, student before / after)")
    p.add_argument("--data", default=None, help=".txt or .jsonl file of held-out data (needed for a model folder; "
                                                "a run folder defaults to its held-out rows)")
    p.add_argument("--teacher", default=None, help="teacher model folder or hub id")
    p.add_argument("--max-length", dest="max_length", type=int, default=512)
    p.add_argument("--samples", type=int, default=3, help="held-out prompts answered greedily by each model")
    p.add_argument("--report", action="store_true", help="run folder: also write report.md with plots into it")
    p.add_argument("--control", action="store_true",
                   help="run folder: train the CE control (same config, loss = ce, equal steps) and include it")

    p = sub.add_parser("demo", help="offline end-to-end run on a model pair the app builds itself")
    p.add_argument("--out", default=None, help="folder for the demo (default: user data folder / demo)")
    p.add_argument("--small", action="store_true", help="a reduced-size demo (faster, for tests)")
    p.add_argument("--seed", type=int, default=0, help="seed of the demo's data and training runs")
    p.add_argument("--ollama-host", dest="ollama_host", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        return _open_app()
    try:
        module = importlib.import_module(f"distill_gui.commands.{args.command}")
        return int(module.run(args) or 0)
    except DistillError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if args.debug:
            traceback.print_exc()
            if exc.details:
                print(exc.details, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unexpected failure: short message, traceback on demand
        if args.debug:
            traceback.print_exc()
        else:
            print(f"error: unexpected {type(exc).__name__}: {exc}\n"
                  f"(run again with --debug for the traceback, and please report it)", file=sys.stderr)
        return EXIT_FAILURE


def _open_app() -> int:
    try:
        from distill_gui.gui.app import main as gui_main
    except ImportError as exc:
        print(f"error: the desktop app cannot start: {exc}. Install the app with its GUI dependencies "
              f"(pip install distill-gui) or use a command: distill-gui --help", file=sys.stderr)
        return EXIT_USER_ERROR
    return gui_main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
