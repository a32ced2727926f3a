"""`modelversioning` / `modelversioning-operator`: run the operator, generate CRDs, verify artifacts."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path

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
    """Write the CRD YAML generated from the pydantic API models."""
    from modelversioning.api import crdgen

    for p in crdgen.write(crdgen.default_dirs(root)):
        typer.echo(str(p))


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


def main() -> None:
    app(prog_name=Path(sys.argv[0]).name or "modelversioning")


if __name__ == "__main__":
    main()
