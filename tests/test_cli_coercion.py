"""cli/models/coercion.py coerces plain parameter values without pydantic: whatever it takes on
itself must come out exactly as typer's own coercion makes it (value and type), and anything typer
would refuse must still be refused by typer, with typer's message."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import pytest
import typer
from typer.testing import CliRunner

from modelversioning.cli.kubectl_models import app as models_app
from modelversioning.cli.models import coercion, context
from modelversioning.cli.models.errors import ClusterError


class Color(StrEnum):
    red = "red"
    green = "green"


sample = typer.Typer()


@sample.command()
def cmd(
    s: Annotated[str, typer.Argument()],
    n: Annotated[int, typer.Option(min=1, max=10)] = 5,
    f: Annotated[float, typer.Option(min=0)] = 60,
    g: Annotated[float, typer.Option()] = 1.5,
    flag: Annotated[bool, typer.Option()] = False,
    color: Annotated[Color | None, typer.Option()] = None,
    loose: Annotated[Color, typer.Option(case_sensitive=False)] = Color.red,
) -> None:
    pass


VALUES: list[Any] = [
    *("5", "007", "0", "10", "11", "-1", "0.5", "0.50", "1e3", "5x", "1.5.2", "abc", "١", "1_0", "inf"),
    *("nan", "true", "red", "RED", "green"),
    *(" 5", "5 ", "", 60, 60.0, 0, True, False, Color.green, b"red"),
]


def params() -> list[Any]:
    command = typer.main.get_command(sample)
    return [p for p in command.params if p.name != "help"]


@pytest.mark.parametrize("param", params(), ids=lambda p: p.name)
def test_what_it_coerces_is_what_typer_would_make_of_it(param: Any) -> None:
    ctx = typer.Context(typer.main.get_command(sample))
    taken = 0
    for value in VALUES:
        ours = coercion.plain_value(
            value, param.type_descriptor.annotation, param.type_descriptor.parameter_info, ctx
        )
        if ours is coercion._TYPERS:
            continue
        taken += 1
        theirs = param.get_runtime_param().coerce(value, param=param, ctx=ctx)  # raises if typer refuses
        assert (ours, type(ours)) == (theirs, type(theirs)), (param.name, value)
    # a case-insensitive choice is typer's to normalise; every other parameter has plain values
    assert (taken == 0) == (param.name == "loose"), (param.name, taken)


def test_values_typer_refuses_are_refused_with_typers_words() -> None:
    runner = CliRunner()
    r = runner.invoke(models_app, ["rollback", "fraud", "--timeout", "-1"])
    assert r.exit_code == 2 and "Invalid value for '--timeout'" in r.output
    assert "greater than or equal to 0" in r.output
    r = runner.invoke(models_app, ["-o", "xml", "list"])
    assert r.exit_code == 2 and "'xml' is not one of" in r.output and "'table', 'yaml', 'json'" in r.output


def test_the_commands_take_their_values_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    real = coercion.plain_value

    def spy(value: Any, *args: Any) -> Any:
        seen.append(value)
        return real(value, *args)

    class NoCluster:
        def get(self, *args: Any) -> Any:
            raise ClusterError("no cluster here")

    monkeypatch.setattr(coercion, "plain_value", spy)
    monkeypatch.setattr(context, "Cluster", lambda *a, **k: NoCluster())
    r = CliRunner().invoke(models_app, ["-o", "json", "rollback", "fraud", "--timeout", "5"])
    assert r.exit_code == 1 and "no cluster here" in r.output
    assert {"json", "fraud", "5"} <= set(seen)
