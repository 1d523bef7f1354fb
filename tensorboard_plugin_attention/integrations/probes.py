"""Probe texts run through a model under ``capture_attention`` and logged: shared by the Trainer callback,
the plain-loop logger and the backfill command.

A *probe* is a fixed input (a text, or a sentence pair) whose attention is logged at every chosen checkpoint,
so the same example can be compared across training. Probes are tokenized once; each checkpoint runs them in
batches in eval mode under ``torch.no_grad()`` on the model's device, then puts every module back in the mode
it was in. Outside a logged checkpoint nothing here runs: the model keeps its own (fast) attention
implementation, ``capture_attention`` switches it to eager attention only for the probe pass.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

logger = logging.getLogger(__name__)

__all__ = ["ImageProbeRunner", "Probe", "ProbeRunner", "Schedule", "as_probes", "load_probes", "log_spaced_steps",
           "make_runner", "model_name_of"]

ProbeLike = Union[str, Sequence[str], "Probe", dict]


# ------------------------------------------------------------------------------------------- probes
@dataclass(frozen=True)
class Probe:
    """One probe input: a text, or a sentence pair (``text_pair`` set), logged as example ``name``."""

    text: str
    text_pair: Optional[str] = None
    name: str = ""


def as_probes(texts: Iterable[ProbeLike], names: Optional[Sequence[str]] = None) -> list[Probe]:
    """Normalise probe inputs: strings, ``(a, b)`` pairs, ``Probe`` or ``{"text", "text_pair", "name"}`` dicts.

    Example names default to the probe's index (``"0"``, ``"1"``, ...); ``names`` overrides them.
    """
    if isinstance(texts, (str, bytes)):
        raise ValueError("texts must be a list of probe texts (or (a, b) pairs), not a single string")
    out = []
    for i, t in enumerate(texts):
        if isinstance(t, Probe):
            p = t
        elif isinstance(t, str):
            p = Probe(t)
        elif isinstance(t, dict):
            p = Probe(str(t["text"]), t.get("text_pair"), str(t.get("name", "")))
        elif isinstance(t, (tuple, list)) and len(t) == 2 and all(isinstance(s, str) for s in t):
            p = Probe(t[0], t[1])
        else:
            raise ValueError(f"probe {i} must be a string or an (a, b) pair of strings, got {t!r}")
        if not p.text.strip() or (p.text_pair is not None and not p.text_pair.strip()):
            raise ValueError(f"probe {i} is empty: {t!r}")
        out.append(p)
    if not out:
        raise ValueError("no probe texts given")
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(out):
            raise ValueError(f"{len(names)} names for {len(out)} probes: give one name per probe")
        out = [Probe(p.text, p.text_pair, n) for p, n in zip(out, names)]
    out = [p if p.name else Probe(p.text, p.text_pair, str(i)) for i, p in enumerate(out)]
    seen: set = set()
    for p in out:
        if "/" in p.name or not p.name.strip():
            raise ValueError(f"probe name {p.name!r} must be non-empty and must not contain '/'")
        if p.name in seen:
            raise ValueError(f"probe name {p.name!r} is used twice: names must be unique")
        seen.add(p.name)
    return out


def load_probes(path: str) -> list[Probe]:
    """Probes from a text file: one probe per line; a tab separates the two sentences of a pair.

    Blank lines are skipped. Examples are named by their index among the probes (``"0"``, ``"1"``, ...).
    """
    probes = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) == 1:
                probes.append(parts[0].strip())
            elif len(parts) == 2:
                probes.append((parts[0].strip(), parts[1].strip()))
            else:
                raise ValueError(f"{path}:{lineno}: {len(parts) - 1} tabs; a probe is one text or two "
                                 "tab-separated sentences")
    if not probes:
        raise ValueError(f"{path} holds no probe texts (one per line; a tab separates a sentence pair)")
    return as_probes(probes)


# ----------------------------------------------------------------------------------------- schedule
def log_spaced_steps(last: int, n: int = 12, *, first: int = 1, include_zero: bool = True) -> list[int]:
    """About ``n`` steps from ``first`` to ``last`` spaced evenly in log scale (dense early, where attention
    changes fastest), plus step 0: e.g. ``log_spaced_steps(200, 10)`` -> ``[0, 1, 2, 3, 6, 11, 19, 34, 62, 111, 200]``.
    """
    if last < first:
        return [0] if include_zero else []
    steps: set = {0} if include_zero else set()
    k = n
    while True:  # small ranges round several points onto the same step: add points until n are distinct
        s = {int(round(math.exp(math.log(first) + (math.log(last) - math.log(first)) * i / max(k - 1, 1))))
             for i in range(k)}
        if len(s) >= min(n, last - first + 1) or k > 4 * n:
            break
        k += 1
    return sorted(steps | s)


class Schedule:
    """When to log: every ``every_n_steps`` steps and/or at the given ``steps``."""

    def __init__(self, every_n_steps: Optional[int] = None, steps: Optional[Iterable[int]] = None):
        if every_n_steps is not None and (isinstance(every_n_steps, bool) or int(every_n_steps) < 1):
            raise ValueError(f"every_n_steps must be a positive integer, got {every_n_steps!r}")
        self.every_n_steps = None if every_n_steps is None else int(every_n_steps)
        self.steps = frozenset(int(s) for s in steps) if steps is not None else frozenset()
        if any(s < 0 for s in self.steps):
            raise ValueError("steps must be non-negative")

    def due(self, step: int) -> bool:
        return step in self.steps or (self.every_n_steps is not None and step % self.every_n_steps == 0)

    def __repr__(self) -> str:
        return f"Schedule(every_n_steps={self.every_n_steps}, steps={sorted(self.steps)})"


# -------------------------------------------------------------------------------------- model helpers
def model_name_of(model: Any) -> str:
    """A short model name from its config: the basename of ``name_or_path`` or the ``model_type``."""
    config = getattr(model, "config", None)
    if config is None:
        return type(model).__name__
    name = str(getattr(config, "_name_or_path", "") or "").rstrip("/\\")
    base = os.path.basename(name)
    if base.startswith("checkpoint-"):  # Trainer checkpoint: the run's folder says more
        base = os.path.basename(os.path.dirname(name)) or base
    return base or str(getattr(config, "model_type", "") or type(model).__name__)


def _unwrap(model: Any) -> Any:
    """The module inside DataParallel / DistributedDataParallel (their forward adds nothing to inference)."""
    while type(model).__name__ in ("DistributedDataParallel", "DataParallel") and hasattr(model, "module"):
        model = model.module
    return model


def _device(model: Any) -> Any:
    import torch

    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@contextlib.contextmanager
def inference_mode(model: Any) -> Iterator[None]:
    """Eval mode and ``torch.no_grad()`` for the block; every module's own training flag is put back after."""
    import torch

    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


