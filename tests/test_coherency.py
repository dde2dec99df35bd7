"""The engine's view stays true while other tools change the environment behind its back."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import uv_ffi
from uv_ffi import policy, sample_index
from uv_ffi.demo import find_uv

from conftest import Venv

# The uv command from the test extra: on PATH, or wherever the `uv` package put its binary.
UV = find_uv()
VERSIONS = {"alpha": ["1.0", "1.1", "2.0"], "delta": ["1.0"], "beta": ["1.0"]}
PAIRS = [(name, version) for name, versions in VERSIONS.items() for version in versions]


def disk_view(venv: Venv):
    """The truth: ``.dist-info`` folders in site-packages as sorted normalised pairs."""
    pairs = []
    for entry in venv.dist_infos():
        name, version = entry[: -len(".dist-info")].split("-", 1)
        pairs.append((re.sub(r"[-_.]+", "-", name).lower(), version))
    return sorted(pairs)


def external_uv(*args: str) -> None:
    assert UV, "the uv command is the outside tool here (pip install -e '.[test]' installs it)"
    subprocess.run([UV, "pip", *args], check=True, capture_output=True)


def external_pip(venv: Venv, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", venv.python, "--disable-pip-version-check", *args],
        check=True, capture_output=True,
    )


class EnvironmentMachine(RuleBasedStateMachine):
    """Engine calls mixed with outside changes; after every step the view equals the disk."""

    mode = policy.VALIDATE
    wheelhouse = ""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="uv-ffi-machine-")
        self.venv = Venv(os.path.join(self.tmp, "venv"))
        self.previous_mode = policy.get_policy()
        policy.set_policy(self.mode)
        self.base = "--python %s --no-index -f %s" % (self.venv.python, self.wheelhouse)

    def teardown(self) -> None:
        policy.set_policy(self.previous_mode)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def engine(self, words: str) -> uv_ffi.RunResult:
        return uv_ffi.install(words, mode=self.mode)

    @rule(pair=st.sampled_from(PAIRS))
    def engine_install(self, pair):
        name, version = pair
        before = dict(disk_view(self.venv))
        result = self.engine("pip install %s %s==%s" % (self.base, name, version))
        after = dict(disk_view(self.venv))
        # Exactly what was asked is on disk, and the changelog says what changed.
        assert after[name] == version
        if before.get(name) != version:
            assert (name, version) in result.installed
        for removed_name, removed_version in result.removed:
            assert after.get(removed_name) != removed_version or (removed_name, removed_version) in result.installed

    @rule(name=st.sampled_from(sorted(VERSIONS)))
    def engine_uninstall(self, name):
        before = dict(disk_view(self.venv))
        result = self.engine("pip uninstall %s %s" % ("--python " + self.venv.python, name))
        assert name not in dict(disk_view(self.venv))
        assert result.removed == (((name, before[name]),) if name in before else ())

    @rule(pair=st.sampled_from(PAIRS))
    def uv_installs(self, pair):
        external_uv("install", "--python", self.venv.python, "--no-index", "-f", self.wheelhouse, "%s==%s" % pair)

    @rule(name=st.sampled_from(sorted(VERSIONS)))
    def uv_uninstalls(self, name):
        external_uv("uninstall", "--python", self.venv.python, name)

    @rule(pair=st.sampled_from(PAIRS))
    def pip_installs(self, pair):
        external_pip(self.venv, "install", "--no-index", "-f", self.wheelhouse, "--no-deps", "%s==%s" % pair)

    @rule(name=st.sampled_from(sorted(VERSIONS)))
    def dist_info_deleted_by_hand(self, name):
        for entry in self.venv.dist_infos():
            if entry.split("-", 1)[0].lower() == name:
                shutil.rmtree(os.path.join(self.venv.site_packages, entry))

    @rule(pair=st.sampled_from(PAIRS))
    def outside_install_then_patch(self, pair):
        before = dict(disk_view(self.venv))
        external_uv("install", "--python", self.venv.python, "--no-index", "-f", self.wheelhouse, "--no-deps", "%s==%s" % pair)
        after = dict(disk_view(self.venv))
        installed = [(n, v) for n, v in after.items() if before.get(n) != v]
        removed = [(n, v) for n, v in before.items() if after.get(n) != v]
        uv_ffi.patch_site_packages_cache(installed, removed, python=self.venv.python)

    @rule(pair=st.sampled_from(PAIRS))
    def wrong_patch(self, pair):
        # A patch that does not match the disk must never make the view lie.
        uv_ffi.patch_site_packages_cache([pair], [], python=self.venv.python)

    @rule()
    def invalidate(self):
        uv_ffi.invalidate_site_packages_cache(python=self.venv.python)

    @invariant()
    def view_equals_disk(self):
        assert uv_ffi.get_site_packages_cache(python=self.venv.python) == disk_view(self.venv)


MACHINE_SETTINGS = settings(
    max_examples=int(os.environ.get("UV_FFI_MACHINE_EXAMPLES", "6")),
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def machine_wheelhouse(wheelhouse):
    EnvironmentMachine.wheelhouse = wheelhouse
    return wheelhouse


@pytest.mark.parametrize("mode", [policy.VALIDATE, policy.WATCH])
def test_view_stays_true_under_outside_changes(mode, machine_wheelhouse):
    machine = type("Machine_" + mode, (EnvironmentMachine,), {"mode": mode})
    machine.TestCase.settings = MACHINE_SETTINGS
    try:
        from hypothesis.stateful import run_state_machine_as_test

        run_state_machine_as_test(machine, settings=MACHINE_SETTINGS)
    finally:
        policy.set_policy(policy.VALIDATE)


@pytest.mark.parametrize("mode", [policy.VALIDATE, policy.WATCH])
def test_upstream_scenario_outside_swap_then_engine_asks_again(mode, venv, index):
    base = "pip install --python %s -i %s " % (venv.python, index.url)
    uv_ffi.install(base + "alpha==1.0", mode=mode)
    assert uv_ffi.install(base + "alpha==1.0", mode=mode).satisfied
    external_uv("install", "--python", venv.python, "-i", index.url, "alpha==2.0")
    assert venv.metadata_version("alpha") == "2.0"
    result = uv_ffi.install(base + "alpha==1.0", mode=mode)
    assert result.installed == (("alpha", "1.0"),) and result.removed == (("alpha", "2.0"),)
    assert venv.metadata_version("alpha") == "1.0"
    counters = uv_ffi.get_counters(python=venv.python)
    # validate noticed the change by itself; watch may have been told by the watcher first.
    assert counters["changes_detected"] >= 1 or (mode == policy.WATCH and counters["patches"] >= 1)


def test_listing_sees_outside_install_on_first_try(venv, index):
    uv_ffi.install("pip install --python %s -i %s alpha==1.0" % (venv.python, index.url))
    assert uv_ffi.get_site_packages_cache() == [("alpha", "1.0")]
    external_uv("install", "--python", venv.python, "-i", index.url, "delta==1.0")
    assert uv_ffi.get_site_packages_cache() == [("alpha", "1.0"), ("delta", "1.0")]
    external_uv("uninstall", "--python", venv.python, "alpha")
    assert uv_ffi.get_site_packages_cache() == [("delta", "1.0")]


def test_trust_mode_does_no_checks(venv, index):
    base = "pip install --python %s -i %s " % (venv.python, index.url)
    uv_ffi.install(base + "alpha==1.0", mode=policy.TRUST)
    uv_ffi.get_site_packages_cache(python=venv.python)
    checks = uv_ffi.get_counters(python=venv.python)
    uv_ffi.install(base + "alpha==1.0", mode=policy.TRUST)
    after = uv_ffi.get_counters(python=venv.python)
    assert after["checks_clean"] == checks["checks_clean"]
    assert after["checks_listed"] == checks["checks_listed"]


def test_version_published_while_running_is_installable(venv, index, session_dir):
    base = "pip install --python %s -i %s " % (venv.python, index.url)
    assert uv_ffi.install(base + "zeta==1.0").installed == (("zeta", "1.0"),)
    # The pages for zeta are now kept in memory; publish a release the pages do not know.
    wheel = sample_index.build_wheel(os.path.join(session_dir, "published"), "zeta", "2.0")
    index.publish(wheel)
    retries = policy.counters["index_retries"]
    result = uv_ffi.install(base + "zeta==2.0")
    assert result.installed == (("zeta", "2.0"),) and result.removed == (("zeta", "1.0"),)
    assert venv.metadata_version("zeta") == "2.0"
    assert policy.counters["index_retries"] == retries + 1


def test_kept_index_pages_serve_warm_calls_without_refetching(venv, index):
    base = "pip install --python %s -i %s " % (venv.python, index.url)
    uv_ffi.install(base + "alpha==1.0")
    before = uv_ffi.get_counters(python=venv.python)
    uv_ffi.install(base + "alpha==1.1")
    uv_ffi.install(base + "alpha==1.0")
    after = uv_ffi.get_counters(python=venv.python)
    assert after["index_reused"] >= before["index_reused"] + 2
    assert venv.metadata_version("alpha") == "1.0"
    # A zero time-to-live reads fresh pages every time.
    policy.set_index_ttl(0)
    try:
        uv_ffi.install(base + "alpha==1.1")
        assert uv_ffi.get_counters(python=venv.python)["index_expired"] >= after["index_expired"] + 1
    finally:
        policy.set_index_ttl(600)
    assert venv.metadata_version("alpha") == "1.1"


def test_the_environments_of_one_python_share_kept_index_pages(make_venv, index):
    # The pages' contents depend on the interpreter's facts, not on its environment's folder.
    first, second = make_venv(), make_venv()
    uv_ffi.install("pip install --python %s -i %s alpha==1.0" % (first.python, index.url))
    before = uv_ffi.get_counters(python=first.python)
    uv_ffi.install("pip install --python %s -i %s alpha==1.1" % (second.python, index.url))
    after = uv_ffi.get_counters(python=second.python)
    assert after["index_fresh"] == before["index_fresh"]
    assert after["index_reused"] == before["index_reused"] + 1
    assert (first.metadata_version("alpha"), second.metadata_version("alpha")) == ("1.0", "1.1")


def test_watch_mode_turns_outside_changes_into_patches(venv, index):
    import time

    base = "pip install --python %s -i %s " % (venv.python, index.url)
    uv_ffi.install(base + "alpha==1.0", mode=policy.WATCH)
    try:
        before = dict(policy.counters)
        engine_before = uv_ffi.get_counters(python=venv.python)
        external_uv("install", "--python", venv.python, "-i", index.url, "delta==1.0")
        deadline = time.time() + 10
        while policy.counters["watch_patches"] == before["watch_patches"] and time.time() < deadline:
            time.sleep(0.02)
        assert policy.counters["watch_patches"] > before["watch_patches"], "the watcher sent no patch"
        # The view was patched, not rebuilt: reading it without a disk check already shows delta.
        value = _native_view(venv.python)
        assert ["delta", "1.0"] in value["packages"]
        assert uv_ffi.get_counters(python=venv.python)["patches"] > engine_before["patches"]
        assert uv_ffi.get_site_packages_cache(python=venv.python) == disk_view(venv)
    finally:
        policy.set_policy(policy.VALIDATE)


def _native_view(python):
    from uv_ffi import _native

    return _native.call("view_get", {"python": python, "check": False})


def test_a_repeated_request_reuses_its_resolution_until_an_input_changes(venv, index):
    base = "pip install --python %s -i %s " % (venv.python, index.url)

    def swap(version: str) -> int:
        """Swap alpha; returns how many resolutions the environment has reused so far."""
        result = uv_ffi.install(base + "alpha==" + version)
        assert result.installed == (("alpha", version),)
        assert venv.installed() == {"alpha": version, "beta": "1.0"}
        return uv_ffi.get_counters(python=venv.python)["resolutions_reused"]

    uv_ffi.install(base + "beta==1.0")  # alpha 2.0 comes with it; the pages are read fresh
    first = uv_ffi.get_counters(python=venv.python)["resolutions_reused"]
    # The first time each question is asked against the kept pages, it is resolved...
    assert (swap("1.1"), swap("2.0")) == (first, first)
    # ... and asked again with the same view of the environment, its answer is reused.
    assert (swap("1.1"), swap("2.0")) == (first + 1, first + 2)
    # Another view (zeta is there now) is another question.
    uv_ffi.install(base + "zeta==1.0")
    assert uv_ffi.get_counters(python=venv.python)["resolutions_reused"] == first + 2
    assert uv_ffi.install(base + "alpha==1.1").installed == (("alpha", "1.1"),)
    assert uv_ffi.get_counters(python=venv.python)["resolutions_reused"] == first + 2
    # Fresh index pages are another question too.
    uv_ffi.clear_registry_cache()
    assert uv_ffi.install(base + "alpha==2.0").installed == (("alpha", "2.0"),)
    assert uv_ffi.get_counters(python=venv.python)["resolutions_reused"] == first + 2
    assert venv.installed() == {"alpha": "2.0", "beta": "1.0", "zeta": "1.0"}


def test_a_reused_resolution_reuses_its_plan_while_what_it_read_holds(venv, index):
    import glob
    import time

    base = "pip install --python %s -i %s " % (venv.python, index.url)

    def swap(version: str) -> int:
        """Swap alpha; returns how many plans the environment has reused so far."""
        result = uv_ffi.install(base + "alpha==" + version)
        assert result.installed == (("alpha", version),)
        assert venv.installed() == {"alpha": version, "beta": "1.0"}
        return uv_ffi.get_counters(python=venv.python)["plans_reused"]

    def settle() -> None:
        # A plan is kept only once the cache folders it read are older than 50 ms.
        time.sleep(0.1)

    uv_ffi.install(base + "beta==1.0")
    swap("1.1")
    swap("2.0")
    settle()
    # Each question's resolution is reused from now on, and its plan kept (if this engine met
    # an environment holding the same before, its plans may be kept already)...
    swap("1.1")
    first = swap("2.0")
    # ... and used again while the installed distributions and the cache folders hold.
    assert (swap("1.1"), swap("2.0")) == (first + 1, first + 2)
    # A call that reads what is installed more closely (a plan callback: the metadata of the
    # distributions) leaves the plans as good as they were.
    result = uv_ffi.install(base + "alpha==1.1", on_plan=lambda plan: False, progress=lambda event: None)
    assert result.installed == (("alpha", "1.1"),)
    before = uv_ffi.get_counters(python=venv.python)["plans_reused"]
    assert (swap("2.0"), swap("1.1"), swap("2.0")) == (before + 1, before + 2, before + 3)
    first = before + 1
    # Another tool writes into the folder of alpha's wheel pointers in uv's cache: the plan is
    # made again (and kept again once the folder settles).
    folders = glob.glob(os.path.join(os.environ["UV_CACHE_DIR"], "wheels-v*", "index", "*", "alpha"))
    assert folders
    for folder in folders:
        with open(os.path.join(folder, "written-by-another-tool"), "w") as handle:
            handle.write("")
    assert swap("1.1") == first + 2
    settle()
    assert swap("2.0") == first + 2
    assert (swap("1.1"), swap("2.0")) == (first + 2, first + 3)
    for folder in folders:
        os.remove(os.path.join(folder, "written-by-another-tool"))
    assert swap("1.1") == first + 3
    assert venv.installed() == {"alpha": "1.1", "beta": "1.0"}


def test_new_target_folders_holding_the_same_reuse_one_resolution(venv, index, tmp_path):
    from uv_ffi import _native

    base = "pip install --python %s -i %s " % (venv.python, index.url)

    def into(folder: str, request: str = "beta==1.0", option: str = "--target %s") -> int:
        """Install into a --target folder; returns how many resolutions its view reused."""
        result = uv_ffi.install(base + (option % folder) + " " + request)
        assert result.installed, result
        return reused(folder)

    def reused(folder: str) -> int:
        return _native.call("view_get", {"target": folder, "check": False})["counters"]["resolutions_reused"]

    def holds(folder: str) -> dict:
        pairs = [name[: -len(".dist-info")].split("-") for name in os.listdir(folder) if name.endswith(".dist-info")]
        return dict(pairs)

    # Another request first: the index pages are kept from here on (if no earlier call kept them).
    uv_ffi.install(base + "--target %s alpha==1.0" % (tmp_path / "warm"))
    # The first empty folder resolves against the kept pages; the next ones reuse its answer.
    assert into(str(tmp_path / "a")) == 0
    assert into(str(tmp_path / "b")) == 1
    assert into(str(tmp_path / "c"), option="--target=%s") == 1
    for name in ("a", "b", "c"):
        assert holds(str(tmp_path / name)) == {"alpha": "2.0", "beta": "1.0"}
    # A folder that holds something is another question: it resolves, and keeps alpha 1.0; and
    # only an empty folder's answer serves other folders (another one holding alpha 1.0 resolves
    # too: its alpha may come from elsewhere).
    for name in ("d", "f"):
        uv_ffi.install(base + "--target %s alpha==1.0" % (tmp_path / name))
        before = reused(str(tmp_path / name))
        assert into(str(tmp_path / name), "beta==1.0") == before
        assert holds(str(tmp_path / name)) == {"alpha": "1.0", "beta": "1.0"}
    # So is another request.
    assert into(str(tmp_path / "e"), "beta==1.0 zeta==1.0") == 0
    assert holds(str(tmp_path / "e")) == {"alpha": "2.0", "beta": "1.0", "zeta": "1.0"}


def wait_for_counter(python: str, name: str, at_least: int, seconds: float = 5.0) -> dict:
    """The environment's counters once ``name`` reached ``at_least`` (or the deadline passed)."""
    deadline = time.monotonic() + seconds
    counters = uv_ffi.get_counters(python=python)
    while counters[name] < at_least and time.monotonic() < deadline:
        time.sleep(0.02)
        counters = uv_ffi.get_counters(python=python)
    return counters


