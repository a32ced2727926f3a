"""Which files a (digest-verified) OCI manifest lays out, and how: one plan per layer.

Supported layouts (anything else is ``UnsupportedArtifactLayout``, before any layer is fetched):

* **ORAS artifact** (``oras push``): each layer is a file named by its
  ``org.opencontainers.image.title`` annotation, whatever its media type; a layer that also has
  ``io.deis.oras.content.unpack: "true"`` (``oras push <directory>``) is a tar(+gzip) whose entries
  start with that name, unpacked at the root.
* **KitOps ModelKit** (config ``application/vnd.kitops.modelkit.config.v1+json``) and **CNCF
  ModelPack** (config ``application/vnd.cncf.model.config.v1+json``, artifactType
  ``application/vnd.cncf.model.manifest.v1+json``): layers
  ``application/vnd.kitops.modelkit.<type>.v1.<tar|raw>[+gzip]`` and
  ``application/vnd.cncf.model.<type>.v1.<tar|raw>[+gzip]``: a ``tar`` layer is unpacked at the root
  (its entries carry their relative paths), a ``raw`` layer is one file at the path of its
  ``org.cncf.model.filepath`` annotation. Every type (model, weight, config, docs, code, dataset) is
  laid out, as ``kit unpack`` does. ``+zstd`` is not supported (Python 3.11 has no zstd).
* **OCI image** (a modelcar): layers ``application/vnd.oci.image.layer.v1.tar[+gzip]`` or
  ``application/vnd.docker.image.rootfs.diff.tar.gzip`` are unpacked at the root in order, with the
  image semantics (a later layer replaces a file, ``.wh.`` whiteouts delete, ``.wh..wh..opq`` empties
  a directory).

Never supported: an image index / manifest list (pin one platform's manifest: the model must not
depend on the node's architecture), a descriptor with ``urls`` (foreign layers are fetched from
anywhere), a digest other than ``sha256``, a manifest without layers.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from modelversioning.artifacts.errors import ArtifactError, Reason
from modelversioning.artifacts.manifest import check_relative_path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
KIT_CONFIG = "application/vnd.kitops.modelkit.config.v1+json"
MODELPACK_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODELPACK_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
TITLE = "org.opencontainers.image.title"
ORAS_UNPACK = "io.deis.oras.content.unpack"
FILEPATH = "org.cncf.model.filepath"
IMAGE_LAYERS = {
    "application/vnd.oci.image.layer.v1.tar": "none",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
}
_MODEL_LAYER = re.compile(
    r"^application/vnd\.(kitops\.modelkit|cncf\.model)\.([a-z]+(?:\.[a-z]+)?)\.v1\.(tar|raw)(?:\+([a-z-]+))?$"
)
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
LayoutName = Literal["oras", "modelkit", "modelpack", "image"]


@dataclass(frozen=True)
class Layer:
    index: int
    digest: str  # sha256:<hex>
    size: int
    media_type: str
    kind: Literal["file", "tar"]
    compression: Literal["none", "gzip"]
    path: str  # a file: its relative path; a tar: the directory it is unpacked into ("" = the root)


@dataclass(frozen=True)
class Layout:
    name: LayoutName
    layers: tuple[Layer, ...]

    @property
    def overlay(self) -> bool:
        """Image semantics: later layers replace and white out earlier files."""
        return self.name == "image"

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)


def unsupported(shown: str, detail: str) -> ArtifactError:
    return ArtifactError(Reason.UNSUPPORTED_LAYOUT, f"{shown}: {Reason.UNSUPPORTED_LAYOUT.value}: {detail}")


def manifest_media_type(doc: Mapping[str, Any], content_type: str) -> str:
    """The manifest's own mediaType (verified with its digest), else the response's Content-Type."""
    own = doc.get("mediaType")
    return own if isinstance(own, str) and own else content_type


def plan_layout(doc: Any, content_type: str, shown: str) -> Layout:
    """The layout of a verified manifest. Raises ArtifactError(UnsupportedArtifactLayout)."""
    if not isinstance(doc, dict):
        raise unsupported(shown, "the manifest is not a JSON object")
    media_type = manifest_media_type(doc, content_type)
    if media_type in INDEXES or "manifests" in doc:
        raise unsupported(
            shown,
            "the digest names an image index (several platforms); pin the manifest of one platform "
            "(its digest is listed in the index)",
        )
    if media_type not in (OCI_MANIFEST, DOCKER_MANIFEST) or doc.get("schemaVersion") != 2:
        raise unsupported(shown, f"manifest media type {media_type or 'unknown'!r} (schemaVersion 2 needed)")
    config: dict[str, Any] = doc["config"] if isinstance(doc.get("config"), dict) else {}
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise unsupported(shown, "the manifest has no layers")
    layers = tuple(_layer(i, d, shown) for i, d in enumerate(raw_layers))
    return Layout(_name(config, doc, raw_layers), layers)


def _name(config: Mapping[str, Any], doc: Mapping[str, Any], raw: list[Any]) -> LayoutName:
    config_type = config.get("mediaType")
    if config_type == KIT_CONFIG:
        return "modelkit"
    if config_type == MODELPACK_CONFIG or doc.get("artifactType") == MODELPACK_ARTIFACT:
        return "modelpack"
    if any(_annotations(d).get(TITLE) for d in raw):
        return "oras"
    return "image"


def _annotations(d: Any) -> dict[str, str]:
    a = d.get("annotations") if isinstance(d, dict) else None
    return {str(k): str(v) for k, v in a.items()} if isinstance(a, dict) else {}


def _layer(index: int, d: Any, shown: str) -> Layer:
    if not isinstance(d, dict):
        raise unsupported(shown, f"layer {index} is not a descriptor")
    digest, size, media_type = d.get("digest"), d.get("size"), d.get("mediaType")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise unsupported(
            shown, f"layer {index}: digest {str(digest)[:80]!r} (only sha256:<hex> is supported)"
        )
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise unsupported(shown, f"layer {index}: no valid size")
    if not isinstance(media_type, str):
        raise unsupported(shown, f"layer {index}: no media type")
    if d.get("urls"):
        raise unsupported(
            shown, f"layer {index} is a foreign layer (urls): it would be fetched from elsewhere"
        )
    annotations = _annotations(d)

    def plan(kind: Literal["file", "tar"], compression: str, path: str) -> Layer:
        if compression not in ("none", "gzip"):
            raise unsupported(
                shown, f"layer {index}: {compression} compression ({media_type}) is not supported"
            )
        if path and (problem := check_relative_path(path)):
            raise ArtifactError(
                Reason.UNSAFE_ARCHIVE, f"{shown}: {Reason.UNSAFE_ARCHIVE.value}: layer {index}: {problem}"
            )
        return Layer(index, digest, size, media_type, kind, compression, path)  # type: ignore[arg-type]

    m = _MODEL_LAYER.match(media_type)
    if m is not None:  # KitOps / ModelPack
        fmt, compression = m.group(3), m.group(4) or "none"
        if fmt == "raw":
            if compression != "none":
                raise unsupported(shown, f"layer {index}: a raw layer cannot be compressed ({media_type})")
            if not annotations.get(FILEPATH):
                raise unsupported(shown, f"layer {index}: a raw layer without the {FILEPATH} annotation")
            return plan("file", "none", annotations[FILEPATH])
        return plan("tar", compression, "")
    title = annotations.get(TITLE)
    if title:  # ORAS
        if annotations.get(ORAS_UNPACK, "").lower() == "true":  # its entries start with the title
            plan("tar", "none", title)  # the title itself must be a relative path
            return plan("tar", "gzip" if media_type.endswith("gzip") else "none", posixpath.dirname(title))
        return plan("file", "none", title)
    if media_type in IMAGE_LAYERS:
        return plan("tar", IMAGE_LAYERS[media_type], "")
    if media_type.endswith("+zstd"):
        raise unsupported(shown, f"layer {index}: zstd compression ({media_type}) is not supported")
    raise unsupported(
        shown,
        f"layer {index} has media type {media_type!r}, which no supported layout lays out (ORAS files with "
        f"a {TITLE} annotation, KitOps ModelKit, CNCF ModelPack, OCI image layers)",
    )
