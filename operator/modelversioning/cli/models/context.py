"""What every ``kubectl models`` command needs, in one place the command modules import (they never
import the app): the global options (:class:`Globals`, the cluster made on first use), the output
choice (:func:`show`), errors on stderr (:func:`error`) and a spinner while waiting (:func:`waiting`).
Errors go to stderr, results to stdout; exit codes are :mod:`.errors`'.

Light on purpose (every command's start imports it): the rendering (rich, YAML) loads when something
is printed, the cluster's client when the first request is made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import typer

from modelversioning.cli.models.kube import Cluster
from modelversioning.cli.models.output import Output


@dataclass
class Globals:
    """The global options (--kubeconfig, --context, -n, -o), given before or after the command."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    output: Output | None = None
    _cluster: Cluster | None = field(default=None, repr=False)

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = Cluster(self.kubeconfig, self.context, self.namespace)
        return self._cluster

    def fmt(self, default: Output = Output.table) -> Output:
        return self.output or default


def globals_of(ctx: typer.Context) -> Globals:
    obj = ctx.find_object(Globals)
    return obj if obj is not None else Globals()


def show(g: Globals, data: Any, table: Callable[[], Any], default: Output = Output.table) -> None:
    """``table()`` on stdout for -o table, else ``data`` as YAML or JSON."""
    from modelversioning.cli.models import terminal

    fmt = g.fmt(default)
    if fmt is Output.table:
        terminal.console().print(table())
    else:
        terminal.out(terminal.dump(data, fmt))


def error(message: str) -> None:
    """An error on stderr, kubectl's way (``error: ...``, or the API server's own words)."""
    from rich.text import Text

    from modelversioning.cli.models import terminal

    text = message if message.startswith("Error from server") else f"error: {message}"
    terminal.console(stderr=True).print(Text(text, style="red"), soft_wrap=True)


@contextmanager
def waiting(label: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr saying what the command waits for (when stderr is a terminal); yields a
    function that updates its text (a no-op otherwise)."""
    from modelversioning.cli.models import terminal

    err = terminal.console(stderr=True)
    if not err.is_terminal:
        yield lambda _text: None
        return
    with err.status(label) as spinner:
        yield lambda text: spinner.update(text)
