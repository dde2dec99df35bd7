"""Small real wheels and a real package index on 127.0.0.1, with no network.

Used by ``python -m uv_ffi demo``, the tests and the benchmarks. The wheels are ordinary
``py3-none-any`` wheels (METADATA, WHEEL, RECORD with sha256 hashes, a module that knows its
version); the index is a PEP 503 simple index of static files served over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Iterable, List, Optional, Sequence, Tuple


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(
    dest: str,
    name: str,
    version: str,
    requires: Sequence[str] = (),
    extras: Optional[Dict[str, Sequence[str]]] = None,
    payload_files: int = 1,
) -> str:
    """Write ``{name}-{version}-py3-none-any.whl`` into ``dest`` and return its path.

    The wheel holds a package ``{name}`` whose ``__version__`` is ``version``, plus
    ``payload_files - 1`` extra modules (to give installs a realistic number of files).
    """
    os.makedirs(dest, exist_ok=True)
    dist = re.sub(r"[-_.]+", "_", name)
    module = dist.lower()
    dist_info = "%s-%s.dist-info" % (dist, version)
    metadata = ["Metadata-Version: 2.1", "Name: %s" % name, "Version: %s" % version]
    for requirement in requires:
        metadata.append("Requires-Dist: %s" % requirement)
    for extra, reqs in (extras or {}).items():
        metadata.append("Provides-Extra: %s" % extra)
        for requirement in reqs:
            metadata.append('Requires-Dist: %s ; extra == "%s"' % (requirement, extra))
    files: List[Tuple[str, bytes]] = [
        ("%s/__init__.py" % module, ("__version__ = %r\n" % version).encode()),
    ]
    for index in range(1, payload_files):
        files.append(("%s/mod%d.py" % (module, index), ("VALUE = %d\n" % index).encode()))
    files.append(("%s/METADATA" % dist_info, ("\n".join(metadata) + "\n").encode()))
    files.append(
        (
            "%s/WHEEL" % dist_info,
            b"Wheel-Version: 1.0\nGenerator: uv-ffi-sample\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
    )
    record = ["%s,%s,%d" % (path, _record_hash(data), len(data)) for path, data in files]
    record.append("%s/RECORD,," % dist_info)
    files.append(("%s/RECORD" % dist_info, ("\n".join(record) + "\n").encode()))

    path = os.path.join(dest, "%s-%s-py3-none-any.whl" % (dist, version))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in files:
            info = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return path


def write_simple_index(root: str, wheels: Iterable[str]) -> None:
    """(Re)write a PEP 503 tree under ``root``: ``simple/<name>/index.html`` linking to
    ``files/<wheel>`` with sha256 fragments. Wheels are copied into ``root/files``."""
    files_dir = os.path.join(root, "files")
    os.makedirs(files_dir, exist_ok=True)
    by_name: Dict[str, List[str]] = {}
    for wheel in wheels:
        base = os.path.basename(wheel)
        target = os.path.join(files_dir, base)
        if os.path.abspath(wheel) != os.path.abspath(target):
            with open(wheel, "rb") as src, open(target, "wb") as dst:
                dst.write(src.read())
        by_name.setdefault(normalize(base.split("-")[0]), []).append(base)
    # Keep wheels already published under root.
    for base in os.listdir(files_dir):
        names = by_name.setdefault(normalize(base.split("-")[0]), [])
        if base not in names:
            names.append(base)
    simple = os.path.join(root, "simple")
    os.makedirs(simple, exist_ok=True)
    links = []
    for name in sorted(by_name):
        links.append('<a href="%s/">%s</a>' % (name, name))
        project = os.path.join(simple, name)
        os.makedirs(project, exist_ok=True)
        rows = []
        for base in sorted(by_name[name]):
            with open(os.path.join(files_dir, base), "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
            rows.append(
                '<a href="../../files/%s#sha256=%s">%s</a><br/>'
                % (html.escape(base), digest, html.escape(base))
            )
        _write_atomic(
            os.path.join(project, "index.html"),
            "<!DOCTYPE html><html><body>\n%s\n</body></html>\n" % "\n".join(rows),
        )
    _write_atomic(
        os.path.join(simple, "index.html"),
        "<!DOCTYPE html><html><body>\n%s\n</body></html>\n" % "\n".join(links),
    )


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


class _QuietHandler(SimpleHTTPRequestHandler):
    cache_control = "max-age=600"

    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        pass

    def end_headers(self):
        self.send_header("Cache-Control", self.cache_control)
        super().end_headers()


class StaticIndex:
    """Serve a folder over HTTP on 127.0.0.1 (a free port) from a background thread.

    Pages carry ``Cache-Control: max-age=600`` by default, as PyPI's simple pages do, so HTTP
    caches (uv's included) may reuse them for ten minutes.
    """

    def __init__(self, root: str, cache_control: str = "max-age=600") -> None:
        self.root = root
        handler_class = type("Handler", (_QuietHandler,), {"cache_control": cache_control})
        handler = partial(handler_class, directory=root)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/simple/" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "StaticIndex":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


#: The demo's packages: (name, version, requirements). Dependencies between them are real.
DEMO_PACKAGES = [
    ("demo-core", "1.0.0", []),
    ("demo-core", "1.1.0", []),
    ("demo-util", "1.0.0", ["demo-core>=1.0"]),
    ("demo-util", "2.0.0", ["demo-core>=1.1"]),
    ("demo-app", "1.0.0", ["demo-util>=1.0", "demo-core"]),
    ("demo-app", "1.1.0", ["demo-util>=2.0", "demo-core>=1.1"]),
]


def build_demo_wheels(dest: str, payload_files: int = 20) -> List[str]:
    return [build_wheel(dest, n, v, r, payload_files=payload_files) for n, v, r in DEMO_PACKAGES]
