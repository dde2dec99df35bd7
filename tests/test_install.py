"""Installs through the warm engine, asserted on disk and through the environment's own Python."""

from __future__ import annotations

import os
import subprocess
import sys

import uv_ffi


def cmd(venv, index, *words: str) -> str:
    return " ".join(["pip install --python", venv.python, "-i", index.url, *words])


def test_first_install_brings_dependencies(venv, index):
    code, installed, removed, error = uv_ffi.run(cmd(venv, index, "beta==1.0"))
    assert (code, error, removed) == (0, "", [])
    # beta 1.0 needs alpha>=1.0: the newest alpha is chosen.
    assert installed == [("alpha", "2.0"), ("beta", "1.0")]
    assert venv.has("alpha", "2.0") and venv.has("beta", "1.0")
    assert venv.metadata_version("beta") == "1.0"
    assert venv.metadata_version("alpha") == "2.0"
    # The engine writes the metadata other tools rely on.
    record = os.path.join(venv.site_packages, "beta-1.0.dist-info", "RECORD")
    installer = os.path.join(venv.site_packages, "beta-1.0.dist-info", "INSTALLER")
    assert os.path.isfile(record) and open(installer).read().strip() == "uv"


def _linked_files(site_packages: str) -> dict:
    """Each file below ``site_packages`` (but bytecode): whether it is shared with another path
    (a hard link into uv's cache) or the environment's own (a clone or a copy)."""
    found = {}
    for folder, dirs, files in os.walk(site_packages):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, site_packages)] = os.lstat(path).st_nlink > 1
    return found


def test_default_link_mode_links_as_uv_does(make_venv, index, tmp_path):
    # uv's default mode, clone, falls back to hard links per wheel where the filesystem cannot
    # clone; the engine finds that out once and asks for hard links directly. Either way each
    # file must end up linked as uv's own default links it, and nothing of the try is left.
    from uv_ffi.demo import find_uv

    ours, theirs = make_venv(), make_venv()
    for request in ("alpha==1.0", "beta==1.0", "alpha==1.1"):
        assert uv_ffi.run(cmd(ours, index, request))[0] == 0
        subprocess.run([find_uv(), "pip", "install", "--python", theirs.python, "-i", index.url,
                        "--cache-dir", str(tmp_path / "uv-cache"), request], check=True, capture_output=True)
    assert _linked_files(ours.site_packages) == _linked_files(theirs.site_packages)
    assert not [name for name in os.listdir(ours.site_packages) if "probe" in name]


def test_swap_noop_and_reinstall(venv, index):
    assert uv_ffi.run(cmd(venv, index, "alpha==1.0"))[:3] == (0, [("alpha", "1.0")], [])
    code, installed, removed, _ = uv_ffi.run(cmd(venv, index, "alpha==1.1"))
    assert (code, installed, removed) == (0, [("alpha", "1.1")], [("alpha", "1.0")])
    assert venv.dist_infos() == ["alpha-1.1.dist-info"]
    assert venv.metadata_version("alpha") == "1.1"

    stamp = os.stat(os.path.join(venv.site_packages, "alpha-1.1.dist-info"))
    result = uv_ffi.install(cmd(venv, index, "alpha==1.1"))
    assert result.satisfied and result.installed == () and result.removed == ()
    again = os.stat(os.path.join(venv.site_packages, "alpha-1.1.dist-info"))
    assert (again.st_ino, again.st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)

    code, installed, removed, _ = uv_ffi.run(cmd(venv, index, "--reinstall", "alpha==1.1"))
    assert (code, installed, removed) == (0, [("alpha", "1.1")], [("alpha", "1.1")])
    assert venv.metadata_version("alpha") == "1.1"
    assert uv_ffi.get_site_packages_cache() == [("alpha", "1.1")]


def test_upgrade_and_ranges(venv, index):
    uv_ffi.run(cmd(venv, index, "alpha==1.0"))
    # An installed version that satisfies the range is kept...
    assert uv_ffi.install(cmd(venv, index, "'alpha>=1,<3'")).satisfied
    # ...unless an upgrade is asked for.
    code, installed, removed, _ = uv_ffi.run(cmd(venv, index, "-U", "alpha"))
    assert (code, installed, removed) == (0, [("alpha", "2.0")], [("alpha", "1.0")])
    assert venv.metadata_version("alpha") == "2.0"


