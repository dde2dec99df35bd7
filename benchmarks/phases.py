"""Where a warm swap's time goes: median total and median per engine phase over N swaps of a
100-file package (hardlinks unless a link mode is given), then the median warm no-op, in one
process.

    python benchmarks/phases.py [N] [hardlink|copy|symlink|clone] [new|cold|new,cold]

``new``: the stash is emptied (untimed) before each swap, so that every swap links a version
that is not in it (the old one still goes to the stash). ``cold``: another process (a Python
that does nothing) runs, untimed, before each swap and each no-op, so that each call is timed as
the first one after other processes ran, with cold CPU caches, as ``compare.py`` times it.

``PHASES_TRACE=1`` also prints each swap: its total and engine time (us) and its phases.

To compare two builds of the library (an A/B run), point ``UV_FFI_LIBRARY`` at each in turn,
alternating runs: each run prints its own medians. For side-by-side figures with other tools,
use ``benchmarks/compare.py``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import swap_world  # noqa: E402
import uv_ffi  # noqa: E402
from uv_ffi import sample_index  # noqa: E402

VERSIONS = ("1.0.0", "2.0.0")


def main(swaps: int, link_mode: str = "hardlink", case: str = "") -> int:
    cases = set(case.split(",")) - {""}
    if cases - {"new", "cold"}:
        raise SystemExit("unknown case(s): %s" % ", ".join(sorted(cases - {"new", "cold"})))

    def other_process() -> None:
        if "cold" in cases:
            subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)

    root = tempfile.mkdtemp(prefix="uv-ffi-phases-")
    index_dir, python = swap_world.prepare(root, "swap-pkg", VERSIONS)
    with sample_index.StaticIndex(index_dir) as index:
        command = swap_world.install_command(python, index.url, link_mode, os.path.join(root, "cache"), "swap-pkg")
        for version in VERSIONS + VERSIONS[:1]:  # warm-up: first install, then each way once
            uv_ffi.install(command + version)
        totals: List[float] = []
        phases: Dict[str, List[int]] = defaultdict(list)
        for i in range(swaps):
            version = VERSIONS[(i + 1) % 2]
            if "new" in cases:
                uv_ffi.clear_stash(python)
            other_process()
            start = time.perf_counter()
            result = uv_ffi.install(command + version)
            totals.append(time.perf_counter() - start)
            if result.installed != (("swap-pkg", version),):
                raise SystemExit("wrong result: %r" % (result.installed,))
            if os.environ.get("PHASES_TRACE"): print(i, round(totals[-1] * 1e6), sum(us for _, us in result.timings_us), result.timings_us)
            for phase, us in result.timings_us:
                phases[phase].append(us)
        noops = []
        for _ in range(swaps if "cold" in cases else 200):
            other_process()
            start = time.perf_counter()
            uv_ffi.install(command + version)
            noops.append(time.perf_counter() - start)
    print("library: %s" % uv_ffi.library_path())
    print("swap median %.3f ms over %d swaps (%s%s)" % (
        statistics.median(totals) * 1e3, swaps, link_mode, "".join(", " + c for c in sorted(cases))))
    print("no-op median %.1f us" % (statistics.median(noops) * 1e6))
    print("phases (median us): " + ", ".join("%s %d" % (p, statistics.median(v)) for p, v in phases.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100, *sys.argv[2:4]))
