"""DVC metadata -> what ``kubectl models register --dvc`` fills in (DVC's file formats; no ``dvc``
package needed).

``--dvc`` names either

* ``path/to/model.pkl.dvc``: the artifact is that file's single out; or
* ``dvc.lock[:STAGE[:OUT]]``: the artifact is an out of a pipeline stage (the stage is optional
  when only one stage has outs, the out when the stage has one that is not a metrics file).

What it fills (explicit options always win):

===================  ===========================================================================
artifact bytes       the DVC cache object (``.dvc/cache/files/md5/<2>/<30>``), else the workspace
                     file; its md5 must be the one DVC recorded (else: refused, the workspace
                     changed since ``dvc commit``/``dvc repro``); sha256 computed in the same pass
--uri                the object in the DVC remote: ``<remote url>/files/md5/<2>/<30>`` (DVC 3;
                     ``<url>/<2>/<30>`` for DVC 2 outs without ``hash: md5``); the remote is the
                     out's ``remote:``, else ``core.remote`` of ``.dvc/config`` (then
                     ``config.local``); a relative local remote is resolved from ``.dvc/``
dataset              dvc.lock: the stage's one data dependency (an out of another stage, a path
                     with its own ``.dvc`` file, or a directory); ``--dataset`` picks one by path
                     when there are several, or names a ``.dvc`` file of the dataset. name = its
                     path, version = its md5, uri = its object in the remote
hyperparameters      dvc.lock: the stage's ``params`` (``params.yaml`` keys, dotted)
metrics              dvc.yaml: the stage's ``metrics`` files (JSON/YAML, nested keys dotted), read
                     from the workspace only when their md5 is the one in dvc.lock
===================  ===========================================================================

A directory out of the model (``md5: ....dir``) has no single location in a DVC remote (each file
is its own object), so ``--uri`` must say where it was uploaded; its files are checked against the
``.dir`` listing in the cache (:mod:`.dvc_hash`: the md5-checked hashing).
"""

from __future__ import annotations

import configparser
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from modelversioning.cli.models.errors import EXIT_USAGE, Refused
from modelversioning.cli.models.inputs import parse_scalar

CHUNK = 1024 * 1024
Progress = Callable[[int, int | None], None]
_MD5 = re.compile(r"^[0-9a-f]{32}(\.dir)?$")


@dataclass(frozen=True)
class Out:
    """One DVC-tracked path (an out of a .dvc file or a stage, or a stage dependency)."""

    path: str  # as written in the file (relative to it)
    md5: str  # 32 hex; without the .dir suffix
    is_dir: bool
    size: int | None
    dvc3: bool  # `hash: md5` (files/md5/ layout) vs DVC 2
    remote: str | None = None

    @property
    def object_key(self) -> str:
        prefix = "files/md5/" if self.dvc3 else ""
        return f"{prefix}{self.md5[:2]}/{self.md5[2:]}" + (".dir" if self.is_dir else "")

    @property
    def version(self) -> str:
        return self.md5 + (".dir" if self.is_dir else "")


def _out(entry: Mapping[str, Any], where: str) -> Out:
    path = entry.get("path")
    md5 = str(entry.get("md5") or "")
    if not isinstance(path, str) or not path:
        raise Refused(f"{where}: an entry without a path", EXIT_USAGE)
    if not _MD5.match(md5):
        raise Refused(
            f"{where}: {path} has no md5 (hash {entry.get('hash') or 'missing'}): run `dvc commit` "
            "(only md5-addressed outs can be located in a DVC remote)",
            EXIT_USAGE,
        )
    size = entry.get("size")
    return Out(
        path=path,
        md5=md5.removesuffix(".dir"),
        is_dir=md5.endswith(".dir"),
        size=int(size) if isinstance(size, int) else None,
        dvc3=entry.get("hash") == "md5",
        remote=str(entry["remote"]) if entry.get("remote") else None,
    )


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as e:
        raise Refused(f"--dvc {path}: {e.strerror or e}", EXIT_USAGE) from None
    except yaml.YAMLError as e:
        raise Refused(f"--dvc {path}: not valid YAML ({e})", EXIT_USAGE) from None


def repo_root(start: Path) -> Path:
    """The directory holding ``.dvc/`` at or above ``start``."""
    here = start.resolve()
    for d in (here, *here.parents):
        if (d / ".dvc").is_dir():
            return d
    raise Refused(f"--dvc {start}: not inside a DVC repository (no .dvc/ directory above it)", EXIT_USAGE)


