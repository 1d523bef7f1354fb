"""Images logged with their attention (format v4): patch layouts derived from real (random-weight) ViT,
CLIP-vision and LLaVA-shaped models, the stored image, the attention reshaped onto the grid, the plugin's
/image route, and every bad input refused before anything is written. Images are made in the test."""

import dataclasses
import io
import os
import struct
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from PIL import Image  # noqa: E402

from tensorboard_plugin_attention import AttentionWriter, capture_attention, log_attention, read_attention  # noqa: E402
from tensorboard_plugin_attention.images import PatchLayout, layout_from_config, prepare_image  # noqa: E402


def make_image(height=32, width=32, seed=0):
    """A structured RGB image: a gradient plus a bright square, so every patch differs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], -1).astype(np.uint8)
    img[height // 4: height // 2, width // 2: 3 * width // 4] = rng.integers(0, 255, 3, dtype=np.uint8)
    return img


def tiny_vit(image=32, patch=8, seed=0):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    return ViTModel(ViTConfig(image_size=image, patch_size=patch, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=64)).eval()


def processor(size=32):
    try:  # the Pillow-backed processor (the plain name warns without torchvision)
        from transformers import ViTImageProcessorPil as ViTImageProcessor
    except ImportError:  # pragma: no cover
        from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.5, 0.4, 0.3],
                             image_std=[0.2, 0.25, 0.3])


def _eager(model, **inputs):
    model.set_attn_implementation("eager")
    with torch.no_grad():
        return [a[0].numpy() for a in model(**inputs, output_attentions=True).attentions]


def _no_records(logdir):
    return not os.path.isdir(logdir) or not any(f.endswith(".attn") for _, _, fs in os.walk(logdir) for f in fs)


# ------------------------------------------------------------------------------------ layouts from configs
def test_layouts_from_vision_configs():
    from transformers import CLIPVisionConfig, DeiTConfig, Dinov2Config, SiglipVisionConfig, ViTConfig

    assert layout_from_config(ViTConfig(image_size=224, patch_size=16)) == PatchLayout(14, 14, 1)
    assert layout_from_config(DeiTConfig(image_size=224, patch_size=16)) == PatchLayout(14, 14, 2)  # + distillation
    assert layout_from_config(CLIPVisionConfig(image_size=224, patch_size=32)) == PatchLayout(7, 7, 1)
    assert layout_from_config(SiglipVisionConfig(image_size=224, patch_size=16)) == PatchLayout(14, 14, 0)
    assert layout_from_config(Dinov2Config(image_size=224, patch_size=14)) == PatchLayout(16, 16, 1)
    # the pixel values' own size wins (ViT's interpolate_pos_encoding)
    assert layout_from_config(ViTConfig(image_size=224, patch_size=16), pixel_shape=(1, 3, 64, 96)) == PatchLayout(4, 6, 1)
    assert layout_from_config(object()) is None


def test_vit_record_holds_the_image_and_its_grid(tmp_path):
    """A ViT forward with pixel_values made by a real processor: the capture derives the 4 x 4 grid after CLS,
    the record stores the image the model saw (pixel values un-normalised, equal to the input within
    rounding), and CLS's attention reshaped onto the grid equals the model's eager attention."""
    model, img, proc = tiny_vit(), make_image(), processor()
    pixel_values = proc(images=Image.fromarray(img), return_tensors="pt")["pixel_values"]
    with torch.no_grad(), capture_attention(model) as cap:
        model(pixel_values=pixel_values)
    layout = cap.last.example(0).image_layout
    assert layout == PatchLayout(4, 4, 1)
    with AttentionWriter(str(tmp_path)) as w:
        log_attention(w, "images", cap, layout.tokens(), 0, image=pixel_values[0], processor=proc)
    rec = read_attention(str(tmp_path))[0]
    assert rec.header["version"] >= 4  # images since format v4
    assert rec.header["image"] == {"mime": "image/png", "width": 32, "height": 32, "grid": [4, 4],
                                   "sequence": "input", "patch_start": 1, "bytes": len(rec.image)}
    stored = np.asarray(Image.open(io.BytesIO(rec.image)))
    assert stored.shape == (32, 32, 3) and np.abs(stored.astype(int) - img).max() <= 1
    eager = _eager(model, pixel_values=pixel_values)
    for layer in range(2):
        got = rec.attention["encoder"][layer][:, 0, 1:].reshape(4, 4, 4)  # heads x rows x cols from CLS
        want = eager[layer][:, 0, 1:].reshape(4, 4, 4)
        assert np.abs(got - want).max() <= 1 / 256 + 1e-6


def test_clip_vision_and_a_llava_shaped_model(tmp_path):
    """CLIP's vision tower (patches after CLS) and a vision-language-shaped model (LLaVA: a run of image
    tokens among text tokens): the layout comes from each config, the record stores the image."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(0)
    clip = CLIPVisionModel(CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                                            num_hidden_layers=2, num_attention_heads=4)).eval()
    img = make_image()
    pixel_values = torch.tensor(img, dtype=torch.float32).permute(2, 0, 1)[None] / 255
    with torch.no_grad(), capture_attention(clip) as cap:
        clip(pixel_values=pixel_values)
    assert cap.last.example(0).image_layout == PatchLayout(4, 4, 1)
    with AttentionWriter(str(tmp_path / "clip")) as w:
        log_attention(w, "images", cap, PatchLayout(4, 4, 1).tokens(), 0, image=img)
    assert read_attention(str(tmp_path / "clip"))[0].header["image"]["grid"] == [4, 4]

    vision = CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4)
    text = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    llava = LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, image_token_id=100,
                                                      vision_feature_layer=-1)).eval()
    ids = torch.tensor([[1, 5, 6] + [100] * 16 + [7, 8, 9]])  # 16 image tokens: the 4 x 4 patches, CLS dropped
    with torch.no_grad(), capture_attention(llava) as cap:
        llava(input_ids=ids, pixel_values=pixel_values, attention_mask=torch.ones_like(ids))
    ex = cap.forwards[-1].example(0)
    assert ex.image_layout == PatchLayout(4, 4, 3)
    # the forward holds the vision tower's attention (over its own 17 tokens) and the language model's (over
    # the 22 of the prompt): the record is the language model's, whose image tokens are the patches
    ex = dataclasses.replace(ex, kinds={"decoder": ex.kinds["decoder"]})
    tokens = ["<s>", "look", ":"] + ["<image>"] * 16 + ["what", "is", "it"]
    with AttentionWriter(str(tmp_path / "llava")) as w:
        log_attention(w, "images", ex, tokens, 0, image=img)
    rec = read_attention(str(tmp_path / "llava"))[0]
    assert rec.header["image"]["patch_start"] == 3 and rec.header["kinds"]["decoder"]["q_len"] == 22
    assert rec.image is not None


