"""BertViz's calls in a notebook, drawn by the tab's own views, offline: ``head_view``, ``model_view``,
``neuron_view`` (BertViz 1.4.1's arguments and meaning) and ``show(logdir)`` for what a training run logged.

Swap the import and keep the call::

    from tensorboard_plugin_attention.notebook import head_view, model_view, neuron_view
    head_view(outputs.attentions, tokens)

Each call builds records in the stored format (``summary.build_record``: 8-bit ``log8`` chunks, checksummed)
in memory, or reads them from a logdir through the plugin's reading path (``reader.RecordStore``), and embeds
them as base64 in one self-contained page with the frontend's notebook script (``static/notebook.js``, deflated;
``head_view`` / ``model_view`` pages are compact by default, see ``embed`` and ``COMPACT_FLOOR``): an
in-page data source answers the views as the plugin's routes would. A notebook output is that page in an
``<iframe srcdoc>``, so any number of them work in one notebook (Jupyter, JupyterLab, VS Code, Colab); nothing
is loaded from a CDN or anywhere else. ``.save(path)`` writes the page itself: it opens from ``file://``.

Importing this module imports neither torch, transformers nor IPython.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import html
import json
import os
import time
import zlib
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from . import format as fmt
from . import inputs, reader, summary
from .records import CaptureRecord, ExampleAttention, ForwardRecord, LayerArrays
from .validation import to_numpy, token_list

__all__ = ["head_view", "model_view", "neuron_view", "image_view", "show", "AttentionPage", "export_page"]

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
NOTEBOOK_RUN = "notebook"  # run / tag / example of attention passed to the calls directly
NOTEBOOK_TAG = "attention"
MAX_FRAME_PX = 1200  # a notebook output grows with its content up to this, then scrolls inside itself
_HTML_ACTIONS = ("view", "return")
EMBEDS = ("compact", "exact")  # what head_view / model_view embed (``embed=``; docs/performance.md, Notebooks)
COMPACT_FLOOR = 0.02  # compact pages: below this a weight is 0, outside the layer shown first
_DISPLAY_MODES = (None, "dark", "light")


# ------------------------------------------------------------------------------------------------ page
class AttentionPage:
    """One self-contained attention page: shown by Jupyter through ``_repr_html_``, saved with ``save``.

    ``data`` is the notebook output's HTML (the page in an ``iframe srcdoc``), as BertViz's returned
    ``IPython.display.HTML`` has it; ``html`` is the page itself.
    """

    def __init__(self, page: str, *, title: str = "attention"):
        self.html = page
        self.title = title

    def _repr_html_(self) -> str:
        return ('<iframe class="tensorboard-attention" title="%s" style="width:100%%;height:640px;border:0" '
                'srcdoc="%s"></iframe>' % (html.escape(self.title), html.escape(self.html, quote=True)))

    @property
    def data(self) -> str:
        return self._repr_html_()

    def save(self, path: str) -> str:
        """Write the standalone page (it opens from ``file://`` with no network); returns ``path``."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.html)
        return path

    def __len__(self) -> int:
        return len(self.html)

    def __repr__(self) -> str:
        return f"<AttentionPage {self.title!r}: {len(self.html):,} characters>"


def _static_path(name: str) -> str:
    """Path of a file of the built bundle; a clear error when the bundle is not built."""
    path = os.path.join(STATIC_DIR, name)
    if not os.path.isfile(path):
        raise RuntimeError(f"the frontend bundle is not built ({path} is missing): run `cd frontend && npm run build`")
    return path


def _static(name: str) -> str:
    with open(_static_path(name), encoding="utf-8") as f:
        return f.read()


def _script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``<`` at all (so no ``</script>`` or ``<!--``)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def _page(index: dict, records: list, selection: Mapping[str, Any], theme: Optional[str], title: str,
          note: Optional[str] = None) -> str:
    """The standalone page: the stylesheet inlined, the notebook script deflated (see ``_packed_script``), the
    records as base64, and ``note`` (what the page holds, when it is not every stored weight) shown above the views."""
    data = {"index": index, "records": records, "theme": theme, "note": note,
            "hash": "#" + "&".join(f"p.attention.{k}={_hash_value(v)}" for k, v in selection.items() if v is not None)}
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title>\n<style>{_static('index.css')}</style>\n"
            "<style>html,body{margin:0}body{padding:8px}.attention-app{min-height:0}</style></head>\n<body>\n"
            f"<script type=\"application/json\" id=\"attention-data\">{_script_json(data)}</script>\n"
            f"{_packed_script()}\n</body></html>\n")


