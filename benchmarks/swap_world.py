"""What ``phases.py`` and ``hot_session.py`` swap: a package in two versions of 100 files each,
served by a local index, and a new virtual environment."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Sequence, Tuple

from uv_ffi import sample_index


def prepare(root: str, name: str, versions: Sequence[str]) -> Tuple[str, str]:
    """Build the wheels and their index, and a virtual environment, under ``root``: returns the
    index's folder (serve it with ``sample_index.StaticIndex``) and the environment's Python."""
    wheels = [sample_index.build_wheel(os.path.join(root, "wheels"), name, v, payload_files=100)
              for v in versions]
    index = os.path.join(root, "index")
    sample_index.write_simple_index(index, wheels)
    venv = os.path.join(root, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    return index, os.path.join(venv, "bin", "python")


def install_command(python: str, index_url: str, link_mode: str, cache: str, name: str) -> str:
    """``pip install`` of ``name`` into that environment, to be followed by ``==<version>``."""
    return "pip install --python %s -i %s --link-mode %s --cache-dir %s %s==" % (
        python, index_url, link_mode, cache, name)