def test_the_engine_confirms_its_own_change_while_idle(venv, index):
    # After a change of its own, the engine lists the folder once its stamp can be trusted
    # (50 ms later): the next call's check is then a stat, not a listing.
    base = "pip install --python %s -i %s alpha==" % (venv.python, index.url)
    uv_ffi.install(base + "1.0")
    uv_ffi.install(base + "1.1")
    before = uv_ffi.get_counters(python=venv.python)
    counters = wait_for_counter(venv.python, "settled_when_idle", before["settled_when_idle"] + 1)
    assert counters["settled_when_idle"] > before["settled_when_idle"]
    result = uv_ffi.install(base + "1.1")
    after = uv_ffi.get_counters(python=venv.python)
    assert result.satisfied
    assert after["checks_clean"] == counters["checks_clean"] + 1
    assert after["checks_listed"] == counters["checks_listed"]
    assert venv.metadata_version("alpha") == "1.1"


def test_confirming_while_idle_never_hides_an_outside_change(venv, index):
    base = "pip install --python %s -i %s alpha==" % (venv.python, index.url)
    uv_ffi.install(base + "1.0")
    uv_ffi.install(base + "1.1")
    # Another tool changes the folder before the engine confirmed its own change.
    external_uv("install", "--python", venv.python, "-i", index.url, "delta==1.0")
    time.sleep(0.2)  # past the window: the engine has tried to confirm its change by now
    assert ("delta", "1.0") in uv_ffi.get_site_packages_cache(python=venv.python)
    assert uv_ffi.install(base + "1.1").satisfied
    assert venv.installed() == {"alpha": "1.1", "delta": "1.0"}
