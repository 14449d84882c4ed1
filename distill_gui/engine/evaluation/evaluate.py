"""Evaluation: held-out perplexity, agreement with the teacher, KL, greedy samples, sizes and speed.

Everything here is measured directly from the models, never read from training logs:

- :func:`score` (:func:`score_many`: several students, one teacher pass) - per counted token
  (labels != -100, i.e. what the run learns): the negative log-likelihood of the data's next token
  (perplexity = exp of its mean), and against a teacher the top-1 agreement (same most likely
  token) and KL(teacher || model) at T = 1. Both distributions are
  restricted to the shared vocabulary V (the tokenizer's tokens; padded embedding rows are ignored)
  and renormalised there, as in training. Sums run in float64, logits are projected a chunk of
  tokens at a time, so a 150k vocabulary never needs a (tokens x V) tensor for a whole batch.
- :func:`greedy_generate` - bounded greedy answers, batched with left padding, cut at the end of turn.
- :func:`tokens_per_second` - generation speed on the current device (fixed length, after a warm-up).
- :func:`weights_bytes` - the size of a model folder's weight files.
- :func:`evaluate_model_dir` - what ``distill-gui eval MODEL_DIR --data FILE [--teacher DIR]`` prints.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from distill_gui.engine.data import IGNORE, Example, Row, collate, read_rows, render_chat, tokenize_rows
from distill_gui.errors import DataError, ModelError
from distill_gui.events import EventCallback, PhaseProgress, ignore_events

CHUNK_TOKENS = 256            # tokens projected to the vocabulary at once (256 x 152k x 4 B = 156 MB)
SAMPLE_NEW_TOKENS = 64        # longest greedy sample answer
SPEED_NEW_TOKENS = 32         # tokens generated for the tokens/s measurement
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass
class TokenScores:
    """Scores of one model on a set of examples (per counted token).

    Attributes:
        tokens: Counted tokens.
        nll: Mean negative log-likelihood of the data's tokens, nats per token.
        perplexity: exp(nll).
        agreement: Share of tokens where the model's most likely token is the teacher's (None: no teacher).
        kl: Mean KL(teacher || model) at T = 1, nats per token (None: no teacher).
    """

    tokens: int
    nll: float
    perplexity: float
    agreement: float | None = None
    kl: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Sample:
    """One held-out prompt, the data's own answer, and each model's greedy answer (role -> text)."""

    prompt: str
    reference: str
    replies: dict[str, str] = field(default_factory=dict)


@dataclass
class PromptCase:
    """A prompt ready to generate from: its token ids, the text shown for it, and the reference answer."""

    ids: list[int]
    shown: str
    reference: str


# ---- token-level scores -----------------------------------------------------------------------


def shared_vocab(tokenizer, *models) -> int:
    """The vocabulary both distributions are restricted to: the tokenizer's size, or the narrowest head."""
    widths = [_head_width(m) for m in models if m is not None]
    return min([len(tokenizer)] + widths)


def score(model, examples: Sequence[Example], *, pad_id: int, teacher=None, vocab_size: int | None = None,
          batch_size: int = 8, device: str = "cpu", chunk_tokens: int = CHUNK_TOKENS) -> TokenScores:
    """Perplexity of ``model`` on ``examples`` and, with a teacher, agreement and KL(teacher || model).

    Args:
        model: A causal LM (possibly wrapped by peft) on ``device``.
        examples: Tokenized examples; ``labels[i]`` is the target of position i (-100: not counted).
        pad_id: Padding id for batching.
        teacher: Optional causal LM on ``device`` sharing the tokenizer.
        vocab_size: Shared vocabulary V (default: the narrowest head).
        batch_size: Examples per forward pass.
        chunk_tokens: Tokens projected to (chunk, V) logits at once.

    Returns:
        TokenScores; with no counted token, NaN perplexity.
    """
    return score_many({"model": model}, examples, pad_id=pad_id, teacher=teacher, vocab_size=vocab_size,
                      batch_size=batch_size, device=device, chunk_tokens=chunk_tokens)["model"]