def test_target_installs_a_complete_set_and_leaves_the_environment_alone(venv, index, tmp_path):
    uv_ffi.run(cmd(venv, index, "alpha==1.0"))
    before = venv.listing()
    target = str(tmp_path / "bubble")
    code, installed, removed, error = uv_ffi.run(cmd(venv, index, "--target", target, "beta==2.0"))
    assert (code, error, removed) == (0, "", [])
    # alpha 1.0 in the environment does not count for the target: it gets its own alpha.
    assert installed == [("alpha", "2.0"), ("beta", "2.0")]
    assert sorted(e for e in os.listdir(target) if e.endswith(".dist-info")) == [
        "alpha-2.0.dist-info",
        "beta-2.0.dist-info",
    ]
    assert venv.listing() == before
    assert venv.metadata_version("alpha") == "1.0"
    out = subprocess.run(
        [venv.python, "-c", "import sys, importlib.metadata as m; sys.path.insert(0, sys.argv[1]);"
         "print(m.version('beta'), m.version('alpha'))", target],
        check=True, capture_output=True, text=True,
    )
    assert out.stdout.split() == ["2.0", "2.0"]
    # The view of the environment itself was not touched by the target install.
    assert uv_ffi.get_site_packages_cache(python=venv.python) == [("alpha", "1.0")]


def test_two_environments_alternately_from_one_process(make_venv, index):
    first, second = make_venv(), make_venv()
    for version_first, version_second in [("1.0", "1.1"), ("1.1", "2.0"), ("2.0", "1.0")]:
        assert uv_ffi.run(cmd(first, index, "alpha==" + version_first))[0] == 0
        assert uv_ffi.run(cmd(second, index, "alpha==" + version_second))[0] == 0
        assert first.dist_infos() == ["alpha-%s.dist-info" % version_first]
        assert second.dist_infos() == ["alpha-%s.dist-info" % version_second]
    assert first.metadata_version("alpha") == "2.0"
    assert second.metadata_version("alpha") == "1.0"
    assert uv_ffi.get_site_packages_cache(python=first.python) == [("alpha", "2.0")]
    assert uv_ffi.get_site_packages_cache(python=second.python) == [("alpha", "1.0")]
    # Without `python`, the view is the last call's environment.
    assert uv_ffi.get_site_packages_cache() == [("alpha", "1.0")]


def test_no_deps(venv, index):
    code, installed, _, _ = uv_ffi.run(cmd(venv, index, "--no-deps", "beta==2.0"))
    assert (code, installed) == (0, [("beta", "2.0")])
    assert venv.installed() == {"beta": "2.0"}


