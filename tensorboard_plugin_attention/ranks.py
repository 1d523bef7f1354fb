"""Which process of a distributed run this is, without importing torch (the writer is numpy-only).

One run directory must have one writer: two processes appending event files with interleaved steps make
TensorBoard's Rust loader purge steps it believes orphaned. So writers refuse to open on a rank other than
zero unless told that this rank writes a run of its own.
"""

from __future__ import annotations

import os
import sys

__all__ = ["check_writer_rank", "process_rank"]


def process_rank() -> tuple[int, int]:
    """(global rank, world size): torch.distributed's when it is imported and initialised, else the launcher's
    environment (``RANK`` / ``WORLD_SIZE``, set by torchrun, Accelerate and Lightning), else (0, 1)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_rank()), int(dist.get_world_size())
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        return 0, 1


def check_writer_rank(what: str, any_rank: bool = False) -> None:
    """Raise ``RuntimeError`` when a writer opens on a rank other than zero (unless ``any_rank``)."""
    rank, world = process_rank()
    if rank != 0 and not any_rank:
        raise RuntimeError(
            f"{what} opened on rank {rank} of {world}: only rank 0 may write a run (a second writer's interleaved "
            "steps make TensorBoard drop data). Write from rank 0 (the training integrations do), or pass "
            "any_rank=True with a run directory of this rank's own.")
