"""Fixtures: real wheels, a real index server (pypiserver) on 127.0.0.1, real virtual environments.

Everything is offline. The engine is process-wide, so its cache folder is chosen here, before
the first call starts it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Dict, List, Optional, Tuple

import pytest

_SESSION_DIR = tempfile.mkdtemp(prefix="uv-ffi-tests-")
os.environ["UV_CACHE_DIR"] = os.path.join(_SESSION_DIR, "cache")
# An unreachable index should fail after one quick retry, not several slow ones.
os.environ.setdefault("UV_HTTP_RETRIES", "1")

from uv_ffi import sample_index  # noqa: E402  (after the environment is set)

#: (name, version, requirements, extras) of the packages every test can install.
PACKAGES: List[Tuple[str, str, List[str], Dict[str, List[str]]]] = [
    ("alpha", "1.0", [], {}),
    ("alpha", "1.1", [], {}),
    ("alpha", "2.0", [], {}),
    ("beta", "1.0", ["alpha>=1.0"], {}),
    ("beta", "2.0", ["alpha>=2.0"], {}),
    ("gamma", "1.0", [], {"fancy": ["delta"]}),
    ("delta", "1.0", [], {}),
    ("pre-pkg", "1.0", [], {}),
    ("pre-pkg", "2.0b1", [], {}),
    ("Mixed_Case.Name", "1.0", [], {}),
    ("zeta", "1.0", [], {}),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def session_dir() -> str:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def wheelhouse(session_dir) -> str:
    """A flat folder of wheels (also usable as a ``--find-links`` location)."""
    folder = os.path.join(session_dir, "wheels")
    for name, version, requires, extras in PACKAGES:
        sample_index.build_wheel(folder, name, version, requires, extras)
    return folder


class IndexServer:
    """pypiserver serving a folder of wheels on 127.0.0.1; wheels can be published while it runs."""

    def __init__(self, packages_dir: str, log_path: str) -> None:
        self.packages_dir = packages_dir
        self.port = free_port()
        self.url = "http://127.0.0.1:%d/simple/" % self.port
        exe = shutil.which("pypi-server") or os.path.join(os.path.dirname(sys.executable), "pypi-server")
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            [
                exe, "run", "-p", str(self.port), "-i", "127.0.0.1", "-a", ".", "-P", ".",
                "--disable-fallback", "--backend", "simple-dir", packages_dir,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=2).read()
                break
            except Exception:
                if self.process.poll() is not None or time.time() > deadline:
                    raise RuntimeError("pypiserver did not start; see %s" % log_path)
                time.sleep(0.1)

    def publish(self, wheel: str) -> None:
        shutil.copy(wheel, self.packages_dir)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="session")
def index(session_dir, wheelhouse):
    packages = os.path.join(session_dir, "index-packages")
    shutil.copytree(wheelhouse, packages)
    server = IndexServer(packages, os.path.join(session_dir, "pypiserver.log"))
    yield server
    server.stop()


class Venv:
    """A real virtual environment and what is on its disk."""

    def __init__(self, root: str) -> None:
        self.root = root
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", root], check=True)
        self.python = os.path.join(root, "bin", "python")
        self.site_packages = subprocess.run(
            [self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()

    def dist_infos(self) -> List[str]:
        """Sorted ``.dist-info`` folder names in site-packages."""
        return sorted(e for e in os.listdir(self.site_packages) if e.endswith(".dist-info"))

    def listing(self) -> List[str]:
        return sorted(os.listdir(self.site_packages))

    def has(self, name: str, version: str) -> bool:
        return os.path.isdir(os.path.join(self.site_packages, "%s-%s.dist-info" % (name, version)))

    def metadata_version(self, name: str) -> Optional[str]:
        """What the environment's own Python reports through importlib.metadata."""
        code = (
            "import importlib.metadata as m, sys\n"
            "try:\n    print(m.version(sys.argv[1]))\n"
            "except m.PackageNotFoundError:\n    print('')\n"
        )
        out = subprocess.run([self.python, "-I", "-c", code, name], check=True, capture_output=True, text=True)
        return out.stdout.strip() or None

    def installed(self) -> Dict[str, str]:
        """Every distribution the environment's Python sees, normalised name -> version."""
        code = (
            "import importlib.metadata as m, re\n"
            "for d in m.distributions():\n"
            "    print(re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(), d.version)\n"
        )
        out = subprocess.run([self.python, "-I", "-c", code], check=True, capture_output=True, text=True)
        return dict(line.split(" ", 1) for line in out.stdout.splitlines() if line)


@pytest.fixture
def make_venv(tmp_path):
    counter = [0]

    def factory() -> Venv:
        counter[0] += 1
        return Venv(str(tmp_path / ("venv%d" % counter[0])))

    return factory


@pytest.fixture
def venv(make_venv) -> Venv:
    return make_venv()
