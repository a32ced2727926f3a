"""The terminal side of ``kubectl models``: the rich console (wide and colourless when not a terminal,
every control character of cluster text shown as U+FFFD), text for the user's pipe, remarks and progress
on stderr, and YAML/JSON dumps. The tables themselves are in :mod:`.render` (and its siblings)."""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, RenderableType
from rich.segment import Segment
from rich.text import Text

from modelversioning.cli.models.output import Output

NON_TTY_WIDTH = 240


# ---- plumbing ---------------------------------------------------------------------------------------
# C0 controls but newline and tab, DEL and C1: in text from a cluster (another region's status, an API
# server's error, a tenant's annotation) they would be the user's terminal's commands (ESC sequences
# retitle, clear or rewrite the screen, OSC 52 writes the clipboard). Rich strips only a few of them.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """``text`` with every terminal control character shown as U+FFFD."""
    return _CONTROLS.sub("\ufffd", text)


class SafeConsole(Console):
    """A rich Console that prints the text of what it renders without control characters; its own
    styles (and control segments: cursor moves of a progress bar) are unaffected."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            s if s.control else Segment(clean(s.text), s.style, s.control) for s in buffer
        )


def console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr); wide and colourless when not a terminal, like kubectl."""
    c = SafeConsole(stderr=stderr, highlight=False, soft_wrap=False)
    if not c.is_terminal:
        c = SafeConsole(stderr=stderr, highlight=False, soft_wrap=False, width=NON_TTY_WIDTH, no_color=True)
    return c


def out(text: str) -> None:
    """Text for the user's pipe (YAML, JSON, a patch), flushed before anything goes to stderr. On a
    terminal its control characters are shown as U+FFFD (``clean``: the text may quote a cluster or a
    shared repository); a pipe gets it unchanged (``git apply`` of a printed patch)."""
    sys.stdout.write(clean(text) if sys.stdout.isatty() else text)
    sys.stdout.flush()


def note(message: str) -> None:
    """A dim remark on stderr (never mixed into what goes to stdout)."""
    console(stderr=True).print(Text(message, style="dim"), soft_wrap=True)


@contextmanager
def progress(label: str, eta: bool = True) -> Iterator[Callable[[int, int | None], None] | None]:
    """A rich progress bar on stderr when it is a terminal; no callback otherwise."""
    err = console(stderr=True)
    if not err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn()]
    columns += [TransferSpeedColumn(), *([TimeRemainingColumn()] if eta else [])]
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def to_text(renderable: RenderableType, width: int = NON_TTY_WIDTH) -> str:
    """Render to plain text (tests, logs)."""
    buf = io.StringIO()
    SafeConsole(
        file=buf, width=width, no_color=True, highlight=False, soft_wrap=False, color_system=None
    ).print(renderable)
    return buf.getvalue()


def dump(data: Any, fmt: Output) -> str:
    """YAML or JSON text of view data (a trailing newline included)."""
    if fmt is Output.json:
        return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    import yaml  # (only -o yaml needs it)

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
