"""Writing attention: ``log_attention`` and ``AttentionWriter``, the public writing API, and the records they
build (``build_record``: the record header and its asset record; the index ``Summary``; metric scalars).

The input is made an example by ``inputs`` (forms, validation, selection), written through a sink
(``writer.AttentionSink``); steps going backwards are caught by ``step_guard``. numpy only: torch tensors
are accepted (converted with ``.detach().cpu().numpy()``) but torch is never imported here.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from . import format as fmt
from . import inputs, ranks
from .inputs import Example
from .metadata import FORMAT_VERSION, create_summary_metadata
from .records import CaptureRecord, ExampleAttention, ForwardRecord
from .validation import (MAX_LONG_TOKENS, MAX_STEP, MAX_TOKENS, MAX_VALUES, ROW_SUM_TOLERANCE,  # noqa: F401 - re-exported
                         check_model_name, check_names, check_special_tokens, check_wall_time, is_int)
from .writer import AttentionSink, BackgroundWriteError, EventFileSink, SummaryWriterSink

__all__ = ["AttentionWriter", "BackgroundWriteError", "build_record", "log_attention", "sink_for"]


class AttentionWriter:
    """Writes attention records into a TensorBoard run directory.

    Index records go to the run's event files (through TensorBoard's own ``EventFileWriter``), arrays to
    an append-only file in ``<logdir>/plugins/attention/``. Use as a context manager or call ``close()``;
    a closed writer refuses further writes (``ValueError``).
    """

    def __init__(self, logdir: str, *, background: bool = True, max_pending: int = 4, max_queue: int = 10,
                 flush_secs: int = 120, filename_suffix: str = "", any_rank: bool = False):
        """Args:
          logdir: the run directory.
          background: encode and write in a background thread, so ``add_attention`` returns once the input
            is validated (errors in input are still raised at the call; I/O errors in the thread at the next
            call, at ``flush()`` or ``close()``, as ``BackgroundWriteError``; every accepted record is still
            attempted). At most ``max_pending`` examples wait; more block the caller.
          any_rank: allow a writer on a distributed rank other than 0 (for a run directory of its own; by
            default such a writer raises ``RuntimeError`` before writing anything).
        """
        ranks.check_writer_rank("AttentionWriter", any_rank)
        self.logdir = str(logdir)
        self.sink = EventFileSink(self.logdir, background=background, max_pending=max_pending,
                                  max_queue=max_queue, flush_secs=flush_secs, filename_suffix=filename_suffix)

    def add_attention(self, tag: str, attention: Any, tokens: Sequence[str], step: int, **kwargs: Any) -> None:
        """Same as ``log_attention(self, tag, attention, tokens, step, **kwargs)``."""
        log_attention(self, tag, attention, tokens, step, **kwargs)

    def add_scalar(self, tag: str, value: float, step: int, wall_time: Optional[float] = None) -> None:
        """A plain TensorBoard scalar in the same run (e.g. the loss of a plain training loop)."""
        from tensorboard.plugins.scalar import summary_v2 as scalar_summary

        self.sink.check_open()
        check_names(tag, "scalar", step)
        pb = scalar_summary.scalar_pb(tag, float(value))
        self.sink.add_summary(pb, step, check_wall_time(wall_time))

    def flush(self) -> None:
        """Wait until every pending example is written, then flush the event file."""
        self.sink.flush()

    def close(self) -> None:
        """Write what is pending and close the files; raises ``BackgroundWriteError`` if a background write
        failed since the last call. Closing again does nothing."""
        self.sink.close()

    def __enter__(self) -> "AttentionWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def sink_for(writer: Any) -> AttentionSink:
    """The sink ``log_attention`` writes to for ``writer`` (an ``AttentionWriter`` or a ``SummaryWriter``)."""
    if isinstance(writer, AttentionWriter):
        return writer.sink
    if SummaryWriterSink.accepts(writer):
        ranks.check_writer_rank("log_attention through a SummaryWriter")
        return SummaryWriterSink(writer)
    raise ValueError(
        f"writer must be an AttentionWriter or a torch.utils.tensorboard.SummaryWriter, got {type(writer).__name__}"
    )


def log_attention(
    writer: Union[AttentionWriter, Any],
    tag: str,
    attention: Any,
    tokens: Sequence[str],
    step: int,
    *,
    example: Optional[str] = None,
    batch_index: int = 0,
    queries: Any = None,
    keys: Any = None,
    sentence_b_start: Optional[int] = None,
    key_tokens: Optional[Sequence[str]] = None,
    decoder_tokens: Optional[Sequence[str]] = None,
    kind: Optional[str] = None,
    model_name: Optional[str] = None,
    special_tokens: Optional[Mapping[str, Sequence[int]]] = None,
    wall_time: Optional[float] = None,
    metrics: bool = True,
    metric_scalars: bool = True,
    layers: Optional[Sequence[int]] = None,
    heads: Optional[Sequence[int]] = None,
    layer_info: Any = None,
    image: Any = None,
    patches: Any = None,
    processor: Any = None,
) -> None:
    """Log one example's attention (and optionally queries/keys) at ``step``.

    Args:
      writer: an ``AttentionWriter`` or a ``torch.utils.tensorboard.SummaryWriter``.
      tag: groups examples (e.g. ``"probes"``); the TensorBoard tag is ``<tag>/<example>``.
      attention: what ``capture_attention`` recorded (the capture, one forward, or one example), or
        per-layer tensors as transformers returns them with ``output_attentions=True``
        (``(batch, heads, q, k)`` or ``(heads, q, k)`` each; torch or numpy), or a dict
        ``{"encoder"|"decoder"|"cross": per-layer tensors}`` for encoder-decoder models.
      tokens: token strings of the (encoder) input, one per position.
      step: the training step (checkpoint) this attention belongs to.
      example: the example's name (default: ``str(batch_index)``; for one example taken from a batch, such
        as ``cap.last.example(i)`` or ``generation_attention(cap, i)``, its index ``i``).
      batch_index: which example of a batched input to log.
      queries, keys: per-layer ``(batch, heads, len, head_dim)`` tensors, for raw attention input only.
      sentence_b_start: index of the first token of sentence B, for sentence pairs.
      key_tokens: key tokens of cross attention given alone (``tokens`` are then the decoder's).
      decoder_tokens: the decoder's tokens for encoder-decoder models.
      kind: ``"encoder"`` (default), ``"decoder"`` or ``"cross"`` for raw per-layer input.
      model_name: shown in the tab.
      special_tokens: ``{"input": [indices]}`` to override special-token detection.
      metrics: compute per-head metrics (docs/metrics.md) into the record header.
      metric_scalars: also write each layer's strongest head per metric as ordinary TensorBoard scalars
        (tag ``attention_metrics/<tag>/<example>/<metric>/<kind>_layer<l>``, max over heads; for entropy
        the min), so the Scalars tab plots them.
      layers, heads: log only these layers / heads (model indices, kept in the header as ``layer_ids`` /
        ``head_ids``), for big models.
      layer_info: with ``attention=None`` and per-layer ``queries`` ``(heads, n, d)`` / ``keys``
        ``(kv_heads, m, d)`` (grouped-query keys once per key/value head): the score function, a dict for every
        layer or one per layer: ``scaling`` (default ``head_dim ** -0.5``), ``causal`` (default: true for
        ``kind="decoder"``), ``sliding_window``, ``softcap``. The layers are then stored long (format v3): q/k,
        each row's log-sum-exp, a pooled pyramid, per-row top-k and the metrics, computed here chunked
        (torch is needed); any window is rebuilt exactly when read.
      image: the image the example's patch tokens come from (ViT, CLIP, a vision-language model's image
        tokens): a PIL image, an ``H x W x 3`` uint8 array, ``pixel_values`` ``(3, H, W)`` with their
        ``processor``, or PNG / WebP bytes; stored once in the record (PNG, or the WebP as given; format v4).
        It must be the image the model saw: the patch grid must divide it into whole patches.
      patches: where the patches are (``images.PatchLayout``, ``(rows, cols[, patch_start])`` or a dict):
        rows x cols tokens from ``patch_start`` of the input, row-major. Default: what the capture derived from
        the model's config (ViT, DeiT, CLIP / SigLIP vision towers, DINOv2, a LLaVA-shaped model's image
        tokens); required otherwise.
      processor: the processor that made ``pixel_values`` (to undo its normalisation).

    Attention longer than ``MAX_TOKENS`` cannot be given as probabilities; ``capture_attention`` records
    long layers itself above its dense limit, and those are logged as they are.

    Raises ``ValueError`` for bad input, and for a closed writer, before anything is written. With an
    ``AttentionWriter`` (in its default background mode) encoding and writing happen in its writer thread:
    ``flush()`` waits for them; an I/O error there is raised as ``BackgroundWriteError`` at the next call (whose
    own record is still written), ``flush()`` or ``close()``.

    Steps of one ``tag``/``example`` should not go backwards within a run: TensorBoard's default loader
    (``--load_fast=true``) treats a lower step as a restart and drops the higher ones it read before (see
    docs/writers.md). The writer warns once when it is about to.
    """
    # Everything that can be wrong with the input is checked here, in the caller's thread, before anything is
    # written: the background job can then only fail on I/O, and never leaves a half-written record behind.
    sink = sink_for(writer)
    sink.check_open()
    if not is_int(batch_index):
        raise ValueError(f"batch_index must be an integer, got {batch_index!r}")
    own_index = attention.batch_index if isinstance(attention, ExampleAttention) else None
    if own_index is not None:  # one example already taken from its batch (cap.last.example(i), generation_attention)
        if batch_index not in (0, own_index):
            raise ValueError(f"batch_index={batch_index} but the attention given is example {own_index} of its "
                             "batch: leave batch_index out")
        batch_index = own_index
    example = str(batch_index) if example is None else example
    check_names(tag, example, step)
    step = int(step)
    wall_time = check_wall_time(wall_time)
    model_name = check_model_name(model_name)
    ex = inputs.normalise(attention, tokens, batch_index=int(batch_index), queries=queries, keys=keys,
                          key_tokens=key_tokens, decoder_tokens=decoder_tokens, kind=kind, layer_info=layer_info)
    inputs.validate(ex, sentence_b_start)
    ex.ids = inputs.select(ex, layers, heads)
    special = check_special_tokens(special_tokens, ex.sequences)
    encoded_image = _image(image, patches, processor, attention, int(batch_index), ex.sequences)

    def write() -> None:
        header, record = build_record(
            tag, example, ex, step=step, wall_time=wall_time, model_name=model_name,
            sentence_b_start=sentence_b_start, special_tokens=special,
            metrics=inputs.example_metrics(ex) if metrics else None, image=encoded_image, parts=True,
        )
        name, offset = sink.append_asset(record)  # the bytes first, then the index record pointing to them
        length = sum(len(part) for part in record)
        sink.add_summary(_index_summary(tag, example, fmt.index_payload(header, name, offset, length)),
                         step, wall_time)
        if metrics and metric_scalars and header["metrics"]:
            sink.add_summary(_metric_scalars(tag, example, header["metrics"]), step, wall_time)

    sink.steps.check(f"{tag}/{example}", step)
    sink.submit(write, f"{tag}/{example} at step {step}")


def build_record(
    tag: str,
    example: str,
    ex: Example,
    *,
    step: int,
    wall_time: float,
    model_name: Optional[str],
    sentence_b_start: Optional[int],
    special_tokens: Optional[Mapping[str, Sequence[int]]],
    metrics: Optional[dict],
    image: Optional[Any] = None,
    compress_level: int = 1,
    overview: bool = True,
    parts: bool = False,
) -> tuple[dict, Union[bytes, list[bytes]]]:
    """The record header and the encoded asset record for a validated example (``inputs.validate``), with
    its image (``images.EncodedImage``) when given; ``compress_level`` and ``overview`` as
    ``format.encode_record``; ``parts``: the record as its pieces in order (``format.encode_record_parts``)."""
    special_tokens = check_special_tokens(special_tokens, ex.sequences)
    header = {
        "version": FORMAT_VERSION,
        "tag": tag,
        "example": example,
        "step": int(step),
        "wall_time": float(wall_time),
        "model": model_name,
        "sequences": ex.sequences,
        "sentence_b_start": None if sentence_b_start is None else int(sentence_b_start),
        "special_tokens": special_tokens,
        "kinds": {k: dict(fmt.describe_kind(layers, *ex.kind_sequences[k]), **ex.ids.get(k, {}))
                  for k, layers in ex.kinds.items()},
        "metrics": metrics or {},
    }
    if image is not None:
        header["image"] = image.header
    encode = fmt.encode_record_parts if parts else fmt.encode_record
    return header, encode(header, ex.kinds, image=None if image is None else image.data,
                          compress_level=compress_level, overview=overview)


def _image(image: Any, patches: Any, processor: Any, attention: Any, batch_index: int,
           sequences: Mapping[str, list]) -> Optional[Any]:
    """The example's image checked against its patch layout and encoded (``images.prepare_image``), or None."""
    if image is None:
        if patches is not None:
            raise ValueError("patches= describes an image: pass the image too (image=...)")
        return None
    from . import images

    layout = patches
    if layout is None:
        if isinstance(attention, CaptureRecord):
            attention = attention.forwards[-1] if attention.forwards else None
        if isinstance(attention, ForwardRecord):
            attention = attention.example(batch_index)
        layout = getattr(attention, "image_layout", None)
        if layout is None:
            raise ValueError("where are the image's patches? pass patches=(rows, cols, patch_start) (the model's "
                             "config did not say, or the attention was not captured from it)")
    layout = images.PatchLayout.of(layout)
    if layout.sequence not in sequences:
        raise ValueError(f"the patches' sequence {layout.sequence!r} is not one of this record's {sorted(sequences)}")
    return images.prepare_image(image, layout, len(sequences[layout.sequence]), processor=processor)


def _index_summary(tag: str, example: str, payload: bytes) -> summary_pb2.Summary:
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, tensor_shape=tensor_shape_pb2.TensorShapeProto(), string_val=[payload]
    )
    value = summary_pb2.Summary.Value(
        tag=f"{tag}/{example}", metadata=create_summary_metadata(tag, example), tensor=tensor
    )
    return summary_pb2.Summary(value=[value])


def _metric_scalars(tag: str, example: str, metrics: dict) -> summary_pb2.Summary:
    """One scalar per kind, layer and metric: the strongest head (lowest entropy, highest otherwise)."""
    from tensorboard.plugins.scalar import summary_v2 as scalar_summary

    values = []
    for kind, by_name in metrics.items():
        for name, layers in by_name.items():
            pick = min if name == "entropy" else max
            for l, heads in enumerate(layers):
                finite = [v for v in heads if v is not None]
                if finite:
                    values.extend(scalar_summary.scalar_pb(
                        f"attention_metrics/{tag}/{example}/{name}/{kind}_layer{l}", pick(finite)).value)
    return summary_pb2.Summary(value=values)
