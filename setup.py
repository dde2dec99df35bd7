"""Build: setuptools-rust compiles the cdylib into the package, cffi writes its ABI-mode module.

The library does not link against Python, so the wheel is tagged py3-none-<platform>: one wheel
serves CPython 3.8+ and PyPy.
"""

import sys

from setuptools import setup
from setuptools_rust import Binding, RustExtension

try:
    from wheel.bdist_wheel import bdist_wheel
except ImportError:  # pragma: no cover - wheel is a build requirement
    bdist_wheel = None

cmdclass = {}
if bdist_wheel is not None:

    class PlatformWheel(bdist_wheel):
        """Tag the wheel for the platform only; no Python ABI is involved."""

        def get_tag(self):
            _, _, platform = super().get_tag()
            return "py3", "none", platform

    cmdclass["bdist_wheel"] = PlatformWheel

try:
    setup(
        rust_extensions=[
            RustExtension(
                "uv_ffi._uv_ffi_lib",
                path="rust/Cargo.toml",
                binding=Binding.NoBinding,
                debug=False,
            )
        ],
        cffi_modules=["build_ffi.py:ffibuilder"],
        cmdclass=cmdclass,
        zip_safe=False,
    )
except Exception:
    sys.stderr.write(
        "\n=============================DEBUG ASSISTANCE=============================\n"
        "uv-ffi builds a Rust library with cargo (Rust >= 1.95) and a C compiler.\n"
        "  - Install Rust from your package manager or rustup, then retry.\n"
        "  - Set CARGO_TARGET_DIR to a folder outside the source tree to reuse builds.\n"
        "  - The first build compiles uv's crates and takes several minutes.\n"
        "=============================DEBUG ASSISTANCE=============================\n\n"
    )
    raise
