"""uv-ffi: uv's resolver and installer kept resident in this process.

The first call starts the engine (a Tokio runtime, uv's cache, an HTTP client); later calls
reuse it, so an install that is already satisfied costs microseconds.

Two layers:
- the typed API (:func:`install`, :class:`RunResult`, exceptions in :mod:`uv_ffi.errors`);
- the upstream-compatible tuple API (:func:`run` and the ``*_site_packages_cache`` functions),
  a thin wrapper over the typed one.
"""

from __future__ import annotations

import json
import os
import sys
from ._records import record
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from . import _native, plans, policy, progress as _progress, stale, views
from .errors import (
    CommandFailed,
    EnginePanic,
    ExternallyManaged,
    IndexUnavailable,
    InstallError,
    InvalidRequest,
    PlanCallbackError,
    ProgressCallbackError,
    PythonNotFound,
    ResolutionError,
    StalePlan,
    Stopped,
    UvFfiError,
)
from .paths import include_dir, library_path
from .plans import Plan, PlanEntry, get_install_plan, mark_plan_handled, set_plan_callback
from .policy import get_policy, set_policy
from .magic import load_ipython_extension
from .progress import NotebookProgress, ProgressEvent, TerminalProgress
from .stale import StaleModulesWarning
from .views import (
    clear_registry_cache,
    clear_stash,
    evict_bubble_cache,
    evict_packages_from_bubble_cache,
    get_counters,
    get_site_packages_cache,
    invalidate_site_packages_cache,
    patch_bubble_site_packages_cache,
    patch_site_packages_cache,
)
from .commands import (  # noqa: E402  (they call install(), defined below, lazily)
    CheckResult,
    Package,
    ReadAnswer,
    ShowRecord,
    check,
    freeze,
    freeze_pairs,
    list_packages,
    show,
)

__version__: str = _native.INFO["version"]
#: The uv release whose crates the engine is built from.
UV_VERSION: str = _native.INFO["uv_version"]

Pair = Tuple[str, str]

__all__ = [
    "__version__",
    "CheckResult",
    "CommandFailed",
    "EnginePanic",
    "ExternallyManaged",
    "IndexUnavailable",
    "InstallError",
    "InvalidRequest",
    "Package",
    "ReadAnswer",
    "Plan",
    "PlanCallbackError",
    "PlanEntry",
    "ProgressCallbackError",
    "ProgressEvent",
    "PythonNotFound",
    "ResolutionError",
    "RunResult",
    "ShowRecord",
    "StaleModulesWarning",
    "StalePlan",
    "Stopped",
    "UvFfiError",
    "check",
    "clear_registry_cache",
    "clear_stash",
    "evict_bubble_cache",
    "evict_packages_from_bubble_cache",
    "freeze",
    "freeze_pairs",
    "get_counters",
    "get_install_plan",
    "get_policy",
    "get_site_packages_cache",
    "include_dir",
    "install",
    "invalidate_site_packages_cache",
    "library_path",
    "list_packages",
    "load_ipython_extension",
    "mark_plan_handled",
    "parse_command",
    "patch_bubble_site_packages_cache",
    "patch_site_packages_cache",
    "run",
    "run_capture",
    "set_plan_callback",
    "set_policy",
    "show",
]


