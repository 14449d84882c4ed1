"""The demo's corpus: procedurally generated question / answer dialogues whose answers can be checked.

Five small task families, each with a few question phrasings and one correct answer:

- ``add``: "What is 3 + 5?" -> "3 + 5 = 8"
- ``next``: "What number comes after 47?" -> "48"
- ``larger``: "Which is larger, 31 or 19?" -> "31"
- ``reverse``: "Reverse the letters: c a f" -> "f a c"
- ``color``: "What color is a banana?" -> "yellow"

Everything is a pure function of a seed, so the teacher's training set, the students' small transfer
set and the held-out questions are reproducible and disjoint in their random streams. A dialogue is a
``{"messages": [...]}`` row (user question, assistant answer), rendered with the chat template by
``engine.data`` exactly like a user's own chat data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

LETTERS = "abcdefgh"
COLORS = {
    "banana": "yellow", "lemon": "yellow", "sun": "yellow", "grass": "green", "leaf": "green", "frog": "green",
    "sky": "blue", "sea": "blue", "snow": "white", "milk": "white", "cloud": "white", "coal": "black",
    "night": "black", "crow": "black", "cherry": "red", "tomato": "red", "blood": "red", "orange": "orange",
    "carrot": "orange", "pumpkin": "orange",
}
THINGS_BY_COLOR: dict[str, list[str]] = {}
for _thing, _color in COLORS.items():
    THINGS_BY_COLOR.setdefault(_color, []).append(_thing)
TEMPLATES = {
    "add": ["What is {a} + {b}?", "Add {a} and {b}.", "Compute {a} plus {b}."],
    "next": ["What number comes after {n}?", "Which number follows {n}?", "Count one up from {n}."],
    "previous": ["What number comes before {n}?", "Which number precedes {n}?", "Count one down from {n}."],
    "color": ["What color is a {x}?", "Which color does a {x} have?", "Name the color of a {x}."],
    "bigger": ["Name a number bigger than {n}.", "Give me any number above {n}.", "Say a number larger than {n}."],
    "smaller": ["Name a number smaller than {n}.", "Give me any number below {n}.", "Say a number less than {n}."],
    "thing": ["Name something {c}.", "Give an example of a {c} thing.", "Tell me one thing that is {c}."],
}
TASKS = tuple(TEMPLATES)


@dataclass(frozen=True)
class Question:
    """One generated question, the answer written in the dialogue, and every correct answer (when several)."""

    task: str
    prompt: str
    answer: str
    valid: frozenset[str] = frozenset()

    def row(self) -> dict:
        """The dialogue as a data row."""
        return {"messages": [{"role": "user", "content": self.prompt}, {"role": "assistant", "content": self.answer}]}


def make_question(rng: random.Random, task: str) -> Question:
    """A random question of ``task`` (one of ``TASKS``); set-valued tasks get one correct answer at random."""
    template = rng.choice(TEMPLATES[task])
    if task == "add":
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        return Question(task, template.format(a=a, b=b), str(a + b))
    if task == "next":
        n = rng.randint(0, 98)
        return Question(task, template.format(n=n), str(n + 1))
    if task == "previous":
        n = rng.randint(1, 99)
        return Question(task, template.format(n=n), str(n - 1))
    if task == "color":
        thing = rng.choice(sorted(COLORS))
        return Question(task, template.format(x=thing), COLORS[thing])
    if task == "bigger":
        n = rng.randint(0, 97)
        valid = frozenset(str(m) for m in range(n + 1, 100))
        return Question(task, template.format(n=n), str(rng.randint(n + 1, 99)), valid)
    if task == "smaller":
        n = rng.randint(2, 99)
        valid = frozenset(str(m) for m in range(0, n))
        return Question(task, template.format(n=n), str(rng.randint(0, n - 1)), valid)
    if task == "thing":
        color = rng.choice(sorted(THINGS_BY_COLOR))
        things = THINGS_BY_COLOR[color]
        return Question(task, template.format(c=color), rng.choice(things), frozenset(things))
    raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")


def make_questions(n: int, seed: int) -> list[Question]:
    """``n`` questions, the tasks in turn (so every task has its share), in a seeded order."""
    rng = random.Random(seed)
    questions = [make_question(rng, TASKS[i % len(TASKS)]) for i in range(n)]
    rng.shuffle(questions)
    return questions


def check_answer(question: Question, reply: str) -> bool:
    """True when the model's reply is a correct answer (surrounding spaces and a final '.' ignored)."""
    reply = reply.strip().rstrip(".").strip()
    return reply in question.valid if question.valid else reply == question.answer


def tokenizer_texts(seed: int = 0, n: int = 3000) -> list[str]:
    """Text to train the demo's tokenizer on: questions and answers of every task."""
    return [f"{q.prompt}\n{q.answer}" for q in make_questions(n, seed)]
