"""`kubectl models` starts at once (issue #25): a run loads the module of the command it runs and what
that command needs, nothing else; `kubectl models --help` lists every command from the table in
cli/models/app.py (COMMANDS) without loading one, and that table says what each command's own help
says; `rollback` reaches its first API request without the other commands, the tables' code (rich,
YAML output), the API's pydantic models, the renderers or the kubernetes client.

Each check runs the entry point in a fresh interpreter and reads its sys.modules."""

from __future__ import annotations

import inspect
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from fake_apiserver import kubeconfig
from modelversioning.cli.models import app as app_module
from modelversioning.cli.models import commands
from modelversioning.cli.models.app import COMMANDS, COMMANDS_PACKAGE

# What no command's start needs: the API's models and the renderers (a rollback's route is read after
# its first request), the kubernetes client (cli/models/apiserver.py talks HTTP itself), pydantic (typer
# would coerce every value with it: cli/models/coercion.py).
HEAVY = (
    "pydantic",
    "modelversioning.api.modelversion",
    "modelversioning.api.modelversion_spec",
    "modelversioning.api.modelversion_status",
    "modelversioning.api.modelendpoint",
    "modelversioning.api.settings",
    "modelversioning.api.common",
    "modelversioning.render",
    "kubernetes",
    "urllib3",
)
# ... and what a rollback does not need before its first request: printing (rich, the tables).
PRINTING = ("rich", "modelversioning.cli.models.render", "modelversioning.cli.models.terminal")


def loaded_after(code: str) -> list[str]:
    """sys.modules (names) after running `code` in a fresh interpreter, which must print them."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


def run_cli(*args: str) -> str:
    return (
        "import json, sys, io, contextlib\n"
        "from modelversioning.cli.kubectl_models import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({list(args)!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )


def command_modules(modules: list[str]) -> list[str]:
    return sorted(m.rsplit(".", 1)[1] for m in modules if m.startswith(COMMANDS_PACKAGE + "."))


def under(modules: list[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


# ---- the table ----------------------------------------------------------------------------------------
def first_paragraph(cmd: Any) -> str:
    return inspect.cleandoc(cmd.short_help or cmd.help or "").split("\n\n")[0].strip()


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_listed_help_is_the_commands_own(name: str) -> None:
    real = app_module._build(name, COMMANDS[name], "rich")
    assert real.name == name
    assert COMMANDS[name].help == first_paragraph(real), f"COMMANDS[{name!r}].help differs from its --help"


def test_every_command_of_every_command_module_is_in_the_table() -> None:
    registered: dict[str, str] = {}  # command -> module, as `add_typer(module.app)` made them
    for info in pkgutil.iter_modules(commands.__path__):
        sub: typer.Typer = __import__(f"{COMMANDS_PACKAGE}.{info.name}", fromlist=["app"]).app
        if sub.info.help is not None and not isinstance(sub.info.help, typer.models.DefaultPlaceholder):
            continue  # a group (import, rollout): mounted under its own name
        for c in sub.registered_commands:
            registered[c.name or typer.main.get_command_name(c.callback.__name__)] = info.name  # type: ignore[union-attr]
    flat = {n: c.module for n, c in COMMANDS.items() if not c.group}
    assert flat == registered
    assert {c.module for c in COMMANDS.values() if c.group} == {"imports", "rollout", "runtimes", "wave"}


# ---- what each start loads --------------------------------------------------------------------------
def test_help_lists_every_command_without_loading_one() -> None:
    code = run_cli("--help").replace("with contextlib.redirect_stdout(io.StringIO()):", "if True:")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    *text, modules = proc.stdout.strip().splitlines()
    listing = "\n".join(text)
    assert command_modules(json.loads(modules)) == []
    for name, cmd in COMMANDS.items():
        assert f"│ {name} " in listing, name
        assert cmd.help.split(" ")[0] in listing


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_commands_help_loads_its_module_only(name: str) -> None:
    modules = loaded_after(run_cli(name, "--help"))
    assert command_modules(modules) == [COMMANDS[name].module]
    assert under(modules, HEAVY) == []


def test_rollback_reaches_its_first_request_with_what_it_needs_only(tmp_path: Path) -> None:
    kc = kubeconfig(
        tmp_path / "kc", {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}, {"token": "t"}
    )
    code = (
        "import json, os, sys\n"
        "from modelversioning.cli.models import apiserver\n"
        "def first(self, method, url, *a, **k):\n"
        "    print(json.dumps([method, url]))\n"
        "    print(json.dumps(sorted(sys.modules)), flush=True)\n"
        "    os._exit(0)\n"
        "apiserver.HttpApi._send = first\n"
        "from modelversioning.cli.kubectl_models import main\n"
        f"main(['--kubeconfig', {str(kc)!r}, 'rollback', 'fraud-detector'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    request, modules = (json.loads(line) for line in proc.stdout.strip().splitlines())
    assert request == [
        "GET",
        "/apis/modelversioning.io/v1alpha1/namespaces/models/modelendpoints/fraud-detector",
    ]
    assert command_modules(modules) == ["lifecycle"]
    assert under(modules, HEAVY + PRINTING) == []
