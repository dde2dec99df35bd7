"""``python -m uv_ffi demo``: the product working with no network.

Builds a few small wheels with dependencies between them, serves them as an index on 127.0.0.1,
creates scratch virtual environments and times, in this process, the first (cold) install,
warm version swaps and warm no-ops; then the same operations run by the ``uv`` command as a
subprocess (when one is available), against the same index, each tool with its own fresh cache.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, List, Optional

from . import sample_index


def find_uv() -> Optional[str]:
    """The ``uv`` command: on PATH, or the binary shipped by the ``uv`` package from PyPI."""
    found = shutil.which("uv")
    if found:
        return found
    try:
        import uv  # type: ignore[import-not-found]

        return uv.find_uv_bin()
    except Exception:
        return None


def make_venv(path: str) -> str:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True)
    return os.path.join(path, "bin", "python")


def dist_info_present(python: str, name: str, version: str) -> bool:
    """Check the disk directly: is ``name-version.dist-info`` in the environment?"""
    prefix = os.path.dirname(os.path.dirname(python))
    folder = "%s-%s.dist-info" % (name.replace("-", "_"), version)
    lib = os.path.join(prefix, "lib")
    for entry in os.listdir(lib):
        if os.path.isdir(os.path.join(lib, entry, "site-packages", folder)):
            return True
    return False


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000.0


def main(rounds: int = 20) -> int:
    workdir = tempfile.mkdtemp(prefix="uv-ffi-demo-")
    # A private cache, so the first install is truly cold.
    os.environ["UV_CACHE_DIR"] = os.path.join(workdir, "cache")
    print("uv-ffi demo in %s (no network: the index is on 127.0.0.1)" % workdir)
    wheels = sample_index.build_demo_wheels(os.path.join(workdir, "wheels"))
    sample_index.write_simple_index(os.path.join(workdir, "index"), wheels)
    engine_py = make_venv(os.path.join(workdir, "venv-engine"))
    uv_py = make_venv(os.path.join(workdir, "venv-uv"))
    uv_bin = find_uv()
    rows = []
    try:
        with sample_index.StaticIndex(os.path.join(workdir, "index")) as index:
            rows.append(_engine_rows(engine_py, index.url, rounds))
            if uv_bin:
                uv_cache = os.path.join(workdir, "cache-uv")
                rows.append(_uv_rows(uv_bin, uv_py, index.url, rounds, uv_cache))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    engine = rows[0]
    print()
    header = "%-34s %14s" % ("operation (median of %d)" % rounds, "uv-ffi")
    if len(rows) > 1:
        header += " %18s %8s" % ("uv pip (process)", "ratio")
    print(header)
    print("-" * len(header))
    for key in ("cold install (first call)", "warm swap", "warm no-op"):
        line = "%-34s %11.3f ms" % (key, engine[key])
        if len(rows) > 1:
            other = rows[1][key]
            line += " %15.3f ms %7.1fx" % (other, other / engine[key] if engine[key] else float("nan"))
        print(line)
    if len(rows) == 1:
        print("\n(the `uv` command was not found; install it with `pip install uv` to compare)")
    return 0


def _rows(install: Callable[[str], None], rounds: int) -> dict:
    """Time one tool: its first install, then warm swaps, then warm no-ops."""
    cold = timed(lambda: install("1.0.0"))
    swaps = [timed(lambda v=v: install(v)) for v in _alternate(rounds)]
    noops = [timed(lambda: install("1.0.0")) for _ in range(rounds)]
    return {
        "cold install (first call)": cold,
        "warm swap": statistics.median(swaps),
        "warm no-op": statistics.median(noops),
    }


def _engine_rows(python: str, url: str, rounds: int) -> dict:
    import uv_ffi

    base = "pip install --python %s -i %s " % (python, url)

    def install(version: str) -> None:
        uv_ffi.install(base + "demo-app==" + version)
        if not dist_info_present(python, "demo-app", version):
            raise AssertionError("demo-app %s is not on disk after the engine's install" % version)

    return _rows(install, rounds)


def _uv_rows(uv_bin: str, python: str, url: str, rounds: int, cache: str) -> dict:
    # uv has its own cache, cold for its first install like the engine's was.
    env = dict(os.environ, UV_CACHE_DIR=cache)

    def install(version: str) -> None:
        subprocess.run(
            [uv_bin, "pip", "install", "-q", "--python", python, "-i", url, "demo-app==" + version],
            check=True,
            env=env,
        )
        if not dist_info_present(python, "demo-app", version):
            raise AssertionError("demo-app %s is not on disk after uv's install" % version)

    return _rows(install, rounds)


def _alternate(rounds: int) -> List[str]:
    # Ends on 1.0.0 so the no-op rounds that follow ask for what is installed.
    return ["1.1.0" if i % 2 == 0 else "1.0.0" for i in range(rounds if rounds % 2 == 0 else rounds + 1)]
