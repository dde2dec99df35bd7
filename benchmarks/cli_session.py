"""A host session through the rest of uv's command line, for ``link_order.py``.

The benchmark's stages call ``pip install`` and the read commands in their common shapes; a host
also passes flags that only uv's own parser knows and runs other commands. This session runs
those in one process, against a local index: a new environment, installs with such flags,
``pip compile``, ``pip sync``, the read commands with their options, an error.
"""

from __future__ import annotations

import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import uv_ffi  # noqa: E402
from uv_ffi import sample_index  # noqa: E402


def commands(work: str, index: str):
    venv = os.path.join(work, "venv")
    py = ["--python", venv]
    source = ["--index-url", index, "--cache-dir", os.path.join(work, "cache")]
    requirements = os.path.join(work, "requirements.in")
    with open(requirements, "w") as handle:
        handle.write("demo-app\n")
    locked = os.path.join(work, "requirements.txt")
    return [
        ["venv", venv, "--quiet"],
        ["pip", "install", "demo-app", "--no-config", "--only-binary", ":all:", "--resolution",
         "lowest-direct", "--no-build-isolation", *py, *source],
        ["pip", "compile", requirements, "-o", locked, "--no-header", *source],
        ["pip", "sync", locked, *py, *source],
        ["pip", "install", "-r", locked, "--reinstall", "--link-mode", "copy", "--compile-bytecode", *py, *source],
        ["pip", "list", "--outdated", *py, *source],
        ["pip", "freeze", "--exclude-editable", *py],
        ["pip", "show", "--files", "demo-app", *py],
        ["pip", "tree", *py],
        ["pip", "check", *py],
        ["pip", "uninstall", "demo-app", *py],
        ["pip", "install", "no-such-package", "--offline", *py, *source],
        ["pip", "install", "--help"],
        ["--version"],
        ["cache", "dir", "--cache-dir", os.path.join(work, "cache")],
    ]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="uv-ffi-cli-") as work:
        wheels = sample_index.build_demo_wheels(os.path.join(work, "wheels"))
        sample_index.write_simple_index(os.path.join(work, "index"), wheels)
        with sample_index.StaticIndex(os.path.join(work, "index")) as index:
            for argv in commands(work, index.url):
                exit_code = uv_ffi.run(argv)[0]
                print(exit_code, " ".join(argv[:3]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
