"""MLflow run -> the lineage of a ModelVersion, purely (``kubectl models import mlflow``): MLflow's
entities in (a run, MLflow 3's logged model, the MLmodel file), lineage out, every missing field
listed with where it would come from. Nothing is invented.

What comes from where (the lineage mapping, also in docs/import.md):

==============================  ===============================================================
ModelVersion field              MLflow
==============================  ===============================================================
spec.version                    the version rule (:mod:`.mapping`)
artifact.uri                    ``get_model_version_download_uri`` (else the version's source),
                                resolved: ``mlflow-artifacts:/P`` -> ``--artifacts-destination``/P,
                                or the server's proxy URL for a single file; ``runs:/ID/P`` ->
                                the run's artifact root/P; ``models:/...`` -> the logged model or
                                registered version; s3://, gs://, http(s)://, file:// as is
artifact.sha256                 streamed: a file's sha256, a directory's manifest digest
artifact.format                 ``mlflow`` when the artifact has an ``MLmodel`` file
lineage.hyperparameters         run params (numbers/booleans parsed), + the logged model's params
metrics                         run metrics (latest value), + the logged model's metrics
lineage.codeCommit              run tag ``mlflow.source.git.commit``
lineage.codeRepository          run tag ``mlflow.source.git.repoURL`` (credentials removed)
lineage.dataset                 the run's dataset input (context ``training``, or the only one,
                                or ``--dataset NAME``): name; digest -> sha256 if 64 hex, else
                                version; source uri/url/path -> uri
lineage.author                  run tag ``mlflow.user``, else the run's ``user_id``
lineage.trainedAt               run start time (UTC, RFC 3339)
lineage.framework               ``MLmodel``: the first flavor other than python_function, with
                                its ``*_version`` (``sklearn-1.5.2``)
lineage.environment             ``MLmodel``: python (python_function.python_version), mlflow
                                (mlflow_version); run tag ``mlflow.source.git.branch``
spec.stage                      ``--stage-from-alias ALIAS=STAGE``, else ``--stage``
spec.description                the MLflow version's description
==============================  ===============================================================
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelversioning.api.wire import GIT_SHA, SHA256_HEX
from modelversioning.cli.models.gitinfo import redact_remote
from modelversioning.cli.models.importers.mapping import Missing
from modelversioning.cli.models.importers.mlflow_registry import SourceVersion
from modelversioning.cli.models.inputs import parse_scalar

GIT_COMMIT_TAG = "mlflow.source.git.commit"
GIT_REPO_TAGS = ("mlflow.source.git.repoURL", "mlflow.gitRepoURL")
GIT_BRANCH_TAG = "mlflow.source.git.branch"
USER_TAG = "mlflow.user"


def _rfc3339(ms: Any) -> str | None:
    try:
        return (
            datetime.fromtimestamp(int(ms) / 1000, UTC)
            .replace(microsecond=0)
            .isoformat()
            .replace("+00:00", "Z")
        )
    except (TypeError, ValueError, OverflowError):
        return None


def framework_of(mlmodel: Mapping[str, Any] | None) -> str | None:
    """'sklearn-1.5.2' from MLmodel flavors (the first one other than python_function)."""
    flavors = (mlmodel or {}).get("flavors") or {}
    if not isinstance(flavors, dict):
        return None
    for name, conf in flavors.items():
        if name == "python_function":
            continue
        conf = conf if isinstance(conf, dict) else {}
        version = next(
            (str(v) for k, v in conf.items() if k.endswith("_version") and k != "python_version" and v), None
        )
        return f"{name}-{version}" if version else str(name)
    if "python_function" in flavors:
        loader = (flavors["python_function"] or {}).get("loader_module")
        return f"pyfunc-{loader}" if loader else "pyfunc"
    return None


def _dataset_uri(source: str) -> str | None:
    try:
        data = json.loads(source)
    except ValueError:
        return source if "://" in source else None
    if isinstance(data, dict):
        for key in ("uri", "url", "path", "source_uri"):
            if isinstance(data.get(key), str) and data[key]:
                return str(data[key])
    return None


DatasetInput = tuple[dict[str, str], dict[str, str]]  # (name/digest/source, input tags)


def dataset_inputs(run: Any) -> list[DatasetInput]:
    """The run's dataset inputs (MLflow's RunInputs) as plain (dataset, tags) pairs."""
    out: list[DatasetInput] = []
    for i in getattr(getattr(run, "inputs", None), "dataset_inputs", None) or []:
        d = i.dataset
        out.append(
            (
                {"name": str(d.name or ""), "digest": str(d.digest or ""), "source": str(d.source or "")},
                {str(tag.key): str(tag.value) for tag in i.tags or []},
            )
        )
    return out


def choose_dataset(
    inputs: Sequence[DatasetInput], wanted: str | None
) -> tuple[dict[str, str] | None, Missing | None]:
    """The dataset input of a run that trained the model: --dataset NAME, else context
    ``training``, else the only one. (dataset, None) or (None, why it is missing)."""
    names = sorted({d["name"] for d, _ in inputs})
    if wanted is not None:
        pick = [d for d, _ in inputs if d["name"] == wanted]
        if not pick:
            return None, Missing(
                "lineage.dataset",
                f"--dataset {wanted}: the run has no dataset input of that name "
                f"(inputs: {', '.join(names) or 'none'})",
            )
        return pick[0], None
    training = [d for d, tags in inputs if tags.get("mlflow.data.context") == "training"]
    if len({d["name"] for d in training}) == 1:
        return training[0], None
    if len(names) == 1:
        return inputs[0][0], None
    if not inputs:
        return None, Missing(
            "lineage.dataset",
            "the run has no dataset input: log one in the training code with "
            "mlflow.log_input(mlflow.data.from_...(...), context='training')",
        )
    return None, Missing(
        "lineage.dataset",
        f"the run has several dataset inputs ({', '.join(names)}) and none (or several) with context "
        "'training': pick one with --dataset NAME",
    )


def dataset_of(d: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": str(d.get("name") or "")}
    digest = str(d.get("digest") or "")
    if re.match(SHA256_HEX, digest):
        out["sha256"] = digest
    elif digest:
        out["version"] = digest
    uri = _dataset_uri(str(d.get("source") or ""))
    if uri and len(uri) <= 2048:
        out["uri"] = uri
    return out


@dataclass
class Gathered:
    """Everything the lineage of one ModelVersion needs, as found in MLflow, and what is missing."""

    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    code_commit: str | None = None
    code_repository: str | None = None
    dataset: dict[str, Any] | None = None
    author: str | None = None
    trained_at: str | None = None
    framework: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    run_tags: dict[str, str] = field(default_factory=dict)
    missing: list[Missing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _metrics(run: Any, logged: Any | None) -> list[tuple[str, Any]]:
    """(key, latest value): the run's, then the logged model's."""
    out = [(str(k), v) for k, v in (run.data.metrics or {}).items()]
    if logged is not None:
        out += [(str(m.key), m.value) for m in logged.metrics or []]
    return out


def gather_lineage(
    sv: SourceVersion,
    run: Any | None,
    logged: Any | None,
    mlmodel: Mapping[str, Any] | None,
    dataset: str | None = None,
) -> Gathered:
    """Lineage from the run (MLflow's Run), MLflow 3's logged model and MLmodel; every missing field
    is listed with where it would come from. Nothing is invented."""
    g = Gathered()
    if run is None:
        g.missing.append(
            Missing(
                "lineage (all of it)",
                f"MLflow version {sv.version} has no run: it was registered from a path "
                f"({sv.source}); lineage comes from the run that logged the model",
            )
        )
        return g
    info = run.info
    g.run_tags = {str(k): str(v) for k, v in (run.data.tags or {}).items()}
    run_id = info.run_id or sv.run_id
    _values(g, run, logged, run_id)
    _code(g, run_id)
    _dataset(g, run, run_id, dataset)
    g.author = g.run_tags.get(USER_TAG) or (str(info.user_id) if info.user_id else None)
    if not g.author:
        g.missing.append(
            Missing("lineage.author", f"run tag {USER_TAG} (or the run's user_id) of run {run_id}")
        )
    g.trained_at = _rfc3339(info.start_time)
    if not g.trained_at:
        g.missing.append(Missing("lineage.trainedAt", f"the start time of run {run_id}"))
    _framework(g, mlmodel)
    return g


def _values(g: Gathered, run: Any, logged: Any | None, run_id: str | None) -> None:
    """Hyperparameters (run params, then the logged model's) and metrics (finite numbers only)."""
    params = dict(run.data.params or {})
    if logged is not None:
        params.update(logged.params or {})
    for k, v in params.items():
        g.hyperparameters[str(k)] = parse_scalar(str(v))
    for key, value in _metrics(run, logged):
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            g.metrics[key] = float(value)
        else:
            g.notes.append(f"metric {key}={value!r} is not a finite number: left out")
    if not g.metrics:
        g.missing.append(
            Missing("metrics", f"run {run_id} logged no metrics (mlflow.log_metric in the training code)")
        )


def _code(g: Gathered, run_id: str | None) -> None:
    """The code commit and repository (and branch) from the run's git tags."""
    tags = g.run_tags
    commit = tags.get(GIT_COMMIT_TAG, "").strip().lower()
    if not commit:
        g.missing.append(
            Missing(
                "lineage.codeCommit",
                f"run tag {GIT_COMMIT_TAG} on run {run_id}: MLflow sets it when the training code runs "
                "from a git checkout; or set it with MlflowClient().set_tag(run_id, "
                f"'{GIT_COMMIT_TAG}', SHA)",
            )
        )
    elif not re.match(GIT_SHA, commit):
        g.missing.append(
            Missing("lineage.codeCommit", f"run tag {GIT_COMMIT_TAG}={commit!r} is not a hex git commit")
        )
    else:
        g.code_commit = commit
    repo = next((tags[k] for k in GIT_REPO_TAGS if tags.get(k)), None)
    if repo:
        g.code_repository = redact_remote(repo.strip())
    else:
        g.missing.append(
            Missing(
                "lineage.codeRepository",
                f"run tag {GIT_REPO_TAGS[0]} on run {run_id}: MLflow sets it from the checkout's remote; "
                f"or set it with MlflowClient().set_tag(run_id, '{GIT_REPO_TAGS[0]}', URL)",
            )
        )
    if tags.get(GIT_BRANCH_TAG):
        g.environment["gitBranch"] = tags[GIT_BRANCH_TAG][:256]


def _dataset(g: Gathered, run: Any, run_id: str | None, wanted: str | None) -> None:
    chosen, why = choose_dataset(dataset_inputs(run), wanted)
    if chosen is not None:
        ds = dataset_of(chosen)
        if not ds["name"]:
            g.missing.append(
                Missing("lineage.dataset.name", f"the dataset input of run {run_id} has no name")
            )
        elif "version" not in ds and "sha256" not in ds:
            g.missing.append(
                Missing(
                    "lineage.dataset.version",
                    f"dataset {ds['name']} of run {run_id} has no digest (MLflow computes one when the "
                    "dataset is logged with mlflow.data)",
                )
            )
        else:
            g.dataset = ds
    elif why is not None:
        g.missing.append(why)


def _framework(g: Gathered, mlmodel: Mapping[str, Any] | None) -> None:
    """The framework and the python/mlflow versions from the MLmodel file."""
    g.framework = framework_of(mlmodel)
    if not g.framework:
        g.missing.append(
            Missing(
                "lineage.framework",
                "the MLmodel file of the artifact (its flavors); the artifact is not an MLflow model "
                "logged with mlflow.<flavor>.log_model",
            )
        )
    if mlmodel:
        pyfunc = (
            ((mlmodel.get("flavors") or {}).get("python_function") or {})
            if isinstance(mlmodel.get("flavors"), dict)
            else {}
        )
        if isinstance(pyfunc, dict) and pyfunc.get("python_version"):
            g.environment["python"] = str(pyfunc["python_version"])
        if mlmodel.get("mlflow_version"):
            g.environment["mlflow"] = str(mlmodel["mlflow_version"])