# ---- .dvc/config ------------------------------------------------------------------------------------
def _config(root: Path) -> dict[str, dict[str, str]]:
    """Sections of .dvc/config, then .dvc/config.local on top (only urls/remote names are used)."""
    out: dict[str, dict[str, str]] = {}
    for name in ("config", "config.local"):
        path = root / ".dvc" / name
        if not path.exists():
            continue
        cp = configparser.ConfigParser(interpolation=None)
        try:
            cp.read_string(path.read_text())
        except (OSError, configparser.Error) as e:
            raise Refused(f"{path}: cannot parse it ({e})", EXIT_USAGE) from None
        for section in cp.sections():
            key = section.strip().strip("'").strip()
            out.setdefault(key, {}).update({k: v.strip() for k, v in cp[section].items()})
    return out


def remote_url(root: Path, name: str | None) -> tuple[str, str] | None:
    """(remote name, url as a URI) of `name` or the default remote; None when none is configured."""
    conf = _config(root)
    chosen = name or (conf.get("core") or {}).get("remote")
    if not chosen:
        return None
    section = conf.get(f'remote "{chosen}"')
    if not section or not section.get("url"):
        raise Refused(f"{root}/.dvc/config: remote {chosen!r} is not defined (or has no url)", EXIT_USAGE)
    url = section["url"]
    if "://" not in url:
        p = Path(url)
        url = (p if p.is_absolute() else (root / ".dvc" / p)).resolve().as_uri()
    return chosen, url.rstrip("/")


def cache_dir(root: Path) -> Path:
    d = (_config(root).get("cache") or {}).get("dir")
    if not d:
        return root / ".dvc" / "cache"
    p = Path(d)
    return p if p.is_absolute() else (root / ".dvc" / p).resolve()


def cache_path(root: Path, out: Out) -> Path:
    return cache_dir(root) / PurePosixPath(out.object_key)


# ---- what --dvc names --------------------------------------------------------------------------------
@dataclass
class DvcInputs:
    """What DVC says about the model (and its dataset, parameters and metrics)."""

    root: Path
    source: str  # "model.pkl.dvc" / "dvc.lock stage train"
    artifact: Out
    workspace: Path  # the out's path in the working tree
    remote: str | None  # remote name
    uri: str | None  # the object in the remote
    dataset: Out | None = None
    dataset_uri: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def local(self) -> Path | None:
        """Bytes to hash here: the cache object, else the workspace copy (None: neither exists)."""
        cached = cache_path(self.root, self.artifact)
        if not self.artifact.is_dir and cached.is_file():
            return cached
        if self.workspace.exists():
            return self.workspace
        return None


def _object_uri(root: Path, out: Out) -> tuple[str | None, str | None]:
    remote = remote_url(root, out.remote)
    if remote is None:
        return None, None
    return remote[0], f"{remote[1]}/{out.object_key}"


def _split_spec(spec: str) -> tuple[Path, str | None, str | None]:
    path, _, rest = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    stage, _, out = rest.partition(":")
    return Path(path), stage or None, out or None


def read(spec: str, dataset: str | None = None) -> DvcInputs:
    """Parse ``--dvc SPEC``; ``dataset`` is the --dataset option (a dep path to choose, or a .dvc file)."""
    path, stage, out_name = _split_spec(spec)
    if not path.exists():
        raise Refused(f"--dvc {spec}: {path} does not exist", EXIT_USAGE)
    root = repo_root(path.parent)
    base = path.resolve().parent
    if path.name == "dvc.lock":
        inputs = _from_lock(path, root, base, stage, out_name, dataset)
    elif path.suffix == ".dvc":
        if stage or out_name:
            raise Refused(f"--dvc {spec}: STAGE/OUT only apply to dvc.lock", EXIT_USAGE)
        inputs = _from_dvc_file(path, root, base)
    else:
        raise Refused(f"--dvc {spec}: expected a .dvc file or dvc.lock[:STAGE[:OUT]]", EXIT_USAGE)
    if dataset and dataset.endswith(".dvc") and inputs.dataset is None:
        ds_path = Path(dataset)
        if not ds_path.is_file():
            raise Refused(f"--dataset {dataset}: no such .dvc file", EXIT_USAGE)
        ds = _single_out(ds_path)
        inputs.dataset = ds
        inputs.dataset_uri = _object_uri(repo_root(ds_path.parent), ds)[1]
    return inputs


