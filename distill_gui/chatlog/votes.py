"""Blind A/B votes between two models, and their tallies with a confidence interval (Qt-free).

Every vote is one line appended to ``<user data dir>/chat_votes.jsonl``::

    {"time": "2026-08-30T12:00:00+00:00", "left": "student:v1", "right": "teacher:7b", "vote": "left",
     "prompt": "Explain recursion"}

The log is the truth; tallies are counted from it whenever they are shown, so nothing is ever
rewritten and a line damaged by a crash costs only that vote. A pair is counted the same whichever
side each model sat on.

The win rate of a model against the other counts decisive votes only (ties and "both bad" are shown
beside it), so it is a binomial proportion and gets a Wilson score interval (Wilson 1927; Newcombe
1998, method 3), which stays inside [0, 1] and behaves at 0 or n wins where the normal approximation
does not.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from distill_gui.paths import read_jsonl_objects, user_data_dir

VOTES_FILE = "chat_votes.jsonl"
VOTES = ("left", "right", "tie", "both_bad")
VOTE_LABELS = {"left": "Left is better", "right": "Right is better", "tie": "Tie", "both_bad": "Both are bad"}
Z_95 = 1.959963984540054          # two-sided 95 % normal quantile
PROMPT_CHARS = 2000                # the prompt is kept for context, not as an archive


def votes_path() -> Path:
    return user_data_dir() / VOTES_FILE


def canonical_model(name: str) -> str:
    """``x`` and ``x:latest`` are one model in Ollama; names compare case-insensitively."""
    name = name.strip()
    last = name.rsplit("/", 1)[-1]
    return (name if ":" in last else f"{name}:latest").lower()


@dataclass(frozen=True)
class Vote:
    """One blind verdict: which model sat left and right, and what the user chose."""

    left: str
    right: str
    vote: str                      # one of VOTES
    time: str = ""
    prompt: str = ""

    def __post_init__(self) -> None:
        if self.vote not in VOTES:
            raise ValueError(f"vote must be one of {', '.join(VOTES)}, not {self.vote!r}")

    @property
    def winner(self) -> str | None:
        """The winning model's name, or None for a tie or both bad."""
        return {"left": self.left, "right": self.right}.get(self.vote)


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / trials``.

    Returns (0.0, 1.0) when there are no trials: nothing is known yet.
    """
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be within 0..{trials}, not {successes}")
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    center = (p + z2 / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, center - half), min(1.0, center + half)


@dataclass
class PairTally:
    """Counts for one unordered pair of models (``model_a`` < ``model_b`` by canonical name)."""

    model_a: str
    model_b: str
    wins_a: int = 0
    wins_b: int = 0
    ties: int = 0
    both_bad: int = 0

    @property
    def total(self) -> int:
        return self.wins_a + self.wins_b + self.ties + self.both_bad

    @property
    def decisive(self) -> int:
        return self.wins_a + self.wins_b

    def wins(self, model: str) -> int:
        return self.wins_a if canonical_model(model) == canonical_model(self.model_a) else self.wins_b

    def win_rate(self, model: str) -> float | None:
        """Share of decisive votes ``model`` won; None before the first decisive vote."""
        return self.wins(model) / self.decisive if self.decisive else None

    def interval(self, model: str, z: float = Z_95) -> tuple[float, float]:
        """Wilson interval of :meth:`win_rate` (95 % by default)."""
        return wilson_interval(self.wins(model), self.decisive, z)

    def add(self, vote: Vote) -> None:
        if vote.vote == "tie":
            self.ties += 1
        elif vote.vote == "both_bad":
            self.both_bad += 1
        elif canonical_model(vote.winner or "") == canonical_model(self.model_a):
            self.wins_a += 1
        else:
            self.wins_b += 1

    def summary(self, model: str | None = None) -> str:
        """One line for people, from ``model``'s point of view (default: ``model_a``)."""
        model = model or self.model_a
        other = self.model_b if canonical_model(model) == canonical_model(self.model_a) else self.model_a
        counts = (f"{model} won {self.wins(model)}, {other} won {self.wins(other)}, {self.ties} tie"
                  f"{'s' if self.ties != 1 else ''}, {self.both_bad} both bad")
        rate = self.win_rate(model)
        if rate is None:
            return f"{counts}; no decisive vote yet."
        low, high = self.interval(model)
        return (f"{counts}; {model} wins {100 * rate:.0f} % of {self.decisive} decisive vote"
                f"{'s' if self.decisive != 1 else ''} (95 % CI {100 * low:.0f}–{100 * high:.0f} %).")


def pair_key(first: str, second: str) -> tuple[str, str]:
    """The unordered pair as (smaller, larger) canonical names."""
    a, b = canonical_model(first), canonical_model(second)
    return (a, b) if a <= b else (b, a)


def tally(votes: Iterable[Vote]) -> dict[tuple[str, str], PairTally]:
    """Count votes per unordered model pair."""
    tallies: dict[tuple[str, str], PairTally] = {}
    for vote in votes:
        key = pair_key(vote.left, vote.right)
        if key not in tallies:
            tallies[key] = PairTally(*key)
        tallies[key].add(vote)
    return tallies


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_vote(vote: Vote, path: Path | None = None) -> Vote:
    """Append ``vote`` to the votes log (one line, flushed to disk) and return it with its time set."""
    path = path or votes_path()
    if not vote.time:
        vote = Vote(vote.left, vote.right, vote.vote, now_iso(), vote.prompt)
    line = json.dumps({"time": vote.time, "left": vote.left, "right": vote.right, "vote": vote.vote,
                       "prompt": vote.prompt[:PROMPT_CHARS]}, ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write of one whole line, then fsync: a crash can cost the vote being written, never an older one.
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    return vote


def read_votes(path: Path | None = None) -> Iterator[Vote]:
    """The votes in the log, oldest first; a damaged or foreign line is skipped."""
    for data in read_jsonl_objects(path or votes_path()):
        try:
            yield Vote(str(data["left"]), str(data["right"]), str(data["vote"]), str(data.get("time", "")),
                       str(data.get("prompt", "")))
        except KeyError:
            continue


def load_tallies(path: Path | None = None) -> dict[tuple[str, str], PairTally]:
    """Tallies of every pair voted on so far."""
    return tally(read_votes(path))