# Inflates the deflated notebook script with the browser's DecompressionStream (the views need it anyway, for
# the records' chunks) and runs it; a browser without it says so instead of showing nothing.
_UNPACK = ("<script>(async()=>{const t=document.getElementById('attention-code').textContent;"
           "const b=Uint8Array.from(atob(t),(c)=>c.charCodeAt(0));"
           "const s=document.createElement('script');"
           "s.textContent=await new Response(new Blob([b]).stream().pipeThrough(new DecompressionStream('deflate'))).text();"
           "document.body.appendChild(s)})().catch((e)=>{const p=document.createElement('p');"
           "p.textContent='This page needs a browser with DecompressionStream (Chrome 80, Firefox 113, Safari 16.4): '+e;"
           "document.body.appendChild(p)})</script>")


def _packed_script() -> str:
    """``static/notebook.js`` as zlib + base64 (225 KB of script is 100 KB so: each notebook output carries it)
    with the lines that unpack and run it."""
    path = _static_path("notebook.js")
    return _packed_base64(path, os.path.getmtime(path)) + _UNPACK


@functools.lru_cache(maxsize=2)
def _packed_base64(path: str, mtime: float) -> str:
    with open(path, "rb") as f:
        packed = base64.b64encode(zlib.compress(f.read(), 9)).decode("ascii")
    return f'<script type="application/octet-stream" id="attention-code">{packed}</script>'


def _hash_value(v: Any) -> str:
    from urllib.parse import quote

    if isinstance(v, (list, tuple)):
        v = ",".join(str(int(x)) for x in v)
    elif isinstance(v, bool):
        v = "1" if v else "0"
    return quote(str(v), safe="")


def _index(entries: Sequence[Any]) -> dict:
    """``/index`` of the given index entries, exactly as the plugin serves it (docs/http-api.md)."""
    from .plugin import index_json, run_json

    runs: dict = {}
    for e in entries:
        runs.setdefault(e.run, []).append(e)
    return index_json({r: run_json(reader.by_example(reader.latest_entries(runs[r]))) for r in sorted(runs)})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _memory_page(ex: inputs.Example, *, view: str, selection: dict, sentence_b_start: Optional[int],
                 model_name: Optional[str], theme: Optional[str], html_action: str, title: str,
                 image: Any = None, embed: str = "exact", exact_layer: Optional[int] = None) -> Optional[AttentionPage]:
    """A page of one example built in memory (the stored format, never written anywhere), with its image
    (``images.EncodedImage``) when given. ``embed="compact"``: layer position ``exact_layer`` (None: no layer)
    as stored, in every other layer the weights under ``COMPACT_FLOOR`` 0, no overview chunk (the page pools it),
    zlib at level 9; the metrics are the exact attention's either way."""
    from .reader import IndexEntry

    metrics = inputs.example_metrics(ex)
    note = None
    if embed == "compact":
        note = _compact_note(ex, exact_layer)
        ex = _compact(ex, exact_layer)
    header, record = summary.build_record(
        NOTEBOOK_TAG, "0", ex, step=0, wall_time=time.time(), model_name=model_name,
        sentence_b_start=sentence_b_start, special_tokens=None, metrics=metrics, image=image,
        compress_level=9 if embed == "compact" else 1, overview=embed != "compact")
    index = json.loads(fmt.index_payload(header, "notebook.attn", 0, len(record)))
    entry = IndexEntry(NOTEBOOK_RUN, NOTEBOOK_TAG, "0", 0, header["wall_time"], index)
    records = [{"run": NOTEBOOK_RUN, "tag": NOTEBOOK_TAG, "example": "0", "step": 0, "data": _b64(record)}]
    page = AttentionPage(_page(_index([entry]), records, dict(selection, view=view), theme, title, note), title=title)
    return _act(page, html_action)


