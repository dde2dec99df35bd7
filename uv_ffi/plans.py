"""The install-plan hook: see what a warm ``pip install`` / ``pip uninstall`` will do before any
file changes, and optionally take it over.

The engine answers a call asked with ``"plan": true`` with its plan and keeps the resolution;
this module hands the plan to the caller's callback, then either applies exactly that plan
(``uv_ffi_plan_apply``: no second resolution) or drops it (``uv_ffi_plan_discard``). A call with
no callback asks for no plan and costs nothing extra.

Actions: ``cached`` (a wheel already in uv's cache will be linked), ``remote`` (will be
downloaded or built; ``version`` may be ``""`` only here, for a URL), ``reinstall`` (an installed
distribution will be replaced), ``extraneous`` (an installed distribution will be removed: the
plan of a ``pip uninstall``; ``pip install`` never removes a distribution it does not replace).
Commands that run through uv's own command line rather than the warm engine have no plan and
do not call the callback.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

from . import _native
from .errors import PlanCallbackError

__all__ = [
    "Plan",
    "PlanEntry",
    "get_install_plan",
    "mark_plan_handled",
    "set_plan_callback",
]


class PlanEntry(NamedTuple):
    """One line of a plan: PEP 503 ``name``, ``version``, ``action``."""

    name: str
    version: str
    action: str


class Plan(tuple):
    """A plan: a tuple of :class:`PlanEntry`, sorted by name, with one view per action."""

    def of(self, action: str) -> Tuple[PlanEntry, ...]:
        return tuple(entry for entry in self if entry.action == action)

    @property
    def cached(self) -> Tuple[PlanEntry, ...]:
        return self.of("cached")

    @property
    def remote(self) -> Tuple[PlanEntry, ...]:
        return self.of("remote")

    @property
    def reinstall(self) -> Tuple[PlanEntry, ...]:
        return self.of("reinstall")

    @property
    def extraneous(self) -> Tuple[PlanEntry, ...]:
        return self.of("extraneous")


#: Upstream's callback: ``cb(entries) -> bool``; ``True`` means the host took the plan over.
PlanCallback = Callable[[List[Tuple[str, str, str]]], Any]

_lock = threading.Lock()
_callback: Optional[PlanCallback] = None
_last_plan: Plan = Plan()


def set_plan_callback(callback: Optional[PlanCallback]) -> None:
    """Call ``callback(entries)`` with each warm install's plan before anything changes
    (``entries``: a list of ``(name, version, action)`` tuples). It returns ``True`` to take the
    plan over (nothing changes; the call succeeds with an empty changelog), ``False`` or ``None``
    to let the install go ahead. One callback at a time; ``None`` clears it."""
    global _callback
    if callback is not None and not callable(callback):
        raise TypeError("the plan callback must be callable or None, not %r" % (callback,))
    with _lock:
        _callback = callback


def get_install_plan() -> List[Tuple[str, str, str]]:
    """The most recent plan of a warm install that asked for one (``[]`` before any)."""
    with _lock:
        return list(_last_plan)


def mark_plan_handled() -> None:
    """Deprecated upstream and a no-op here: return ``True`` from the callback instead."""
    return None


def chosen(on_plan: Optional[Callable[[Plan], Any]]) -> Optional[Callable[[Plan], Any]]:
    """The decision for one call: its own ``on_plan``, else the registered callback (which
    receives a plain list, as upstream's does), else None (no plan asked for)."""
    if on_plan is not None:
        return on_plan
    # One read of a module global is atomic: no lock on the path of every call.
    callback = _callback
    if callback is None:
        return None
    return lambda plan: callback(list(plan))


def settle(value: dict, decide: Callable[[Plan], Any], progress=None) -> dict:
    """Given the reply of a call that asked for its plan, let ``decide`` see it and finish the
    call accordingly. Returns the reply of the finished call."""
    global _last_plan
    plan = Plan(PlanEntry(*entry) for entry in value["plan"])
    with _lock:
        _last_plan = plan
    plan_id = value["plan_id"]
    if plan_id is None:
        # Nothing to decide: the environment already satisfied the call, or a dry run.
        return value
    try:
        answer = decide(plan)
    except Exception as exc:
        _native.call("plan_discard", {"plan_id": plan_id})
        raise PlanCallbackError(
            "The plan callback raised %s: %s; nothing was changed" % (type(exc).__name__, exc)
        ) from exc
    except BaseException:
        _native.call("plan_discard", {"plan_id": plan_id})
        raise
    if answer is True:
        _native.call("plan_discard", {"plan_id": plan_id})
        return dict(value, plan_id=None, taken_over=True)
    if answer is False or answer is None:
        if progress is None:
            applied = _native.call("plan_apply", {"plan_id": plan_id})
        else:
            from .progress import run_with_progress

            request = {"plan_id": plan_id, "progress": True}
            applied = run_with_progress(lambda: _native.call("plan_apply", request), progress)
        return dict(applied, plan=value["plan"])
    _native.call("plan_discard", {"plan_id": plan_id})
    raise PlanCallbackError(
        "The plan callback returned %r; it must return True (take the plan over) or False "
        "(go ahead); nothing was changed" % (answer,)
    )
