"""cffi build script: out-of-line ABI mode, declarations read from the one C header.

ABI mode (``set_source(..., None)``) writes a pure-Python module that dlopens the Rust library
at run time, so the library never links against a Python and one build serves every CPython
3.8+ and PyPy.
"""

import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "rust", "include", "uv_ffi.h")


def read_declarations(path=HEADER):
    """The header without preprocessor lines or C++ guards, which cffi's parser does not take."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or stripped in ('extern "C" {', "}"):
            continue
        kept.append(line)
    return "\n".join(kept)


ffibuilder = FFI()
ffibuilder.cdef(read_declarations())
ffibuilder.set_source("uv_ffi._native_ffi", None)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=HERE, verbose=True)