@record
class RunResult:
    """What one command did. ``installed``/``removed`` hold sorted ``(name, version)`` pairs.

    ``engine`` says who ran it: ``"warm"`` (the resident engine), ``"view"`` (the engine answered
    ``pip list/freeze/show/check`` from its snapshot; ``read`` holds the answer as data),
    ``"uv"`` (uv's own command line in this process) or ``"printed"`` (uv's parser answered, e.g.
    ``--help``). ``stdout`` and
    ``stderr`` hold what uv printed (the warm engine prints nothing). ``environment`` is the
    prefix of the environment acted on, or None for commands that name none. ``plan`` is the
    call's install plan when a plan callback saw it (see :mod:`uv_ffi.plans`), and
    ``taken_over`` is True when the callback took the plan over (nothing was changed).
    ``stale_modules`` names the distributions whose modules this process imported before the
    call changed their version in its own environment (see :mod:`uv_ffi.stale`).
    """

    installed: Tuple[Pair, ...]
    removed: Tuple[Pair, ...]
    environment: Optional[str]
    target: Optional[str]
    satisfied: bool
    dry_run: bool
    timings_us: Tuple[Tuple[str, int], ...]
    exit_code: int = 0
    engine: str = "warm"
    stdout: str = ""
    stderr: str = ""
    plan: Optional[Plan] = None
    taken_over: bool = False
    stale_modules: Tuple[str, ...] = ()
    read: Optional[ReadAnswer] = None

    @classmethod
    def from_json(cls, value: dict) -> "RunResult":
        kept = value.get(_KEPT_FIELDS)
        if kept is not None:
            # A reply seen before (see _call_run): its fields, but the call's own timings (read
            # when first asked for) and stale modules.
            return cls._make(dict(
                kept,
                _reply_text=value[_REPLY_TEXT],
                stale_modules=value.get("stale_modules", ()),
            ))
        return cls._make(cls._fields_of(value))

    @staticmethod
    def _fields_of(value: dict) -> dict:
        # Every field, built in one dict: this runs on every call (see _records._make).
        plan, read = value["plan"], value.get("read")
        return {
            "installed": tuple((n, v) for n, v in value["installed"]),
            "removed": tuple((n, v) for n, v in value["removed"]),
            "environment": value["environment"],
            "target": value["target"],
            "satisfied": value["satisfied"],
            "dry_run": value["dry_run"],
            "timings_us": tuple((p, t) for p, t in value["timings_us"]),
            "exit_code": value["exit_code"],
            "engine": value["engine"],
            "stdout": value["stdout"],
            "stderr": value["stderr"],
            "plan": None if plan is None else Plan(PlanEntry(*e) for e in plan),
            "taken_over": value.get("taken_over", False),
            "stale_modules": value.get("stale_modules", ()),
            "read": None if read is None else ReadAnswer.from_json(read),
        }


class _TimingsOnRead:
    """``timings_us`` of a result built from a kept reply: decoded from the reply's text when
    first read (few callers read it, and decoding costs a call about 20 us when the CPU's caches
    are cold). A result built otherwise holds the field itself, which takes precedence."""

    def __get__(self, result: Optional[RunResult], owner: Any = None) -> Any:
        if result is None:
            return self
        text = result.__dict__[_REPLY_TEXT]
        # The library writes the timings last: `..., "timings_us": [...]}}`.
        timings_text = text[text.rfind(_TIMINGS) + len(_TIMINGS):-2]
        timings = tuple((phase, us) for phase, us in _native._loads(timings_text))
        result.__dict__["timings_us"] = timings
        return timings


RunResult.timings_us = _TimingsOnRead()  # type: ignore[assignment]

Command = Union[str, Sequence[str]]


def _command_field(cmd: Command) -> str:
    """The request's command as JSON: ``"command": "..."`` for a line, ``"argv": [...]`` for words."""
    if isinstance(cmd, str):
        return '"command":%s' % json.dumps(cmd)
    return '"argv":%s' % json.dumps([os.fspath(word) for word in cmd])


def _words(cmd: Command) -> Sequence[str]:
    return cmd.split() if isinstance(cmd, str) else [os.fspath(w) for w in cmd]


#: The encoded requests of recent calls given as a line: a host repeats a few commands, and
#: encoding one costs a warm call about 30 us when the CPU's caches are cold.
_REQUESTS: dict = {}


def _request(cmd: Command, check: bool, cwd: Optional[str], plan: bool, progress: bool) -> bytes:
    """The request of ``uv_ffi_run``, built by hand (the fields are fixed) or kept from a call
    with the same inputs."""
    ttl_ms = int(policy._index_ttl * 1000)
    key = (cmd, check, ttl_ms, cwd, plan, progress) if isinstance(cmd, str) else None
    encoded = _REQUESTS.get(key) if key is not None else None
    if encoded is not None:
        return encoded
    request = '{%s,"check":%s,"index_ttl_ms":%d%s%s%s}' % (
        _command_field(cmd),
        "true" if check else "false",
        ttl_ms,
        ',"cwd":%s' % json.dumps(os.fspath(cwd)) if cwd is not None else "",
        ',"plan":true' if plan else "",
        ',"progress":true' if progress else "",
    )
    encoded = request.encode("utf-8")
    if key is not None:
        if len(_REQUESTS) >= 64:
            _REQUESTS.clear()
        _REQUESTS[key] = encoded
    return encoded


