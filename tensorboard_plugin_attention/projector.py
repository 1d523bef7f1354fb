"""Queries and keys of chosen heads for TensorBoard's own Projector tab (AttentionViz's joint q/k embedding).

One embedding per head (layer, head) and step: the queries of the chosen examples followed by their keys,
one row each, in one TSV tensor file, with a metadata TSV (``token``, ``position``, ``example``, ``type``
q or k, ``step``), listed in a ``projector_config.pbtxt`` (tensorboard.plugins.projector's protos). By
default the files go where the projector plugin looks for a run's assets,
``<run>/plugins/org_tensorflow_tensorboard_projector/``, so ``tensorboard --logdir`` on the same logdir shows
them in its Projector tab under the same run (embeddings of other names already there are kept).

``normalize=True`` (default) applies AttentionViz's two transformations, which leave every attention weight
unchanged: the queries are scaled by ``s`` and the keys by ``1 / s`` so that their mean norms are equal
(``sq . k/s = q . k``), then the keys are translated so that their mean is the queries' mean (a row's softmax
ignores ``q . c``, added to all its scores). Close queries and keys then mean high
attention, which is what the joint plot is for.

    from tensorboard_plugin_attention.projector import export_projector
    export_projector("runs/demo", run=".", tag="probes", heads=[(1, 3)], step=100)

Writers that hold q/k in memory call :func:`write_projector` with :class:`HeadVectors` directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np

from . import format as fmt
from . import layouts

__all__ = ["HeadVectors", "PROJECTOR_ASSETS", "export_projector", "head_vectors", "joint_normalize",
           "write_projector"]

PROJECTOR_ASSETS = os.path.join("plugins", "org_tensorflow_tensorboard_projector")  # the projector's asset dir
CONFIG_NAME = "projector_config.pbtxt"
METADATA_COLUMNS = ("token", "position", "example", "type", "step")


@dataclass
class HeadVectors:
    """One head's queries and keys over one or more examples at one step, and what each row is."""

    name: str  # the embedding's name in the Projector
    queries: list = field(default_factory=list)  # per example: (q_len, d)
    keys: list = field(default_factory=list)  # per example: (k_len, d)
    query_tokens: list = field(default_factory=list)  # per example: q_len strings
    key_tokens: list = field(default_factory=list)  # per example: k_len strings
    examples: list = field(default_factory=list)  # per example: its name
    step: int = 0

    def add(self, example: str, queries: np.ndarray, keys: np.ndarray, query_tokens: Sequence[str],
            key_tokens: Sequence[str]) -> None:
        """Adds one example's vectors (checked: 2-D, one token per row, one head size for all)."""
        q, k = np.asarray(queries, np.float32), np.asarray(keys, np.float32)
        if q.ndim != 2 or k.ndim != 2 or q.shape[1] != k.shape[1]:
            raise ValueError(f"{self.name}: queries and keys must be (tokens, head_dim) with one head_dim, "
                             f"got {q.shape} and {k.shape}")
        if self.queries and q.shape[1] != self.queries[0].shape[1]:
            raise ValueError(f"{self.name}: example {example!r} has head_dim {q.shape[1]}, "
                             f"not {self.queries[0].shape[1]}")
        if len(query_tokens) != len(q) or len(key_tokens) != len(k):
            raise ValueError(f"{self.name}: {len(query_tokens)} query / {len(key_tokens)} key tokens for "
                             f"{len(q)} queries / {len(k)} keys")
        if not (np.isfinite(q).all() and np.isfinite(k).all()):
            raise ValueError(f"{self.name}: example {example!r} has non-finite queries or keys")
        self.queries.append(q)
        self.keys.append(k)
        self.query_tokens.append([str(t) for t in query_tokens])
        self.key_tokens.append([str(t) for t in key_tokens])
        self.examples.append(str(example))

    def matrix(self, normalize: bool = True) -> np.ndarray:
        """``(all queries + all keys, d)`` float32: the queries of every example, then the keys."""
        q, k = np.concatenate(self.queries), np.concatenate(self.keys)
        if normalize:
            q, k = joint_normalize(q, k)
        return np.concatenate([q, k]).astype(np.float32)

    def metadata(self) -> list:
        """One row of :data:`METADATA_COLUMNS` per row of :meth:`matrix`."""
        rows = []
        for what, tokens in (("q", self.query_tokens), ("k", self.key_tokens)):
            for example, toks in zip(self.examples, tokens):
                rows.extend((t, str(i), example, what, str(self.step)) for i, t in enumerate(toks))
        return rows


def joint_normalize(queries: np.ndarray, keys: np.ndarray) -> tuple:
    """AttentionViz's attention-preserving transformations (module docstring): queries x s and keys / s with
    equal mean norms, then the keys moved onto the queries' mean. float64."""
    q, k = np.asarray(queries, np.float64), np.asarray(keys, np.float64)
    if len(q) == 0 or len(k) == 0:
        return q, k
    nq, nk = np.linalg.norm(q, axis=1).mean(), np.linalg.norm(k, axis=1).mean()
    if nq > 0 and nk > 0:
        s = np.sqrt(nk / nq)
        q, k = q * s, k / s
    return q, k + (q.mean(axis=0) - k.mean(axis=0))


