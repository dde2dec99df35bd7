"""What a call costs on cold CPU caches before the engine does any work, beside the warm no-op.

    python benchmarks/cold_floor.py [N]

Each figure is the median of N (default 30) single calls, each timed right after another
process (a Python that does nothing) ran, as ``compare.py`` times the first call after other
tools: a plain Python function call, the cheapest call into the library through cffi
(``uv_ffi_string_free(NULL)``), the smallest JSON-in / JSON-out call (``uv_ffi_info``),
``json.loads`` of a no-op's reply and the facade's own decoding of it (``_native._loads``),
and then the warm no-op itself (``uv_ffi.install`` of a satisfied request), with the part of it
spent inside the library.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import uv_ffi  # noqa: E402
from uv_ffi import _native, sample_index  # noqa: E402


def other_process() -> None:
    subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)


def cold_us(action: Callable[[], object], rounds: int) -> float:
    samples: List[float] = []
    for _ in range(rounds):
        other_process()
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def python_call() -> tuple:
    return tuple((key, value) for key, value in {"a": 1}.items())


def main(rounds: int) -> int:
    ffi, lib = _native.ffi, _native.lib
    root = tempfile.mkdtemp(prefix="uv-ffi-cold-floor-")
    wheel = sample_index.build_wheel(os.path.join(root, "wheels"), "floor-pkg", "1.0.0", payload_files=10)
    sample_index.write_simple_index(os.path.join(root, "index"), [wheel])
    venv = os.path.join(root, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    with sample_index.StaticIndex(os.path.join(root, "index")) as index:
        command = "pip install --python %s -i %s --cache-dir %s floor-pkg==1.0.0" % (
            os.path.join(venv, "bin", "python"), index.url, os.path.join(root, "cache"))
        uv_ffi.install(command)
        pointer = lib.uv_ffi_run(uv_ffi._request(command, True, None, False, False))
        reply = ffi.string(pointer)
        lib.uv_ffi_string_free(pointer)

        def info() -> None:
            lib.uv_ffi_string_free(lib.uv_ffi_info(b"{}"))

        results: List[uv_ffi.RunResult] = []

        def noop() -> None:
            results.append(uv_ffi.install(command))

        figures: Dict[str, float] = {
            "a Python function call": cold_us(python_call, rounds),
            "an empty call through cffi": cold_us(lambda: lib.uv_ffi_string_free(ffi.NULL), rounds),
            "the smallest JSON round trip (uv_ffi_info)": cold_us(info, rounds),
            "json.loads of a no-op's reply (%d bytes)" % len(reply): cold_us(lambda: json.loads(reply), rounds),
            "the facade's decoding of that reply": cold_us(lambda: _native._loads(reply), rounds),
            "the warm no-op (uv_ffi.install)": cold_us(noop, rounds),
        }
    print("library: %s; medians of %d calls, each after another process ran" % (uv_ffi.library_path(), rounds))
    for name, us in figures.items():
        print("%-48s %7.1f us" % (name, us))
    print("%-48s %7.1f us" % ("  of which the engine's phases", statistics.median(sum(us for _, us in result.timings_us) for result in results)))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 30))
