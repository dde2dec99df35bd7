"""After a call changed the environment this very process runs in: tell the import system, and
name the distributions whose modules this process already imported at another version.

Nothing is reloaded: a module object in memory keeps the code it was imported with, so using
the new version takes a restart (or an explicit ``importlib.reload`` where that is safe).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from typing import Callable, Iterable, List, Optional, Sequence, Set, Tuple

__all__ = ["StaleModulesWarning", "stale_after"]

Pair = Tuple[str, str]


class StaleModulesWarning(UserWarning):
    """Modules imported before a version change in this process's own environment."""


def _identity(path: str) -> Optional[Tuple[int, int]]:
    """The folder a path names (device and inode: one ``stat``, where a real path takes one per
    component), or None if there is none."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


#: The folder this process's own environment was in when first asked: the one its imports come
#: from, even if a new environment is later made at the same path.
_own_prefix: Optional[Tuple[int, int]] = None


#: Environments found to be other folders than this process's own, by path: a host swapping
#: in another environment asks about the same few on every call, and a ``stat`` costs a call
#: about 5 us on cold CPU caches. A path that held another folder would become this process's
#: own only if its environment's folder were moved there while it runs.
_elsewhere: Set[str] = set()


def _runs_here(environment: Optional[str], target: Optional[str]) -> bool:
    """Whether the call acted on this process's environment, or on a folder on its sys.path."""
    global _own_prefix
    if target is not None:
        folder = _identity(target)
        return folder is not None and any(_identity(p) == folder for p in sys.path if p)
    if environment is None or environment in _elsewhere:
        return False
    if _own_prefix is None:
        _own_prefix = _identity(sys.prefix)
    here = _identity(environment)
    if here is not None and here != _own_prefix:
        if len(_elsewhere) >= 64:
            _elsewhere.clear()
        _elsewhere.add(environment)
    return here is not None and here == _own_prefix


def _top_level_names(name: str) -> Set[str]:
    """The import names a distribution provides, from its installed files (or its name)."""
    # Imported here, not at module level: it costs ~10 ms, and only a changed environment of this
    # very process needs it.
    import importlib.metadata

    names: Set[str] = set()
    try:
        files = importlib.metadata.distribution(name).files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for path in files:
        first = path.parts[0] if path.parts else ""
        if not first or first.endswith((".dist-info", ".data")) or first in ("..", "__pycache__"):
            continue
        names.add(first[:-3] if first.endswith(".py") else first.split(".")[0])
    # A distribution that is gone has no files to read: its name is the usual guess.
    names.add(re.sub(r"[-.]+", "_", name))
    return names


def _imported(names: Iterable[str]) -> bool:
    return any(name in sys.modules for name in names)


def stale_after(value: dict, words: Callable[[], Sequence[str]]) -> Tuple[str, ...]:
    """For a finished call's reply: invalidate the import caches if the call changed this
    process's environment, and return the distributions (sorted) whose modules were imported
    before it at a version that is no longer installed. Warns once unless ``-q`` was given
    (``words()``: the command's words, asked for only then)."""
    if not (value["removed"] or value["installed"]) or not _runs_here(value["environment"], value["target"]):
        return ()
    removed: List[Pair] = [tuple(p) for p in value["removed"]]
    installed: List[Pair] = [tuple(p) for p in value["installed"]]
    importlib.invalidate_caches()
    now = dict(installed)
    stale = sorted({
        name for name, old in removed
        if now.get(name) != old and _imported(_top_level_names(name))
    })
    if stale and not any(w in ("-q", "--quiet") or re.fullmatch(r"-q+", w) for w in words()):
        warnings.warn(
            "%s already imported in this process at the version that was replaced; restart "
            "the interpreter (or reload the modules explicitly) to use the new version"
            % ", ".join(stale),
            StaleModulesWarning,
            stacklevel=3,
        )
    return tuple(stale)
