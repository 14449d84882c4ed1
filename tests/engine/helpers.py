"""Helpers for the engine tests: a structured toy language, config files, reading weights back."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

# A toy language with real structure: what an animal does depends on the animal, places are a
# closed set, adjectives are optional. The next-token distribution has genuine uncertainty (which
# adjective, which verb among the allowed ones), which is what soft labels carry and hard labels don't.
NOUNS = {
    "bird": ["flies", "sings", "eats"],
    "fish": ["swims", "eats", "hides"],
    "dog": ["runs", "barks", "eats", "sleeps"],
    "cat": ["sleeps", "hides", "runs", "eats"],
    "child": ["runs", "sings", "reads", "sleeps"],
}
ADJECTIVES = ["small", "big", "red", "green", "old", "young"]
PLACES = ["in the river", "near the tree", "on the hill", "at home", "by the lake"]


def toy_sentence(rng: random.Random) -> str:
    noun = rng.choice(sorted(NOUNS))
    adjective = f"{rng.choice(ADJECTIVES)} " if rng.random() < 0.5 else ""
    return f"the {adjective}{noun} {rng.choice(NOUNS[noun])} {rng.choice(PLACES)} ."


def toy_rows(n: int, seed: int) -> list[str]:
    """``n`` texts of two or three toy sentences."""
    rng = random.Random(seed)
    return [" ".join(toy_sentence(rng) for _ in range(rng.randint(2, 3))) for _ in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_text_rows(path: Path, texts: list[str]) -> Path:
    return write_jsonl(path, [{"text": t} for t in texts])


def write_config(path: Path, *, teacher_dir: str, student_dir: str, data_file: str, output_dir: str, name: str = "run",
                 **sections: dict) -> Path:
    """A RunConfig TOML with the given models/data and extra ``section={key: value}`` settings."""
    values: dict[str, dict] = {
        "teacher": {"model": teacher_dir}, "student": {"model": student_dir},
        "data": {"train": data_file, "max_length": 64, "eval_fraction": 0.1},
        "train": {"max_steps": 6, "batch_size": 4, "grad_accum": 1, "lr": 3e-3, "warmup_steps": 0,
                  "log_every": 2, "eval_every": 0, "save_every": 0, "device": "cpu",
                  "report": False},  # the end-of-run report (about 1 s); its own tests turn it on
    }
    for section, updates in sections.items():
        values.setdefault(section, {}).update(updates)
    lines = [f"name = {json.dumps(name)}", f"output_dir = {json.dumps(output_dir)}"]
    for section, items in values.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml(value)}" for key, value in items.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def load_weights(folder: Path) -> dict:
    """All tensors of a HF folder's safetensors files."""
    from safetensors.torch import load_file

    weights = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        weights.update(load_file(str(file)))
    return weights


def heldout_perplexity(model_dir: Path, texts: list[str]) -> float:
    """exp(mean next-token NLL) of a saved model on texts, computed directly from its logits in float64."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
            ids = torch.cat([ids, torch.tensor([[tokenizer.eos_token_id]])], dim=1)
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
            total -= float(logp.gather(1, ids[0, 1:, None]).sum())
            count += ids.shape[1] - 1
    return math.exp(total / count)


def teacher_agreement(student_dir: Path, teacher_dir: Path, texts: list[str]) -> float:
    """Share of next-token positions where student and teacher have the same most likely token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    student = AutoModelForCausalLM.from_pretrained(str(student_dir)).eval()
    teacher = AutoModelForCausalLM.from_pretrained(str(teacher_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(teacher_dir))
    same = count = 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
            same += int((student(input_ids=ids).logits.argmax(-1) == teacher(input_ids=ids).logits.argmax(-1)).sum())
            count += ids.shape[1]
    return same / count
