"""Demo run 3: a small ViT trained from scratch on generated images, its attention logged with the images.

Each image is a randomly tinted noisy background with one coloured square somewhere; the label is the square's
colour (red or blue), which the mean colour does not give away.
The square is the only thing that matters, so [CLS] learns to look at it: the image view shows [CLS]'s
attention moving onto the square over training, and B - A between two checkpoints shows where it moved.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

NAME = "vit"
SIZE, PATCH = 64, 8  # 8 x 8 patches + [CLS] = 65 tokens


def make_images(n: int, generator) -> tuple:
    """``(n, SIZE, SIZE, 3)`` uint8 images and their labels: a random background tint with noise (so the mean
    colour says nothing) and one 12-px square, red (label 0) or blue (label 1), somewhere."""
    import torch

    tint = torch.randint(60, 190, (n, 1, 1, 3), generator=generator)
    noise = torch.randint(-40, 41, (n, SIZE, SIZE, 3), generator=generator)
    images = (tint + noise).clamp(0, 255).to(torch.uint8)
    rows = torch.randint(0, SIZE - 12, (n,), generator=generator)
    cols = torch.randint(0, SIZE - 12, (n,), generator=generator)
    labels = torch.randint(0, 2, (n,), generator=generator)
    colours = torch.tensor([[240, 20, 20], [20, 20, 240]], dtype=torch.uint8)
    for i in range(n):
        images[i, rows[i]:rows[i] + 12, cols[i]:cols[i] + 12] = colours[labels[i]]
    return images.numpy(), labels


def build(seed: int = 0) -> tuple:
    """The model (random ViT, 4 layers x 4 heads) and its image processor (made here: no download)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    try:  # the Pillow-backed processor (transformers >= 5.x); the plain name warns without torchvision
        from transformers import ViTImageProcessorPil as ViTImageProcessor
    except ImportError:  # pragma: no cover
        from transformers import ViTImageProcessor

    torch.manual_seed(seed)
    config = ViTConfig(image_size=SIZE, patch_size=PATCH, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                       intermediate_size=128, num_labels=2)
    config.name_or_path = "vit-squares-4l4h"
    processor = ViTImageProcessor(size={"height": SIZE, "width": SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return ViTForImageClassification(config), processor


def train(logdir: str, *, steps: int = 150, checkpoints: int = 10, probes: int = 4, seed: int = 0,
          progress: Optional[Callable[[int], None]] = None) -> tuple[list[int], float]:
    """Train, logging loss and the probe images' attention at log-spaced steps; returns (steps, accuracy)."""
    import torch

    from ..integrations.loop import AttentionLogger
    from ..integrations.probes import log_spaced_steps

    model, processor = build(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    data = torch.Generator().manual_seed(seed)
    probe_images, _ = make_images(probes, torch.Generator().manual_seed(seed + 1000))
    log_at = log_spaced_steps(steps, checkpoints)
    with AttentionLogger(model, processor, [], logdir, steps=log_at, images=list(probe_images),
                         names=[f"square{i}" for i in range(probes)], model_name="vit-squares-4l4h",
                         values=True) as attn:
        writer = attn.writer
        for step in range(steps + 1):
            attn.maybe_log(step)
            if step == steps:
                break
            images, labels = make_images(32, data)
            pixels = processor(images=list(images), return_tensors="pt")["pixel_values"]
            model.train()
            loss = model(pixel_values=pixels, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            writer.add_scalar("loss", loss.item(), step)
            if progress:
                progress(step)
        images, labels = make_images(256, torch.Generator().manual_seed(seed + 2000))
        model.eval()
        with torch.no_grad():
            pixels = processor(images=list(images), return_tensors="pt")["pixel_values"]
            accuracy = float((model(pixel_values=pixels).logits.argmax(-1) == labels).float().mean())
        writer.add_scalar("eval/accuracy", accuracy, steps)
    return log_at, accuracy


def run(run_dir: str, *, quick: bool = False, seed: int = 0) -> dict:
    """The demo run (``demo`` CLI): train with a progress bar, return a summary."""
    from tqdm.auto import tqdm

    t0 = time.time()
    total = 20 if quick else 150
    with tqdm(total=total, desc=f"{NAME}: training from scratch", unit="step", dynamic_ncols=True) as bar:
        steps, accuracy = train(run_dir, steps=total, checkpoints=5 if quick else 10, probes=2 if quick else 4,
                                seed=seed, progress=lambda s: bar.update(1))
    first, last = (best_square_attention(run_dir, s) for s in (steps[0], steps[-1]))
    return {
        "run": NAME,
        "run_dir": run_dir,
        "steps": steps,
        "probes": [f"square{i}" for i in range(2 if quick else 4)],
        "notes": [f"held-out accuracy {accuracy:.2f}; the best head's share of [CLS]'s patch attention on the "
                  f"square: {first:.2f} at step {steps[0]} -> {last:.2f} at step {steps[-1]} (image view)"],
        "seconds": time.time() - t0,
    }


def best_square_attention(run_dir: str, step: int) -> float:
    """Over the probes logged at ``step``: the mean over probes of the best head's share of [CLS]'s attention
    to patches that lands on the square (found in the stored image by its colour)."""
    import io

    import numpy as np
    from PIL import Image

    from ..reader import read_attention

    shares = []
    for rec in read_attention(run_dir, step=step, queries_keys=False):
        img = np.asarray(Image.open(io.BytesIO(rec.image))).astype(int)
        square = np.argwhere(np.abs(img[:, :, 0] - img[:, :, 2]) > 200) // PATCH
        (r0, c0), (r1, c1) = square.min(0), square.max(0)
        grid = SIZE // PATCH
        att = rec.attention["encoder"][:, :, 0, 1:].reshape(*rec.attention["encoder"].shape[:2], grid, grid)
        total = att.sum((-1, -2))
        on = att[:, :, r0:r1 + 1, c0:c1 + 1].sum((-1, -2))
        shares.append(float(np.max(np.where(total > 0, on / np.maximum(total, 1e-12), 0))))
    return float(np.mean(shares))
