"""Where the package keeps what C, Go and other non-Python hosts need: the header and the library.

    cc -I"$(python -m uv_ffi --include)" app.c "$(python -c 'import uv_ffi; print(uv_ffi.library_path())')"

From Python: :func:`include_dir` (the folder holding ``uv_ffi.h``) and :func:`library_path` (the
shared library ``import uv_ffi`` loads; :func:`library_dir` is its folder). The installed wheel
holds both inside the package (``uv_ffi/include/uv_ffi.h``, ``uv_ffi/_uv_ffi_lib.so``); a source
tree (an editable install) has the header in ``rust/include``.

This module looks files up only; it never loads the library.
"""

from __future__ import annotations

import glob
import os
import sys

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
#: The library's stem; setup.py writes ``<stem><suffix>`` into the package.
LIBRARY_STEM = "_uv_ffi_lib"
HEADER_NAME = "uv_ffi.h"
_SHARED_SUFFIXES = (".so", ".dylib", ".dll", ".pyd")


def library_suffix() -> str:
    """The shared-library suffix setup.py gives the library on this platform."""
    if sys.platform == "win32":
        return ".dll"
    if sys.platform == "darwin":
        return ".dylib"
    return ".so"


def library_path() -> str:
    """Absolute path of the shared library ``import uv_ffi`` loads.

    ``UV_FFI_LIBRARY`` overrides it. Otherwise ``_uv_ffi_lib.so`` (``.dylib``, ``.dll``) in the
    package; a source tree built before the library lost its interpreter tag may instead hold
    ``_uv_ffi_lib.cpython-311-x86_64-linux-gnu.so`` and the like, the newest of which is used.
    Raises ImportError when there is none.
    """
    override = os.environ.get("UV_FFI_LIBRARY")
    if override:
        return override
    plain = os.path.join(PACKAGE_DIR, LIBRARY_STEM + library_suffix())
    if os.path.isfile(plain):
        return plain
    tagged = [
        path
        for path in glob.glob(os.path.join(PACKAGE_DIR, LIBRARY_STEM + ".*"))
        if path.endswith(_SHARED_SUFFIXES) and os.path.isfile(path)
    ]
    if not tagged:
        raise ImportError(
            "uv_ffi's native library is missing next to " + PACKAGE_DIR + "; "
            "install the package (pip install .) rather than importing the source tree"
        )
    return max(tagged, key=os.path.getmtime)


def library_dir() -> str:
    """The folder holding :func:`library_path` (for ``-L`` and an rpath)."""
    return os.path.dirname(library_path())


def include_dir() -> str:
    """The folder holding ``uv_ffi.h`` (for ``-I``).

    The wheel ships the header as ``uv_ffi/include/uv_ffi.h``; in a source tree it is
    ``rust/include/uv_ffi.h``. Raises FileNotFoundError when neither exists.
    """
    candidates = (
        os.path.join(PACKAGE_DIR, "include"),
        os.path.join(os.path.dirname(PACKAGE_DIR), "rust", "include"),
    )
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, HEADER_NAME)):
            return folder
    raise FileNotFoundError("uv_ffi.h is in none of: " + ", ".join(candidates))


def header_path() -> str:
    """Absolute path of ``uv_ffi.h``."""
    return os.path.join(include_dir(), HEADER_NAME)


__all__ = ["header_path", "include_dir", "library_dir", "library_path", "library_suffix"]