def _compact(ex: inputs.Example, exact_layer: Optional[int]) -> inputs.Example:
    """``ex`` with the weights under ``COMPACT_FLOOR`` set to 0 in every layer but position ``exact_layer``."""
    def floor(a: np.ndarray) -> np.ndarray:
        return np.where(a >= COMPACT_FLOOR, a, 0).astype(a.dtype, copy=False)

    kinds = {k: [l if i == exact_layer else dataclasses.replace(l, attention=floor(l.attention))
                 for i, l in enumerate(layers)] for k, layers in ex.kinds.items()}
    return dataclasses.replace(ex, kinds=kinds)


def _compact_note(ex: inputs.Example, exact_layer: Optional[int]) -> str:
    """What a compact page holds, in words (shown above its views)."""
    kind, layers = next(iter(ex.kinds.items()))
    ids = ex.ids.get(kind, {}).get("layer_ids") or list(range(len(layers)))
    where = "every layer" if exact_layer is None else f"every layer but layer {ids[exact_layer]} (exact, 8-bit)"
    return (f"Compact page: in {where}, weights under {COMPACT_FLOOR:g} are stored as 0 (lines under "
            f"{COMPACT_FLOOR:.0%} opacity); the head metrics are exact. embed='exact' keeps every weight.")


def _check_embed(embed: Any) -> None:
    if embed not in EMBEDS:
        raise ValueError(f"embed must be 'compact' or 'exact', got {embed!r}")


def _act(page: AttentionPage, html_action: str) -> Optional[AttentionPage]:
    if html_action == "return":
        return page
    try:
        from IPython.display import display
    except ImportError:  # not in IPython: nothing to display into, hand the page back
        return page
    display(page)
    return None


def _check_common(html_action: Any, display_mode: Any) -> None:
    if html_action not in _HTML_ACTIONS:
        raise ValueError("'html_action' parameter must be 'view' or 'return")  # BertViz's words
    if display_mode not in _DISPLAY_MODES:
        raise ValueError(f"'display_mode' must be 'dark' or 'light' (or None: follow the notebook), got {display_mode!r}")


# ------------------------------------------------------------------------------------- BertViz arguments
def _num_layers(attention: Any) -> int:
    try:
        return len(attention)
    except TypeError:
        raise ValueError("attention must be a list of tensors, one per layer (a model's `attentions` output with "
                         "output_attentions=True)") from None


def _format_attention(attention: Any, layers: Optional[Sequence[int]], what: str) -> list:
    """One ``(heads, q, k)`` array per layer (``layers`` only), from BertViz-shaped ``(1, heads, q, k)`` tensors."""
    n = _num_layers(attention)
    if n == 0:
        raise ValueError(f"{what} is empty: the model computed no attention weights (sdpa and flash attention, "
                         "transformers' defaults, do not). Load it with attn_implementation='eager', e.g. "
                         "AutoModel.from_pretrained(name, attn_implementation='eager'), and call it with "
                         "output_attentions=True. (Loaded so, pass outputs.attentions: with transformers 5 a "
                         "model's last output, outputs[-1], can be an empty cross_attentions tuple.)")
    if layers is not None:
        for l in layers:
            if not isinstance(l, int) or isinstance(l, bool) or not 0 <= l < n:
                raise ValueError(f"include_layers: layer {l!r} is not a layer of {what} (0..{n - 1})")
    out = []
    for l in (range(n) if layers is None else layers):
        a = attention[l]
        if a is None:
            raise ValueError(f"{what} of layer {l} is None: the model computed no attention weights (sdpa and flash "
                             "attention do not). Load it with attn_implementation='eager' and call it with "
                             "output_attentions=True")
        a = to_numpy(a, f"{what} layer {l}")
        if a.ndim != 4:
            raise ValueError("The attention tensor does not have the correct number of dimensions. Make sure you set "
                             "output_attentions=True when initializing your model.")
        if a.shape[0] != 1:
            raise ValueError(f"{what} has a batch of {a.shape[0]} examples; pass one example (batch size 1), e.g. "
                             "[a[i:i + 1] for a in attention]")
        out.append(a[0])
    return out


