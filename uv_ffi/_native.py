"""Locate and load the Rust library, and call it: JSON in, JSON out, reply always freed."""

from __future__ import annotations

import json
import sys
from typing import Any

from . import errors, paths
from ._native_ffi import ffi

#: The ABI version this facade speaks; the library must report the same.
ABI_VERSION = 2


def _library_path() -> str:
    """The library to load: ``UV_FFI_LIBRARY``, else the one in the package (see :mod:`.paths`)."""
    return paths.library_path()


def _open():
    flags = ffi.RTLD_NOW
    if sys.platform == "darwin":
        # Rust thread-local destructors may run after an unload; never unload the library.
        flags |= getattr(ffi, "RTLD_NODELETE", 0x80)
    return ffi.dlopen(_library_path(), flags)


lib = _open()
_run, _free, _string = lib.uv_ffi_run, lib.uv_ffi_string_free, ffi.string


if sys.implementation.name == "cpython":
    _scan = json.JSONDecoder().raw_decode

    def _loads(reply: bytes) -> Any:
        """The reply's value. CPython's ``json.loads`` of bytes first detects the encoding and
        matches whitespace with two regular expressions: on cold CPU caches that costs a call
        about 20 us, more than scanning the reply. The library's replies are UTF-8 JSON with
        nothing around the value, so the scanner is called directly."""
        return _scan(reply.decode("utf-8"))[0]

else:
    # PyPy's `json.loads` has its own fast decoder, which `raw_decode` would bypass.
    _loads = json.loads


def call(function: str, payload: Any) -> Any:
    """Call ``uv_ffi_<function>`` with a JSON payload and return the reply's value.

    Raises the mapped :class:`~uv_ffi.errors.UvFfiError` subclass for an error reply.
    """
    return call_json(function, json.dumps(payload).encode("utf-8"))


def call_json(function: str, request: bytes) -> Any:
    """Like :func:`call`, with the request already encoded (the hot path builds it directly)."""
    return value_of(call_text(function, request))


def call_text(function: str, request: bytes) -> bytes:
    """The reply of ``uv_ffi_<function>``, as text (the library's copy is freed)."""
    return _text_of(getattr(lib, "uv_ffi_" + function)(request))


def run_text(request: bytes) -> bytes:
    """``call_text("run", request)``, for the path of every call: no name is built or looked
    up, and no further Python function is called (each costs about a microsecond on cold CPU
    caches)."""
    pointer = _run(request)
    try:
        return _string(pointer)
    finally:
        _free(pointer)


def _text_of(pointer: Any) -> bytes:
    try:
        return _string(pointer)
    finally:
        _free(pointer)


def value_of(text: bytes) -> Any:
    """The value of a reply; raises the mapped :class:`~uv_ffi.errors.UvFfiError` subclass for
    an error reply."""
    reply = _loads(text)
    if reply["ok"]:
        return reply["value"]
    raise errors.from_reply(reply["error"])


def _check_version() -> dict:
    info = call("info", {})
    if info["abi_version"] != ABI_VERSION:
        raise ImportError(
            "uv_ffi's native library speaks ABI %s but the Python package expects %s; "
            "reinstall the package" % (info["abi_version"], ABI_VERSION)
        )
    return info


#: What the library says of itself: its version (written once, in rust/Cargo.toml) and uv's.
INFO = _check_version()
