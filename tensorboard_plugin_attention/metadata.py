"""Plugin name, format version, and the summary metadata attached to every index record."""

from __future__ import annotations

import json

from tensorboard.compat.proto import summary_pb2

PLUGIN_NAME = "attention"

# Version of the whole format (index record + asset record). Every change bumps it; readers keep
# reading every older version (see format.py and docs/format.md).
# 1: first version. 2: the index payload carries its own CRC32C (``format.index_payload``).
# 3: long layers (q/k, row log-sum-exp, pyramid, top-k: ``format.LongLayer``).
# 4: an optional image per record (header "image", chunk "image": ``images.prepare_image``).
FORMAT_VERSION = 5


class UnsupportedVersionError(ValueError):
    """Raised for data whose format version this reader does not understand."""


class NewerVersionError(UnsupportedVersionError):
    """Raised for data written by a newer version of the plugin than this one (upgrading reads it)."""


def check_version(version: object, what: str = "record") -> int:
    """Return ``version`` if this reader understands it, else raise ``UnsupportedVersionError``."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:  # JSON true is not 1
        raise UnsupportedVersionError(f"attention {what} has an invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise NewerVersionError(
            f"attention {what} has format version {version}, but this tensorboard-plugin-attention reads "
            f"versions 1..{FORMAT_VERSION}: upgrade the plugin (pip install -U tensorboard-plugin-attention)"
        )
    return version


def create_summary_metadata(tag: str, example: str) -> summary_pb2.SummaryMetadata:
    """Metadata for one example's tag. Only per-tag constants go here: TensorBoard keeps the first."""
    content = json.dumps({"version": FORMAT_VERSION, "tag": tag, "example": example}).encode("utf-8")
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME, content=content),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )


def parse_plugin_metadata(content: bytes) -> dict:
    """Parse ``plugin_data.content``; raises ``ValueError`` (or its subclass for versions) if unusable."""
    try:
        meta = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"attention plugin metadata is not JSON: {e}") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("tag"), str) or not isinstance(meta.get("example"), str):
        raise ValueError(f"attention plugin metadata lacks tag/example: {meta!r}")
    check_version(meta.get("version"), "metadata")
    return meta