def _check_tokens(tokens: Any, n: int, side: str, what: str) -> list:
    tokens = token_list(tokens, what)
    if len(tokens) != n:
        raise ValueError(f"Attention has {n} positions, while number of tokens is {len(tokens)} for tokens: "
                         f"{' '.join(tokens)}")
    return tokens


def _prettify(tokens: list, prettify: bool) -> list:
    # BertViz removes Ġ / ▁ / </w>; the views show Ġ and ▁ as spaces themselves and merge words by them, so
    # only </w> (end-of-word BPE) goes here
    return [t.replace("</w>", "") for t in tokens] if prettify else tokens


def _build_example(attention, tokens, sentence_b_start, prettify_tokens, encoder_attention, decoder_attention,
                   cross_attention, encoder_tokens, decoder_tokens, include_layers) -> tuple:
    """BertViz's argument rules (head_view / model_view), as an ``inputs.Example`` with its kinds and sequences."""
    kinds: dict = {}
    if attention is not None:
        if tokens is None:
            raise ValueError("'tokens' is required")
        if any(x is not None for x in (encoder_attention, decoder_attention, cross_attention, encoder_tokens,
                                       decoder_tokens)):
            raise ValueError("If you specify 'attention' you may not specify any encoder-decoder arguments. This"
                             " argument is only for self-attention models.")
        kinds["encoder"] = _format_attention(attention, include_layers, "attention")
        n = kinds["encoder"][0].shape[-1]
        seqs = {"input": _prettify(_check_tokens(tokens, n, "right", "tokens"), prettify_tokens)}
        _check_tokens(tokens, kinds["encoder"][0].shape[-2], "left", "tokens")
        kind_seqs = fmt.kind_sequences(kinds, two_stacks=False)
    elif encoder_attention is not None or decoder_attention is not None or cross_attention is not None:
        if sentence_b_start is not None:
            raise ValueError("sentence_b_start is for self-attention models ('attention'), not encoder-decoder arguments")
        seqs, kind_seqs = {}, {}
        if encoder_attention is not None:
            if encoder_tokens is None:
                raise ValueError("'encoder_tokens' required if 'encoder_attention' is not None")
            kinds["encoder"] = _format_attention(encoder_attention, include_layers, "encoder_attention")
        if decoder_attention is not None:
            if decoder_tokens is None:
                raise ValueError("'decoder_tokens' required if 'decoder_attention' is not None")
            kinds["decoder"] = _format_attention(decoder_attention, include_layers, "decoder_attention")
        if cross_attention is not None:
            if encoder_tokens is None:
                raise ValueError("'encoder_tokens' required if 'cross_attention' is not None")
            if decoder_tokens is None:
                raise ValueError("'decoder_tokens' required if 'cross_attention' is not None")
            kinds["cross"] = _format_attention(cross_attention, include_layers, "cross_attention")
        if encoder_tokens is not None and ("encoder" in kinds or "cross" in kinds):
            n = (kinds["encoder"][0].shape[-1] if "encoder" in kinds else kinds["cross"][0].shape[-1])
            seqs["input"] = _prettify(_check_tokens(encoder_tokens, n, "right", "encoder_tokens"), prettify_tokens)
        if decoder_tokens is not None and ("decoder" in kinds or "cross" in kinds):
            n = (kinds["decoder"][0].shape[-1] if "decoder" in kinds else kinds["cross"][0].shape[-2])
            name = "output" if "input" in seqs else "input"
            seqs[name] = _prettify(_check_tokens(decoder_tokens, n, "left", "decoder_tokens"), prettify_tokens)
        kind_seqs = fmt.kind_sequences(kinds, two_stacks="output" in seqs)
        if "cross" in kinds:  # its shape against both token lists
            q, k = kinds["cross"][0].shape[-2:]
            _check_tokens(seqs["output"], q, "left", "decoder_tokens")
            _check_tokens(seqs["input"], k, "right", "encoder_tokens")
    else:
        raise ValueError("You must specify at least one attention argument.")
    ex = inputs.Example(seqs, {k: [LayerArrays(a, None, None, {}) for a in layers] for k, layers in kinds.items()},
                        kind_seqs)
    inputs.validate(ex, sentence_b_start)
    if include_layers is not None:
        ex.ids = {k: {"layer_ids": [int(l) for l in include_layers],
                      "head_ids": list(range(layers[0].attention.shape[0]))} for k, layers in ex.kinds.items()}
    return ex


