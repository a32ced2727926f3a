"""Which runtime ``kubectl models register`` records, purely: an explicit ``spec.runtime`` (--image,
--port), a catalog runtime by name (--runtime-ref, ``spec.runtimeRef``), or none, for the operator to
choose from the catalog by the model's format (--model-format, ``spec.format``, else --framework,
``lineage.framework``; docs/design.md "The runtime catalog")."""

from __future__ import annotations

from typing import Any

from modelversioning.api.wire import RUNTIME_KINDS
from modelversioning.cli.models.errors import EXIT_USAGE, Refused

KINDS = tuple(r.kind for r in RUNTIME_KINDS)  # ModelRuntime, ClusterModelRuntime


def parse_runtime_ref(value: str) -> dict[str, str]:
    """--runtime-ref [KIND/]NAME as ``spec.runtimeRef`` (the kind in any case; without one, the
    operator's lookup: a ModelRuntime of that name, else the ClusterModelRuntime). The name's syntax is
    the API's to check."""
    kind, slash, name = value.rpartition("/")
    if not slash:
        return {"name": value}
    canonical = {k.lower(): k for k in KINDS}.get(kind.lower())
    if canonical is None or not name:
        raise Refused(
            f"--runtime-ref {value!r} must be NAME or KIND/NAME with KIND {' or '.join(KINDS)}",
            code=EXIT_USAGE,
        )
    return {"kind": canonical, "name": name}


def parse_model_format(value: str) -> dict[str, str]:
    """--model-format NAME[:VERSION] as ``spec.format`` (e.g. sklearn:1, KServe's format names)."""
    name, colon, version = value.partition(":")
    if not name or (colon and not version):
        raise Refused(
            f"--model-format {value!r} must be NAME or NAME:VERSION, e.g. sklearn:1", code=EXIT_USAGE
        )
    return {"name": name, "version": version} if version else {"name": name}


def runtime_errors(image: str | None, port: int | None, runtime_ref: str | None) -> list[str]:
    """The runtime options the API would refuse together, or that belong to another runtime."""
    errors = []
    if image and runtime_ref:
        errors.append(
            "--image and --runtime-ref are exclusive (spec.runtime and spec.runtimeRef): give the serving "
            "image with --image, or name a ModelRuntime/ClusterModelRuntime with --runtime-ref"
        )
    if port is not None and not image:
        errors.append(
            "--port belongs to an explicit runtime (spec.runtime): give --image with it; a catalog runtime "
            "(--runtime-ref, --model-format, --framework) declares its own port"
        )
    return errors


def check_runtime(
    image: str | None, port: int | None, runtime_ref: str | None, model_format: str | None
) -> None:
    """Refused (usage) before any work: the errors above, and a malformed --runtime-ref/--model-format."""
    errors = runtime_errors(image, port, runtime_ref)
    if errors:
        raise Refused("; ".join(errors), code=EXIT_USAGE)
    if runtime_ref is not None:
        parse_runtime_ref(runtime_ref)
    if model_format is not None:
        parse_model_format(model_format)


def from_catalog(runtime_ref: str | None, model_format: str | None, framework: str | None) -> bool:
    """Whether the operator can take the runtime from the catalog (no --image needed)."""
    return bool(runtime_ref or model_format or framework)


def spec_fields(
    image: str | None, port: int | None, runtime_ref: str | None, model_format: str | None
) -> dict[str, Any]:
    """The runtime's fields of the spec: ``runtime`` only with --image (none for the catalog to fill),
    ``runtimeRef`` and ``format`` when given."""
    fields: dict[str, Any] = {}
    if image:
        fields["runtime"] = {"image": image} | ({"port": port} if port is not None else {})
    if runtime_ref:
        fields["runtimeRef"] = parse_runtime_ref(runtime_ref)
    if model_format:
        fields["format"] = parse_model_format(model_format)
    return fields