# -------------------------------------------------------------------------------------------- runner
@dataclass
class _Encoded:
    probe: Probe
    input_ids: list[int]
    token_type_ids: Optional[list[int]]
    tokens: list[str]
    sentence_b_start: Optional[int]
    special: list[int]


class ProbeRunner:
    """Tokenizes the probes once; runs them through a model under ``capture_attention`` and logs them.

    Args:
      tokenizer: a transformers tokenizer (fast or slow).
      texts: probe texts: strings, ``(a, b)`` sentence pairs, or ``Probe`` objects.
      names: example names, one per probe (default ``"0"``, ``"1"``, ...).
      tag: the tag the probes are logged under (TensorBoard tag ``<tag>/<name>``).
      max_length: probes are truncated to this many tokens.
      batch_size: probes per forward pass.
      model_name: shown in the tab (default: from the model's config).
      metric_scalars: also write each layer's strongest-head metrics as TensorBoard scalars (see
        ``log_attention``).
      queries_keys_every: ``log_checkpoint`` keeps queries/keys on every N-th logged checkpoint (the first
        included); 0 or None: never.
      values: also record each key's value norm ``||v_j W_O^h||`` (``capture_attention(values=True)``), so the
        tab and ``read_attention(weighting="value")`` can show value-weighted attention.
      collective_timeout: with several processes (torch.distributed), seconds a rank waits for the others at
        the probes' exchange before raising ``DistributedCaptureError`` (default
        ``distributed.DEFAULT_TIMEOUT_S``).

    With several processes every rank must call ``run`` / ``log`` at the same steps: the probes run on every
    rank (sharded models need all of them in a forward), the pieces become one record on rank 0
    (``distributed.complete_forward``), and only rank 0 writes.
    """

    def __init__(self, tokenizer: Any, texts: Iterable[ProbeLike], *, names: Optional[Sequence[str]] = None,
                 tag: str = "probes", max_length: int = 128, batch_size: int = 16,
                 model_name: Optional[str] = None, queries_keys_every: Optional[int] = 1,
                 metric_scalars: bool = True, collective_timeout: Optional[float] = None, values: bool = False):
        if tokenizer is None:
            raise ValueError("a tokenizer is needed to run the probes")
        if int(batch_size) < 1 or int(max_length) < 2:
            raise ValueError("batch_size must be >= 1 and max_length >= 2")
        self.tokenizer = tokenizer
        self.probes = as_probes(texts, names)
        self.tag = tag
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.model_name = model_name
        self.metric_scalars = bool(metric_scalars)
        self.collective_timeout = collective_timeout
        self.values = _check_values(values)
        if queries_keys_every is not None and (isinstance(queries_keys_every, bool) or int(queries_keys_every) < 0):
            raise ValueError(f"queries_keys_every must be a non-negative integer, got {queries_keys_every!r}")
        self.queries_keys_every = int(queries_keys_every or 0)
        self.encoded = [self._encode(p) for p in self.probes]
        self.logged_steps: list[int] = []  # steps this process ran the probes at (every rank)
        self._first_done = False
        self._checkpoints = 0  # log_checkpoint calls so far

    # -- tokenizing
    def _encode(self, probe: Probe) -> _Encoded:
        tok = self.tokenizer
        enc = tok(probe.text, probe.text_pair, truncation=True, max_length=self.max_length)
        ids = list(enc["input_ids"])
        if not ids:
            raise ValueError(f"probe {probe.name!r} tokenizes to nothing")
        tt = enc.get("token_type_ids")
        sbs = None
        if probe.text_pair is not None:
            seq_ids = None
            if getattr(enc, "encodings", None):  # fast tokenizer: which sequence each token belongs to
                seq_ids = enc.sequence_ids(0)
            if seq_ids is not None and 1 in seq_ids:
                sbs = seq_ids.index(1)
                # a separator just before sentence B belongs to no sequence: B starts after it either way
            elif tt is not None and 1 in tt:
                sbs = list(tt).index(1)
            if sbs is not None and not 0 < sbs < len(ids):
                sbs = None
            if sbs is None:
                logger.warning("probe %r: cannot tell where sentence B starts (tokenizer gives neither sequence "
                               "ids nor token type ids); logged without sentence_b_start", probe.name)
        special_ids = set(getattr(tok, "all_special_ids", []) or [])
        try:
            tokens = tok.convert_ids_to_tokens(ids)
        except Exception:  # noqa: BLE001 - some tokenizers lack it
            tokens = [tok.decode([i]) for i in ids]
        tokens = [str(t) for t in tokens]
        return _Encoded(probe, ids, None if tt is None else list(tt), tokens, sbs,
                        [i for i, t in enumerate(ids) if t in special_ids])

    def _batch(self, items: list[_Encoded], model: Any) -> dict:
        import torch

        tok = self.tokenizer
        pad_id = getattr(tok, "pad_token_id", None)
        if pad_id is None:
            pad_id = getattr(tok, "eos_token_id", None) or 0  # masked anyway
        n = max(len(e.input_ids) for e in items)
        # Always padded on the right, whatever the tokenizer's padding side: every probe's tokens then sit at
        # positions 0..len-1 as in an unbatched forward (left padding shifts absolute position embeddings,
        # e.g. BERT's), and causal models never attend to the padding after a token.
        ids = torch.full((len(items), n), int(pad_id), dtype=torch.long)
        mask = torch.zeros((len(items), n), dtype=torch.long)
        use_tt = all(e.token_type_ids is not None for e in items) and _accepts(model, "token_type_ids")
        tt = torch.zeros((len(items), n), dtype=torch.long) if use_tt else None
        for r, e in enumerate(items):
            m = len(e.input_ids)
            sl = slice(0, m)
            ids[r, sl] = torch.tensor(e.input_ids)
            mask[r, sl] = 1
            if tt is not None:
                tt[r, sl] = torch.tensor(e.token_type_ids)
        batch = {"input_ids": ids, "attention_mask": mask}
        if tt is not None:
            batch["token_type_ids"] = tt
        return batch

    # -- running
    def run(self, model: Any, *, queries_keys: bool = True) -> list[tuple[Any, int]]:
        """Run every probe; returns ``(CapturedForward, batch_index)`` per probe, in probe order.

        Eval mode and ``no_grad`` during the pass, the modules' modes restored after; the attention
        implementation is restored by ``capture_attention``.
        """
        from .. import distributed
        from ..capture import capture_attention

        model = _unwrap(model)
        device = _device(model)
        config = getattr(model, "config", None)
        enc_dec = bool(getattr(config, "is_encoder_decoder", False))
        out: list[tuple[Any, int]] = []
        several = distributed.is_distributed()
        with inference_mode(model), capture_attention(model, queries_keys=queries_keys, values=self.values) as cap:
            for start in range(0, len(self.encoded), self.batch_size):
                chunk = self.encoded[start:start + self.batch_size]
                fwd, error = None, None
                try:
                    batch = {k: v.to(device) for k, v in self._batch(chunk, model).items()}
                    n_before = len(cap.forwards)
                    if enc_dec and "input_ids" in batch:  # the encoder alone: probes are inputs, there is no target sequence
                        batch.pop("token_type_ids", None)
                        model.get_encoder()(**batch)
                    else:
                        model(**batch)
                    if len(cap.forwards) == n_before:
                        raise RuntimeError("capture_attention recorded no forward pass for the probes")
                    fwd = cap.forwards[-1]
                except Exception as e:  # noqa: BLE001 - with several processes every rank must hear of it
                    if not several:
                        raise
                    error = e
                if several:  # one whole forward on rank 0 from every rank's heads / layers (None elsewhere)
                    fwd = distributed.complete_forward(fwd, error, timeout=self.collective_timeout)
                if fwd is not None:
                    out.extend((fwd, j) for j in range(len(chunk)))
        return out

    def log(self, writer: Any, model: Any, step: int, *, queries_keys: bool = True) -> int:
        """Run the probes and log each as its own example at ``step`` (``writer=None``: run only).

        ``writer`` is an ``AttentionWriter`` (which encodes and writes in its background thread) or a
        ``torch.utils.tensorboard.SummaryWriter`` (flushed after). Returns the number of examples logged.
        """
        from ..summary import AttentionWriter, BackgroundWriteError, log_attention

        results = self.run(model, queries_keys=queries_keys)
        self.logged_steps.append(int(step))
        if writer is None:
            return 0
        name = self.model_name or model_name_of(_unwrap(model))
        earlier: Optional[BackgroundWriteError] = None
        for e, (fwd, j) in zip(self.encoded, results):
            try:
                log_attention(writer, self.tag, fwd, step=int(step), batch_index=j, model_name=name,
                              metric_scalars=self.metric_scalars, **self._log_args(e, fwd, j))
            except BackgroundWriteError as err:  # an earlier record's I/O error: this one was accepted
                earlier = earlier or err
        if hasattr(writer, "flush") and (not isinstance(writer, AttentionWriter) or _several_processes()):
            writer.flush()  # with several processes a rank may die any time: what was logged is on disk
        if earlier is not None:
            raise earlier
        return len(results)

    def _log_args(self, e: _Encoded, fwd: Any, j: int) -> dict:
        """What ``log_attention`` needs of probe ``e`` (example ``j`` of ``fwd``) besides the attention."""
        return dict(tokens=e.tokens, example=e.probe.name, sentence_b_start=e.sentence_b_start,
                    special_tokens={"input": e.special})

    def log_checkpoint(self, writer: Any, model: Any, step: int) -> bool:
        """``log`` for a training loop, queries/keys on every ``queries_keys_every``-th call; errors at the first checkpoint raise (set-up mistakes show at once);
        later ones (e.g. NaN attention of a diverging run) are logged as warnings and the checkpoint skipped,
        so logging never ends a long run. Returns whether the checkpoint was logged."""
        every = self.queries_keys_every
        queries_keys = bool(every) and self._checkpoints % every == 0
        self._checkpoints += 1
        from ..distributed import DistributedCaptureError
        from ..summary import BackgroundWriteError

        try:
            self.log(writer, model, step, queries_keys=queries_keys)
        except BackgroundWriteError as e:  # this step's probes were accepted; an earlier record was lost
            if not self._first_done:
                raise
            logger.warning("attention probes: %s", e)
        except DistributedCaptureError:  # every rank raises it together: skipping on some would hang the others
            raise
        except Exception as e:  # noqa: BLE001
            if not self._first_done:
                raise
            logger.warning("attention probes at step %d not logged: %s", step, e)
            return False
        self._first_done = True
        return True