#: Replies of recent calls, decoded, by their text up to the timings, the only part that differs
#: between two answers to the same question (the library writes them last). A host repeats a
#: few calls; decoding a reply and building its RunResult cost a call about 50 us when the CPU's
#: caches are cold. Only plain warm replies are kept: no plan, progress or read answer.
_REPLIES: dict = {}
_TIMINGS = b',"timings_us":'
#: The keys under which a kept reply's value carries its RunResult fields (timings and stale
#: modules aside) and its text up to the timings, and a value copied from it the whole text of
#: the call's own reply (its timings are read from there when asked for).
_KEPT_FIELDS = "_kept_fields"
_REPLY_HEAD = "_reply_head"
_REPLY_TEXT = "_reply_text"


def _call_run(encoded: bytes) -> dict:
    """``uv_ffi_run``'s reply value: a fresh dict, decoded or copied from a kept reply."""
    return _reply_value(_native.run_text(encoded))


def _reply_value(text: bytes) -> dict:
    """The value of ``uv_ffi_run``'s reply: a fresh dict, decoded or copied from a kept reply."""
    cut = text.rfind(_TIMINGS)
    head = text[:cut + len(_TIMINGS)] if cut > 0 else None
    kept = _REPLIES.get(head) if head is not None else None
    if kept is not None:
        value = dict(kept)
        value[_REPLY_TEXT] = text
        return value
    value = _native.value_of(text)
    if head is not None and value["engine"] == "warm" and value["plan"] is None and value["progress"] is None:
        if len(_REPLIES) >= 64:
            _REPLIES.clear()
        template = dict(value)
        del template["timings_us"]
        fields = RunResult._fields_of(value)
        del fields["timings_us"], fields["stale_modules"]
        template[_KEPT_FIELDS] = fields
        template[_REPLY_HEAD] = head
        _REPLIES[head] = template
    return value


def _run_value(cmd: Command, mode: Optional[str], cwd: Optional[str], on_plan=None,
               progress=None) -> dict:
    """Run a command and return the reply's value, applying the policy (checks, retries), the
    plan callback and the progress callback, if any."""
    mode = policy.resolve(mode)
    decide = plans.chosen(on_plan)
    cwd = os.fspath(cwd) if cwd is not None else None
    encoded = _request(cmd, policy.check_before_use(mode), cwd, decide is not None, progress is not None)
    if progress is None:
        value = _call_run(encoded)
    else:
        value = _progress.run_with_progress(lambda: _call_run(encoded), progress)
    return _settled(value, cmd, mode, decide, progress)


def _settled(value: dict, cmd: Command, mode: str, decide, progress) -> dict:
    """A reply's value after the facade's part: the counters, the plan's decision, the stale
    modules and the watch of the environment."""
    if value["index_retried"]:
        # The engine retried with fresh index pages (a release published since they were kept).
        policy.bump("index_retries")
    if value["plan"] is not None and decide is not None:
        value = plans.settle(value, decide, progress)
    if value["target"] is not None:
        views.note_bubble(value["target"])
    if value["installed"] or value["removed"]:
        value["stale_modules"] = stale.stale_after(value, lambda: _words(cmd))
    if mode == policy.WATCH and value["environment"] is not None and value["target"] is None:
        policy.watch_environment(value["environment"])
    return value


class _Satisfied:
    """A command line whose plain call (no mode, cwd or callbacks of its own) the engine found
    satisfied: the request that call sends under the policy of then, the reply's text up to its
    timings, and the result's fields.

    A later plain call of the same line whose reply starts with that text gets the same result
    with its own timings, without decoding the reply or the facade's policy steps: the text
    holds every field, and a satisfied reply leaves those steps nothing to do. This is the call a
    host repeats most (about 60 us less on cold CPU caches than the path of other calls)."""

    __slots__ = ("mode", "index_ttl", "request", "head", "fields")

    def __init__(self, mode: str, index_ttl: float, request: bytes, head: bytes, fields: dict) -> None:
        self.mode, self.index_ttl, self.request, self.head = mode, index_ttl, request, head
        self.fields = dict(fields, stale_modules=())


#: By command line: a host repeats a few.
_SATISFIED: dict = {}


def _plain_call(cmd: Command) -> Tuple[Optional[_Satisfied], Any]:
    """Run a command given no per-call options: ``(seen, reply text)`` when the reply is the one
    ``seen`` kept for it (see :class:`_Satisfied`), else ``(None, the reply's value)``. The
    steps of :func:`_run_value` for such a call, in this frame."""
    if plans._callback is not None:
        return None, _run_value(cmd, None, None)
    line = cmd.__class__ is str
    seen = _SATISFIED.get(cmd) if line else None
    mode = policy._mode
    if seen is not None and seen.mode == mode and seen.index_ttl == policy._index_ttl:
        request = seen.request
    else:
        seen, request = None, _request(cmd, mode != policy.TRUST, None, False, False)
    text = _native.run_text(request)
    if seen is not None and text.startswith(seen.head):
        return seen, text
    value = _settled(_reply_value(text), cmd, mode, None, None)
    if line:
        _note_if_satisfied(cmd, value, mode, request)
    return None, value


