"""``buildah bud`` of a Containerfile on the local base image, to an OCI image archive (no daemon, no
registry): the operator image (the project's ``Dockerfile``) and the MLServer image
(``e2e/mlserver.Containerfile``) of ``e2e/images.py``.

Chroot isolation, storage in a throw-away directory (``MV_BUILDAH_STORAGE_DRIVER=vfs`` where overlay
fails), the host's network; pip in the build sees the host's CA bundle and index settings through
read-only bind mounts of the RUN steps (never in a layer). What buildah writes on the host even with
its own ``--root``/``--runroot`` (BUILDAH_HOST_PATHS) is removed after a build when it did not exist
before. The caller holds the lock that keeps other builds (and host snapshots) out meanwhile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from images import BASE_IMAGE, Image, ImageBuildError, _run, _unmount_under, relabel_oci_layout

BUILDAH_HOST_PATHS = ("/etc/cni", "/etc/containers/networks", "/run/containers", "/var/lib/containers")


def bud(
    root: Path,
    base: Image,
    ref: str,
    containerfile: Path,
    context: Path,
    build_args: dict[str, str],
    archive: Path,
) -> str:
    """Build ``containerfile`` (FROM ``$PYTHON_IMAGE``: the base image) in ``context`` as ``ref`` and
    write it to ``archive``; returns the manifest digest. The build's log is ``root/<name>-build.log``."""
    if shutil.which("buildah") is None:
        raise ImageBuildError("buildah is missing (bash e2e/build-node.sh --packages installs it)")
    name = archive.name.split("-", 1)[0]
    tmp = Path(tempfile.mkdtemp(prefix=f"mv-buildah-{name}-", dir=root))
    buildah = [
        "buildah",
        "--root",
        str(tmp / "root"),
        "--runroot",
        str(tmp / "runroot"),
        "--storage-driver",
        os.environ.get("MV_BUILDAH_STORAGE_DRIVER", "overlay"),
    ]
    env = dict(os.environ, BUILDAH_ISOLATION="chroot", TMPDIR=str(tmp))
    host_paths = {p: os.path.lexists(p) for p in BUILDAH_HOST_PATHS}
    try:
        pulled = _run(
            [*buildah, "pull", "--quiet", f"oci-archive:{base.archive}"],
            "buildah pull of the base image",
            env=env,
            timeout=600,
        ).stdout.split()[-1]
        _run([*buildah, "tag", pulled, BASE_IMAGE], "buildah tag", env=env)
        all_args = {"PYTHON_IMAGE": BASE_IMAGE, **build_args}
        args = [a for k, v in all_args.items() for a in ("--build-arg", f"{k}={v}")]
        log_path = root / f"{name}-build.log"
        cmd = [
            *buildah, "bud", "--isolation", "chroot", "--network", "host",
            "--cni-config-dir", str(tmp / "cni"), "--pull-never", "--layers=false",
            *_host_trust_mounts(tmp), *args,
            "-f", str(containerfile), "-t", ref, str(context),
        ]  # fmt: skip
        returncode = _run_logged(cmd, log_path, env)
        if returncode != 0:
            tail = "\n".join(log_path.read_text().strip().splitlines()[-40:])
            raise ImageBuildError(
                f"buildah bud of {containerfile.name} failed (exit {returncode}); log {log_path}:\n{tail}"
            )
        layout = tmp / "layout"
        _run(
            # uncompressed: faster to write and to import; it never leaves the host
            [*buildah, "push", "--quiet", "--disable-compression", ref, f"oci:{layout}:{ref}"],
            "buildah push to an OCI layout",
            env=env,
            timeout=600,
        )
        return relabel_oci_layout(layout, ref, archive)
    finally:
        _unmount_under(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        for path, existed in host_paths.items():  # buildah's lock files and caches
            if not existed:
                shutil.rmtree(path, ignore_errors=True)


def _run_logged(cmd: list[str], log_path: Path, env: dict[str, str], timeout: float = 3600) -> int:
    """Run ``cmd``, writing its output to ``log_path`` with the seconds since the start on each line."""
    t0 = time.monotonic()
    with (
        log_path.open("w") as log,
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(f"[{time.monotonic() - t0:6.1f}s] {line}")
            if time.monotonic() - t0 > timeout:
                proc.kill()
        return proc.wait()


def _host_trust_mounts(tmp: Path) -> list[str]:
    """Bind mounts (RUN steps only, never in a layer) that give pip in the build the host's view of
    PyPI: the host's CA bundle (a TLS-inspecting egress proxy's CA, say) and its index settings."""
    import ssl

    cafile = (
        os.environ.get("PIP_CERT")
        or os.environ.get("SSL_CERT_FILE")
        or ssl.get_default_verify_paths().cafile
        or "/etc/ssl/certs/ca-certificates.crt"
    )
    lines = ["[global]"]
    mounts: list[str] = []
    if os.path.isfile(cafile):
        mounts += ["--volume", f"{os.path.realpath(cafile)}:/etc/ssl/host-ca-bundle.crt:ro"]
        lines.append("cert = /etc/ssl/host-ca-bundle.crt")
    for env, key in (("PIP_INDEX_URL", "index-url"), ("PIP_EXTRA_INDEX_URL", "extra-index-url")):
        if os.environ.get(env):
            lines.append(f"{key} = {os.environ[env]}")
    lines.append(f"timeout = {os.environ.get('PIP_DEFAULT_TIMEOUT', '120')}")
    conf = tmp / "pip.conf"
    conf.write_text("\n".join(lines) + "\n")
    return [*mounts, "--volume", f"{conf}:/etc/pip.conf:ro"]