class ImageProbeRunner(ProbeRunner):
    """``ProbeRunner`` for vision models: fixed probe images run through the model (``pixel_values`` made once
    by ``image_processor``) and logged with their image and patch grid (``images.layout_from_config``).

    Args:
      image_processor: the model's image processor (e.g. ``AutoImageProcessor.from_pretrained(...)``, or the
        Trainer's ``processing_class``).
      images: probe images (PIL images or ``H x W x 3`` uint8 arrays).
      names: example names (default ``"0"``, ``"1"``, ...); the other arguments as ``ProbeRunner``'s.
    """

    def __init__(self, image_processor: Any, images: Iterable[Any], *, names: Optional[Sequence[str]] = None,
                 tag: str = "probes", batch_size: int = 16, model_name: Optional[str] = None,
                 queries_keys_every: Optional[int] = 1, metric_scalars: bool = True,
                 collective_timeout: Optional[float] = None, values: bool = False):
        if image_processor is None or not callable(image_processor):
            raise ValueError("an image processor is needed to run image probes")
        pictures = list(images)
        if not pictures:
            raise ValueError("no probe images given")
        names = [str(i) for i in range(len(pictures))] if names is None else [str(n) for n in names]
        if len(names) != len(pictures) or len(set(names)) != len(names) or any("/" in n or not n for n in names):
            raise ValueError("names must be one unique, non-empty name without '/' per probe image")
        if int(batch_size) < 1:
            raise ValueError("batch_size must be >= 1")
        self.processor = image_processor
        self.pixel_values = image_processor(images=pictures, return_tensors="pt")["pixel_values"]
        self.encoded = [_Encoded(Probe(n, None, n), [], None, [], None, []) for n in names]
        self.tag, self.batch_size, self.model_name = tag, int(batch_size), model_name
        self.metric_scalars, self.collective_timeout = bool(metric_scalars), collective_timeout
        self.values = _check_values(values)
        if queries_keys_every is not None and (isinstance(queries_keys_every, bool) or int(queries_keys_every) < 0):
            raise ValueError(f"queries_keys_every must be a non-negative integer, got {queries_keys_every!r}")
        self.queries_keys_every = int(queries_keys_every or 0)
        self.logged_steps = []
        self._first_done = False
        self._checkpoints = 0

    def _batch(self, items: list[_Encoded], model: Any) -> dict:
        index = {e.probe.name: i for i, e in enumerate(self.encoded)}
        return {"pixel_values": self.pixel_values[[index[e.probe.name] for e in items]]}

    def _log_args(self, e: _Encoded, fwd: Any, j: int) -> dict:
        layout = fwd.example(j).image_layout
        if layout is None:
            raise ValueError("the model's config does not say where its image patches are (not a ViT-, CLIP- or "
                             "DINOv2-like vision model?)")
        i = next(i for i, x in enumerate(self.encoded) if x.probe.name == e.probe.name)
        return dict(tokens=layout.tokens(), example=e.probe.name,
                    image=self.pixel_values[i], processor=self.processor)


def make_runner(processor: Any, texts: Iterable[ProbeLike], images: Optional[Iterable[Any]] = None,
                **kwargs: Any) -> ProbeRunner:
    """The runner the integrations use: ``ImageProbeRunner`` over ``images`` (``processor``: the image
    processor) when images are given, else ``ProbeRunner`` over ``texts`` (``processor``: the tokenizer)."""
    if images is None:
        return ProbeRunner(processor, texts, **kwargs)
    if list(texts):
        raise ValueError("give probe texts or probe images, not both (vision-language probes: log_attention)")
    kwargs.pop("max_length", None)
    return ImageProbeRunner(processor, images, **kwargs)


def _check_values(values: Any) -> bool:
    if not isinstance(values, bool):
        raise ValueError(f"values must be True or False, got {values!r}")
    return values


def _several_processes() -> bool:
    from ..ranks import process_rank

    return process_rank()[1] > 1


def _accepts(model: Any, arg: str) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return True
    return arg in params