def test_requirement_and_constraint_files(venv, index, tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# what the app needs\nbeta\ngamma[fancy]\n")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("alpha==1.1\n")
    code, installed, _, error = uv_ffi.run(
        cmd(venv, index, "-r", str(requirements), "-c", str(constraints))
    )
    assert (code, error) == (0, "")
    # beta 2.0 needs alpha>=2.0, which the constraint forbids: beta 1.0 is chosen.
    assert installed == [("alpha", "1.1"), ("beta", "1.0"), ("delta", "1.0"), ("gamma", "1.0")]
    assert venv.installed() == {"alpha": "1.1", "beta": "1.0", "delta": "1.0", "gamma": "1.0"}


def test_find_links_folder_and_no_index(venv, wheelhouse):
    code, installed, _, error = uv_ffi.run(
        "pip install --python %s --no-index -f %s 'beta==2.0'" % (venv.python, wheelhouse)
    )
    assert (code, error) == (0, "")
    assert installed == [("alpha", "2.0"), ("beta", "2.0")]
    assert venv.metadata_version("beta") == "2.0"


def test_local_wheel_path_and_normalised_names(venv, wheelhouse, index):
    wheel = os.path.join(wheelhouse, "alpha-1.1-py3-none-any.whl")
    code, installed, _, error = uv_ffi.run("pip install --python %s %s" % (venv.python, wheel))
    assert (code, error, installed) == (0, "", [("alpha", "1.1")])
    assert venv.metadata_version("alpha") == "1.1"
    code, installed, _, _ = uv_ffi.run(cmd(venv, index, "MIXED-case_name==1.0"))
    assert (code, installed) == (0, [("mixed-case-name", "1.0")])
    assert venv.metadata_version("mixed-case-name") == "1.0"


def test_prerelease_policy(venv, index):
    assert uv_ffi.run(cmd(venv, index, "pre-pkg"))[1] == [("pre-pkg", "1.0")]
    code, installed, removed, _ = uv_ffi.run(cmd(venv, index, "--prerelease", "allow", "-U", "pre-pkg"))
    assert (installed, removed) == ([("pre-pkg", "2.0b1")], [("pre-pkg", "1.0")])
    assert venv.metadata_version("pre-pkg") == "2.0b1"


def test_dry_run_changes_nothing(venv, index):
    uv_ffi.run(cmd(venv, index, "alpha==1.0"))
    before = venv.listing()
    result = uv_ffi.install(cmd(venv, index, "--dry-run", "beta==2.0"))
    assert result.dry_run
    assert result.installed == (("alpha", "2.0"), ("beta", "2.0"))
    assert result.removed == (("alpha", "1.0"),)
    assert venv.listing() == before
    assert venv.metadata_version("alpha") == "1.0"


def test_command_line_entry_point(venv, index):
    out = subprocess.run(
        [sys.executable, "-m", "uv_ffi", "run", "pip", "install", "--python", venv.python,
         "-i", index.url, "alpha==1.0"],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert " + alpha==1.0" in out.stdout
    assert venv.metadata_version("alpha") == "1.0"
    bad = subprocess.run(
        [sys.executable, "-m", "uv_ffi", "run", "pip", "install", "--python", venv.python,
         "-i", index.url, "alpha==9.9"],
        capture_output=True, text=True,
    )
    assert bad.returncode == 1
    assert "No solution found" in bad.stderr
    assert venv.metadata_version("alpha") == "1.0"


def test_uninstall_through_the_engine(venv, index, tmp_path):
    uv_ffi.run(cmd(venv, index, "beta==1.0", "delta==1.0"))
    code, installed, removed, error = uv_ffi.run("pip uninstall --python %s beta" % venv.python)
    assert (code, installed, removed, error) == (0, [], [("beta", "1.0")], "")
    assert venv.installed() == {"alpha": "2.0", "delta": "1.0"}
    assert not os.path.isdir(os.path.join(venv.site_packages, "beta"))
    # Names that are not installed are skipped, as pip and uv do.
    assert uv_ffi.run("pip uninstall --python %s beta" % venv.python)[:3] == (0, [], [])
    names = tmp_path / "remove.txt"
    names.write_text("alpha\ndelta\n")
    code, _, removed, _ = uv_ffi.run("pip uninstall --python %s -r %s" % (venv.python, names))
    assert (code, removed) == (0, [("alpha", "2.0"), ("delta", "1.0")])
    assert venv.installed() == {}
    assert uv_ffi.get_site_packages_cache(python=venv.python) == []
    code, _, _, error = uv_ffi.run("pip uninstall --python %s --no-deps alpha" % venv.python)
    assert code == 2 and "--no-deps" in error


def test_a_config_file_that_appears_between_calls_applies_to_the_next_one(venv, index, tmp_path, monkeypatch):
    """The engine watches where uv's configuration may come from rather than checking every
    file on every call: a uv.toml written in a parent of the working folder after a warm call
    still applies to the very next call, as it would to a ``uv`` started then."""
    work = tmp_path / "project" / "src"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    uv_ffi.install(cmd(venv, index, "alpha==1.0"))
    assert uv_ffi.install(cmd(venv, index, "alpha==1.0")).engine == "warm"
    dist_info = os.path.join(venv.site_packages, "alpha-1.0.dist-info")

    def identity():
        # A folder made again may reuse the inode number: its modification time tells them apart.
        info = os.stat(dist_info)
        return info.st_ino, info.st_mtime_ns

    before = identity()

    (tmp_path / "project" / "uv.toml").write_text("[pip]\nreinstall = true\n")
    result = uv_ffi.install(cmd(venv, index, "alpha==1.0"))
    # uv reads the file and reinstalls: a new .dist-info folder, left as uv leaves it.
    assert result.engine == "uv"
    assert (result.installed, result.removed) == ((("alpha", "1.0"),), (("alpha", "1.0"),))
    reinstalled = identity()
    assert reinstalled != before and venv.metadata_version("alpha") == "1.0"

    (tmp_path / "project" / "uv.toml").unlink()
    result = uv_ffi.install(cmd(venv, index, "alpha==1.0"))
    assert result.engine == "warm" and result.satisfied
    assert identity() == reinstalled


def test_a_user_configuration_folder_chosen_between_calls_applies_to_the_next_one(venv, index, tmp_path, monkeypatch):
    """uv finds the user's uv.toml through XDG_CONFIG_HOME (else HOME): a host that points it
    at another folder between two calls gets that folder's file applied at once, as a ``uv``
    started then would, and stops getting it when the variable is gone."""
    monkeypatch.chdir(tmp_path)
    uv_ffi.install(cmd(venv, index, "alpha==1.0"))
    assert uv_ffi.install(cmd(venv, index, "alpha==1.0")).engine == "warm"
    config_home = tmp_path / "config"
    (config_home / "uv").mkdir(parents=True)
    (config_home / "uv" / "uv.toml").write_text("[pip]\nreinstall = true\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    result = uv_ffi.install(cmd(venv, index, "alpha==1.0"))
    assert result.engine == "uv"
    assert (result.installed, result.removed) == ((("alpha", "1.0"),), (("alpha", "1.0"),))
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert uv_ffi.install(cmd(venv, index, "alpha==1.0")).engine == "warm"
