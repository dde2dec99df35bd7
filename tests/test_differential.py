"""The engine against the ``uv`` 0.12.5 binary, one command line at a time.

For every case, two fresh virtual environments (same base interpreter) get the same starting
state (set up by the ``uv`` binary); then the same words run once in-process through
``uv_ffi.run`` and once as ``uv <words>`` in a subprocess, each with its own ``--cache-dir``, the
same working folder (no pyproject.toml) and the same environment: no ``UV_*`` variable but the
case's (the engine keeps conftest's UV_CACHE_DIR, which ``--cache-dir`` overrides), and a proxy
that does not exist for any host but 127.0.0.1. Caches are either fresh, or each side's own
long-lived cache, warmed once identically by the uv binary and then used by that side only.
Compared:

- the exit code (uv's is also checked against the table, so no case passes by failing on both
  sides for a reason nobody meant);
- on disk: every ``.dist-info`` (name, version, RECORD paths, INSTALLER, REQUESTED,
  direct_url.json) and every file of the environment, ``--target`` and ``--prefix`` folders (kind,
  mode and path-normalised content);
- on success: the engine's ``installed``/``removed`` against uv's `` + `` / `` - `` / `` ~ `` lines;
- on failure: uv's first ``error:`` / ``  ×`` line must appear in the engine's error text.

Everything is served from 127.0.0.1: conftest's pypiserver index (plus the sdists and wheels
published here) and ``diffkit.py serve`` children (JSON pages with upload times, basic auth,
TLS with a trustme CA).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Tuple

import pytest

import diffkit
import uv_ffi
from conftest import free_port
from uv_ffi.demo import find_uv

UV = find_uv()
SIDES = ("engine", "uvtool")  # same length: paths embedded in files keep their byte length

#: A port nothing listens on. Both sides get it as their HTTP(S) proxy for every host but
#: 127.0.0.1, so a command that goes astray (say, to pypi.org) fails fast instead of going out.
NOWHERE = "http://127.0.0.1:%d" % free_port()
GUARD_ENV = {
    name: NOWHERE
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
}
GUARD_ENV.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")


# ---------------------------------------------------------------------------------------------
# The cases


@dataclass(frozen=True)
class Case:
    #: Words after ``pip <command> --python {py} --cache-dir {cache}``; ``{name}`` placeholders
    #: are filled per side (py, venv, target, prefix) or from the shared world (index, work, ...).
    words: str
    #: uv's exit code for these words.
    code: int = 0
    command: str = "install"
    #: ``UV_*`` (and other) variables for both sides; no other ``UV_*`` variable is set.
    env: Dict[str, str] = field(default_factory=dict)
    #: ``uv pip install`` words run by the uv binary on both sides first (with ``-i {index}``).
    setup: Tuple[str, ...] = ()
    #: "fresh": an empty cache folder; "warm": each side's long-lived cache (warmed once,
    #: identically, by the uv binary; then used by that side only, case after case).
    cache: str = "fresh"
    cwd: str = "{work}"
    #: Text both uv's stderr and the engine's error must contain (case-insensitive).
    mentions: str = ""


def C(case_id: str, words: str, code: int = 0, **options) -> "pytest.ParameterSet":
    return pytest.param(Case(words, code, **options), id=case_id)


def U(case_id: str, words: str, code: int = 0, **options) -> "pytest.ParameterSet":
    return C(case_id, words, code, command="uninstall", **options)


TLS_ENV = {"UV_HTTP_TIMEOUT": "5", "UV_HTTP_RETRIES": "0"}
SEEDED = ("alpha==1.0 beta==1.0",)

CASES = [
    # Indexes and index strategies ({mirror} holds alpha 1.0 only).
    C("index-url-short", "-i {index} beta==1.0"),
    C("index-url-long", "--index-url {index} alpha==1.1"),
    C("default-index", "--default-index {index} beta"),
    C("index-before-default-index", "--index {mirror} --default-index {index} alpha"),
    C("first-index-hides-later-versions", "--index {mirror} --default-index {index} 'alpha>=2'", 1),
    C("extra-index-url", "-i {index} --extra-index-url {mirror} alpha"),
    C("index-strategy-first-index",
      "--index-strategy first-index -i {index} --extra-index-url {mirror} beta==2.0", 1),
    C("index-strategy-unsafe-first-match",
      "--index-strategy unsafe-first-match -i {index} --extra-index-url {mirror} beta==2.0"),
    C("index-strategy-unsafe-best-match",
      "--index-strategy unsafe-best-match -i {index} --extra-index-url {mirror} alpha"),
    C("index-strategy-invalid", "--index-strategy best -i {index} alpha", 2),
    C("find-links-no-index", "--no-index -f {wheels} beta==2.0"),
    C("find-links-long-with-index", "--find-links {wheels} -i {mirror} alpha"),
    C("find-links-missing-folder", "--no-index -f {work}/no-such-folder alpha", 2),
    C("no-index-finds-nothing", "--no-index -i {down} alpha", 1),
    C("index-down", "-i {down} alpha", 2, env={"UV_HTTP_RETRIES": "0"}),
    C("keyring-provider-disabled", "--keyring-provider disabled -i {index} alpha"),
    C("keyring-provider-invalid", "--keyring-provider magic -i {index} alpha", 2),
    C("allow-insecure-host", "--allow-insecure-host 127.0.0.1 -i {index} alpha"),
    # Resolution.
    C("exclude-newer-date", "--exclude-newer 2022-06-01 -i {timed} beta"),
    C("exclude-newer-timestamp", "--exclude-newer 2021-06-01T00:00:00Z -i {timed} alpha"),
    C("exclude-newer-invalid", "--exclude-newer notadate -i {index} alpha", 2),
    C("exclude-newer-without-upload-times", "--exclude-newer 2030-01-01 -i {index} alpha", 1),
    C("resolution-lowest", "--resolution lowest -i {index} beta"),
    C("resolution-lowest-direct", "--resolution lowest-direct -i {index} beta"),
    C("resolution-highest", "--resolution highest -i {index} beta"),
    C("resolution-invalid", "--resolution best -i {index} beta", 2),
    C("prerelease-allow", "--prerelease allow -i {index} pre-pkg"),
    C("pre", "--pre -i {index} pre-pkg"),
    C("prerelease-explicit", "--prerelease explicit -i {index} pre-pkg"),
    C("prerelease-package", "--prerelease-package pre-pkg=allow -i {index} pre-pkg alpha"),
    C("prerelease-package-invalid", "--prerelease-package pre-pkg -i {index} pre-pkg", 2),
    C("no-deps", "--no-deps -i {index} beta==2.0"),
    C("extra-in-brackets", "-i {index} 'gamma[fancy]'"),
    C("unnormalised-name", "-i {index} MIXED-case_name==1.0"),
    C("local-wheel-path", "-i {index} {wheels}/alpha-1.1-py3-none-any.whl"),
    C("console-script", "-i {index} clitool"),
    C("python-version", "--python-version 3.12 -i {index} pyver"),
    C("python-version-too-old", "--python-version 3.7 -i {index} pyver", 1),
    C("python-version-invalid", "--python-version abc -i {index} pyver", 2),
    C("python-platform", "--python-platform windows -i {index} platpkg"),
    C("python-platform-invalid", "--python-platform beos -i {index} platpkg", 2),
    # Failures.
    C("no-package-named", "", 2),
    C("unknown-flag", "--frobnicate -i {index} alpha", 2),
    C("unknown-package", "-i {index} no-such-package", 1),
    C("unsatisfiable", "-i {index} alpha==9.9", 1),
    C("conflict", "-i {index} beta==2.0 alpha==1.0", 1),
    C("malformed-requirement", "-i {index} 'alpha=='", 2),
    # Cache.
    C("cache-dir-warm", "-i {index} 'gamma[fancy]'", cache="warm"),
    C("no-cache-short", "-n -i {index} beta"),
    C("no-cache-long", "--no-cache -i {index} alpha==1.0", cache="warm"),
    C("refresh", "--refresh -i {index} beta==1.0", cache="warm"),
    C("refresh-package", "--refresh-package alpha -i {index} beta==1.0", cache="warm"),
    C("offline-warm-cache", "--offline -i {index} beta==2.0", cache="warm"),
    C("offline-cold-cache", "--offline -i {index} alpha", 1),
    # Wheels, sdists and builds.
    C("only-binary-all-refuses-sdist", "--only-binary :all: -i {index} tinysdist", 1),
    C("only-binary-none", "--only-binary :none: -i {index} hybrid", cache="warm"),
    C("only-binary-name", "--only-binary hybrid -i {index} hybrid tinysdist"),
    C("no-binary-name-builds", "--no-binary hybrid -i {index} hybrid"),
    C("no-binary-all-without-sdist", "--no-binary :all: -i {index} alpha", 1),
    C("no-build-refuses-sdist", "--no-build -i {index} tinysdist", 1),
    C("no-build-with-wheels", "--no-build -i {index} beta", cache="warm"),
    C("sdist-from-index", "-i {index} tinysdist"),
    C("local-sdist-file", "-i {index} {extra}/tinysdist-1.0.tar.gz"),
    C("local-project", "-i {index} ./proj"),
    C("editable-short", "-i {index} -e ./proj"),
    C("editable-long", "-i {index} --editable {work}/proj"),
    C("tool-uv-sources", "-i {index} ./srcproj"),
    C("no-sources", "--no-sources -i {index} ./srcproj"),
    C("config-setting-short", "-C flavor=spicy -i {index} tinysdist"),
    C("config-settings-long", "--config-settings flavor=mild -i {index} ./proj"),
    C("no-build-isolation-without-backend", "--no-build-isolation -i {index} tinysdist", 1),
    C("no-build-isolation-with-backend", "--no-build-isolation -i {index} tinysdist",
      setup=("tinybackend",)),
    # An environment that already has packages.
    C("already-satisfied", "-i {index} 'alpha>=1,<3'", setup=SEEDED),
    C("swap-version", "-i {index} alpha==1.1", setup=SEEDED),
    C("upgrade-short", "-U -i {index} alpha", setup=SEEDED),
    C("upgrade-long", "--upgrade -i {index} beta", setup=SEEDED),
    C("upgrade-package-short", "-P alpha -i {index} alpha beta", setup=SEEDED),
    C("upgrade-package-long", "--upgrade-package beta -i {index} beta", setup=SEEDED),
    C("reinstall", "--reinstall -i {index} alpha==1.0", setup=SEEDED, cache="warm"),
    C("reinstall-package", "--reinstall-package beta -i {index} beta", setup=SEEDED, cache="warm"),
    C("force-reinstall", "--force-reinstall -i {index} beta==1.0", setup=SEEDED, cache="warm"),
    C("exact", "--exact -i {index} beta==1.0 delta", setup=("alpha==1.0 zeta",)),
    C("strict-missing-dependency", "--strict --no-deps -i {index} beta==1.0"),
    C("strict-complete", "--strict -i {index} beta==1.0"),
    C("dry-run", "--dry-run -i {index} beta==2.0", setup=SEEDED),
    # Requirement, constraint, override and exclude files; pyproject.toml extras.
    C("requirements-short", "-r {work}/requirements.txt -i {index}"),
    C("requirements-long-with-constraints",
      "--requirements {work}/requirements.txt -c {work}/constraints.txt -i {index}"),
    C("constraints-long", "--constraints {work}/constraints.txt -i {index} beta"),
    C("overrides", "--overrides {work}/overrides.txt -i {index} beta==2.0"),
    C("excludes", "--excludes {work}/excludes.txt -i {index} beta==2.0"),
    C("require-hashes", "--require-hashes -r {work}/hashed.txt -i {index}"),
    C("hashes-without-require-hashes", "-r {work}/hashed.txt -i {index}"),
    C("bad-hash", "--require-hashes -r {work}/badhash.txt -i {index}", 1),
    C("require-hashes-unpinned", "--require-hashes -r {work}/requirements.txt -i {index}", 2),
    C("missing-requirements-file", "-r {work}/no-such-file.txt -i {index}", 2),
    C("pyproject-extra", "-r {work}/app/pyproject.toml --extra fancy -i {index}"),
    C("pyproject-all-extras", "-r {work}/app/pyproject.toml --all-extras -i {index}"),
    C("pyproject-unknown-extra", "-r {work}/app/pyproject.toml --extra nosuch -i {index}", 2),
    C("extra-without-pyproject", "--extra fancy -i {index} gamma", 2),
    # Where and how files land.
    C("target", "--target {target} -i {index} beta==2.0", setup=("alpha==1.0",)),
    C("prefix", "--prefix {prefix} -i {index} beta==2.0"),
    C("compile-bytecode", "--compile-bytecode -i {index} beta"),
    C("link-mode-copy", "--link-mode copy -i {index} beta"),
    # Copy mode stages each wheel's files once and links them from there (staging.rs): the
    # same end state as uv's copy mode, files included, for each shape of install.
    C("link-mode-copy-swap", "--link-mode copy -i {index} alpha==1.1", setup=SEEDED),
    C("link-mode-copy-console-script", "--link-mode copy -i {index} clitool"),
    C("link-mode-copy-editable", "--link-mode copy -i {index} -e ./proj"),
    C("link-mode-copy-target", "--link-mode copy --target {target} -i {index} beta==2.0"),
    C("link-mode-copy-reinstall", "--link-mode copy --reinstall -i {index} alpha==1.0", setup=SEEDED,
      cache="warm"),
    C("link-mode-hardlink", "--link-mode hardlink -i {index} beta"),
    C("link-mode-symlink", "--link-mode symlink -i {index} beta"),
    C("link-mode-invalid", "--link-mode fast -i {index} beta", 2),
    # Output options (the disk must not care).
    C("color-never", "--color never -i {index} alpha"),
    C("color-invalid", "--color rainbow -i {index} alpha", 2),
    C("no-progress", "--no-progress -i {index} alpha"),
    C("quiet", "-q -i {index} beta"),
    C("quiet-twice-failing", "-qq -i {index} alpha==9.9", 1),
    C("verbose", "-v -i {index} beta"),
    # Configuration files and environment variables.
    C("uv-toml-discovered-in-cwd", "alpha", cwd="{good_config_dir}"),
    C("uv-toml-in-cwd-sets-resolution", "-i {index} beta", cwd="{lowest_config_dir}"),
    C("no-config-ignores-uv-toml", "--no-config -i {index} beta", cwd="{lowest_config_dir}"),
    C("config-file", "--config-file {work}/uv-index.toml alpha"),
    C("config-file-missing", "--config-file {work}/no-such.toml alpha", 2),
    C("config-file-invalid", "--config-file {work}/broken.toml alpha", 2),
    C("env-index-url", "alpha", env={"UV_INDEX_URL": "{index}"}),
    C("env-exclude-newer", "-i {timed} beta", env={"UV_EXCLUDE_NEWER": "2022-06-01"}),
    C("env-link-mode-copy", "-i {index} beta", env={"UV_LINK_MODE": "copy"}),
    C("env-link-mode-invalid", "-i {index} beta", 2, env={"UV_LINK_MODE": "fast"}),
    C("env-http-timeout-invalid", "-i {index} beta", 2, env={"UV_HTTP_TIMEOUT": "soon"}),
    # TLS with a private CA, and basic auth.
    C("https-unknown-ca", "-i {tls} alpha", 2, env=TLS_ENV, mentions="certificate"),
    C("https-ssl-cert-file", "-i {tls} beta", env=dict(TLS_ENV, SSL_CERT_FILE="{ca}")),
    C("https-cert-flag", "--cert {ca} -i {tls} beta", env=TLS_ENV),
    C("https-insecure-host", "--allow-insecure-host 127.0.0.1 -i {tls} alpha", env=TLS_ENV),
    C("basic-auth-in-url", "-i {auth} beta"),
    C("basic-auth-missing", "-i {auth_anonymous} beta", 1),
    C("basic-auth-wrong-password", "-i {auth_wrong} beta", 1),
    # Uninstall.
    U("uninstall", "beta", setup=SEEDED),
    U("uninstall-requirements-file", "-r {work}/uninstall.txt", setup=("alpha==1.0 delta zeta",)),
    U("uninstall-dry-run", "--dry-run beta", setup=SEEDED),
    U("uninstall-target", "--target {target} beta", setup=("--target {target} beta==1.0",)),
    U("uninstall-prefix", "--prefix {prefix} alpha", setup=("--prefix {prefix} beta==1.0",)),
    U("uninstall-yes", "-y beta", setup=SEEDED),
    U("uninstall-not-installed", "zeta", setup=SEEDED),
    U("uninstall-no-cache", "-n alpha", setup=SEEDED),
    U("uninstall-no-package-named", "", 2, setup=SEEDED),
    U("uninstall-unknown-flag", "--frobnicate alpha", 2, setup=SEEDED),
    U("uninstall-no-deps", "--no-deps alpha", 2, setup=SEEDED),
]


# ---------------------------------------------------------------------------------------------
# The world every case shares: distributions, files, servers, warm caches


class World(NamedTuple):
    values: Dict[str, str]  # placeholders shared by both sides
    warm_cache: Dict[str, str]  # side -> its long-lived cache folder
    setup_cache: str


def start_server(config: dict, path: str, running: List[subprocess.Popen]) -> int:
    """Start ``diffkit.py serve`` (added to ``running`` at once, for the teardown); its port."""
    with open(path, "w") as handle:
        json.dump(config, handle)
    process = subprocess.Popen([sys.executable, diffkit.__file__, "serve", path], stdout=subprocess.PIPE, text=True)
    running.append(process)
    line = process.stdout.readline()
    assert line.startswith("PORT "), "index server did not start (%r)" % line
    return int(line.split()[1])


def write(path: str, text: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    return path


def uv_pip(*words: str, cwd: str) -> None:
    """Run the uv binary (setup and warm-up); fail loudly."""
    done = subprocess.run([UV, "pip", *words], capture_output=True, text=True, env=uv_env({}), cwd=cwd)
    assert done.returncode == 0, "setup failed: uv pip %s\n%s" % (" ".join(words), done.stderr)


@pytest.fixture(scope="module")
def world(index, wheelhouse, tmp_path_factory):
    assert UV, "the uv 0.12.5 binary is needed (pip install uv==0.12.5)"
    version = subprocess.run([UV, "--version"], capture_output=True, text=True).stdout
    assert version.split()[:2] == ["uv", "0.12.5"], version
    servers: List[subprocess.Popen] = []
    try:
        yield build_world(str(tmp_path_factory.mktemp("differential")), index, wheelhouse, servers)
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=10)


def build_world(root: str, index, wheelhouse: str, servers: List[subprocess.Popen]) -> World:
    import trustme  # the test extra needs it for the TLS cases

    extra, work, src = (os.path.join(root, name) for name in ("extra", "work", "src"))

    # Distributions beyond conftest's: a build backend, sdists, a wheel with a console script,
    # Requires-Python and platform variants. Published to the shared index under new names.
    wheel = {name: os.path.join(wheelhouse, name) for name in os.listdir(wheelhouse)}
    published = [
        diffkit.tinybackend_wheel(extra),
        diffkit.build_sdist(diffkit.write_project(os.path.join(src, "tinysdist"), "tinysdist", "1.0", ["delta"]), extra),
        diffkit.build_sdist(diffkit.write_project(os.path.join(src, "hybrid"), "hybrid", "1.0"), extra),
        diffkit.write_wheel(extra, "hybrid", "1.0"),
        diffkit.write_wheel(extra, "clitool", "1.0", console_scripts={"clitool": "clitool:main"},
                            files={"clitool/data.txt": "payload\n"}),
        diffkit.write_wheel(extra, "pyver", "1.0", requires_python=">=3.8"),
        diffkit.write_wheel(extra, "pyver", "2.0", requires_python=">=3.12"),
        diffkit.write_wheel(extra, "platpkg", "1.0"),
        diffkit.write_wheel(extra, "platpkg", "2.0", tag="py3-none-win_amd64"),
    ]
    for path in published:
        index.publish(path)

    # The working folder (cwd of both sides; no pyproject.toml of its own).
    diffkit.write_project(os.path.join(work, "proj"), "tinylocal", "1.0", ["alpha>=1.1"])
    srcproj = diffkit.write_project(os.path.join(work, "srcproj"), "srcproj", "1.0", ["alpha"])
    with open(os.path.join(srcproj, "pyproject.toml"), "a") as handle:
        handle.write('\n[tool.uv.sources]\nalpha = { path = "%s" }\n' % wheel["alpha-1.0-py3-none-any.whl"])
    write(os.path.join(work, "app", "pyproject.toml"),
          '[project]\nname = "app"\nversion = "0.1"\ndependencies = ["zeta"]\n\n'
          '[project.optional-dependencies]\nfancy = ["gamma[fancy]"]\nold = ["alpha<2"]\n')
    write(os.path.join(work, "requirements.txt"), "# what the app needs\nbeta\ngamma[fancy]\n")
    write(os.path.join(work, "constraints.txt"), "alpha==1.1\n")
    write(os.path.join(work, "overrides.txt"), "alpha==1.0\n")
    write(os.path.join(work, "excludes.txt"), "alpha\n")
    write(os.path.join(work, "uninstall.txt"), "alpha\ndelta\n")
    alpha_hash = diffkit.sha256_file(wheel["alpha-1.0-py3-none-any.whl"])
    write(os.path.join(work, "hashed.txt"), "alpha==1.0 --hash=sha256:%s\n" % alpha_hash)
    write(os.path.join(work, "badhash.txt"), "alpha==1.0 --hash=sha256:%s\n" % ("0" * 64))
    write(os.path.join(work, "uv-index.toml"), '[pip]\nindex-url = "%s"\n' % index.url)
    write(os.path.join(work, "broken.toml"), "index-url = [\n")
    down = NOWHERE + "/simple/"
    good_config_dir, lowest_config_dir = os.path.join(root, "good-config"), os.path.join(root, "lowest-config")
    write(os.path.join(good_config_dir, "uv.toml"), '[pip]\nindex-url = "%s"\n' % index.url)
    write(os.path.join(lowest_config_dir, "uv.toml"), '[pip]\nindex-url = "%s"\nresolution = "lowest"\n' % down)

    # Servers: plain HTTP (a mirror with alpha 1.0 only; a copy of the index with upload times;
    # the same behind basic auth) and HTTPS with a certificate from a private CA.
    mirror = os.path.join(root, "mirror")
    os.makedirs(mirror)
    shutil.copy(wheel["alpha-1.0-py3-none-any.whl"], mirror)
    times = {"alpha-1.0-py3-none-any.whl": "2021-01-01T00:00:00Z",
             "alpha-1.1-py3-none-any.whl": "2022-01-01T00:00:00Z",
             "alpha-2.0-py3-none-any.whl": "2023-01-01T00:00:00Z",
             "beta-2.0-py3-none-any.whl": "2023-01-01T00:00:00Z"}
    sites = {
        "mirror": {"files": mirror},
        "timed": {"files": index.packages_dir, "times": times},
        "auth": {"files": index.packages_dir, "auth": "user:pass"},
    }
    ca = trustme.CA()
    ca_pem, server_pem = os.path.join(root, "ca.pem"), os.path.join(root, "server.pem")
    ca.cert_pem.write_to_path(ca_pem)
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(server_pem)
    http_port = start_server({"tls": None, "sites": sites}, os.path.join(root, "http.json"), servers)
    tls = {"cert": server_pem, "key": server_pem}
    https_port = start_server({"tls": tls, "sites": sites}, os.path.join(root, "https.json"), servers)
    plain = "http://127.0.0.1:%d" % http_port
    values = {
        "index": index.url,
        "mirror": plain + "/mirror/simple/",
        "timed": plain + "/timed/simple/",
        "auth": "http://user:pass@127.0.0.1:%d/auth/simple/" % http_port,
        "auth_anonymous": plain + "/auth/simple/",
        "auth_wrong": "http://user:wrong@127.0.0.1:%d/auth/simple/" % http_port,
        "tls": "https://127.0.0.1:%d/timed/simple/" % https_port,
        "ca": ca_pem,
        "down": down,
        "wheels": wheelhouse,
        "extra": extra,
        "work": work,
        "good_config_dir": good_config_dir,
        "lowest_config_dir": lowest_config_dir,
    }

    # One warm-up per side's long-lived cache, identical for both (done by the uv binary).
    warm_cache = {side: os.path.join(root, "warm-" + side) for side in SIDES}
    scratch = [os.path.join(root, "scratch-" + side) for side in SIDES]
    make_venvs(scratch)
    for side, venv in zip(SIDES, scratch):
        uv_pip("install", "--python", venv_python(venv), "--cache-dir", warm_cache[side], "-i", index.url,
               "beta==2.0", "gamma[fancy]", "pre-pkg", "hybrid", "tinysdist", cwd=work)
    return World(values, warm_cache, os.path.join(root, "setup-cache"))


# ---------------------------------------------------------------------------------------------
# Running one side


def venv_python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def make_venvs(paths: List[str]) -> None:
    """``python -m venv --without-pip`` for each path, concurrently."""
    running = [subprocess.Popen([sys.executable, "-m", "venv", "--without-pip", p]) for p in paths]
    assert [process.wait() for process in running] == [0] * len(paths)


def uv_env(case_env: Dict[str, str]) -> Dict[str, str]:
    """This process's environment with no ``UV_*`` variable but the case's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_")}
    env.update(GUARD_ENV)
    env.update(case_env)
    return env


