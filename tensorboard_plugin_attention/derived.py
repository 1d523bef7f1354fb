"""Data derived from stored records: per-head metrics over steps, divergence between two steps, rollout.

The plugin's ``/metrics``, ``/divergence``, ``/rollout`` and ``/headscores`` (``/headtrend``, ``/headexamples``)
serve these; scripts and notebooks call them on what ``reader.open_logdir`` returns (a run's index entries and a
``reader.RecordStore``)::

    runs, store = reader.open_logdir("runs/demo")
    es = runs["."].examples[("probes", "0")]
    derived.divergence(store, es[0], es[-1], "encoder")["js"]
    scores = derived.TagScores(runs["."].examples, "probes")   # head scores over the tag's examples
    scores.at(100)["metrics"]["induction"]["mean"]             # [[per head] per layer], from the index only

Each kind is read through its layout's handler (``layouts``): dense layers from their stored codes, long
ones from their pooled pyramids. A request that cannot be answered from these records (a kind not logged,
shapes that differ, cross attention for rollout) raises :class:`DerivedError`; unreadable data raises what
the store raises (``reader.DATA_ERRORS``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from . import format as fmt
from . import layouts
from . import metrics as metrics_mod

__all__ = ["DerivedError", "KindNotLogged", "LN2", "TagScores", "divergence", "divergence_problem", "divergence_source",
           "example_metrics", "json_float", "kind_of", "natural_order", "layer_distributions", "metrics_of", "rollout",
           "rollout_argument_problem", "rollout_problem", "rollout_shape"]

LN2 = float(np.log(2.0))  # the largest Jensen-Shannon divergence (nats)

# how a caller reads a record's data: ``read(entry, what, load)`` runs ``load()`` (the plugin turns unreadable data
# into a 404 there); by default it just runs it
Read = Callable[[Any, str, Callable[[], Any]], Any]


def _run(entry: Any, what: str, load: Callable[[], Any]) -> Any:
    return load()


class DerivedError(ValueError):
    """What was asked cannot be derived from these records (a client's mistake, not damaged data)."""


class KindNotLogged(DerivedError):
    """The record has no attention of the kind asked for."""


def kind_of(entry: Any, kind: str) -> dict:
    """The header entry of ``kind`` in ``entry``'s record; :class:`KindNotLogged` saying which kinds were logged."""
    kinds = entry.index.get("kinds") or {}
    if kind not in kinds:
        have = ", ".join(sorted(kinds)) or "none"
        raise KindNotLogged(f"no {kind!r} attention at step {entry.step} (logged kinds: {have})")
    return kinds[kind]


def layer_distributions(store: Any, layout: layouts.Layout, entry: Any, kind: str, layer: int,
                        read: Read = _run) -> np.ndarray:
    """Each head's attention rows of one layer in ``layout`` (dense codes, or a long layer's pyramid) as log8
    codes ``(heads, rows, cols)``, read from ``store`` without filling its cache."""
    k = kind_of(entry, kind)
    return read(entry, layout.distribution_name, lambda: layout.distributions(store, entry, kind, k, layer))


def json_float(v: Any) -> Optional[float]:
    """A finite float, or None (JSON null) for NaN, infinities and anything that is not a number."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


# -------------------------------------------------------------------------------------------- metrics
def metrics_of(entry: Any, kind: str) -> dict:
    """``{metric: [[per head] per layer]}`` of one record and kind, each grid checked against the kind's
    layers x heads (a malformed grid is None: those values are unavailable, the rest still served)."""
    k = entry.index["kinds"].get(kind)
    by_name = (entry.index.get("metrics") or {}).get(kind) if isinstance(entry.index.get("metrics"), dict) else None
    if k is None or not isinstance(by_name, dict):
        return {}
    out = {}
    for name, grid in by_name.items():
        ok = (isinstance(grid, list) and len(grid) == k["layers"]
              and all(isinstance(row, list) and len(row) == k["heads"] for row in grid))
        out[str(name)] = [[json_float(v) for v in row] for row in grid] if ok else None
    return out


def example_metrics(entries: Sequence[Any], kind: Optional[str] = None, where: str = "this example") -> dict:
    """Per-head metrics of every step of one example (its entries by step), from the index records (no asset
    reads): ``{"steps": [...], "kinds": {kind: {metric: [per step: [[per head] per layer] or null]}}}``."""
    logged = {name for e in entries for name in e.index["kinds"]}
    if kind is not None and kind not in logged:
        raise KindNotLogged(f"no {kind!r} attention in {where} (logged kinds: {', '.join(sorted(logged))})")
    kinds = [kind] if kind is not None else [k for k in fmt.KINDS if k in logged]
    out = {}
    for kd in kinds:
        per_step = [metrics_of(e, kd) for e in entries]
        names = {n for m in per_step for n in m}
        ordered = [n for n in metrics_mod.METRIC_NAMES if n in names] + sorted(names - set(metrics_mod.METRIC_NAMES))
        out[kd] = {n: [m.get(n) for m in per_step] for n in ordered}
    return {"steps": [e.step for e in entries], "kinds": out}


# ----------------------------------------------------------------------------------------- divergence
def _shape(k: Mapping) -> tuple:
    return k["layers"], k["heads"], k["q_len"], k["k_len"]


def _tokens(entry: Any, k: Mapping) -> tuple:
    seqs = entry.index.get("sequences") or {}
    return seqs.get(k.get("query")), seqs.get(k.get("key"))


def divergence_problem(ea: Any, eb: Any, kind: str) -> Optional[str]:
    """Why two steps' ``kind`` attention cannot be compared, or None."""
    sa, sb = _shape(kind_of(ea, kind)), _shape(kind_of(eb, kind))
    if sa != sb:
        return (f"steps {ea.step} and {eb.step} have different {kind} shapes (layers, heads, q_len, k_len) {sa} and "
                f"{sb}: the tokens changed, so attention cannot be compared")
    return None


def divergence_source(ea: Any, eb: Any, kind: str) -> layouts.Layout:
    """The layout both steps are compared in: long if either is (dense has no pyramid to compare with)."""
    la, lb = layouts.of_kind(kind_of(ea, kind)), layouts.of_kind(kind_of(eb, kind))
    return la if la is lb else layouts.LONG


def divergence(store: Any, ea: Any, eb: Any, kind: str, read: Read = _run) -> dict:
    """Jensen-Shannon divergence (nats) per layer and head between two steps of one example:
    ``{"js": [[per head] per layer], "unit": "nats", "max": ln 2, "same_tokens": bool, "source": ...}``
    (``source``: "dense" codes, or "pyramid" when either step is long). ``read`` wraps each read of data
    (:data:`Read`)."""
    problem = divergence_problem(ea, eb, kind)
    if problem:
        raise DerivedError(problem)
    ka, kb = kind_of(ea, kind), kind_of(eb, kind)
    layout = divergence_source(ea, eb, kind)
    js = []
    for layer in range(ka["layers"]):
        a = layer_distributions(store, layout, ea, kind, layer, read)
        b = a if ea.asset_key == eb.asset_key else layer_distributions(store, layout, eb, kind, layer, read)
        js.append([json_float(v) for v in metrics_mod.jensen_shannon_codes(a, b, fmt.LUT)])
    return {"js": js, "unit": "nats", "max": LN2, "same_tokens": _tokens(ea, ka) == _tokens(eb, kb),
            "source": layout.source}


# -------------------------------------------------------------------------------------------- rollout
def rollout_argument_problem(kind: str, residual: float, fusion: str) -> Optional[str]:
    """Why rollout with these arguments cannot be computed over any record, or None."""
    if fusion not in metrics_mod.FUSIONS:
        return f"fusion must be one of {', '.join(metrics_mod.FUSIONS)}, got {fusion!r}"
    if not 0.0 <= residual <= 1.0:
        return f"residual must lie in [0, 1], got {residual}"
    if kind in fmt.KINDS and kind not in fmt.SELF_ATTENTION_KINDS:  # an unknown kind is "not logged" (404)
        return ("rollout needs self-attention; cross attention maps decoder queries to encoder keys (use "
                "kind=encoder or kind=decoder)")
    return None


def rollout_problem(entry: Any, kind: str) -> Optional[str]:
    """Why attention rollout cannot be computed over ``kind`` of this record, or None
    (:class:`KindNotLogged` when it has no such kind)."""
    k = kind_of(entry, kind)
    if k["k_len"] != k["q_len"]:
        return (f"rollout needs square self-attention; {kind} attention at step {entry.step} is {k['q_len']} queries "
                f"x {k['k_len']} keys")
    rows, cols = layouts.of_kind(k).distribution_side(k)
    if rows != cols:
        return f"rollout needs a square pyramid, got {[rows, cols]}"
    return None


def rollout_shape(entry: Any, kind: str) -> tuple:
    """(1, n, n): the shape of :func:`rollout`'s codes (n tokens, or pyramid bins of a long kind)."""
    k = kind_of(entry, kind)
    n = layouts.of_kind(k).distribution_side(k)[0]
    return 1, n, n


def rollout(store: Any, entry: Any, kind: str, residual: float = 0.5, fusion: str = "mean",
            read: Read = _run) -> np.ndarray:
    """Attention rollout over every layer of a self-attention kind, log8 codes ``(1, n, n)`` (``n``: the
    tokens, or the pyramid's bins of a long kind). ``read`` as for :func:`divergence`."""
    problem = rollout_argument_problem(kind, residual, fusion) or rollout_problem(entry, kind)
    if problem:
        raise DerivedError(problem)
    k = kind_of(entry, kind)
    layout = layouts.of_kind(k)
    fused = [metrics_mod.fuse_heads_codes(layer_distributions(store, layout, entry, kind, layer, read), fusion, fmt.LUT)
             for layer in range(k["layers"])]
    return fmt.encode_attention(metrics_mod.rollout(fused, residual=residual, head_fusion=fusion)).reshape(
        rollout_shape(entry, kind))


# ---------------------------------------------------------------------------------------- head scores
STATS = ("mean", "std", "min", "max")


def _grid_values(entry: Any, kind: str, names: Sequence[str], shape: tuple) -> np.ndarray:
    """``(metrics, layers, heads)`` float64 of one record (NaN: undefined, not logged or malformed)."""
    out = np.full((len(names), *shape), np.nan)
    by_name = entry.index.get("metrics")
    by_name = by_name.get(kind) if isinstance(by_name, dict) else None
    if not isinstance(by_name, dict):
        return out
    for i, name in enumerate(names):
        grid = by_name.get(name)
        try:  # the writer's grids (floats and nulls) convert at C speed; anything else goes value by value
            values = np.array(grid, dtype=np.float64)
            if values.shape != shape:
                raise ValueError
        except (TypeError, ValueError):
            checked = metrics_of(entry, kind).get(name)
            if checked is None:
                continue
            values = np.array([[np.nan if v is None else v for v in row] for row in checked], np.float64)
        out[i] = values
    return out


def _grid_json(a: np.ndarray) -> list:
    return [[json_float(v) for v in row] for row in a.tolist()]


class TagScores:
    """Per-head metrics of every example of one tag, aggregated per logged step from the index records only
    (each record's header already holds its example's ``metrics``; no asset is read).

    ``examples`` is ``RunIndex.examples`` (``(tag, example) -> entries by step``). Examples whose ``kind`` has
    another layers x heads grid than most of that step's (another model, another head selection) are left out
    and named in ``skipped``. Per step the stacked values are computed once and kept (a ``TagScores`` belongs
    to one index snapshot, which is replaced, never changed).
    """

    def __init__(self, examples: Mapping, tag: str, kind: Optional[str] = None):
        by_step: dict = {}
        for (t, example), es in examples.items():
            if t == tag:
                for e in es:
                    by_step.setdefault(e.step, []).append(e)
        if not by_step:
            raise DerivedError(f"no examples of tag {tag!r}")
        logged = {k for es in by_step.values() for e in es for k in (e.index.get("kinds") or {})}
        if kind is None:
            kind = next((k for k in fmt.KINDS if k in logged), None) or min(logged, default="encoder")
        if kind not in logged:
            raise KindNotLogged(f"no {kind!r} attention in tag {tag!r} (logged kinds: {', '.join(sorted(logged)) or 'none'})")
        self.tag, self.kind, self.kinds = tag, kind, [k for k in fmt.KINDS if k in logged]
        self.steps = sorted(by_step)
        self._by_step = {s: sorted(es, key=lambda e: natural_order(e.example)) for s, es in by_step.items()}
        self._stacks: dict = {}

    def entries(self, step: int) -> list:
        """The index entries of the tag's examples at ``step`` (natural order of example names)."""
        if step not in self._by_step:
            raise DerivedError(f"tag {self.tag!r} has no step {step} (logged steps: {_steps_text(self.steps)})")
        return self._by_step[step]

    def stack(self, step: int) -> dict:
        """``{"values": (examples, metrics, layers, heads) float64, "names", "examples", "skipped", "grid"}``
        of one step (``grid``: the kind's header fields that name its layers and heads)."""
        cached = self._stacks.get(step)
        if cached is not None:
            return cached
        es = [e for e in self.entries(step) if self.kind in (e.index.get("kinds") or {})]
        grids: dict = {}
        for e in es:
            k = e.index["kinds"][self.kind]
            key = (k["layers"], k["heads"], tuple(k.get("layer_ids") or ()), tuple(k.get("head_ids") or ()))
            grids.setdefault(key, []).append(e)
        key, kept = max(grids.items(), key=lambda kv: len(kv[1])) if grids else ((0, 0, (), ()), [])
        names_found = {str(n) for e in kept for n in ((e.index.get("metrics") or {}).get(self.kind) or {})
                       if isinstance(e.index.get("metrics"), dict)}
        names = [n for n in metrics_mod.METRIC_NAMES if n in names_found] + sorted(names_found - set(metrics_mod.METRIC_NAMES))
        shape = key[:2]
        values = (np.stack([_grid_values(e, self.kind, names, shape) for e in kept]) if kept
                  else np.zeros((0, len(names), *shape)))
        kept_ids = {id(e) for e in kept}
        out = {"values": values, "names": names, "examples": [e.example for e in kept],
               "skipped": [e.example for e in self.entries(step) if id(e) not in kept_ids],
               "grid": {"layers": key[0], "heads": key[1], "layer_ids": list(key[2]) or None,
                        "head_ids": list(key[3]) or None}}
        self._stacks[step] = out
        return out

    def at(self, step: int) -> dict:
        """Each metric's mean, std (population), min, max and n (examples where it is defined) per head over
        the tag's examples at ``step``: ``{"tag", "kind", "kinds", "step", "steps", "examples", "skipped",
        "layers", "heads", "layer_ids", "head_ids", "metrics": {name: {stat: [[per head] per layer]}}}``."""
        st = self.stack(step)
        out = {"tag": self.tag, "kind": self.kind, "kinds": self.kinds, "step": step, "steps": self.steps,
               "examples": len(st["examples"]), "skipped": st["skipped"], **st["grid"], "metrics": {}}
        for i, name in enumerate(st["names"]):
            stats = _stats(st["values"][:, i])
            out["metrics"][name] = {s: _grid_json(stats[s]) for s in STATS} | {"n": stats["n"].tolist()}
        return out

    def trend(self) -> dict:
        """Each metric's mean and std per head at every step: ``{"tag", "kind", "kinds", "steps", "examples":
        [per step], "layers", "heads", "metrics": {name: {"mean": [per step: grid or null], "std": [...]}}}``
        (null: the metric or the grid is not that of the latest step there)."""
        last = self.stack(self.steps[-1])
        names, grid = last["names"], last["grid"]
        metrics: dict = {n: {"mean": [], "std": []} for n in names}
        counts = []
        for step in self.steps:
            st = self.stack(step)
            counts.append(len(st["examples"]))
            same = st["grid"] == grid
            for n in names:
                if not same or n not in st["names"]:
                    metrics[n]["mean"].append(None)
                    metrics[n]["std"].append(None)
                    continue
                stats = _stats(st["values"][:, st["names"].index(n)], ("mean", "std"))
                metrics[n]["mean"].append(_grid_json(stats["mean"]))
                metrics[n]["std"].append(_grid_json(stats["std"]))
        return {"tag": self.tag, "kind": self.kind, "kinds": self.kinds, "steps": self.steps, "examples": counts,
                **grid, "metrics": metrics}

    def top_examples(self, step: int, metric: str, layer: int, head: int, limit: int = 10) -> dict:
        """The examples where head (``layer``, ``head``) scores highest on ``metric`` at ``step``, highest first
        (ties: example order), undefined ones left out: ``{"metric", "layer", "head", "step", "n",
        "examples": [{"example", "score"}]}`` (``n``: examples where it is defined)."""
        st = self.stack(step)
        if metric not in st["names"]:
            raise DerivedError(f"no metric {metric!r} at step {step} (metrics: {', '.join(st['names']) or 'none'})")
        layers, heads = st["grid"]["layers"], st["grid"]["heads"]
        if not (0 <= layer < layers and 0 <= head < heads):
            raise DerivedError(f"head ({layer}, {head}) is outside the {layers} x {heads} layers x heads")
        scores = st["values"][:, st["names"].index(metric), layer, head]
        ok = np.flatnonzero(np.isfinite(scores))
        order = ok[np.argsort(-scores[ok], kind="stable")][:max(0, limit)]
        return {"metric": metric, "layer": layer, "head": head, "step": step, "n": int(ok.size),
                "examples": [{"example": st["examples"][i], "score": float(scores[i])} for i in order]}


def _stats(values: np.ndarray, which: Sequence[str] = (*STATS, "n")) -> dict:
    """NaN-aware statistics over axis 0 (examples) of ``(examples, layers, heads)``; NaN where n = 0."""
    finite = np.isfinite(values)
    n = finite.sum(axis=0)
    zero = np.where(finite, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = zero.sum(axis=0) / n
        out = {"n": n, "mean": mean}
        if "std" in which:
            out["std"] = np.sqrt(np.where(finite, (values - mean) ** 2, 0.0).sum(axis=0) / n)
        if "min" in which:
            out["min"] = np.where(n > 0, np.where(finite, values, np.inf).min(axis=0, initial=np.inf), np.nan)
        if "max" in which:
            out["max"] = np.where(n > 0, np.where(finite, values, -np.inf).max(axis=0, initial=-np.inf), np.nan)
    return out


def natural_order(name: str) -> tuple:
    """Sort key of example names: numbers by value first, then the others by text."""
    return (0, int(name), name) if name.isdigit() and len(name) < 19 else (1, 0, name)


def _steps_text(steps: Sequence[int]) -> str:
    return ", ".join(map(str, steps[:10])) + (f", ... ({len(steps)} in all)" if len(steps) > 10 else "")