def test_plugin_serves_the_image_and_a_corrupt_one_costs_only_the_image(tmp_path, tensorboard):
    img = make_image()
    att = [np.full((1, 2, 17, 17), 1 / 17, np.float32)]
    with AttentionWriter(str(tmp_path / "run")) as w:
        log_attention(w, "images", att, PatchLayout(4, 4, 1).tokens(), 0, image=img, patches=(4, 4, 1))
        log_attention(w, "images", att, PatchLayout(4, 4, 1).tokens(), 1, image=img, patches=(4, 4, 1))
        log_attention(w, "plain", att, PatchLayout(4, 4, 1).tokens(), 0)
    # flip a byte inside step 1's image: its checksum fails
    asset = next(os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "run") for f in fs if f.endswith(".attn"))
    data = bytearray(open(asset, "rb").read())
    stored = read_attention(str(tmp_path), step=0, tag="images")[0].image
    first = data.find(stored)
    second = data.find(stored, first + 1)
    assert first >= 0 and second > first
    data[second + len(stored) // 2] ^= 0xFF
    open(asset, "wb").write(bytes(data))

    tb = tensorboard(str(tmp_path), "--load_fast=false")
    tb.wait_for(lambda: len(tb.plugin("index").json()["runs"]) == 1, what="the run")
    ok = tb.plugin("image", run="run", tag="images", example="0", step=0)
    assert ok.status == 200 and ok.headers["Content-Type"].startswith("image/png") and ok.body == stored
    bad = tb.plugin("image", run="run", tag="images", example="0", step=1)
    assert bad.status == 404 and b"image" in bad.body and b"checksum" in bad.body
    none = tb.plugin("image", run="run", tag="plain", example="0", step=0)
    assert none.status == 404 and b"has no image" in none.body
    assert tb.plugin("attention", run="run", tag="images", example="0", step=1, kind="encoder", layer=0).status == 200
    got = {(r.tag, r.step): r for r in read_attention(str(tmp_path))}
    assert got[("images", 1)].image is None and got[("images", 1)].attention["encoder"].shape == (1, 2, 17, 17)


# ------------------------------------------------------------------------------------------- bad input
def _bomb_png(width, height):
    """A valid PNG header claiming ``width x height`` with a tiny (truncated) body: decoding it would need
    width * height * 3 bytes."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("case, kwargs, message", [
    ("size", dict(image=make_image(30, 32), patches=(4, 4, 1)), "does not divide into the 4 x 4 patch grid"),
    ("grid", dict(image=make_image(), patches=(5, 5, 1)), "needs 26 tokens"),
    ("bytes", dict(image=b"GIF89a not really", patches=(4, 4, 1)), "not a readable PNG or WebP"),
    ("bomb", dict(image=_bomb_png(100_000, 100_000), patches=(4, 4, 1)), "decompression bomb"),
    ("array", dict(image=np.zeros((32, 32), np.uint8), patches=(4, 4, 1)), "H x W x 3 uint8"),
    ("pixels", dict(image=torch.zeros(3, 32, 32), patches=(4, 4, 1)), "need the processor"),
    ("no layout", dict(image=make_image()), "where are the image's patches"),
    ("no image", dict(patches=(4, 4, 1)), "pass the image too"),
    ("layout", dict(image=make_image(), patches=(0, 4)), "rows must be an integer"),
])
def test_bad_images_are_refused_before_anything_is_written(tmp_path, case, kwargs, message):
    att = [np.full((1, 2, 17, 17), 1 / 17, np.float32)]
    with AttentionWriter(str(tmp_path)) as w:
        with pytest.raises(ValueError, match=message):
            log_attention(w, "images", att, PatchLayout(4, 4, 1).tokens(), 0, **kwargs)
        log_attention(w, "images", att, PatchLayout(4, 4, 1).tokens(), 1)  # the writer still works
    assert [r.step for r in read_attention(str(tmp_path))] == [1]


def test_webp_bytes_are_kept_as_given_and_png_re_encoded():
    buf = io.BytesIO()
    Image.fromarray(make_image()).save(buf, format="WEBP", lossless=True)
    enc = prepare_image(buf.getvalue(), PatchLayout(4, 4, 1), 17)
    assert enc.header["mime"] == "image/webp" and enc.data == buf.getvalue()
    png = io.BytesIO()
    Image.fromarray(make_image()).save(png, format="PNG")
    enc = prepare_image(png.getvalue(), PatchLayout(4, 4, 1), 17)
    assert enc.header["mime"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(enc.data))), make_image())


# -------------------------------------------------------------------------------------------- notebooks
def test_image_view_and_show_are_self_contained_offline_pages(browser, tmp_path):
    """notebook.image_view (BertViz-style call, from a capture of a ViT) and notebook.show of a logged image
    record: each page draws the image view from file:// with no request but the page itself, and the
    overlay is painted (patches with weight > 0)."""
    from browser_util import PageWatch, dataset

    from tensorboard_plugin_attention import notebook as nb

    model, img, proc = tiny_vit(), make_image(), processor()
    pixel_values = proc(images=Image.fromarray(img), return_tensors="pt")["pixel_values"]
    with torch.no_grad(), capture_attention(model) as cap:
        model(pixel_values=pixel_values)
    pages = {"call": nb.image_view(cap, pixel_values[0], processor=proc, layer=1, html_action="return")}
    with AttentionWriter(str(tmp_path / "logs" / "vit")) as w:
        log_attention(w, "images", cap, PatchLayout(4, 4, 1).tokens(), 3, image=img)
    pages["show"] = nb.show(str(tmp_path / "logs"), view="image", html_action="return")
    with pytest.raises(ValueError, match="needs the image"):
        nb.image_view(cap, None)
    with pytest.raises(ValueError, match="does not divide"):
        nb.image_view(cap, make_image(30, 32))
    for name, page_obj in pages.items():
        path = page_obj.save(str(tmp_path / f"{name}.html"))
        context = browser.new_context(offline=True)
        page = context.new_page()
        watch = PageWatch()
        watch.attach(page)
        page.goto("file://" + path)
        page.wait_for_selector('[data-testid="image-view"][data-image="decoded"]', timeout=30_000)
        d = dataset(page, '[data-testid="image-view"]')
        assert d["grid"] == "4,4" and int(d["patches"]) > 0, (name, d)
        assert watch.requests == ["file://" + path] and not watch.errors, (name, watch.requests, watch.errors)
        context.close()


# ------------------------------------------------------------------------------------------ integrations
def test_image_probes_in_a_plain_loop_and_the_trainer(tmp_path):
    """AttentionLogger and transformers' AttentionCallback with probe images (the image processor in place of
    the tokenizer): each probe is logged at each chosen step with its image and the grid from the config."""
    from transformers import Trainer, TrainingArguments, ViTConfig, ViTForImageClassification

    from tensorboard_plugin_attention import AttentionCallback, AttentionLogger

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, num_labels=2)
    proc = processor()
    probes = [make_image(seed=1), Image.fromarray(make_image(seed=2))]
    model = ViTForImageClassification(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = proc(images=[make_image(seed=s) for s in range(8)], return_tensors="pt")["pixel_values"]
    with AttentionLogger(model, proc, [], str(tmp_path / "loop"), steps=[0, 2], images=probes,
                         names=["a", "b"]) as logger:
        for step in range(3):
            logger.maybe_log(step)
            model(pixel_values=data, labels=torch.arange(8) % 2).loss.backward()
            opt.step()
            opt.zero_grad()
    got = {(r.example, r.step): r for r in read_attention(str(tmp_path / "loop"))}
    assert sorted(got) == [("a", 0), ("a", 2), ("b", 0), ("b", 2)]
    for (name, _), rec in got.items():
        assert rec.header["image"]["grid"] == [4, 4] and rec.header["sequences"]["input"][:2] == ["[CLS]", "0,0"]
        stored = np.asarray(Image.open(io.BytesIO(rec.image)))
        assert np.abs(stored.astype(int) - make_image(seed=1 if name == "a" else 2)).max() <= 1

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return {"pixel_values": data[i], "labels": i % 2}

    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=2, per_device_train_batch_size=4,
                             report_to=["tensorboard"], save_strategy="no", use_cpu=True, disable_tqdm=True,
                             logging_steps=1)
    cb = AttentionCallback(texts=[], images=probes, every_n_steps=2)
    Trainer(model=ViTForImageClassification(cfg), args=args, train_dataset=Data(), processing_class=proc,
            callbacks=[cb]).train()
    got = read_attention(str(tmp_path / "trainer"))
    assert sorted((r.example, r.step) for r in got) == [("0", 0), ("0", 2), ("1", 0), ("1", 2)]
    assert all(r.image is not None and r.header["image"]["patch_start"] == 1 for r in got)