@contextmanager
def engine_env(case_env: Dict[str, str], cwd: str):
    """The same environment and working folder for the in-process call; restored afterwards.

    UV_CACHE_DIR stays (conftest picks the engine's start-up cache with it; every command here
    names its cache with --cache-dir, which wins over the variable)."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    for key in [k for k in os.environ if k.startswith("UV_") and k != "UV_CACHE_DIR"]:
        del os.environ[key]
    os.environ.update(GUARD_ENV)
    os.environ.update(case_env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


class Side(NamedTuple):
    name: str
    root: str  # everything of this side: venv, target, prefix, fresh cache
    values: Dict[str, str]  # shared placeholders plus py, venv, target, prefix, cache
    paths: diffkit.Paths  # this side's folders -> placeholders

    def fill(self, template: str) -> List[str]:
        return [word.format(**self.values) for word in shlex.split(template)]


def make_side(name: str, tmp_path, world: World, case: Case) -> Side:
    root = str(tmp_path / name)
    cache = os.path.join(root, "cache") if case.cache == "fresh" else world.warm_cache[name]
    values = dict(world.values, venv=os.path.join(root, "venv"), py=venv_python(os.path.join(root, "venv")),
                  target=os.path.join(root, "target"), prefix=os.path.join(root, "prefix"), cache=cache)
    paths = diffkit.Paths({root: "<SIDE>", world.warm_cache[name]: "<WARM-CACHE>"})
    return Side(name, root, values, paths)


class Outcome(NamedTuple):
    code: int
    installed: List[Tuple[str, str]]
    removed: List[Tuple[str, str]]
    text: str  # the engine's error, or uv's stderr


def run_engine(argv: List[str], env: Dict[str, str], cwd: str) -> Outcome:
    with engine_env(env, cwd):
        code, installed, removed, error = uv_ffi.run(" ".join(shlex.quote(a) for a in argv))
    return Outcome(code, sorted(map(tuple, installed)), sorted(map(tuple, removed)), error)


def run_uv(argv: List[str], env: Dict[str, str], cwd: str) -> Outcome:
    done = subprocess.run([UV, *argv], capture_output=True, text=True, env=uv_env(env), cwd=cwd,
                          stdin=subprocess.DEVNULL, timeout=120)
    installed, removed = diffkit.reported_changes(done.stderr)
    return Outcome(done.returncode, installed, removed, done.stderr)


def on_disk(side: Side) -> Dict[str, dict]:
    """Distributions and files of the environment, the --target and the --prefix folders."""
    places = {"venv": side.values["venv"], "target": side.values["target"], "prefix": side.values["prefix"]}
    return {
        place: {
            "distributions": diffkit.distributions(folder, side.paths),
            "files": diffkit.file_tree(folder, side.paths),
        }
        for place, folder in places.items()
        if os.path.exists(folder)
    }


# ---------------------------------------------------------------------------------------------
# The test


def compare(case: Case, words: List[str], engine: Outcome, uv: Outcome, engine_side: Side, uv_side: Side,
            cwd: str) -> None:
    context = "\n--- uv stderr ---\n%s\n--- engine error ---\n%s" % (uv.text, engine.text)
    assert uv.code == case.code, "uv itself exited %d, the table says %d%s" % (uv.code, case.code, context)
    assert engine.code == uv.code, "exit code: engine %d, uv %d%s" % (engine.code, uv.code, context)
    engine_disk, uv_disk = on_disk(engine_side), on_disk(uv_side)
    assert engine_disk == uv_disk, "on disk:\n" + diffkit.differences(engine_disk, uv_disk) + context
    if case.mentions:
        assert case.mentions.lower() in uv.text.lower(), context
        assert case.mentions.lower() in engine.text.lower(), "engine's error lacks %r%s" % (case.mentions, context)
    if uv.code == 0:
        assert engine.text == "", context
        quiet = any(w in ("-q", "-qq", "--quiet") for w in words)
        if not quiet:
            assert (engine.installed, engine.removed) == (uv.installed, uv.removed), (
                "installed/removed differ from uv's report" + context)
    else:
        line = diffkit.first_error_line(uv.text)
        assert len(line) >= 10, "uv failed without an error line to compare" + context
        # After a host changed directory, uv's command line inside the engine is given relative
        # paths made absolute (README, "Embedding"), so its messages show them in full: compare
        # both sides' paths relative to the working folder.
        work = cwd.rstrip("/") + "/"
        expected = diffkit.comparable_text(line.replace(work, ""), uv_side.paths)
        engine_text = engine.text.replace(work, "")
        assert expected in diffkit.comparable_text(engine_text, engine_side.paths), (
            "uv's first error line %r is not in the engine's error%s" % (expected, context))


@pytest.mark.parametrize("case", CASES)
def test_engine_matches_uv(case: Case, world: World, tmp_path) -> None:
    sides = [make_side(name, tmp_path, world, case) for name in SIDES]
    make_venvs([side.values["venv"] for side in sides])
    for words in case.setup:
        for side in sides:
            uv_pip("install", "--python", side.values["py"], "--cache-dir", world.setup_cache,
                   "-i", world.values["index"], "-q", *side.fill(words), cwd=world.values["work"])
    env = {key: value.format(**world.values) for key, value in case.env.items()}
    cwd = case.cwd.format(**world.values)
    argv = {
        side.name: ["pip", case.command, "--python", side.values["py"], "--cache-dir", side.values["cache"],
                    *side.fill(case.words)]
        for side in sides
    }
    engine = run_engine(argv["engine"], env, cwd)
    uv = run_uv(argv["uvtool"], env, cwd)
    compare(case, shlex.split(case.words), engine, uv, *sides, cwd=cwd)


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 60
    assert len({param.id for param in CASES}) == len(CASES)


FIRST_CALL = """
import sys, uv_ffi
rc, _, _, error = uv_ffi.run(sys.argv[1:])
sys.stdout.write("rc=%d\\n%s" % (rc, error))
"""


@pytest.mark.parametrize("trusted", [True, False], ids=["ca-trusted", "ca-unknown"])
def test_the_first_call_of_a_new_process_uses_the_certificates_it_names(trusted, world: World, tmp_path) -> None:
    # The first call builds its HTTP client on the engine thread while it finds the interpreter
    # (rust/src/engine.rs, build_client_ahead): that client must be the one its options and
    # variables make, trusting exactly the certificates they name.
    venv = str(tmp_path / "venv")
    make_venvs([venv])
    env = uv_env(dict(TLS_ENV, SSL_CERT_FILE=world.values["ca"]) if trusted else TLS_ENV)
    words = ["pip", "install", "--python", venv_python(venv), "--cache-dir", str(tmp_path / "cache"),
             "-i", world.values["tls"], "beta==1.0"]
    done = subprocess.run([sys.executable, "-c", FIRST_CALL, *words], capture_output=True, text=True, env=env,
                          cwd=world.values["work"])
    installed = subprocess.run([venv_python(venv), "-c", "from importlib import metadata; print(metadata.version('beta'))"],
                               capture_output=True, text=True)
    if trusted:
        assert done.stdout.startswith("rc=0\n"), done.stdout + done.stderr
        assert installed.stdout.strip() == "1.0"
    else:
        assert done.stdout.startswith("rc=2\n"), done.stdout + done.stderr
        assert "certificate" in done.stdout
        assert installed.returncode != 0
