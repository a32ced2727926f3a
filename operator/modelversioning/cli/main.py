"""`modelversioning` / `modelversioning-operator`: run the operator, generate CRDs, verify artifacts."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer

from modelversioning import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="modelversioning-operator: ML model versions as immutable, auditable Kubernetes objects.",
)


@app.command()
def run(
    namespace: list[str] = typer.Option(
        [], "--namespace", "-n", help="Watch only these namespaces (repeatable)."
    ),
    all_namespaces: bool = typer.Option(False, "--all-namespaces", "-A", help="Watch the whole cluster."),
    config: Path | None = typer.Option(
        None,
        "--config",
        envvar="MODELVERSIONING_CONFIG",
        help="Operator settings YAML (artifact policy, routers, stage graph).",
    ),
    peering: str | None = typer.Option(
        None,
        "--peering",
        envvar="MODELVERSIONING_PEERING",
        help="kopf peering name for HA (several replicas, one active). "
        "Without it the operator runs standalone.",
    ),
    priority: int | None = typer.Option(
        None,
        "--priority",
        envvar="MODELVERSIONING_PRIORITY",
        help="kopf peering priority; with --peering and no value, a random one so that exactly one "
        "replica is active (equal priorities would pause each other).",
    ),
    liveness: str = typer.Option(
        "http://0.0.0.0:8081/healthz",
        "--liveness",
        envvar="MODELVERSIONING_LIVENESS",
        help="kopf health endpoint.",
    ),
    metrics_port: int = typer.Option(
        8080,
        "--metrics-port",
        envvar="MODELVERSIONING_METRICS_PORT",
        help="Port of the Prometheus /metrics endpoint (0 disables).",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the operator (kopf under the hood)."""
    import kopf

    from modelversioning.api.settings import Settings
    from modelversioning.handlers import wiring

    if config:
        os.environ["MODELVERSIONING_CONFIG"] = str(config)
    os.environ["MODELVERSIONING_METRICS_PORT"] = str(metrics_port) if metrics_port else ""
    if not os.environ["MODELVERSIONING_METRICS_PORT"]:
        del os.environ["MODELVERSIONING_METRICS_PORT"]
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings = Settings.load()
    wiring.register_children(settings)
    if not all_namespaces and not namespace:
        all_namespaces = True
    os.environ["MODELVERSIONING_NAMESPACES"] = "" if all_namespaces else ",".join(namespace)
    if peering is not None and priority is None:
        priority = secrets.randbelow(2**31 - 2) + 1
    kopf.run(
        clusterwide=all_namespaces,
        priority=priority or 0,
        namespaces=namespace or [],
        standalone=peering is None,
        peering_name=peering,
        liveness_endpoint=liveness or None,
    )


@app.command("gen-crds")
def gen_crds(
    root: Path = typer.Argument(Path("."), help="Repository root (writes crds/, charts/.../files/crds/)."),
) -> None:
    """Write the CRD YAML generated from the pydantic API models, and the chart's router list."""
    from modelversioning.api import crdgen
    from modelversioning.render.routers import CHART_FILE, chart_routers

    for p in crdgen.write(crdgen.default_dirs(root)):
        typer.echo(str(p))
    chart = root / "charts" / "modelversioning-operator"
    if chart.is_dir():
        (chart / CHART_FILE).write_text(chart_routers())
        typer.echo(str(chart / CHART_FILE))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command(
    "verify-artifact",
    add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Fetch an artifact and verify its sha256; with --dest, the init-container form. "
    "See `verify-artifact --help`.",
)
def verify_artifact(ctx: typer.Context) -> None:
    from modelversioning.cli import verify

    raise typer.Exit(verify.main(list(ctx.args)))


