"""The MLflow model registry as ``kubectl models import mlflow`` reads it: registered models, their
versions (selected by number, alias or all), runs and MLflow 3's logged models, through MLflow's
client (:mod:`.mlflow_client`); a missing one is an error naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelversioning.cli.models.errors import EXIT_USAGE, Refused
from modelversioning.cli.models.importers.mlflow_client import MlflowError, Tracking


@dataclass
class SourceVersion:
    """One MLflow model version, with its run (when it has one) and what they say."""

    name: str
    version: str
    source: str
    run_id: str | None
    status: str
    aliases: tuple[str, ...]
    tags: dict[str, str]
    description: str


def _version_from(mv: Any) -> SourceVersion:
    return SourceVersion(
        name=str(mv.name),
        version=str(mv.version),
        source=str(mv.source or ""),
        run_id=str(mv.run_id) if mv.run_id else None,
        status=str(mv.status or "READY"),
        aliases=tuple(str(a) for a in mv.aliases or []),
        tags={str(k): str(v) for k, v in (mv.tags or {}).items()},
        description=str(mv.description or ""),
    )


def get_model(t: Tracking, name: str) -> Any:
    """The registered model (MLflow's entity)."""
    try:
        return t.call("get_registered_model", t.client.get_registered_model, name)
    except MlflowError as e:
        if e.not_found:
            raise MlflowError(
                f"MLflow ({t.shown}) has no registered model {name!r}", e.status, e.error_code
            ) from None
        raise


def get_version(t: Tracking, name: str, version: str) -> SourceVersion:
    try:
        mv = t.call("get_model_version", t.client.get_model_version, name, version)
    except MlflowError as e:
        if e.not_found:
            get_model(t, name)  # says "no registered model" when that is the problem
            raise MlflowError(
                f"MLflow model {name!r} has no version {version!r}", e.status, e.error_code
            ) from None
        raise
    return _version_from(mv)


def select_versions(
    t: Tracking, name: str, *, versions: Sequence[str] = (), aliases: Sequence[str] = (), all_: bool = False
) -> list[SourceVersion]:
    """The MLflow versions asked for (each fetched with its aliases and tags), oldest first."""
    wanted: list[str] = []
    if all_:
        get_model(t, name)
        token: str | None = None
        while True:
            page = t.call(
                "search_model_versions",
                t.client.search_model_versions,
                filter_string=f"name='{name.replace(chr(39), chr(92) + chr(39))}'",
                max_results=1000,
                page_token=token,
            )
            wanted += [str(v.version) for v in page]
            token = getattr(page, "token", None) or None
            if not token:
                break
        if not wanted:
            raise MlflowError(f"MLflow model {name!r} has no versions")
    for v in versions:
        if not v.strip().isdigit():
            raise Refused(f"--version {v!r}: MLflow versions are integers (1, 2, ...)", EXIT_USAGE)
        wanted.append(str(int(v)))
    for alias in aliases:
        try:
            mv = t.call("get_model_version_by_alias", t.client.get_model_version_by_alias, name, alias)
        except MlflowError as e:
            if e.not_found:
                model = get_model(t, name)
                known = ", ".join(sorted(f"{a}={v}" for a, v in (model.aliases or {}).items()))
                raise MlflowError(
                    f"MLflow model {name!r} has no alias {alias!r} (aliases: {known or 'none'})",
                    e.status,
                    e.error_code,
                ) from None
            raise
        wanted.append(str(mv.version))
    out: list[SourceVersion] = []
    for v in sorted(set(wanted), key=int):
        sv = get_version(t, name, v)
        if sv.status != "READY":
            raise MlflowError(f"MLflow model {name!r} version {v} is {sv.status}, not READY")
        out.append(sv)
    return out


def get_run(t: Tracking, run_id: str) -> Any:
    """The run (MLflow's entity: info, data, inputs)."""
    try:
        return t.call("get_run", t.client.get_run, run_id)
    except MlflowError as e:
        if e.not_found:
            raise MlflowError(f"MLflow run {run_id} not found (deleted?)", e.status, e.error_code) from None
        raise


def get_logged_model(t: Tracking, model_id: str) -> Any | None:
    """MLflow 3's logged model (``models:/m-...``); None when the server does not know it."""
    try:
        return t.call("get_logged_model", t.client.get_logged_model, model_id)
    except MlflowError as e:
        if e.not_found or e.status == 501 or e.error_code == "ENDPOINT_NOT_FOUND":
            return None
        raise