def _cell(text: str) -> str:
    """A TSV cell: token text is untrusted; tabs and line breaks would split rows or columns."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _file_stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_") or "embedding"


def write_projector(out_dir: str, heads: Iterable[HeadVectors], normalize: bool = True) -> str:
    """Writes each head's tensor and metadata TSV into ``out_dir`` and lists them in its
    ``projector_config.pbtxt`` (embeddings of other names already listed there are kept); returns the
    config's path."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    heads = list(heads)
    if not heads:
        raise ValueError("no heads to export")
    os.makedirs(out_dir, exist_ok=True)
    config_path = os.path.join(out_dir, CONFIG_NAME)
    config = projector_config_pb2.ProjectorConfig()
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as f:
            text_format.Parse(f.read(), config)
    names = {h.name for h in heads}
    kept = [e for e in config.embeddings if e.tensor_name not in names]
    del config.embeddings[:]
    config.embeddings.extend(kept)
    used = {e.tensor_path for e in kept}
    for h in heads:
        if not h.queries:
            raise ValueError(f"{h.name}: no examples")
        stem = _file_stem(h.name)
        while stem + ".tsv" in used:
            stem += "_"
        used.add(stem + ".tsv")
        values = h.matrix(normalize)
        # float32's shortest round-trip text: the projector parses it back to the same float32
        np.savetxt(os.path.join(out_dir, stem + ".tsv"), values, fmt="%.9g", delimiter="\t")
        with open(os.path.join(out_dir, stem + "_meta.tsv"), "w", encoding="utf-8", newline="\n") as f:
            f.write("\t".join(METADATA_COLUMNS) + "\n")
            f.writelines("\t".join(_cell(c) for c in row) + "\n" for row in h.metadata())
        e = config.embeddings.add()
        e.tensor_name = h.name
        e.tensor_path = stem + ".tsv"
        e.metadata_path = stem + "_meta.tsv"
        e.tensor_shape.extend(values.shape)
    with open(config_path, "w", encoding="utf-8") as f:
        f.write(text_format.MessageToString(config))
    return config_path


def head_vectors(store, entries: Sequence, kind: str, layer: int, head: int,
                 name: Optional[str] = None) -> HeadVectors:
    """One head's q/k over the records ``entries`` (one step of some examples of a tag), read through the
    same path as the plugin's ``/qk`` (``layouts``); ValueError when a record has no q/k or no such head."""
    from . import derived

    if not entries:
        raise ValueError("no records to export")
    step = entries[0].step
    hv = HeadVectors(name or f"{entries[0].tag}/{kind} L{layer} H{head} step {step}", step=step)
    for e in entries:
        try:
            k = derived.kind_of(e, kind)
        except derived.KindNotLogged as err:
            raise ValueError(str(err)) from None
        if not k.get("has_qk"):
            raise ValueError(f"example {e.example!r} step {e.step}: queries/keys were not logged")
        if not (0 <= layer < k["layers"] and 0 <= head < k["heads"]):
            raise ValueError(f"head ({layer}, {head}) is outside the {k['layers']} x {k['heads']} layers x heads "
                             f"of example {e.example!r}")
        q, kk = layouts.of_kind(k).served_qk(store, e, kind, layer, head)
        seqs = e.index.get("sequences") or {}
        hv.add(e.example, q, kk, seqs.get(k["query"]) or [""] * len(q), seqs.get(k["key"]) or [""] * len(kk))
    return hv


def export_projector(logdir: str, *, run: str = ".", tag: str, heads: Sequence[tuple], step: Optional[int] = None,
                     examples: Optional[Sequence[str]] = None, kind: Optional[str] = None,
                     out_dir: Optional[str] = None, normalize: bool = True) -> str:
    """Exports the q/k of ``heads`` ((layer, head) pairs) of ``examples`` (default: every example of ``tag``)
    at ``step`` (default: the latest step where every chosen example has q/k) for TensorBoard's Projector;
    returns the config's path. ``out_dir`` defaults to the run's projector asset directory."""
    from . import derived, reader

    runs, store = reader.open_logdir(logdir)
    if run not in runs:
        raise ValueError(f"unknown run {run!r} (runs: {', '.join(sorted(runs)) or 'none'})")
    ri = runs[run]
    names = sorted({x for t, x in ri.examples if t == tag}, key=derived.natural_order)
    if not names:
        raise ValueError(f"run {run!r} has no attention tag {tag!r}")
    chosen = [str(x) for x in examples] if examples else names
    missing = [x for x in chosen if x not in names]
    if missing:
        raise ValueError(f"tag {tag!r} has no example {missing[0]!r}")
    with_qk = [{e.step for e in ri.examples[(tag, x)] if any(k.get("has_qk") for k in e.index["kinds"].values())}
               for x in chosen]
    common = set.intersection(*with_qk)
    if step is None:
        if not common:
            raise ValueError(f"no step of tag {tag!r} has queries/keys for every chosen example")
        step = max(common)
    entries = [ri.entries.get((tag, x, step)) for x in chosen]
    absent = [x for x, e in zip(chosen, entries) if e is None]
    if absent:
        raise ValueError(f"example {absent[0]!r} of tag {tag!r} has no step {step}")
    if kind is None:
        kinds = [k for k in fmt.KINDS if k in entries[0].index["kinds"]]
        kind = next((k for k in kinds if entries[0].index["kinds"][k].get("has_qk")), kinds[0] if kinds else "encoder")
    if not heads:
        raise ValueError("choose at least one head (layer, head)")
    vectors = [head_vectors(store, entries, kind, int(l), int(h)) for l, h in heads]
    if out_dir is None:
        out_dir = os.path.join(store.run_dir(run), PROJECTOR_ASSETS)
    return write_projector(out_dir, vectors, normalize)