def score_many(models: dict[str, Any], examples: Sequence[Example], *, pad_id: int, teacher=None,
               vocab_size: int | None = None, batch_size: int = 8, device: str = "cpu",
               chunk_tokens: int = CHUNK_TOKENS) -> dict[str, TokenScores]:
    """:func:`score` of several models in one pass: the teacher runs once per batch for all of them.

    Returns:
        name -> TokenScores for every model, and ``"teacher"`` -> the teacher's own perplexity.
    """
    import torch

    from distill_gui.engine.models.forward import final_hidden

    everyone = {**models, **({"teacher": teacher} if teacher is not None else {})}
    vocab = vocab_size or min(_head_width(m) for m in everyone.values())
    sums = {name: [0.0, 0.0, 0] for name in everyone}    # nll, kl, agree
    count = 0
    states = [(m, m.training) for m in everyone.values()]
    for m, _ in states:
        m.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                batch = collate(list(examples[start:start + batch_size]), pad_id)
                ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
                labels = batch["labels"].reshape(-1).to(device)
                rows = (labels != IGNORE).nonzero().squeeze(1)
                if rows.numel() == 0:
                    continue
                outputs = {name: final_hidden(m, ids, mask) for name, m in everyone.items()}
                for chunk in rows.split(chunk_tokens):
                    targets = labels.index_select(0, chunk)
                    count += int(chunk.numel())
                    t_logp = _log_probs(*outputs["teacher"], chunk, vocab) if teacher is not None else None
                    for name, (hidden, head) in outputs.items():
                        logp = t_logp if name == "teacher" else _log_probs(hidden, head, chunk, vocab)
                        _accumulate(sums[name], logp, targets, None if name == "teacher" else t_logp)
    finally:
        for m, was_training in states:
            m.train(was_training)
    return {name: _scores(sums[name], count, compared=teacher is not None and name != "teacher")
            for name in everyone}


def _accumulate(sums: list, logp, targets, t_logp) -> None:
    """Add one chunk's NLL (and, against the teacher's log-probs, KL and agreement) to ``sums``."""
    import torch

    sums[0] -= float(logp.gather(1, targets[:, None]).double().sum())
    if t_logp is not None:
        p = t_logp.exp()
        sums[1] += float(torch.where(p > 0, p * (t_logp - logp), 0.0).sum(-1).double().sum())
        sums[2] += int((t_logp.argmax(-1) == logp.argmax(-1)).sum())


def _scores(sums: list, count: int, *, compared: bool) -> TokenScores:
    nll, kl, agree = sums
    mean = nll / count if count else math.nan
    return TokenScores(tokens=count, nll=mean, perplexity=math.exp(min(mean, 700.0)) if count else math.nan,
                       agreement=(agree / count if count else math.nan) if compared else None,
                       kl=(kl / count if count else math.nan) if compared else None)


def _log_probs(hidden, head, rows, vocab: int):
    """(len(rows), V) float32 log-probabilities of the chosen rows, restricted to the first V tokens."""
    import torch

    x = hidden.index_select(0, rows)
    logits = head(x) if head is not None else x
    return torch.log_softmax(logits[:, :vocab].float(), dim=-1)


def _head_width(model) -> int:
    from distill_gui.engine.models import unwrap

    lm = unwrap(model)
    head = lm.get_output_embeddings()
    return int(head.weight.shape[0]) if head is not None else int(lm.config.vocab_size)


# ---- generation -------------------------------------------------------------------------------


def stop_ids(tokenizer, model=None) -> list[int]:
    """Token ids that end an answer: the tokenizer's eos and the model's generation-config eos ids."""
    ids = [tokenizer.eos_token_id]
    config = getattr(model, "generation_config", None)
    extra = getattr(config, "eos_token_id", None) if config is not None else None
    ids += extra if isinstance(extra, (list, tuple)) else [extra]
    return sorted({int(i) for i in ids if i is not None})


def greedy_generate(model, prompts: Sequence[list[int]], *, pad_id: int, stop: Sequence[int],
                    max_new_tokens: int = SAMPLE_NEW_TOKENS, batch_size: int = 16,
                    device: str = "cpu") -> list[list[int]]:
    """Greedy continuations of token-id prompts, each cut before its first stop token.

    Batches are left-padded (an attention mask hides the padding), so every prompt gets the answer
    it would get alone.

    Returns:
        One list of new token ids per prompt (without the stop token).
    """
    import torch

    answers: list[list[int]] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(prompts), batch_size):
                group = prompts[start:start + batch_size]
                ids, mask = _left_padded(group, pad_id, device)
                out = model.generate(input_ids=ids, attention_mask=mask,
                                     generation_config=_greedy_config(max_new_tokens, pad_id, stop))
                for row in out[:, ids.shape[1]:].tolist():
                    cut = next((i for i, t in enumerate(row) if t in stop), len(row))
                    answers.append(row[:cut])
    finally:
        model.train(was_training)
    return answers


