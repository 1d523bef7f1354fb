"""Cost of one attention logging step with 2 ranks (DDP, tensor parallel) relative to one process, and the
bytes moved between ranks, on this machine (gloo on CPU).

    python bench/bench_distributed.py [--tokens 128] [--probes 8] [--long 4096] [--repeats 3]

One logging step = the probes' forward under capture_attention + ``distributed.complete_forward`` (the
exchange; nothing with one process) + ``log_attention`` of every probe + ``flush`` of the writer, timed on
rank 0 (the only writer) from a barrier to its flush. The model: LLaMA-shaped, 4 layers, hidden 256, 8
query heads over 4 key/value heads, random weights. Dense: ``--probes`` probes of ``--tokens`` tokens;
long: one probe of ``--long`` tokens (above the dense limit: summaries and q/k, exact windows on read).
Under tensor parallel each rank computes 4 of the 8 heads (transformers' tp_plan="auto").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.distributed as dist

LAYERS, HIDDEN, HEADS, KV_HEADS, VOCAB = 4, 256, 8, 4, 1000


def _config():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=LAYERS,
                       num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=8192)


def _inputs(args) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"dense": torch.randint(0, VOCAB, (args.probes, args.tokens), generator=g),
            "long": torch.randint(0, VOCAB, (1, args.long), generator=g)}


def _log_step(model, ids: torch.Tensor, writer, step: int) -> tuple[float, int]:
    """One logging step; (seconds on this rank, bytes this rank moved)."""
    from tensorboard_plugin_attention import capture_attention, log_attention
    from tensorboard_plugin_attention.distributed import complete_forward, is_distributed, last_exchange

    if is_distributed():
        dist.barrier()
    t0 = time.perf_counter()
    with torch.no_grad(), capture_attention(model) as cap:
        model(ids)
    fwd = complete_forward(cap.last)
    moved = last_exchange().piece_bytes + last_exchange().manifest_bytes if is_distributed() else 0
    if writer is not None:
        tokens = [f"t{i}" for i in range(ids.shape[1])]
        for j in range(ids.shape[0]):
            log_attention(writer, "bench", fwd, tokens, step, example=str(j), batch_index=j, metric_scalars=False)
        writer.flush()
    return time.perf_counter() - t0, moved


def _forward_seconds(model, ids: torch.Tensor) -> float:
    if dist.is_initialized():
        dist.barrier()
    t0 = time.perf_counter()
    with torch.no_grad():
        model(ids)
    return time.perf_counter() - t0


def measure(model, args, logdir: str, rank: int) -> dict:
    from tensorboard_plugin_attention import AttentionWriter

    out = {}
    writer = AttentionWriter(logdir) if rank == 0 else None
    step = 0
    for name, ids in _inputs(args).items():
        _log_step(model, ids, writer, step)  # warm-up
        step += 1
        times, moved = [], []
        for _ in range(args.repeats):
            t, b = _log_step(model, ids, writer, step)
            times.append(t)
            moved.append(b)
            step += 1
        fwd = min(_forward_seconds(model, ids) for _ in range(args.repeats))
        out[name] = {"log_step_s": min(times), "forward_s": fwd, "bytes_moved": moved[-1]}
    if writer is not None:
        writer.close()
    return out


def rank_main(mode: str, args, outdir: str) -> None:
    from transformers import LlamaForCausalLM

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    path = os.path.join(outdir, "llama")
    if mode == "tp":
        model = LlamaForCausalLM.from_pretrained(path, tp_plan="auto", attn_implementation="sdpa").eval()
    else:
        model = LlamaForCausalLM.from_pretrained(path, attn_implementation="sdpa").eval()
        model = torch.nn.parallel.DistributedDataParallel(model).module  # DDP-wrapped, probes run unwrapped
    result = measure(model, args, os.path.join(outdir, f"run-{mode}"), rank)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, result)
    if rank == 0:
        with open(os.path.join(outdir, f"{mode}.json"), "w") as f:
            json.dump(gathered, f)
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--probes", type=int, default=8)
    p.add_argument("--long", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rank", choices=["ddp", "tp"], help=argparse.SUPPRESS)  # set for the launched ranks
    p.add_argument("--outdir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rank:
        rank_main(args.rank, args, args.outdir)
        return
    from transformers import LlamaForCausalLM

    torch.set_num_threads(1)  # each of the 2 ranks gets one thread (torchrun's OMP_NUM_THREADS=1): compare alike
    with tempfile.TemporaryDirectory() as outdir:
        torch.manual_seed(0)
        LlamaForCausalLM(_config()).save_pretrained(os.path.join(outdir, "llama"))
        model = LlamaForCausalLM.from_pretrained(os.path.join(outdir, "llama"), attn_implementation="sdpa").eval()
        results = {"one process": [measure(model, args, os.path.join(outdir, "run-single"), 0)]}
        for mode in ("ddp", "tp"):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   os.path.abspath(__file__), "--rank", mode, "--outdir", outdir, "--tokens", str(args.tokens),
                   "--probes", str(args.probes), "--long", str(args.long), "--repeats", str(args.repeats)]
            subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            with open(os.path.join(outdir, f"{mode}.json")) as f:
                results[{"ddp": "DDP, 2 ranks", "tp": "tensor parallel, 2 ranks"}[mode]] = json.load(f)
    base = results["one process"][0]
    print(f"LLaMA-shaped {LAYERS} layers x {HEADS} heads ({KV_HEADS} kv), hidden {HIDDEN}; dense: {args.probes} "
          f"probes x {args.tokens} tokens; long: 1 x {args.long} tokens; best of {args.repeats}")
    print("| setting | record | logging step (s) | vs one process | model forward (s) | bytes into rank 0 per step |")
    print("|---|---|---|---|---|---|")
    for name, ranks in results.items():
        for rec in ("dense", "long"):
            r0 = ranks[0][rec]
            moved = r0["bytes_moved"]  # rank 0 counts what it received (the senders count what they sent)
            print(f"| {name} | {rec} | {r0['log_step_s']:.3f} | {r0['log_step_s'] / base[rec]['log_step_s']:.2f}x | "
                  f"{r0['forward_s']:.3f} | {moved:,} |")


if __name__ == "__main__":
    main()
