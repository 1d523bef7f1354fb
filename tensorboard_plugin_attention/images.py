"""Images logged with their attention: which tokens are patches, and the image stored once per example.

A vision transformer's tokens are image patches (plus a few others: CLS, registers, a distillation token, and
a vision-language model's text). ``PatchLayout`` says which: the patches are tokens ``patch_start ..
patch_start + rows * cols - 1`` of one sequence, in row-major order, patch ``(r, c)`` covering pixels
``[c * W / cols, (c + 1) * W / cols) x [r * H / rows, (r + 1) * H / rows)`` of the stored image.
``layout_from_config`` derives it from a transformers config (ViT, DeiT, CLIP and SigLIP vision towers,
DINOv2 with or without registers, a LLaVA-shaped model's run of image tokens).

``prepare_image`` checks an image against its layout and encodes it (PNG, or WebP kept as given) before
anything is written: the image the model saw, as a PIL image, an ``H x W x 3`` uint8 array, ``pixel_values``
with the processor that made them (un-normalised), or PNG / WebP bytes. Pillow is imported only here, when
an image is logged.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["EncodedImage", "MAX_IMAGE_PIXELS", "PatchLayout", "layout_from_config", "prepare_image"]

MAX_IMAGE_PIXELS = 1 << 26  # 64 megapixels (8192 x 8192): larger is refused before it is decoded
MAX_IMAGE_BYTES = 64 << 20
MIME = {"PNG": "image/png", "WEBP": "image/webp"}


@dataclass(frozen=True)
class PatchLayout:
    """Which tokens of ``sequence`` are the image's patches: ``rows x cols`` of them from ``patch_start``."""

    rows: int
    cols: int
    patch_start: int = 0
    sequence: str = "input"

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= int(v) <= 4096:
                raise ValueError(f"patch grid {name} must be an integer in 1..4096, got {v!r}")
        if isinstance(self.patch_start, bool) or not isinstance(self.patch_start, (int, np.integer)) \
                or self.patch_start < 0:
            raise ValueError(f"patch_start must be a non-negative integer, got {self.patch_start!r}")
        if self.sequence not in ("input", "output"):
            raise ValueError(f"sequence must be 'input' or 'output', got {self.sequence!r}")

    @property
    def patches(self) -> int:
        return int(self.rows) * int(self.cols)

    def tokens(self, before: Optional[Sequence[str]] = None, after: Sequence[str] = ()) -> list[str]:
        """Token strings for a vision tower's sequence: ``before`` (default: ``[CLS]`` and ``[T1]``, ``[T2]``...
        for the ``patch_start`` tokens before the patches) + one ``"r,c"`` per patch + ``after``."""
        if before is None:
            before = ["[CLS]", *(f"[T{i}]" for i in range(1, int(self.patch_start)))][:int(self.patch_start)]
        return [*before, *(f"{r},{c}" for r in range(int(self.rows)) for c in range(int(self.cols))), *after]

    @classmethod
    def of(cls, value: Any) -> "PatchLayout":
        """A layout from a ``PatchLayout``, a dict of its fields, or ``(rows, cols[, patch_start])``."""
        if isinstance(value, PatchLayout):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {"rows", "cols", "grid", "patch_start", "sequence"}
            if unknown:
                raise ValueError(f"unknown patch layout fields {sorted(unknown)}")
            rows, cols = value["grid"] if "grid" in value else (value.get("rows"), value.get("cols"))
            return cls(rows, cols, value.get("patch_start", 0), value.get("sequence", "input"))
        if isinstance(value, (tuple, list)) and len(value) in (2, 3):
            return cls(*value)
        raise ValueError(f"patches must be a PatchLayout, a dict or (rows, cols[, patch_start]), got {value!r}")


# model_type -> tokens before the patches (besides registers)
_LEADING = {"vit": 1, "deit": 2, "clip_vision_model": 1, "clip": 1, "siglip_vision_model": 0, "siglip": 0,
            "dinov2": 1, "dinov2_with_registers": 1, "vit_mae": 1, "beit": 1, "data2vec-vision": 1, "dinov3_vit": 1}