def tokens_per_second(model, prompt: list[int], *, pad_id: int, device: str = "cpu",
                      new_tokens: int = SPEED_NEW_TOKENS) -> float:
    """Generation speed: ``new_tokens`` greedy tokens after ``prompt`` (stop tokens ignored), per second.

    A two-token warm-up run comes first, so one-time costs (kernels, caches) are not counted.
    """
    import torch

    ids, mask = _left_padded([prompt], pad_id, device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=mask, generation_config=_greedy_config(2, pad_id, [], 2))
            _synchronize(device)
            started = time.perf_counter()
            model.generate(input_ids=ids, attention_mask=mask,
                           generation_config=_greedy_config(new_tokens, pad_id, [], new_tokens))
            _synchronize(device)
            seconds = time.perf_counter() - started
    finally:
        model.train(was_training)
    return new_tokens / max(seconds, 1e-9)


def _greedy_config(max_new_tokens: int, pad_id: int, stop: Sequence[int], min_new_tokens: int = 0):
    from transformers import GenerationConfig

    return GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=False,
                            num_beams=1, pad_token_id=pad_id, eos_token_id=list(stop) or None, use_cache=True)


def _left_padded(prompts: Sequence[list[int]], pad_id: int, device: str):
    import torch

    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, length - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            mask[row, length - len(prompt):] = 1
    return ids.to(device), mask.to(device)


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def prompt_cases(rows: Sequence[Row], tokenizer, *, limit: int, max_prompt_tokens: int = 256) -> list[PromptCase]:
    """Prompts for generation samples from data rows.

    A chat row is cut before its last assistant turn and rendered with the generation prompt; the
    turn itself is the reference. A text row's first third (at most 32 tokens) is the prompt and the
    rest the reference. Prompts longer than ``max_prompt_tokens`` are skipped.
    """
    cases = []
    for row in rows:
        if len(cases) >= limit:
            break
        case = _chat_case(row, tokenizer) if row.messages else _text_case(row, tokenizer)
        if case is not None and 0 < len(case.ids) <= max_prompt_tokens:
            cases.append(case)
    return cases


def _chat_case(row: Row, tokenizer) -> PromptCase | None:
    messages = row.messages or []
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or last == 0:
        return None
    history = messages[:last]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
    else:
        text = render_chat(history, tokenizer)[0] + "Assistant: "
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    shown = next((m["content"] for m in reversed(history) if m["role"] == "user"), history[-1]["content"])
    return PromptCase(ids, shown, messages[last]["content"])


