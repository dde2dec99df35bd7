"""The engine's views of environments and of ``--target`` folders ("bubbles"), as the upstream
package's callers use them: read, patch with a change the host made itself, forget.

A bubble is a ``--target`` folder; ``bubble_id`` is its path, as given or resolved. The engine
keeps the view of each ``--target`` folder it installed into (the 16 used most recently).

Patch functions take two call shapes each (upstream's callers use both); the shape is decided by
the arguments' types:

- ``patch_site_packages_cache(installed, removed, python=None)``: lists of ``(name, version)``
  pairs, for the environment of ``python`` (else of the last call);
  ``patch_site_packages_cache(dist_name, version, location)``: three strings, ``location`` being
  a ``.dist-info`` folder; the view holding that folder is patched.
- ``patch_bubble_site_packages_cache(bubble_id, dist_name, version, location)``: four strings;
  ``patch_bubble_site_packages_cache(installed, removed, bubble_id=None)``: pair lists, for
  ``bubble_id`` or else the ``--target`` folder of the most recent call that used one.

In the one-distribution shapes, the ``.dist-info`` folder tells what happened: present on disk,
the distribution was installed; absent, it was removed.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

from . import _native, policy

Pair = Tuple[str, str]
PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "clear_registry_cache",
    "clear_stash",
    "evict_bubble_cache",
    "evict_packages_from_bubble_cache",
    "get_counters",
    "get_site_packages_cache",
    "invalidate_site_packages_cache",
    "patch_bubble_site_packages_cache",
    "patch_site_packages_cache",
]

#: The ``--target`` folder of the most recent call that used one (see :func:`note_bubble`).
_last_bubble: Optional[str] = None


def note_bubble(target: Optional[str]) -> None:
    """Remember the ``--target`` folder a call just used (the run functions call this)."""
    global _last_bubble
    if target is not None:
        _last_bubble = target


def _env_request(python: Optional[PathLike] = None, target: Optional[PathLike] = None, **extra) -> dict:
    request = dict(extra)
    if python is not None:
        request["python"] = os.fspath(python)
    if target is not None:
        request["target"] = os.fspath(target)
    return request


def get_site_packages_cache(python: Optional[PathLike] = None, *, target: Optional[PathLike] = None) -> List[Pair]:
    """The engine's view of an environment (or of a ``--target`` folder) as sorted
    ``(name, version)`` pairs.

    Without ``python`` or ``target``: the environment of the last call (``[]`` before any).
    Under the ``validate`` and ``watch`` policies the view is checked against the disk first.
    """
    request = _env_request(python, target, check=policy.check_before_use(policy.get_policy()))
    value = _native.call("view_get", request)
    return [(n, v) for n, v in value["packages"]]


def _pairs(values: Sequence[Sequence[str]]) -> List[List[str]]:
    return [[str(n), str(v)] for n, v in values]


def _one_change(dist_name: str, version: str, location: PathLike) -> dict:
    """A one-distribution patch: installed if its ``.dist-info`` folder exists, else removed."""
    pair = [[str(dist_name), str(version)]]
    if os.path.isdir(location):
        return {"installed": pair}
    return {"removed": pair}


def _is_text(value) -> bool:
    return isinstance(value, (str, os.PathLike))


def patch_site_packages_cache(*args, python: Optional[PathLike] = None) -> bool:
    """Apply a change the host made to the view (removals first). ``True`` if a live view was
    patched. Shapes: ``(installed, removed[, python])`` or ``(dist_name, version, location)``."""
    if len(args) == 3 and all(_is_text(a) for a in args):
        dist_name, version, location = args
        request = dict(_one_change(dist_name, version, location), location=os.fspath(location))
    elif len(args) in (2, 3):
        installed, removed = args[0], args[1]
        if len(args) == 3:
            python = args[2]
        request = _env_request(python, installed=_pairs(installed), removed=_pairs(removed))
    else:
        raise TypeError(
            "patch_site_packages_cache takes (installed, removed[, python]) or "
            "(dist_name, version, location)"
        )
    return bool(_native.call("view_patch", request)["patched"])


def patch_bubble_site_packages_cache(*args) -> bool:
    """Apply a change the host made inside a ``--target`` folder to that folder's view.
    Shapes: ``(bubble_id, dist_name, version, location)`` or
    ``(installed, removed[, bubble_id])``. ``False`` if there was no view to patch."""
    if len(args) == 4 and all(_is_text(a) for a in args):
        bubble_id, dist_name, version, location = args
        request = dict(_one_change(dist_name, version, location), target=os.fspath(bubble_id))
    elif len(args) in (2, 3):
        installed, removed = args[0], args[1]
        bubble_id = args[2] if len(args) == 3 else _last_bubble
        if bubble_id is None:
            return False
        request = _env_request(None, bubble_id, installed=_pairs(installed), removed=_pairs(removed))
    else:
        raise TypeError(
            "patch_bubble_site_packages_cache takes (bubble_id, dist_name, version, location) "
            "or (installed, removed[, bubble_id])"
        )
    return bool(_native.call("view_patch", request)["patched"])


def invalidate_site_packages_cache(python: Optional[PathLike] = None) -> None:
    """Drop the view; the next call rescans the environment."""
    _native.call("view_invalidate", _env_request(python))


def clear_stash(python: Optional[PathLike] = None, target: Optional[PathLike] = None) -> bool:
    """Empty the stash of swapped-out versions (``.uv-ffi-stash``) of the environment of
    ``python`` (else of the last call), or of the ``--target`` folder ``target``. Returns whether
    there was one. Swaps keep a replaced version there and bring it back by renames when exactly
    that wheel is installed again; ``UV_FFI_STASH=0`` turns this off."""
    request: Dict[str, str] = {}
    if python is not None:
        request["python"] = os.fspath(python)
    if target is not None:
        request["target"] = os.fspath(target)
    return bool(_native.call("stash_clear", request)["cleared"])


def evict_bubble_cache() -> int:
    """Forget the views of every ``--target`` folder (environments keep theirs). Returns how
    many views were forgotten."""
    return int(_native.call("view_forget", {})["forgotten"])


def evict_packages_from_bubble_cache(bubble_id: PathLike, *names: str) -> bool:
    """Stop trusting what the view of ``bubble_id`` says about ``names``: the folder is read
    again on its next use (one directory listing). ``False`` if no view of it was kept."""
    if not names:
        return False
    forgotten = _native.call("view_forget", {"target": os.fspath(bubble_id)})["forgotten"]
    return forgotten > 0


def clear_registry_cache() -> None:
    """Make the next resolution revalidate every index page it reads."""
    _native.call("index_clear", {})


def get_counters(python: Optional[PathLike] = None) -> Dict[str, int]:
    """What the coherency policy did: the engine's counters for an environment (rescans,
    checks, detected changes, patches, heals) plus the Python side's (index retries, watcher
    patches)."""
    value = _native.call("view_get", _env_request(python, check=False))
    merged = dict(value["counters"])
    merged.update({"index_" + k: v for k, v in value["index_counters"].items()})
    merged.update(policy.counters)
    return merged
