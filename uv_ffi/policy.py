"""How much the engine may trust its in-memory view of an environment: pure Python policy.

``trust``     only this engine changes the environment; no checks at all.
``validate``  (default) before a call uses the view, the engine compares one ``stat`` per
              site-packages folder with what the view was built from, and rescans if anything
              outside changed it.
``watch``     ``validate``, plus a background filesystem watcher (watchdog) that turns
              ``.dist-info`` folders appearing and disappearing into patches as they happen, so
              reads of the view stay current without rescans.

In every mode an install that meets a view disagreeing with the disk is rescanned and retried
once (the engine's ``heal``).

Index pages (version lists and metadata) read by one call are kept in memory for later calls,
for at most :func:`get_index_ttl` seconds. A call that fails after using kept pages is retried
once with fresh pages, so a version published while the process runs is installable at once.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Dict, Optional, Set

TRUST = "trust"
VALIDATE = "validate"
WATCH = "watch"
MODES = (TRUST, VALIDATE, WATCH)

_lock = threading.Lock()
_mode = os.environ.get("UV_FFI_POLICY", VALIDATE)
if _mode not in MODES:
    _mode = VALIDATE

#: What the Python side of the policy did, by name.
counters: Dict[str, int] = {"index_retries": 0, "watch_patches": 0, "watch_invalidations": 0}


#: Index pages kept in memory are used for at most this many seconds (PyPI's own page lifetime).
_index_ttl = float(os.environ.get("UV_FFI_INDEX_TTL", "600"))


def get_index_ttl() -> float:
    """Seconds for which index pages read by one call may serve later calls."""
    return _index_ttl


def set_index_ttl(seconds: float) -> None:
    """Set how long kept index pages may be used (0: read fresh pages on every call)."""
    global _index_ttl
    if seconds < 0:
        raise ValueError("the index time-to-live cannot be negative")
    _index_ttl = float(seconds)


def get_policy() -> str:
    """The current default mode."""
    return _mode


def set_policy(mode: str) -> None:
    """Set the default mode for later calls (``trust``, ``validate`` or ``watch``)."""
    global _mode
    if mode not in MODES:
        raise ValueError("unknown policy %r; expected one of %s" % (mode, ", ".join(MODES)))
    with _lock:
        _mode = mode
    if mode != WATCH:
        stop_watching()


def resolve(mode: Optional[str]) -> str:
    if mode is None:
        return _mode
    if mode not in MODES:
        raise ValueError("unknown policy %r; expected one of %s" % (mode, ", ".join(MODES)))
    return mode


def check_before_use(mode: str) -> bool:
    """Whether the engine compares fingerprints before trusting the view."""
    return mode != TRUST


def bump(name: str) -> None:
    with _lock:
        counters[name] = counters.get(name, 0) + 1


# --- watch mode -------------------------------------------------------------------------------

# `name-version.dist-info`; names in folder names use `_` for any run of `-_.`.
_DIST_INFO = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)\.dist-info$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class _Watcher:
    """One watchdog observer over the site-packages folders of the environments in use."""

    def __init__(self) -> None:
        from watchdog.observers import Observer  # imported only when watch mode is used

        self.observer = Observer()
        self.observer.daemon = True
        self.watched: Set[str] = set()
        self.observer.start()

    def watch(self, folder: str, environment: str) -> None:
        if folder in self.watched or not os.path.isdir(folder):
            return
        from watchdog.events import FileSystemEventHandler

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):  # type: ignore[override]
                watcher.on_event(environment, event)

        self.observer.schedule(Handler(), folder, recursive=False)
        self.watched.add(folder)

    def on_event(self, environment: str, event) -> None:
        from . import _native

        def parse(path: str):
            match = _DIST_INFO.match(os.path.basename(path))
            if not match:
                return None
            return [_normalise(match.group("name")), match.group("version")]

        installed, removed = [], []
        kind = event.event_type
        if kind == "created":
            pair = parse(event.src_path)
            if pair:
                installed.append(pair)
        elif kind == "deleted":
            pair = parse(event.src_path)
            if pair:
                removed.append(pair)
        elif kind == "moved":
            old, new = parse(event.src_path), parse(getattr(event, "dest_path", ""))
            if old:
                removed.append(old)
            if new:
                installed.append(new)
        if not installed and not removed:
            return
        try:
            reply = _native.call(
                "view_patch", {"python": environment, "installed": installed, "removed": removed}
            )
            bump("watch_patches" if reply["patched"] else "watch_invalidations")
        except Exception:
            # A patch that cannot be applied must not leave a wrong view: drop it instead.
            try:
                _native.call("view_invalidate", {"python": environment})
            except Exception:
                pass
            bump("watch_invalidations")

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)


_watcher: Optional[_Watcher] = None


def watch_environment(environment: str) -> None:
    """Start watching an environment's site-packages folders (watch mode)."""
    global _watcher
    from . import _native

    if _watcher is None:
        _watcher = _Watcher()
    stamps = _native.call("view_fingerprint", {"python": environment})
    for stamp in stamps["site_packages"]:
        _watcher.watch(stamp["path"], environment)


def stop_watching() -> None:
    global _watcher
    if _watcher is not None:
        _watcher.stop()
        _watcher = None
