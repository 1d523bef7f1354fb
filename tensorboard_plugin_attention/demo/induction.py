"""Demo run 2: a small causal transformer trained from scratch until an induction head is born.

Sequences are ``<s>`` followed by a random segment repeated twice, so the second half is predictable only
by looking back: find the previous occurrence of the current token and copy what came after it. Two-layer
models learn this by forming an induction head (Olsson et al. 2022) within a few dozen to a few hundred
steps; the run logs attention densely early (log-spaced) so the tab's "heads over training" shows the jump.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

VOCAB = 64  # token 0 is <s>
SEGMENT = 16


def make_batch(n: int, generator, segment: int = SEGMENT):
    """``(n, 1 + 2 * segment)`` token ids: ``<s>``, a random segment, the same segment again."""
    import torch

    seg = torch.randint(1, VOCAB, (n, segment), generator=generator)
    return torch.cat([torch.zeros(n, 1, dtype=torch.long), seg, seg], dim=1)


def token_strings(ids) -> list[str]:
    return ["<s>" if int(i) == 0 else f"t{int(i)}" for i in ids]


NAME = "induction"


def build_model(seed: int = 0):
    """A 2-layer, 4-head LLaMA-style model (rotary positions), randomly initialised."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                         bos_token_id=0, eos_token_id=None, pad_token_id=None)
    config.name_or_path = "induction-2l4h"
    return LlamaForCausalLM(config)


def train_induction(logdir: str, *, steps: int = 300, checkpoints: int = 16, probes: int = 4, seed: int = 0,
                    lr: float = 1e-3, batch_size: int = 32,
                    progress: Optional[Callable[[int], None]] = None) -> list[int]:
    """Train from scratch, logging loss and the probes' attention (+ q/k) at log-spaced steps.

    Returns the logged steps. Deterministic for a given ``seed`` (CPU).
    """
    import torch

    from ..capture import capture_attention
    from ..integrations.probes import log_spaced_steps
    from ..summary import AttentionWriter

    model = build_model(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    data = torch.Generator().manual_seed(seed)
    probe_ids = make_batch(probes, torch.Generator().manual_seed(seed + 1000))
    log_at = set(log_spaced_steps(steps, checkpoints))  # dense early, where the head forms
    with AttentionWriter(logdir) as writer:
        for step in range(steps + 1):
            if step in log_at:
                model.eval()
                with torch.no_grad(), capture_attention(model, values=True) as cap:
                    model(probe_ids)
                model.train()
                for i in range(probes):
                    writer.add_attention("sequences", cap, token_strings(probe_ids[i]), step, batch_index=i,
                                         example=f"repeat{i}", model_name="induction-2l4h")
            if step == steps:
                break
            x = make_batch(batch_size, data)
            loss = model(x, labels=x).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            writer.add_scalar("loss", loss.item(), step)
            if progress:
                progress(step)
    return sorted(log_at)


def best_induction(example) -> float:
    """The highest induction score over the heads of a logged example (``read_attention`` result)."""
    import numpy as np

    scores = example.header["metrics"]["decoder"]["induction"]
    return float(np.nanmax(np.array([[np.nan if v is None else v for v in layer] for layer in scores], float)))


def run(run_dir: str, *, quick: bool = False, seed: int = 0) -> dict:
    """The demo run (``demo`` CLI): train with a progress bar, return a summary."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tqdm.auto import tqdm

    from ..reader import read_attention

    t0 = time.time()
    total, probes = (30, 2) if quick else (300, 4)
    with tqdm(total=total, desc=f"{NAME}: training from scratch", unit="step", dynamic_ncols=True) as bar:
        steps = train_induction(run_dir, steps=total, checkpoints=8 if quick else 16, probes=probes, seed=seed,
                                progress=lambda s: bar.update(1))
    best: dict = {}
    for ex in read_attention(run_dir, queries_keys=False):
        best[ex.step] = max(best.get(ex.step, 0.0), best_induction(ex))
    return {
        "run": NAME,
        "run_dir": run_dir,
        "steps": steps,
        "probes": [f"repeat{i}" for i in range(probes)],
        "notes": [f"best head's induction score: {best[steps[0]]:.2f} at step {steps[0]} -> "
                  f"{best[steps[-1]]:.2f} at step {steps[-1]}"],
        "seconds": time.time() - t0,
    }