def _note_if_satisfied(cmd: str, value: dict, mode: str, request: bytes) -> None:
    """Keep a plain call's reply (sent as ``request`` under policy ``mode``) for
    :class:`_Satisfied` when it found everything satisfied and the policy leaves nothing to do
    for such a reply (no watch)."""
    head = value.get(_REPLY_HEAD)
    if (head is None or not value["satisfied"] or value["installed"] or value["removed"]
            or value["target"] is not None or value["index_retried"] or value["exit_code"] != 0
            or mode == policy.WATCH):
        return
    if len(_SATISFIED) >= 64:
        _SATISFIED.clear()
    _SATISFIED[cmd] = _Satisfied(mode, policy._index_ttl, request, head, value[_KEPT_FIELDS])


_new_object = object.__new__


def install(
    cmd: Command,
    *,
    mode: Optional[str] = None,
    cwd: Optional[str] = None,
    on_plan: Optional[Callable[[Plan], Any]] = None,
    progress: Optional[Callable[[ProgressEvent], Any]] = None,
) -> RunResult:
    """Run a uv command in-process (``"pip install ..."``, or a list of words); raise a
    :class:`UvFfiError` subclass on failure.

    ``pip install`` / ``pip uninstall`` run on the warm engine whenever it honours every option
    given; anything else runs through uv's own command line in this process, with the same
    result uv would give. ``mode`` overrides the coherency policy for this call (``trust``,
    ``validate``, ``watch``). ``on_plan(plan)`` sees a warm call's :class:`Plan` before anything
    changes and returns True to take it over (for this call, instead of the callback set with
    :func:`set_plan_callback`). ``progress(event)`` receives a warm call's
    :class:`ProgressEvent` objects on this thread while it runs (see :mod:`uv_ffi.progress`).
    """
    if mode is None and cwd is None and on_plan is None and progress is None:
        seen, answer = _plain_call(cmd)
        if seen is None:
            return RunResult.from_json(answer)
        # Satisfied as before: the kept fields and this reply's text (the timings are read
        # from it when asked for).
        result = _new_object(RunResult)
        fields = result.__dict__
        fields.update(seen.fields)
        fields[_REPLY_TEXT] = answer
        return result
    try:
        return RunResult.from_json(_run_value(cmd, mode, cwd, on_plan, progress))
    except ProgressCallbackError as exc:
        if isinstance(exc.result, dict):
            exc.result = RunResult.from_json(exc.result)
        raise


def _echo(value: dict) -> None:
    """Write what uv printed to Python's streams (so notebooks and redirections see it), for
    commands whose purpose is output; commands that change an environment stay silent, as the
    warm engine does."""
    changing = value["engine"] == "warm" or (value["engine"] == "uv" and value["environment"] is not None)
    if changing:
        return
    if value["stdout"]:
        sys.stdout.write(value["stdout"])
    if value["stderr"]:
        sys.stderr.write(value["stderr"])


def run(cmd: Command) -> Tuple[int, List[Pair], List[Pair], str]:
    """Upstream-compatible: ``(exit_code, installed, removed, error)``; never raises for a
    failed command (``error`` holds uv's explanation, ``""`` on success)."""
    try:
        seen, value = _plain_call(cmd)
    except UvFfiError as exc:
        return exc.exit_code, [], [], exc.full_text()
    if seen is not None:
        return 0, [], [], ""  # satisfied as before
    if value["exit_code"] != 0:
        # uv's parser printed help instead of running anything (`uv` alone, `uv pip`).
        return value["exit_code"], [], [], value["stderr"].rstrip("\n")
    _echo(value)
    return (
        value["exit_code"],
        [(n, v) for n, v in value["installed"]],
        [(n, v) for n, v in value["removed"]],
        "",
    )


#: Upstream's name for :func:`run`.
run_capture = run


def parse_command(cmd: Command) -> dict:
    """Understand a command without running it: ``{"argv", "fast", "route", "warm", "explicit",
    "error", "fast_read", "read"}`` (see ``uv_ffi_parse`` in the header)."""
    key = "command" if isinstance(cmd, str) else "argv"
    return _native.call("parse", {key: cmd if isinstance(cmd, str) else list(cmd)})
