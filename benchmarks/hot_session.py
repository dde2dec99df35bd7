"""A host's steady state, for profiling: after a warm-up (first install, a swap each way, so
the stash holds both versions), prints ``ready`` and waits for a line on stdin; then runs
``--rounds`` rounds of a warm no-op, a swap back from the stash, a no-op and the swap back,
prints ``done`` and exits.

    python benchmarks/hot_session.py [--rounds N] [--link-mode MODE]

``link_order.py`` runs it under callgrind with instrumentation off until ``ready``, so the
profile holds only the calls a host repeats: the code to lay out first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import swap_world  # noqa: E402
import uv_ffi  # noqa: E402
from uv_ffi import sample_index  # noqa: E402

VERSIONS = ("1.0.0", "2.0.0")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--link-mode", default="hardlink")
    parser.add_argument("--no-ops-only", action="store_true", help="repeat the no-op alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="uv-ffi-hot-") as root:
        index_dir, python = swap_world.prepare(root, "hot-pkg", VERSIONS)
        with sample_index.StaticIndex(index_dir) as index:
            command = swap_world.install_command(
                python, index.url, args.link_mode, os.path.join(root, "cache"), "hot-pkg")
            for version in VERSIONS + VERSIONS:
                uv_ffi.install(command + version)
                uv_ffi.install(command + version)
            print("ready", flush=True)
            sys.stdin.readline()
            for _ in range(args.rounds if args.no_ops_only else 0):
                uv_ffi.install(command + VERSIONS[-1])
            for _ in range(0 if args.no_ops_only else args.rounds):
                for version in VERSIONS:
                    result = uv_ffi.install(command + version)
                    if result.installed != (("hot-pkg", version),):
                        raise SystemExit("expected a swap to %s, got %r" % (version, result))
                    uv_ffi.install(command + version)
            print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
