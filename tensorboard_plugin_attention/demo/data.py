"""The demo's built-in task: does sentence B say the same thing as sentence A? (paraphrase detection)

Pairs are generated from templates, so nothing is downloaded and the task is small enough to learn on a CPU in
a couple of minutes. What separates the two labels is where attention has to look across the pair: the same
words in another order can be a paraphrase (passive voice, a moved adverb) or the opposite (subject and object
swapped); a synonym keeps the meaning; a ``not`` or one changed noun does not.

Label 1 (paraphrase): synonym verb; active -> passive; adverb moved.
Label 0 (different): subject/object swapped; swapped passive; negation; a different object.
"""

from __future__ import annotations

import random
from typing import Optional

AGENTS = ["dog", "cat", "teacher", "doctor", "student", "farmer", "child", "girl", "boy", "chef", "pilot",
          "nurse", "driver", "baker", "singer", "lawyer"]
# past tense, a synonym in the past tense, past participle, base form
VERBS = [
    ("chased", "pursued", "chased", "chase"),
    ("helped", "assisted", "helped", "help"),
    ("called", "phoned", "called", "call"),
    ("watched", "observed", "watched", "watch"),
    ("hugged", "embraced", "hugged", "hug"),
    ("praised", "complimented", "praised", "praise"),
    ("visited", "went to see", "visited", "visit"),
    ("met", "encountered", "met", "meet"),
    ("followed", "trailed", "followed", "follow"),
    ("thanked", "showed gratitude to", "thanked", "thank"),
]
WHEN = ["yesterday", "today", "last night", "this morning", "on monday"]

LABELS = ["different", "paraphrase"]


def _s(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def make_pair(rng: random.Random, label: Optional[int] = None) -> tuple[str, str, int]:
    """One (sentence A, sentence B, label) example."""
    s, o, o2 = rng.sample(AGENTS, 3)
    past, syn, pp, base = rng.choice(VERBS)
    label = rng.randint(0, 1) if label is None else label
    a = f"the {s} {past} the {o}"
    if label == 1:
        form = rng.choice(["synonym", "passive", "adverb"])
        if form == "synonym":
            b = f"the {s} {syn} the {o}"
        elif form == "passive":
            b = f"the {o} was {pp} by the {s}"
        else:
            when = rng.choice(WHEN)
            a, b = f"{when} the {s} {past} the {o}", f"the {s} {past} the {o} {when}"
    else:
        form = rng.choice(["swap", "swap_passive", "negation", "other"])
        if form == "swap":
            b = f"the {o} {past} the {s}"
        elif form == "swap_passive":
            b = f"the {s} was {pp} by the {o}"
        elif form == "negation":
            b = f"the {s} did not {base} the {o}"
        else:
            b = f"the {s} {past} the {o2}"
    if rng.random() < 0.5:
        a, b = b, a
    return _s(a), _s(b), label


# Probes: fixed inputs whose attention is logged at every checkpoint (names are the example names).
PROBES = [
    ("swap", ("The dog chased the cat.", "The cat chased the dog.")),
    ("passive", ("The teacher helped the student.", "The student was helped by the teacher.")),
    ("negation", ("The doctor called the nurse.", "The doctor did not call the nurse.")),
    ("synonym", ("The girl watched the baker.", "The girl observed the baker.")),
    ("single", "The chef who praised the pilot hugged the farmer yesterday."),
]


def make_dataset(n: int, seed: int) -> list[tuple[str, str, int]]:
    """``n`` balanced examples, none equal to a probe."""
    rng = random.Random(seed)
    probe_pairs = {tuple(t) for _, t in PROBES if isinstance(t, tuple)}
    out: list[tuple[str, str, int]] = []
    while len(out) < n:
        a, b, y = make_pair(rng, label=len(out) % 2)
        if (a, b) not in probe_pairs and (b, a) not in probe_pairs:
            out.append((a, b, y))
    rng.shuffle(out)
    return out