@app.command("ui-server", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ui_server(ctx: typer.Context) -> None:
    """Run the web view in the cluster (the chart's ui.enabled): behind an authenticating proxy, as the
    viewer it names (--config FILE --proxy-secret-file FILE; see cli/models/ui/incluster_main.py)."""
    from modelversioning.cli.models.ui import incluster_main

    raise typer.Exit(incluster_main.main(list(ctx.args)))


@app.command("node-cache")
def node_cache(
    root: Path = typer.Option(
        Path("/var/cache/modelversioning"), "--root", help="The cache directory (a hostPath of the node)."
    ),
    listen: str = typer.Option(
        "", "--listen", envvar="NODE_CACHE_LISTEN", help="HOST:PORT, the node's IP (status.hostIP)."
    ),
    max_bytes: int = typer.Option(
        0, "--max-bytes", min=0, help="Size limit of the cache; least recently used entries go first."
    ),
    max_bytes_per_namespace: int = typer.Option(
        0,
        "--max-bytes-per-namespace",
        min=0,
        help="Share of one namespace (what its offers stored); its offers evict only its own entries "
        "to stay within it. 0: --max-bytes (no share).",
    ),
    node_name: str = typer.Option(
        "",
        "--node-name",
        envvar="NODE_NAME",
        help="This node (spec.nodeName): tokens of pods elsewhere are refused.",
    ),
    prepare_uid: int | None = typer.Option(
        None,
        "--prepare-uid",
        help="Only create ROOT, owned by this uid and gid, and exit (a root init step).",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the node cache agent (a DaemonSet of the chart): serves verified artifacts to the model pods of
    its node that may have them, stores what they offer under the digest it computes itself."""
    if prepare_uid is not None:
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)  # before giving it away (root without CAP_FOWNER could not after)
        os.chown(root, prepare_uid, prepare_uid)
        return
    if not listen or max_bytes <= 0:
        raise typer.BadParameter("--listen HOST:PORT and --max-bytes N are required")
    from modelversioning.nodecache.kube import InClusterApi
    from modelversioning.nodecache.server import Agent, serve
    from modelversioning.nodecache.store import Store

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    host, _, port = listen.rpartition(":")
    store = Store(root, max_bytes, namespace_share=max_bytes_per_namespace or None)
    serve((host.strip("[]"), int(port)), Agent(store, InClusterApi(), node=node_name))


# Options of model-server too long to sit in its signature.
Sha256Of = Annotated[
    str,
    typer.Option(
        "--sha256-of",
        envvar="MODEL_SHA256_OF",
        help="content (the files' digest), or oci-manifest: the pinned digest is an OCI manifest's (the "
        "init container verified it), reported as is.",
    ),
]
AdminPort = Annotated[
    int | None,
    typer.Option(
        "--admin-port",
        envvar="MODEL_SERVER_ADMIN_PORT",
        help="Also listen here for GET/PUT /faults (change faults at runtime); off by default. Requests "
        "need 'Authorization: Bearer TOKEN', TOKEN from $MODEL_SERVER_ADMIN_TOKEN or the file "
        "$MODEL_SERVER_ADMIN_TOKEN_FILE names (at least 16 characters); without one the port is not "
        "opened.",
    ),
]
Signature = Annotated[
    str | None,
    typer.Option(
        "--signature",
        envvar="MODEL_SIGNATURE",
        help='The version\'s inputs and outputs as JSON ({"inputs": [{"name", "dtype", "shape"}], '
        '"outputs": [...]}, spec.signature): the Open Inference Protocol\'s model metadata reports them and '
        "inference requests are checked against them.",
    ),
]


@app.command("model-server")
def model_server(
    model_path: str = typer.Option(
        ..., "--model-path", envvar="MODEL_PATH", help="The verified artifact (file or directory)."
    ),
    model_name: str = typer.Option(..., "--model-name", envvar="MODEL_NAME"),
    model_version: str = typer.Option(..., "--model-version", envvar="MODEL_VERSION"),
    sha256: str | None = typer.Option(
        None,
        "--sha256",
        envvar="MODEL_SHA256",
        help="Pinned digest; the server is healthy only if it matches.",
    ),
    sha256_of: Sha256Of = "content",
    variant: str = typer.Option("", "--variant", envvar="MODEL_VARIANT", help="Variant label for metrics."),
    host: str = typer.Option("0.0.0.0", "--host", envvar="MODEL_SERVER_HOST"),
    port: int = typer.Option(
        8080,
        "--port",
        envvar=["MODEL_SERVER_PORT", "MODEL_PORT"],
        help="runtime.port of the version (the operator sets MODEL_PORT).",
    ),
    health_path: str = typer.Option("/healthz", "--health-path", envvar="MODEL_SERVER_HEALTH_PATH"),
    error_rate: float = typer.Option(
        0.0,
        "--error-rate",
        envvar="MODEL_SERVER_ERROR_RATE",
        help="Share of predictions answered 500 (0..1).",
    ),
    error_seed: int | None = typer.Option(
        None,
        "--error-seed",
        envvar="MODEL_SERVER_ERROR_SEED",
        help="Seeded-random failures instead of evenly spread ones.",
    ),
    latency_ms: float = typer.Option(
        0.0, "--latency-ms", envvar="MODEL_SERVER_LATENCY_MS", help="Latency added to every prediction."
    ),
    admin_port: AdminPort = None,
    drain_seconds: float = typer.Option(
        5.0,
        "--drain-seconds",
        envvar="MODEL_SERVER_DRAIN_SECONDS",
        help="After SIGTERM keep answering (health 503) this long, then exit.",
    ),
    access_log: bool = typer.Option(False, "--access-log", envvar="MODEL_SERVER_ACCESS_LOG"),
    signature: Signature = None,
) -> None:
    """Run the reference model server (the model pods' server; see modelversioning.modelserver)."""
    from modelversioning.modelserver import Faults, Identity, ServerConfig, serve
    from modelversioning.modelserver.faults import admin_token
    from modelversioning.modelserver.oip import parse_signature

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        faults = Faults(error_rate=error_rate, latency_ms=latency_ms, error_seed=error_seed)
        token = admin_token(os.environ) if admin_port is not None else None
        parsed = parse_signature(signature) if signature else None
    except (ValueError, OSError) as e:
        raise typer.BadParameter(str(e)) from e
    config = ServerConfig(
        model_path=model_path,
        identity=Identity(
            model=model_name,
            version=model_version,
            sha256=sha256 or None,
            sha256_of=sha256_of,
            variant=variant,
        ),
        host=host,
        port=port,
        health_path=health_path if health_path.startswith("/") else "/" + health_path,
        faults=faults,
        admin_port=admin_port,
        admin_token=token,
        access_log=access_log,
        drain_seconds=drain_seconds,
        signature=parsed,
    )
    serve(config)


def main() -> None:
    app(prog_name=Path(sys.argv[0]).name or "modelversioning")


if __name__ == "__main__":
    main()