def _check_heads(heads: Optional[Sequence[int]], ex: inputs.Example, what: str) -> Optional[list]:
    if heads is None:
        return None
    n = next(iter(ex.kinds.values()))[0].attention.shape[0]
    out = list(heads) if not isinstance(heads, (str, bytes)) and hasattr(heads, "__iter__") else [heads]
    if not out or not all(isinstance(h, int) and not isinstance(h, bool) and 0 <= h < n for h in out):
        raise ValueError(f"{what} must be head indices in 0..{n - 1}, got {heads!r}")
    return sorted(set(int(h) for h in out))


def head_view(attention=None, tokens=None, sentence_b_start=None, prettify_tokens=True, layer=None, heads=None,
              encoder_attention=None, decoder_attention=None, cross_attention=None, encoder_tokens=None,
              decoder_tokens=None, include_layers=None, html_action="view", display_mode=None, embed="compact"):
    """BertViz's head view: the lines between query and key tokens of one layer's heads.

    Arguments as ``bertviz.head_view`` 1.4.1: per-layer ``(1, heads, n, n)`` tensors (``outputs.attentions``
    of a model called with ``output_attentions=True``) and ``tokens``, or ``encoder_attention`` /
    ``decoder_attention`` / ``cross_attention`` with ``encoder_tokens`` / ``decoder_tokens``;
    ``sentence_b_start`` adds the sentence-pair filter (All, A→A, B→B, A→B, B→A); ``layer`` the layer shown
    first (a model index, one of ``include_layers``); ``heads`` the heads selected first; ``include_layers``
    the layers kept (the others are not stored). ``html_action='view'`` displays the view, ``'return'``
    returns an :class:`AttentionPage`. Added: ``display_mode`` ('dark' / 'light'; None follows the notebook);
    ``embed``: 'compact' (default: the layer shown first as stored, 8-bit; in the others weights under 0.02 are
    0, lines the view would draw under 2 % opacity; a 100th of BertViz's HTML and less) or 'exact' (every weight).
    """
    _check_common(html_action, display_mode)
    _check_embed(embed)
    ex = _build_example(attention, tokens, sentence_b_start, prettify_tokens, encoder_attention, decoder_attention,
                        cross_attention, encoder_tokens, decoder_tokens, include_layers)
    n_layers = len(next(iter(ex.kinds.values())))
    layers = list(include_layers) if include_layers is not None else list(range(n_layers))
    if layer is not None and layer not in layers:
        raise ValueError(f"Layer {layer} is not in include_layers: {layers}")
    sel = {"layer": layers.index(layer) if layer is not None else None, "heads": _check_heads(heads, ex, "heads")}
    return _memory_page(ex, view="head", selection=sel, sentence_b_start=sentence_b_start, model_name=None,
                        theme=display_mode, html_action=html_action, title="head view", embed=embed,
                        exact_layer=sel["layer"] or 0)


