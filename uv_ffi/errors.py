"""Exceptions raised by the typed API, keyed by the engine's error ``kind``.

The classes are static (no generated names), so type checkers and readers see them all here.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Type


class UvFfiError(Exception):
    """Base class: every engine error carries uv's text, hints and an exit code."""

    kind = "internal"

    def __init__(
        self,
        message: str,
        hints: Optional[List[str]] = None,
        exit_code: int = 1,
        retry: Optional[str] = None,
    ):
        super().__init__(message)
        self.message = message
        self.hints = list(hints or [])
        self.exit_code = exit_code
        #: How the engine says the same call might succeed (``"fresh_index"``), or None.
        self.retry = retry

    def full_text(self) -> str:
        """The message followed by one ``hint:`` line per hint, as uv's CLI prints them.

        Messages from uv's own parser and command line already carry uv's ``error:`` prefix
        where uv prints one; the engine's own messages carry none."""
        lines = [self.message]
        lines.extend("hint: " + hint for hint in self.hints)
        return "\n".join(lines)


class InvalidRequest(UvFfiError, ValueError):
    """The request, command line or a requirement could not be understood."""

    kind = "invalid_command"


class PythonNotFound(UvFfiError):
    """``--python`` named no usable interpreter or environment."""

    kind = "python_not_found"


class ExternallyManaged(UvFfiError):
    """The environment is externally managed (PEP 668)."""

    kind = "externally_managed"


class ResolutionError(UvFfiError):
    """The requirements cannot be satisfied, or a package does not exist."""

    kind = "resolution"


class IndexUnavailable(UvFfiError):
    """An index or find-links location could not be reached or read."""

    kind = "index"


class InstallError(UvFfiError):
    """Downloading, unpacking, linking or removing files failed."""

    kind = "install"


class CommandFailed(UvFfiError):
    """A command run through uv's own command line ended with a non-zero exit code.

    ``message`` is what uv printed to stderr; ``stdout`` and ``stderr`` hold its whole output.
    """

    kind = "failed"
    stdout = ""
    stderr = ""
    #: The engine's answer as data, for ``pip check`` finding problems or ``pip show`` finding
    #: nothing (the JSON object of ``uv_ffi_run``'s ``read`` field), else None.
    read = None


class EnginePanic(UvFfiError):
    """The engine panicked; the panic was caught at the boundary."""

    kind = "panic"


class StalePlan(UvFfiError):
    """A kept install plan is gone, or the environment changed after it was made; nothing was
    changed."""

    kind = "stale_plan"


class PlanCallbackError(UvFfiError):
    """A plan callback raised or returned something other than ``True``/``False``; nothing was
    changed. The callback's own exception is the ``__cause__``."""

    kind = "plan_callback"


class ProgressCallbackError(UvFfiError):
    """A progress callback raised. The engine stopped where it safely could; ``result`` holds
    the call's reply value if it had finished anyway (else None). The callback's own exception
    is the ``__cause__``."""

    kind = "progress_callback"
    result = None


class Stopped(UvFfiError):
    """The call stopped at the host's request (``uv_ffi_progress`` with ``"stop": true``)."""

    kind = "stopped"


_BY_KIND: Dict[str, Type[UvFfiError]] = {
    "invalid_json": InvalidRequest,
    "invalid_command": InvalidRequest,
    "invalid_requirement": InvalidRequest,
    "python_not_found": PythonNotFound,
    "externally_managed": ExternallyManaged,
    "resolution": ResolutionError,
    "index": IndexUnavailable,
    "install": InstallError,
    "panic": EnginePanic,
    "failed": CommandFailed,
    "stale_plan": StalePlan,
    "stopped": Stopped,
}


def from_reply(error: dict) -> UvFfiError:
    """Build the exception for an error envelope; unknown kinds map to the base class."""
    cls = _BY_KIND.get(error.get("kind", ""), UvFfiError)
    exc = cls(
        error.get("message", ""),
        error.get("hints", []),
        int(error.get("exit_code", 1)),
        error.get("retry"),
    )
    exc.kind = error.get("kind", "internal")
    if "stdout" in error or "stderr" in error:
        exc.stdout = error.get("stdout") or ""
        exc.stderr = error.get("stderr") or ""
    if "read" in error:
        exc.read = error["read"]
    return exc