def _single_out(path: Path) -> Out:
    doc = _load_yaml(path)
    outs = (doc or {}).get("outs") if isinstance(doc, dict) else None
    if not isinstance(outs, list) or len(outs) != 1 or not isinstance(outs[0], dict):
        raise Refused(f"--dvc {path}: expected one entry under outs:", EXIT_USAGE)
    return _out(outs[0], str(path))


def _from_dvc_file(path: Path, root: Path, base: Path) -> DvcInputs:
    out = _single_out(path)
    return _artifact_inputs(root, path.name, out, base)


def _artifact_inputs(root: Path, source: str, out: Out, base: Path) -> DvcInputs:
    remote, uri = _object_uri(root, out)
    inputs = DvcInputs(root, source, out, base / out.path, remote, uri)
    if out.is_dir:
        inputs.uri = None
        inputs.notes.append(
            f"{out.path} is a directory: DVC stores each of its files as its own object, so it has no "
            "single location in the remote; --uri must say where the directory was uploaded"
        )
    elif uri is None:
        inputs.notes.append(f"{root}/.dvc/config names no remote: the artifact URI must be given with --uri")
    return inputs


def _metrics_files(lock: Path, stage: str) -> list[str]:
    yml = lock.with_name("dvc.yaml")
    if not yml.exists():
        return []
    doc = _load_yaml(yml) or {}
    entries = ((doc.get("stages") or {}).get(stage) or {}).get("metrics") or []
    names: list[str] = []
    for e in entries:
        if isinstance(e, str):
            names.append(e)
        elif isinstance(e, dict):
            names += [str(k) for k in e]
    return names


