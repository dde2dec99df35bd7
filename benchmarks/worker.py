"""A warm in-process worker for the benchmark: imports ``uv_ffi`` once, then times calls.

Runs under the Python of the tool being measured (this project's package, or the upstream
``uv-ffi`` in its own virtual environment; both import as ``uv_ffi`` and share the tuple API).
Protocol: one JSON request per line on stdin, one JSON reply per line on stdout.
"""

import json
import os
import sys
import time

# Replies go to a private copy of stdout; anything a native library prints goes to stderr.
_protocol = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)

_start = time.perf_counter()
import uv_ffi  # noqa: E402

IMPORT_MS = (time.perf_counter() - _start) * 1000.0


def rss_kib():
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def rss_by_mapping():
    """Resident KiB by what is mapped: a file's base name, ``[heap]``, ``[anon]`` (thread arenas,
    stacks, Python's own allocations)..., as ``/proc/self/smaps`` shows them."""
    kib = {}
    name = None
    with open("/proc/self/smaps") as handle:
        for line in handle:
            words = line.split()
            if words and "-" in words[0] and not words[0].endswith(":"):
                name = os.path.basename(words[5]) if len(words) > 5 else "[anon]"
            elif words and words[0] == "Rss:":
                kib[name] = kib.get(name, 0) + int(words[1])
    return kib


def anon_mappings():
    """Resident KiB of each anonymous mapping over 256 KiB, largest first (arenas, stacks)."""
    sizes = []
    with open("/proc/self/smaps") as handle:
        anon = False
        for line in handle:
            words = line.split()
            if words and "-" in words[0] and not words[0].endswith(":"):
                anon = len(words) <= 5
            elif anon and words and words[0] == "Rss:" and int(words[1]) > 256:
                sizes.append(int(words[1]))
    return sorted(sizes, reverse=True)


def timed_us(action, repeat):
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def handle(request):
    op = request["op"]
    if op == "hello":
        return {"import_ms": IMPORT_MS, "version": getattr(uv_ffi, "__version__", "upstream")}
    if op == "run":
        if hasattr(uv_ffi, "install"):
            # This project's typed API also reports where the engine spent its time; the
            # callbacks (this project only) are timed with hosts' cheapest: do nothing.
            options = {}
            if request.get("progress"):
                options["progress"] = lambda event: None
            if request.get("plan"):
                options["on_plan"] = lambda plan: False
            start = time.perf_counter()
            try:
                result = uv_ffi.install(request["cmd"], **options)
            except uv_ffi.UvFfiError as exc:
                return {"ms": (time.perf_counter() - start) * 1000.0, "rc": exc.exit_code, "error": exc.message}
            elapsed = (time.perf_counter() - start) * 1000.0
            return {"ms": elapsed, "rc": 0, "installed": result.installed, "removed": result.removed,
                    "error": "", "phases": dict(result.timings_us)}
        start = time.perf_counter()
        outcome = uv_ffi.run(request["cmd"])
        elapsed = (time.perf_counter() - start) * 1000.0
        code, installed, removed = outcome[0], outcome[1], outcome[2]
        error = outcome[3] if len(outcome) > 3 else ""
        return {"ms": elapsed, "rc": code, "installed": installed, "removed": removed, "error": error}
    if op == "run_repeat":
        samples = []
        for _ in range(request["n"]):
            start = time.perf_counter()
            outcome = uv_ffi.run(request["cmd"])
            samples.append((time.perf_counter() - start) * 1000.0)
            if outcome[0] != 0:
                return {"ms": samples, "rc": outcome[0], "error": outcome[3] if len(outcome) > 3 else ""}
        return {"ms": samples, "rc": 0, "error": ""}
    if op == "read":
        # A command whose purpose is output: timed, and what it printed returned for checking.
        start = time.perf_counter()
        result = uv_ffi.install(request["cmd"])
        return {"ms": (time.perf_counter() - start) * 1000.0, "stdout": result.stdout}
    if op == "view":
        return {"us": timed_us(uv_ffi.get_site_packages_cache, request.get("repeat", 1)),
                "view": uv_ffi.get_site_packages_cache()}
    if op == "patch":
        pairs = [list(p) for p in request["installed"]]
        return {"us": timed_us(lambda: uv_ffi.patch_site_packages_cache(pairs, []), request.get("repeat", 1))}
    if op == "invalidate":
        return {"us": timed_us(uv_ffi.invalidate_site_packages_cache, 1)}
    if op == "counters":
        # This project only: the engine's counters for one environment (resolutions_reused...).
        return {"counters": uv_ffi.get_counters(python=request["python"])}
    if op == "clear_stash":
        # This project only: empty the environment's stash (untimed by the caller's rounds), so
        # that the next swap finds the version it installs not there and links it as uv would.
        start = time.perf_counter()
        cleared = uv_ffi.clear_stash(request["python"])
        return {"cleared": cleared, "us": (time.perf_counter() - start) * 1e6}
    if op == "rss":
        return {"kib": rss_kib(), "by_mapping": rss_by_mapping(), "threads": len(os.listdir("/proc/self/task")),
                "anon": anon_mappings()}
    raise ValueError("unknown op %r" % op)


def main():
    for line in sys.stdin:
        try:
            reply = handle(json.loads(line))
        except Exception as exc:  # report, keep serving
            reply = {"exception": "%s: %s" % (type(exc).__name__, exc)}
        _protocol.write(json.dumps(reply) + "\n")
        _protocol.flush()


if __name__ == "__main__":
    main()