def model_view(attention=None, tokens=None, sentence_b_start=None, prettify_tokens=True, display_mode=None,
               encoder_attention=None, decoder_attention=None, cross_attention=None, encoder_tokens=None,
               decoder_tokens=None, include_layers=None, include_heads=None, html_action="view", embed="compact"):
    """BertViz's model view: every layer x head as a thumbnail (click one: its head view beside the grid).

    Arguments as ``bertviz.model_view`` 1.4.1. ``include_layers`` / ``include_heads`` choose the thumbnails
    shown (the grid's include controls can bring the others back: all are stored). ``display_mode``:
    'dark' / 'light', or None (default here; BertViz's is 'dark') to follow the notebook. ``embed``: 'compact'
    (default: in every layer weights under 0.02 are stored as 0) or 'exact' (every weight), as ``head_view``.
    """
    _check_common(html_action, display_mode)
    _check_embed(embed)
    ex = _build_example(attention, tokens, sentence_b_start, prettify_tokens, encoder_attention, decoder_attention,
                        cross_attention, encoder_tokens, decoder_tokens, None)
    n_layers = len(next(iter(ex.kinds.values())))
    if include_layers is not None:
        bad = [l for l in include_layers if not isinstance(l, int) or isinstance(l, bool) or not 0 <= l < n_layers]
        if bad or not list(include_layers):
            raise ValueError(f"include_layers must be layer indices in 0..{n_layers - 1}, got {include_layers!r}")
    sel = {"mlayers": sorted(set(include_layers)) if include_layers is not None else None,
           "mheads": _check_heads(include_heads, ex, "include_heads")}
    return _memory_page(ex, view="model", selection=sel, sentence_b_start=sentence_b_start, model_name=None,
                        theme=display_mode, html_action=html_action, title="model view", embed=embed)


def image_view(attention=None, image=None, tokens=None, patches=None, processor=None, layer=None, head=None,
               query=None, include_layers=None, html_action="view", display_mode=None):
    """The image view, BertViz-style: the image with the attention from one query token (default: the first
    token that is not a patch, e.g. CLS) to every patch, for one layer and the mean of its heads (or ``head``).

    ``attention``: per-layer ``(1, heads, n, n)`` tensors (``outputs.attentions`` of a vision model called with
    ``output_attentions=True``), or what ``capture_attention`` recorded. ``image``: the image the model saw (a
    PIL image, an ``H x W x 3`` uint8 array, ``pixel_values`` with their ``processor``, or PNG / WebP bytes).
    ``patches``: ``(rows, cols, patch_start)`` or an ``images.PatchLayout`` (default: derived by the capture
    from the model's config); ``tokens``: default ``[CLS]`` and ``"r,c"`` per patch. The page is
    self-contained and offline, like the other views; click a patch to make it the query.
    """
    from . import images

    _check_common(html_action, display_mode)
    if image is None:
        raise ValueError("image_view needs the image: image=...")
    if isinstance(attention, CaptureRecord):
        attention = attention.forwards[-1] if attention.forwards else None
    if isinstance(attention, ForwardRecord):
        attention = attention.example(0)
    layout = patches
    if isinstance(attention, ExampleAttention):  # captured: its own layout, its layers as BertViz passes them
        layout = layout if layout is not None else attention.image_layout
        attention = [layer.attention[None] for layer in next(iter(attention.kinds.values()))]
    if layout is None:
        raise ValueError("where are the image's patches? pass patches=(rows, cols, patch_start)")
    layout = images.PatchLayout.of(layout)
    if tokens is None:
        tokens = layout.tokens(["[CLS]"] * layout.patch_start)
    ex = _build_example(attention, tokens, None, False, None, None, None, None, None, include_layers)
    encoded = images.prepare_image(image, layout, len(ex.sequences[layout.sequence]), processor=processor)
    n_layers = len(next(iter(ex.kinds.values())))
    layers = list(include_layers) if include_layers is not None else list(range(n_layers))
    if layer is not None and layer not in layers:
        raise ValueError(f"Layer {layer} is not in include_layers: {layers}")
    if query is not None and not (isinstance(query, int) and 0 <= query < len(tokens)):
        raise ValueError(f"query must be a token index in 0..{len(tokens) - 1}, got {query!r}")
    n_heads = next(iter(ex.kinds.values()))[0].shape[0]
    if head is not None and not (isinstance(head, int) and 0 <= head < n_heads):
        raise ValueError(f"head must be in 0..{n_heads - 1}, got {head!r}")
    sel = {"layer": layers.index(layer) if layer is not None else None, "iq": query,
           "ia": None if head is None else "head", "nhead": head}
    return _memory_page(ex, view="image", selection=sel, sentence_b_start=None, model_name=None, theme=display_mode,
                        html_action=html_action, title="image view", image=encoded)


