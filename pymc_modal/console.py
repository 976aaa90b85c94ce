"""Where a worker's terminal output goes in this process: as it is, or one live panel.

A worker writes its progress bars and report lines as it would to a
terminal: lines ended by newlines, bars redrawn after a carriage return,
cursor and erase codes. A terminal acts on them; a notebook shows them as
stacked lines and escape codes. In a notebook, while a waited call is
shown, the output goes to one display that updates in place instead: the
lines written so far and the line being redrawn, with the codes acted on.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

__all__ = ["Panel", "Screen", "in_notebook", "shown", "write"]

# A carriage return, a newline, or a terminal control sequence (CSI): its count and letter.
_TOKEN = re.compile(r"(\r|\n|\x1b\[([0-9;?]*)([A-Za-z]))")


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel, whose output a notebook shows."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


class Screen:
    """Terminal output as the text a terminal would show once it had acted on it."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.current = ""

    def feed(self, text: str) -> None:
        """Act on ``text`` as a terminal would: newlines, carriage returns, cursor-up, erase."""
        at = 0
        for match in _TOKEN.finditer(text):
            self.current += text[at : match.start()]
            at = match.end()
            token, count, letter = match.group(1, 2, 3)
            if token == "\n":
                self.lines.append(self.current.rstrip())
                self.current = ""
            elif token == "\r" or letter == "K":
                self.current = ""
            elif letter == "A":  # cursor up: the lines below it are drawn again
                del self.lines[max(0, len(self.lines) - int(count or 1)) :]
                self.current = ""
        self.current += text[at:]

    @property
    def text(self) -> str:
        """The lines with content, then the line being drawn."""
        return "\n".join(line for line in [*self.lines, self.current.rstrip()] if line)


class Panel(Screen):
    """A screen that one notebook display shows, updated as output arrives."""

    def __init__(self) -> None:
        from IPython.display import display

        super().__init__()
        self.lock = threading.Lock()
        self.handle = display({"text/plain": ""}, raw=True, display_id=True)

    def write(self, text: str) -> None:
        with self.lock:
            self.feed(text)
            self.handle.update({"text/plain": self.text}, raw=True)


_shown: Panel | None = None


@contextlib.contextmanager
def shown() -> Iterator[None]:
    """In a notebook, show the workers' output inside the block as one live panel."""
    global _shown
    if not in_notebook():
        yield
        return
    _shown = Panel()
    try:
        yield
    finally:
        _shown = None


def write(text: str, stream: TextIO) -> None:
    """A worker's output: to the panel shown, if any, else to ``stream`` as it is."""
    panel = _shown
    if panel is not None:
        panel.write(text)
    else:
        stream.write(text)
        stream.flush()
