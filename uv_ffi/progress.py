"""Progress of long installs: typed events from the engine, and displays for a terminal and a
notebook.

A call asked with ``progress=callback`` runs on a helper thread while the calling thread polls
the engine (``uv_ffi_progress``) and hands each event to ``callback`` — so the callback runs on
the caller's own thread, and neither the thread nor any event outlives the call. A callback
that raises asks the engine to stop before it changes anything (a call that has begun removing
or linking files finishes) and the call raises :class:`ProgressCallbackError`. One call records
progress at a time.
"""

from __future__ import annotations

import sys
import threading
from ._records import record
from typing import Any, Callable, List, Optional, TextIO

from . import _native
from .errors import ProgressCallbackError

__all__ = ["NotebookProgress", "ProgressEvent", "TerminalProgress"]

#: How often the calling thread asks the engine for new events, in seconds.
POLL_INTERVAL = 0.05


@record
class ProgressEvent:
    """One event; which fields are set depends on ``event``:

    - ``phase``: ``phase`` (``resolve``, ``prepare``, ``uninstall``, ``install``) and ``total``
      (items in it, 0 when not known in advance);
    - ``resolved``, ``prepared``, ``uninstalled``, ``installed``: ``name``, ``version``;
    - ``download_start`` (``id``, ``name``, ``total_bytes`` if known), ``download_progress``
      (``id``, ``bytes`` so far), ``download_done`` (``id``, ``name``);
    - ``build_start``, ``build_done``: ``id``, ``name``.
    """

    event: str
    phase: Optional[str] = None
    total: Optional[int] = None
    name: Optional[str] = None
    version: Optional[str] = None
    id: Optional[int] = None
    bytes: Optional[int] = None
    total_bytes: Optional[int] = None

    @classmethod
    def from_json(cls, value: dict) -> "ProgressEvent":
        return cls(**value)


def _deliver(events: List[dict], callback: Callable[[ProgressEvent], Any]) -> Optional[BaseException]:
    """Hand events to the callback; returns what it raised, if anything."""
    for event in events:
        try:
            callback(ProgressEvent.from_json(event))
        except Exception as exc:  # reported once the call has stopped
            return exc
    return None


def run_with_progress(call: Callable[[], dict], callback: Callable[[ProgressEvent], Any]) -> dict:
    """Run ``call`` (a native call asked with ``"progress": true``) on a helper thread, handing
    its events to ``callback`` on this thread; returns the call's reply value."""
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # re-raised on the calling thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="uv-ffi-call", daemon=True)
    worker.start()
    failure: Optional[BaseException] = None
    try:
        while worker.is_alive():
            worker.join(POLL_INTERVAL)
            if failure is None:
                failure = _deliver(_native.call("progress", {})["events"], callback)
                if failure is not None:
                    _native.call("progress", {"stop": True})
    except BaseException:
        _native.call("progress", {"stop": True})
        raise
    finally:
        worker.join()
    value = outcome.get("value")
    if failure is None and value is not None:
        failure = _deliver(value.get("progress") or [], callback)
    if failure is not None:
        error = ProgressCallbackError(
            "The progress callback raised %s: %s; %s" % (
                type(failure).__name__, failure,
                "the call stopped before changing anything" if value is None
                else "the call had finished (see .result)"),
        )
        error.result = value
        raise error from failure
    if "error" in outcome:
        raise outcome["error"]
    return value


def _size(count: Optional[int]) -> str:
    if count is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (count, unit)
        count /= 1024
    return "?"


class _Status:
    """What a display shows: one line, built from the events so far."""

    def __init__(self) -> None:
        self.phase = ""
        self.total = 0
        self.done = 0
        self.downloads: dict = {}
        self.building: dict = {}

    def update(self, event: ProgressEvent) -> str:
        if event.event == "phase":
            self.phase, self.total, self.done = event.phase or "", event.total or 0, 0
        elif event.event in ("resolved", "prepared", "uninstalled", "installed"):
            self.done += 1
        elif event.event == "download_start":
            self.downloads[event.id] = [event.name, 0, event.total_bytes]
        elif event.event == "download_progress" and event.id in self.downloads:
            self.downloads[event.id][1] = event.bytes
        elif event.event == "download_done":
            self.downloads.pop(event.id, None)
        elif event.event == "build_start":
            self.building[event.id] = event.name
        elif event.event == "build_done":
            self.building.pop(event.id, None)
        return self.line()

    def line(self) -> str:
        if self.building:
            return "Building %s" % ", ".join(sorted(self.building.values()))
        if self.downloads:
            name, done, total = next(iter(self.downloads.values()))
            return "Downloading %s (%s / %s)" % (name, _size(done), _size(total))
        verb = {"resolve": "Resolving", "prepare": "Preparing", "uninstall": "Uninstalling",
                "install": "Installing"}.get(self.phase, "Working")
        if self.phase == "resolve":
            return "%s: %d package%s" % (verb, self.done, "" if self.done == 1 else "s")
        return "%s %d/%d" % (verb, self.done, self.total)


class TerminalProgress:
    """A one-line progress display on a terminal (nothing when the stream is not one)."""

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.status = _Status()
        self.width = 0

    def __call__(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        line = self.status.update(event)[:79]
        self.stream.write("\r" + line.ljust(self.width))
        self.width = len(line)
        self.stream.flush()

    def close(self) -> None:
        """Clear the line (call once the install is over)."""
        if self.enabled and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0


class NotebookProgress:
    """A progress display that updates in place in a notebook's output (IPython's display)."""

    def __init__(self) -> None:
        from IPython.display import display  # imported only where a notebook uses it

        self.status = _Status()
        self.handle = display("Starting", display_id=True)

    def __call__(self, event: ProgressEvent) -> None:
        line = self.status.update(event)
        if self.handle is not None:
            self.handle.update(line)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.update("Done")