def neuron_view(model=None, model_type=None, tokenizer=None, sentence_a=None, sentence_b=None, display_mode=None,
                layer=None, head=None, html_action="view", *, capture=None, tokens=None):
    """BertViz's neuron view (``bertviz.neuron_view.show``): queries, keys, their product and the softmax
    for one head, for any model ``capture_attention`` records (not only BertViz's forked BERT / GPT-2 /
    RoBERTa): ``neuron_view(model, 'bert', tokenizer, sentence_a, sentence_b, layer=2, head=0)``.

    ``model_type`` is accepted for BertViz's signature and not needed (the capture reads the model); the
    input is the tokenizer's own encoding of ``sentence_a`` (and ``sentence_b``: the sentence-pair filter).
    Or pass what was captured: ``neuron_view(capture=cap, tokens=tokens)`` (a capture, one forward or one
    example, recorded with ``queries_keys=True``). ``neuron_view.show`` is this function, so
    ``from tensorboard_plugin_attention.notebook import neuron_view; neuron_view.show(...)`` reads as BertViz.
    """
    _check_common(html_action, display_mode)
    if model_type is not None and not isinstance(model_type, str):
        raise ValueError(f"model_type must be a string such as 'bert' (or None), got {model_type!r}")
    sentence_b_start = None
    if capture is None:
        if model is None or tokenizer is None:
            raise ValueError("neuron_view needs a model and its tokenizer (with sentence_a), or capture= and tokens=")
        if not sentence_a:
            raise ValueError("Sentence A is required")
        capture, tokens, sentence_b_start = _run_model(model, tokenizer, sentence_a, sentence_b)
    elif tokens is None:
        raise ValueError("'tokens' is required with capture=")
    ex = inputs.normalise(capture, tokens, batch_index=0, queries=None, keys=None, key_tokens=None,
                          decoder_tokens=None, kind=None)
    inputs.validate(ex, sentence_b_start)
    if not any(l.queries is not None for layers in ex.kinds.values() for l in layers):
        raise ValueError("the capture holds no queries/keys: record it with capture_attention(model, queries_keys=True)")
    first = next(iter(ex.kinds.values()))
    n_layers = len(first)
    n_heads = first[0].shape[0]
    if layer is not None and not (isinstance(layer, int) and 0 <= layer < n_layers):
        raise ValueError(f"layer must be in 0..{n_layers - 1}, got {layer!r}")
    if head is not None and not (isinstance(head, int) and 0 <= head < n_heads):
        raise ValueError(f"head must be in 0..{n_heads - 1}, got {head!r}")
    model_name = getattr(capture, "model_name", None) or None
    return _memory_page(ex, view="neuron", selection={"layer": layer, "nhead": head},
                        sentence_b_start=sentence_b_start, model_name=model_name, theme=display_mode,
                        html_action=html_action, title="neuron view")


neuron_view.show = neuron_view  # type: ignore[attr-defined]  # BertViz: from bertviz.neuron_view import show


def _run_model(model: Any, tokenizer: Any, sentence_a: str, sentence_b: Optional[str]) -> tuple:
    """One forward of ``model`` on the tokenizer's encoding, captured with q/k: (example, tokens, B start)."""
    import torch

    from .capture import capture_attention

    enc = tokenizer(sentence_a, sentence_b, return_tensors="pt") if sentence_b else tokenizer(sentence_a, return_tensors="pt")
    ids = enc["input_ids"][0]
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    b_start = None
    if sentence_b:
        types = enc.get("token_type_ids")
        seq_ids = enc.sequence_ids(0) if hasattr(enc, "sequence_ids") and getattr(enc, "_encodings", None) else None
        if seq_ids is not None and 1 in seq_ids:
            b_start = seq_ids.index(1)
        elif types is not None and int(types[0].max()) == 1:
            b_start = int(types[0].tolist().index(1))
        if not b_start:
            raise ValueError("cannot tell where sentence B starts in the tokenizer's encoding of the pair")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), capture_attention(model, queries_keys=True) as cap:
            model(**enc)
    finally:
        model.train(was_training)
    return cap.last.example(0), tokens, b_start