def _text_case(row: Row, tokenizer) -> PromptCase | None:
    ids = list(tokenizer(row.text or "", add_special_tokens=True)["input_ids"])
    if len(ids) < 4:
        return None
    cut = min(32, len(ids) // 3)
    return PromptCase(ids[:cut], tokenizer.decode(ids[:cut], skip_special_tokens=True),
                      tokenizer.decode(ids[cut:], skip_special_tokens=True))


# ---- sizes ------------------------------------------------------------------------------------


def weights_bytes(folder: str | Path) -> int:
    """Bytes of the weight files in a model folder (safetensors, or legacy .bin)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES)






# ---- the eval command -------------------------------------------------------------------------


def eval_examples(rows: Sequence[Row], tokenizer, *, max_length: int, loss_on: str = "response",
                  source: str = "data") -> list[Example]:
    """Tokenize held-out rows as training does; DataError when none has a token to score."""
    examples, _ = tokenize_rows(list(rows), tokenizer, max_length=max_length, loss_on=loss_on, label="eval")
    if not examples:
        raise DataError(f"{source}: no row has a token to score within max_length = {max_length} tokens. "
                        f"Raise --max-length or shorten the prompts.")
    return examples


def evaluate_model_dir(model_dir: str, data_file: str, *, teacher_dir: str | None = None, max_length: int = 512,
                       samples: int = 3, device: str = "auto", on_event: EventCallback = ignore_events
                       ) -> dict[str, Any]:
    """Score a model (and optionally its teacher) on a data file; the JSON ``distill-gui eval`` prints.

    Raises:
        ModelError: a model cannot be loaded, or teacher and model do not share a tokenizer.
        DataError: the data file is missing or malformed, or has nothing to score.
    """
    from distill_gui.engine import models as M
    from distill_gui.engine.device import choose, device_description, resolve_device
    from distill_gui.engine.models import parameter_count

    choice = choose(resolve_device(device))
    folder = M.resolve_model(model_dir, on_event=on_event, role="model")
    tokenizer = M.load_tokenizer(folder, ref=model_dir)
    rows = read_rows(data_file, role="eval")
    examples = eval_examples(rows, tokenizer, max_length=max_length, source=data_file)
    on_event(PhaseProgress("load", 0, 1, "", f"loading {model_dir}"))
    model = M.load_model(folder, dtype=choice.teacher_dtype, device=choice.device, ref=model_dir, role="model")
    teacher = teacher_folder = None
    if teacher_dir:
        teacher_folder = M.resolve_model(teacher_dir, on_event=on_event, role="teacher")
        verdict = M.check_tokenizer_pair(teacher_dir, model_dir, teacher_tokenizer=M.load_tokenizer(
            teacher_folder, ref=teacher_dir), student_tokenizer=tokenizer, teacher_rows=None, student_rows=None)
        if not verdict.compatible:
            raise ModelError(verdict.message)
        on_event(PhaseProgress("load", 0, 1, "", f"loading the teacher {teacher_dir}"))
        teacher = M.load_model(teacher_folder, dtype=choice.teacher_dtype, device=choice.device, ref=teacher_dir,
                               role="teacher")
    vocab = shared_vocab(tokenizer, model, teacher)
    pad = tokenizer.pad_token_id
    on_event(PhaseProgress("evaluate", 0, 1, "", f"scoring {len(examples)} examples"))
    result: dict[str, Any] = {
        "model": str(model_dir), "data": str(data_file), "device": device_description(choice.device),
        "examples": len(examples), "vocab": vocab,
        "scores": score(model, examples, pad_id=pad, teacher=teacher, vocab_size=vocab,
                        device=choice.device).to_dict(),
        "size": {"parameters": parameter_count(model), "weights_bytes": weights_bytes(folder)},
    }
    models = {"model": model}
    if teacher is not None:
        result["teacher"] = {"model": str(teacher_dir), "scores": score(teacher, examples, pad_id=pad,
                                                                        vocab_size=vocab, device=choice.device
                                                                        ).to_dict(),
                             "size": {"parameters": parameter_count(teacher),
                                      "weights_bytes": weights_bytes(teacher_folder)}}
        models["teacher"] = teacher
    cases = prompt_cases(rows, tokenizer, limit=max(samples, 1))
    if cases:
        on_event(PhaseProgress("evaluate", 0, 1, "", "measuring generation speed"))
        speeds = {role: tokens_per_second(m, cases[0].ids, pad_id=pad, device=choice.device)
                  for role, m in models.items()}
        result["size"]["tokens_per_s"] = speeds["model"]
        if teacher is not None:
            result["teacher"]["size"]["tokens_per_s"] = speeds["teacher"]
    result["samples"] = [asdict(s) for s in generate_samples(models, tokenizer, cases[:samples],
                                                             device=choice.device)]
    return result


def generate_samples(models: dict[str, Any], tokenizer, cases: Sequence[PromptCase], *, device: str,
                     max_new_tokens: int = SAMPLE_NEW_TOKENS) -> list[Sample]:
    """Each model's greedy answer to each prompt (role -> decoded text)."""
    samples = [Sample(c.shown, c.reference) for c in cases]
    if not cases:
        return samples
    for role, model in models.items():
        answers = greedy_generate(model, [c.ids for c in cases], pad_id=tokenizer.pad_token_id,
                                  stop=stop_ids(tokenizer, model), max_new_tokens=max_new_tokens, device=device)
        for sample, ids in zip(samples, answers):
            sample.replies[role] = tokenizer.decode(ids, skip_special_tokens=True).strip()
    return samples
