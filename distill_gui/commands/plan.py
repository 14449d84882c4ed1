"""``distill-gui plan CONFIG.toml``: the memory plan of a run, in plain words.

Prints the estimate (teacher, student weights / gradients / optimizer state, activations, loss),
the detected device's free memory, whether it fits, and what to change if not. Exit code 0 either
way: the plan is information, not a failure.
"""

from __future__ import annotations

import argparse

from distill_gui.config import load_config


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    from distill_gui.engine.planner import plan_memory

    plan = plan_memory(cfg)
    print(plan.summary())
    return 0