# ----------------------------------------------------------------------------------------- from a logdir
def _record_bytes(store: Any, entry: Any) -> bytes:
    """The whole stored record of an index entry (frame, header, chunks), checked against the entry."""
    rec = store.record(entry)

    def ends(t: Any) -> int:
        if isinstance(t, list) and len(t) == 3 and all(isinstance(x, int) for x in t):
            return t[0] + t[1]
        return max((ends(x) for x in (t.values() if isinstance(t, dict) else t)), default=0)

    length = rec.data_offset - rec.offset + ends(rec.header["chunks"])
    data = store.read_range(rec.path, rec.offset, length)
    if len(data) != length:
        raise fmt.FormatError(f"{rec.path}@{rec.offset}: truncated record")
    return data


def export_page(logdir: Optional[str] = None, *, logdir_spec: Optional[str] = None, run: Optional[str] = None,
                tag: Optional[str] = None, example: Optional[str] = None, step: Optional[int] = None,
                all_steps: bool = True, view: str = "head", display_mode: Optional[str] = None,
                max_bytes: int = 512 << 20) -> AttentionPage:
    """The page of logged records: every run (or ``run``), tag (or ``tag``) and example (or ``example``), each
    with all its steps (``all_steps=False``: only ``step``, or the latest), opened at ``step`` (default: the
    latest) in ``view``. The stored bytes are embedded as they are; ``ValueError`` when nothing matches or the
    page would exceed ``max_bytes`` of records."""
    _check_common("return", display_mode)
    runs, store = reader.open_logdir(logdir, logdir_spec)
    picked = []
    for r in sorted(runs):
        if run is not None and r != run:
            continue
        for (t, x), es in sorted(runs[r].examples.items()):
            if (tag is not None and t != tag) or (example is not None and x != str(example)):
                continue
            if step is not None and not any(e.step == step for e in es):
                continue
            if not all_steps:
                es = [e for e in es if e.step == step] if step is not None else es[-1:]
            picked.extend(es)
    if not picked:
        where = ", ".join(f"{k}={v!r}" for k, v in (("run", run), ("tag", tag), ("example", example), ("step", step))
                          if v is not None) or "any run"
        have = sorted({(r, t) for r in runs for (t, _) in runs[r].examples})
        raise ValueError(f"no attention records for {where} in {logdir or logdir_spec}"
                         + (f" (logged: {', '.join(f'{r}/{t}' for r, t in have[:10])})" if have else " (none logged)"))
    records, total = [], 0
    for e in picked:
        data = _record_bytes(store, e)
        total += len(data)
        if total > max_bytes:
            raise ValueError(f"the records come to more than {max_bytes >> 20} MB: choose a run, tag, example or "
                             "step (all_steps=False), or raise max_bytes")
        records.append({"run": e.run, "tag": e.tag, "example": e.example, "step": e.step, "data": _b64(data)})
    first = picked[0]
    sel = {"run": first.run, "tag": first.tag, "example": first.example, "step": step}
    title = f"{first.run} · {first.tag}"
    return AttentionPage(_page(_index(picked), records, dict(sel, view=view), display_mode, title), title=title)


def show(logdir: Optional[str] = None, run: Optional[str] = None, tag: Optional[str] = None,
         step: Optional[int] = None, *, example: Optional[str] = None, logdir_spec: Optional[str] = None,
         view: str = "head", all_steps: bool = True, display_mode: Optional[str] = None,
         html_action: str = "view") -> Optional[AttentionPage]:
    """Open logged attention in the notebook, no TensorBoard running: the tab's views over the records of
    ``logdir`` (every step of each selected example, so the step slider, the compare modes and heads over
    training work), opened at ``step`` (default: the latest). See :func:`export_page`."""
    _check_common(html_action, display_mode)
    page = export_page(logdir, logdir_spec=logdir_spec, run=run, tag=tag, example=example, step=step,
                       all_steps=all_steps, view=view, display_mode=display_mode)
    return _act(page, html_action)
