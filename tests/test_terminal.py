"""The terminal side of kubectl models (cli/models/terminal.py): what reaches a terminal carries no
control character of a cluster's or a repository's text."""

from __future__ import annotations

import io
import sys

import pytest


class _Stdout(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_text_for_a_terminal_carries_no_control_characters_a_pipe_gets_it_byte_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """terminal.out (a wave's --print patch of a shared overlay, an import's names, YAML and JSON): on a
    terminal no control character of the text reaches it; a pipe (git apply) gets the text unchanged."""
    from modelversioning.cli.models import terminal

    hostile = "+image: x\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\x9b31m\r\n\tkept\n"
    for tty in (True, False):
        sink = _Stdout(tty)
        monkeypatch.setattr(sys, "stdout", sink)
        terminal.out(hostile)
        got = sink.getvalue()
        if tty:
            assert not any(c in got for c in "\x1b\x07\x9b\r") and "\tkept\n" in got
        else:
            assert got == hostile
