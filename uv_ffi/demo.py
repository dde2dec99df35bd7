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

import base64
import hashlib
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

#: The demo's packages: (name, version, requirements). Dependencies between them are real.
DEMO_PACKAGES = [
    ("demo-core", "1.0.0", []),
    ("demo-core", "1.1.0", []),
    ("demo-util", "1.0.0", ["demo-core>=1.0"]),
    ("demo-util", "2.0.0", ["demo-core>=1.1"]),
    ("demo-app", "1.0.0", ["demo-util>=1.0", "demo-core"]),
    ("demo-app", "1.1.0", ["demo-util>=2.0", "demo-core>=1.1"]),
]


def build_wheel(dest: str, name: str, version: str, requires: List[str], payload_files: int = 20) -> str:
    """Write a real ``py3-none-any`` wheel: a package with ``payload_files`` modules, METADATA,
    WHEEL and a RECORD with sha256 hashes."""
    os.makedirs(dest, exist_ok=True)
    dist = name.replace("-", "_")
    info = "%s-%s.dist-info" % (dist, version)
    meta = ["Metadata-Version: 2.1", "Name: " + name, "Version: " + version]
    meta += ["Requires-Dist: " + r for r in requires]
    files = [("%s/__init__.py" % dist, ("__version__ = %r\n" % version).encode())]
    files += [("%s/mod%d.py" % (dist, i), ("VALUE = %d\n" % i).encode()) for i in range(1, payload_files)]
    files.append((info + "/METADATA", ("\n".join(meta) + "\n").encode()))
    files.append((info + "/WHEEL", b"Wheel-Version: 1.0\nGenerator: uv-ffi-demo\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
    record = []
    for path, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (path, digest, len(data)))
    files.append((info + "/RECORD", ("\n".join(record + [info + "/RECORD,,"]) + "\n").encode()))
    path = os.path.join(dest, "%s-%s-py3-none-any.whl" % (dist, version))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in files:
            archive.writestr(zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return path


def write_simple_index(root: str) -> None:
    """A PEP 503 index of the wheels in ``root``: ``root/simple/<name>/index.html``."""
    by_name: dict = {}
    for wheel in sorted(f for f in os.listdir(root) if f.endswith(".whl")):
        by_name.setdefault(wheel.split("-")[0].replace("_", "-"), []).append(wheel)
    for name, wheels in by_name.items():
        os.makedirs(os.path.join(root, "simple", name))
        links = []
        for wheel in wheels:
            with open(os.path.join(root, wheel), "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
            links.append('<a href="../../%s#sha256=%s">%s</a><br/>' % (wheel, digest, wheel))
        with open(os.path.join(root, "simple", name, "index.html"), "w") as handle:
            handle.write("<!DOCTYPE html><html><body>\n%s\n</body></html>\n" % "\n".join(links))


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def end_headers(self):
        self.send_header("Cache-Control", "max-age=600")  # as PyPI's simple pages
        super().end_headers()


def serve(root: str) -> ThreadingHTTPServer:
    """Serve ``root`` on 127.0.0.1 (a free port) from a daemon thread; ``.shutdown()`` stops it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


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
    wheels = os.path.join(workdir, "index")
    for name, version, requires in DEMO_PACKAGES:
        build_wheel(wheels, name, version, requires)
    write_simple_index(wheels)
    engine_py = make_venv(os.path.join(workdir, "venv-engine"))
    uv_py = make_venv(os.path.join(workdir, "venv-uv"))
    uv_bin = find_uv()
    rows = []
    try:
        server = serve(wheels)
        url = "http://127.0.0.1:%d/simple/" % server.server_address[1]
        try:
            rows.append(_engine_rows(engine_py, url, rounds))
            if uv_bin:
                rows.append(_uv_rows(uv_bin, uv_py, url, rounds, os.path.join(workdir, "cache-uv")))
        finally:
            server.shutdown()
            server.server_close()
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