def layout_from_config(config: Any, *, input_ids: Any = None, pixel_shape: Optional[Sequence[int]] = None
                       ) -> Optional[PatchLayout]:
    """The patch layout a transformers config implies, or None when it cannot tell.

    Vision towers: the grid from the image size (``pixel_shape`` ``(..., H, W)`` when given, else the config's
    ``image_size``) over ``patch_size``; the patches follow CLS (and DeiT's distillation token, DINOv2's
    registers). A LLaVA-shaped model (``image_token_id`` and a ``vision_config``): the run of image tokens in
    ``input_ids`` (one example, 1-D), which must be a square grid.
    """
    vision = getattr(config, "vision_config", None)
    token_id = getattr(config, "image_token_id", getattr(config, "image_token_index", None))
    if vision is not None and token_id is not None and input_ids is not None:
        ids = np.asarray(input_ids).reshape(-1)
        where = np.flatnonzero(ids == int(token_id))
        if where.size == 0:
            return None
        if where[-1] - where[0] + 1 != where.size:
            raise ValueError("the image tokens of this example are not one contiguous run")
        side = int(round(where.size ** 0.5))
        if side * side != where.size:
            raise ValueError(f"{where.size} image tokens are not a square grid: give patches=(rows, cols, start)")
        return PatchLayout(side, side, int(where[0]))
    model_type = getattr(config, "model_type", None)
    if model_type in ("clip", "siglip") and vision is not None:
        config, model_type = vision, vision.model_type
    if model_type not in _LEADING:
        return None
    patch = getattr(config, "patch_size", None)
    patch = patch[0] if isinstance(patch, (tuple, list)) else patch
    if pixel_shape is not None:
        height, width = int(pixel_shape[-2]), int(pixel_shape[-1])
    else:
        size = getattr(config, "image_size", None)
        height, width = (size, size) if isinstance(size, int) else tuple(size or (None, None))
    if not patch or not height or not width:
        return None
    leading = _LEADING[model_type] + int(getattr(config, "num_register_tokens", 0) or 0)
    return PatchLayout(height // patch, width // patch, leading)


@dataclass(frozen=True)
class EncodedImage:
    """An image ready for a record: its bytes and the header field describing it (docs/format.md)."""

    data: bytes
    header: dict


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - Pillow comes with the [torch] extra
        raise ImportError("logging an image needs Pillow: pip install 'tensorboard-plugin-attention[torch]'") from e
    return Image


def _from_pixel_values(pixel_values: Any, processor: Any) -> np.ndarray:
    """``(3, H, W)`` (or ``(1, 3, H, W)``) normalised pixel values back to ``H x W x 3`` uint8, undoing the
    processor's normalisation and rescaling (what the model saw, at the model's resolution)."""
    x = pixel_values.detach().float().cpu().numpy() if hasattr(pixel_values, "detach") else np.asarray(pixel_values,
                                                                                                        np.float32)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"pixel_values must be (3, H, W) for one image, got shape {tuple(x.shape)}")
    if processor is None:
        raise ValueError("pixel_values need the processor that made them (processor=...) to be turned back "
                         "into an image")
    proc = getattr(processor, "image_processor", processor)
    if getattr(proc, "do_normalize", True):
        mean = np.asarray(getattr(proc, "image_mean", None) or [0.5] * 3, np.float32)[:, None, None]
        std = np.asarray(getattr(proc, "image_std", None) or [0.5] * 3, np.float32)[:, None, None]
        x = x * std + mean
    if getattr(proc, "do_rescale", True):
        x = x / float(getattr(proc, "rescale_factor", 1 / 255) or 1 / 255)
    return np.clip(np.rint(x.transpose(1, 2, 0)), 0, 255).astype(np.uint8)


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
        raise ValueError(f"image of {width} x {height} pixels is refused (at most {MAX_IMAGE_PIXELS:,} pixels: "
                         "a larger one could be a decompression bomb)")


def prepare_image(image: Any, layout: PatchLayout, tokens: int, *, processor: Any = None) -> EncodedImage:
    """Check ``image`` against ``layout`` and the length of the patches' sequence (``tokens``), and encode it.

    Raises ``ValueError`` for a grid that does not fit the tokens, an image whose size the grid does not
    divide into whole patches, bytes that are not a PNG / WebP image, or an image over ``MAX_IMAGE_PIXELS``.
    """
    layout = PatchLayout.of(layout)
    if layout.patch_start + layout.patches > tokens:
        raise ValueError(f"a {layout.rows} x {layout.cols} patch grid from token {layout.patch_start} needs "
                         f"{layout.patch_start + layout.patches} tokens, but the {layout.sequence!r} sequence has "
                         f"{tokens}")
    Image = _pil()
    mime = "image/png"
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if len(data) > MAX_IMAGE_BYTES:
            raise ValueError(f"image of {len(data):,} bytes is refused (at most {MAX_IMAGE_BYTES:,})")
        try:
            with Image.open(io.BytesIO(data)) as im:  # reads the header only: the size is checked before decoding
                if im.format not in MIME:
                    raise ValueError(f"image bytes are {im.format}, not PNG or WebP")
                width, height = im.size
                _check_size(width, height)
                im.load()
                mime = MIME[im.format]
        except ValueError:
            raise
        except Image.DecompressionBombError:
            raise ValueError("image is refused: Pillow measures it as a decompression bomb (far over "
                             f"{MAX_IMAGE_PIXELS:,} pixels)") from None
        except Exception as e:  # noqa: BLE001 - Pillow raises many kinds for bytes that are not an image
            raise ValueError(f"image bytes are not a readable PNG or WebP image ({type(e).__name__}: {e})") from None
        if mime == "image/png":
            data = None  # re-encoded below: one canonical PNG, no ancillary chunks from elsewhere
            with Image.open(io.BytesIO(bytes(image))) as im:
                array = np.asarray(im.convert("RGB"))
        else:
            array = None
    else:
        data = None
        if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
            _check_size(*image.size)
            array = np.asarray(image.convert("RGB"))
        elif hasattr(image, "shape") and len(image.shape) in (3, 4) and int(image.shape[-3]) == 3 \
                and (hasattr(image, "detach") or np.asarray(image).dtype != np.uint8):
            array = _from_pixel_values(image, processor)
        else:
            array = np.asarray(image)
            if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
                raise ValueError(f"image must be a PIL image, an H x W x 3 uint8 array, pixel_values with their "
                                 f"processor, or PNG / WebP bytes; got {type(image).__name__} of shape "
                                 f"{getattr(array, 'shape', None)} and dtype {getattr(array, 'dtype', None)}")
            array = array[:, :, :3]
    if array is not None:
        height, width = array.shape[:2]
        _check_size(width, height)
    if width % layout.cols or height % layout.rows:
        raise ValueError(f"a {width} x {height} image does not divide into the {layout.rows} x {layout.cols} patch "
                         "grid: log the image the model saw (the processor's output size), or pixel_values with "
                         "their processor")
    if data is None:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", optimize=False, compress_level=6)
        data = buf.getvalue()
    header = {"mime": mime, "width": int(width), "height": int(height), "grid": [int(layout.rows), int(layout.cols)],
              "sequence": layout.sequence, "patch_start": int(layout.patch_start), "bytes": len(data)}
    return EncodedImage(data, header)
