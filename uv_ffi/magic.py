"""``%load_ext uv_ffi``: the ``%uv`` magic for IPython and notebooks.

``%uv pip install rich`` runs the command on the warm engine, against the kernel's own
interpreter unless the words name an environment (``--python``, ``--system``, ``--target``,
``--prefix``). ``%%uv pip install`` takes requirement lines as its body. The magic shows
progress while it runs (in place in a notebook, on one line in a terminal), prints the
changelog and uv's error text, and warns about modules imported before a version change.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import List, Optional

from .errors import UvFfiError
from .progress import NotebookProgress, TerminalProgress

__all__ = ["load_ipython_extension", "uv_magic"]

#: Options that name the environment a `pip` command acts on.
_NAMES_AN_ENVIRONMENT = ("--python", "-p", "--system", "--target", "--prefix")


def with_kernel_python(words: List[str]) -> List[str]:
    """``pip <command> ...`` gets ``--python <this interpreter>`` unless it names an environment."""
    if len(words) < 2 or words[0] != "pip":
        return words
    for word in words[2:]:
        if word.split("=", 1)[0] in _NAMES_AN_ENVIRONMENT or (word.startswith("-p") and len(word) > 2):
            return words
    return words[:2] + ["--python", sys.executable] + words[2:]


def quiet(words: List[str]) -> bool:
    return any(word == "--quiet" or (word.startswith("-q") and set(word[1:]) == {"q"}) for word in words)


def _display():
    """Progress in place in a notebook; one line on a terminal; nothing elsewhere."""
    shell = _shell()
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
        return NotebookProgress()
    return TerminalProgress()


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _changelog(result) -> str:
    lines = [" - %s==%s" % pair for pair in result.removed]
    lines += [" + %s==%s" % pair for pair in result.installed]
    return "\n".join(lines)


def uv_magic(line: str, cell: Optional[str] = None) -> None:
    """``%uv <command>`` / ``%%uv <command>`` with requirement lines as the body."""
    from . import install

    words = shlex.split(line)
    requirements = None
    if cell is not None and cell.strip():
        import tempfile  # only a cell with a body needs it (keeps `import uv_ffi` light)

        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
            handle.write(cell)
            requirements = handle.name
        words += ["-r", requirements]
    words = with_kernel_python(words)
    display = None if quiet(words) else _display()
    try:
        result = install(words, progress=display)
    except UvFfiError as exc:
        print(exc.full_text(), file=sys.stderr)
        return None
    finally:
        if display is not None:
            display.close()
        if requirements is not None:
            os.unlink(requirements)
    if result.stdout:
        sys.stdout.write(result.stdout)
    if result.stderr:
        sys.stderr.write(result.stderr)
    changes = _changelog(result)
    if changes and not quiet(words):
        print(changes)
    return None


def load_ipython_extension(ipython) -> None:
    """Called by ``%load_ext uv_ffi``."""
    ipython.register_magic_function(uv_magic, magic_kind="line_cell", magic_name="uv")