def _flatten(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _flatten(v, f"{prefix}{k}.")
    else:
        yield prefix.rstrip("."), data


def file_md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _from_lock(
    lock: Path, root: Path, base: Path, stage: str | None, out_name: str | None, dataset: str | None
) -> DvcInputs:
    doc = _load_yaml(lock) or {}
    stages = doc.get("stages") if isinstance(doc, dict) else None
    if not isinstance(stages, dict) or not stages:
        raise Refused(f"--dvc {lock}: no stages (is it a dvc.lock of DVC 2 or later?)", EXIT_USAGE)
    stage = _stage_of(lock, stages, stage)
    sd = stages[stage] or {}
    where = f"{lock.name} stage {stage}"
    outs = [_out(o, where) for o in sd.get("outs") or []]
    metric_files = set(_metrics_files(lock, stage))
    if out_name is not None:
        chosen = [o for o in outs if o.path == out_name]
    else:
        chosen = [o for o in outs if o.path not in metric_files]
    if len(chosen) != 1:
        listing = ", ".join(o.path for o in outs) or "none"
        raise Refused(
            f"--dvc {lock}:{stage}: "
            + (f"no out {out_name!r}" if out_name else "several outs")
            + f" (outs: {listing}); name the model's: --dvc {lock}:{stage}:OUT",
            EXIT_USAGE,
        )
    inputs = _artifact_inputs(root, where, chosen[0], base)
    for _file, values in (sd.get("params") or {}).items():
        for k, v in _flatten(values or {}):
            inputs.params[k] = v if isinstance(v, str | int | float | bool) else parse_scalar(json.dumps(v))
    _read_metrics(inputs, base, where, metric_files, {o.path: o for o in outs})
    _find_dataset(inputs, stages, stage, base, dataset)
    return inputs


def _stage_of(lock: Path, stages: Mapping[str, Any], stage: str | None) -> str:
    """The stage named after dvc.lock:, else the only one with outs."""
    with_outs = [s for s, d in stages.items() if isinstance(d, dict) and d.get("outs")]
    if stage is None:
        if len(with_outs) != 1:
            raise Refused(
                f"--dvc {lock}: several stages have outs ({', '.join(with_outs)}): name one, "
                f"e.g. --dvc {lock}:{with_outs[-1] if with_outs else 'STAGE'}",
                EXIT_USAGE,
            )
        stage = with_outs[0]
    if stage not in stages:
        raise Refused(f"--dvc {lock}: no stage {stage!r} (stages: {', '.join(stages)})", EXIT_USAGE)
    return stage


def _read_metrics(
    inputs: DvcInputs, base: Path, where: str, metric_files: set[str], outs_by_path: Mapping[str, Out]
) -> None:
    """The stage's metrics files, only those whose bytes are the ones this run recorded."""
    for name in sorted(metric_files):
        f = base / name
        recorded = outs_by_path.get(name)
        if not f.is_file():
            inputs.notes.append(
                f"metrics file {name} of {where} is not in the workspace (dvc pull / dvc checkout)"
            )
            continue
        if recorded is not None and file_md5(f) != recorded.md5:
            inputs.notes.append(f"metrics file {name} changed since {where} ran: not used")
            continue
        data = _load_yaml(f)
        for k, v in _flatten(data):
            if isinstance(v, int | float) and not isinstance(v, bool):
                inputs.metrics[k] = float(v)


def _find_dataset(
    inputs: DvcInputs, stages: Mapping[str, Any], stage: str, base: Path, dataset: str | None
) -> None:
    """The dataset: the stage's one data dependency (an out of another stage, a path with its own
    .dvc file, or a directory); --dataset picks one by path when there are several."""
    where = inputs.source
    produced = {
        o.get("path")
        for s, d in stages.items()
        if s != stage and isinstance(d, dict)
        for o in d.get("outs") or []
        if isinstance(o, dict)
    }
    sd = stages[stage] or {}
    deps = [_out(d, where) for d in sd.get("deps") or [] if isinstance(d, dict) and d.get("md5")]
    data = [d for d in deps if d.path in produced or d.is_dir or (base / f"{d.path}.dvc").is_file()]
    if dataset and not dataset.endswith(".dvc"):
        picked = [d for d in data if d.path == dataset or PurePosixPath(d.path).stem == dataset]
        if picked:
            data = picked
    if len(data) == 1:
        inputs.dataset = data[0]
        inputs.dataset_uri = _object_uri(inputs.root, data[0])[1]
    elif len(data) > 1 and not (dataset and dataset.endswith(".dvc")):
        raise Refused(
            f"{where} depends on several DVC-tracked data paths ({', '.join(d.path for d in data)}): pick "
            "the training dataset with --dataset PATH",
            EXIT_USAGE,
        )
    elif not data:
        inputs.notes.append(
            f"{where} has no DVC-tracked data dependency (deps: {', '.join(d.path for d in deps) or 'none'})"
        )


@dataclass
class Filled:
    """register's options after DVC filled what was not given explicitly."""

    artifact: str | None
    uri: str | None
    dataset: str | None
    dataset_version: str | None
    dataset_uri: str | None
    hash_from_dvc: bool  # the artifact is DVC's copy: hash it with hash_verified (md5 checked)


def fill(
    inputs: DvcInputs,
    *,
    artifact: str | None,
    uri: str | None,
    dataset: str | None,
    dataset_version: str | None,
    dataset_uri: str | None,
) -> Filled:
    """Explicit options win; DVC fills the rest (see the module docstring)."""
    hash_from_dvc = False
    if artifact is None:
        local = inputs.local
        if local is not None:
            artifact, hash_from_dvc = str(local), True
        elif inputs.uri is not None:
            artifact = inputs.uri  # only in the remote: hashed from there
    if uri is None:
        if inputs.artifact.is_dir:
            raise Refused(
                f"{inputs.artifact.path} ({inputs.source}) is a directory: DVC keeps each file as its own "
                "object, so there is no single location to verify; upload the directory and pass --uri",
                EXIT_USAGE,
            )
        uri = inputs.uri
        if uri is None and hash_from_dvc:
            uri = inputs.workspace.resolve().as_uri()  # no remote: like register of a local file
    if inputs.dataset is not None:
        if (
            dataset is None
            or dataset.endswith(".dvc")
            or dataset
            in (
                inputs.dataset.path,
                PurePosixPath(inputs.dataset.path).stem,
            )
        ):
            dataset = inputs.dataset.path
        dataset_version = dataset_version or inputs.dataset.version
        dataset_uri = dataset_uri or inputs.dataset_uri
    return Filled(artifact, uri, dataset, dataset_version, dataset_uri, hash_from_dvc)


def summary(inputs: DvcInputs, filled: Filled) -> str:
    parts = [f"artifact {inputs.artifact.path} (md5 {inputs.artifact.md5})"]
    if filled.uri:
        parts.append(f"uri {filled.uri}")
    if inputs.dataset is not None:
        parts.append(f"dataset {inputs.dataset.path} (version {inputs.dataset.version})")
    if inputs.params:
        parts.append(f"{len(inputs.params)} hyperparameters")
    if inputs.metrics:
        parts.append(f"{len(inputs.metrics)} metrics")
    return f"from DVC ({inputs.source}): " + ", ".join(parts)
