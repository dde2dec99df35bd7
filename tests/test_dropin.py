"""The upstream package's surface as its main user (a multi-version package manager) calls it:
every name it imports, the install-plan hook, bubble (``--target`` folder) views and both call
shapes of each patch function. Asserted on disk and through the environments' own Python."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from typing import Dict, Iterator, List, Tuple

import pytest

import uv_ffi
from uv_ffi import policy
from uv_ffi.demo import find_uv

#: What the manager's vendored ``uv_ffi/__init__.py`` documents and imports.
UPSTREAM_NAMES = [
    "run", "run_capture", "__version__",
    "get_site_packages_cache", "invalidate_site_packages_cache", "clear_registry_cache",
    "patch_site_packages_cache",
    "evict_bubble_cache", "evict_packages_from_bubble_cache", "patch_bubble_site_packages_cache",
    "set_plan_callback", "get_install_plan", "mark_plan_handled",
]


@pytest.fixture(scope="module")
def uv_binary() -> str:
    uv = find_uv()
    assert uv, "the uv 0.12.5 binary is needed (pip install uv==0.12.5)"
    return uv


@pytest.fixture(autouse=True)
def no_callback_left_behind():
    yield
    uv_ffi.set_plan_callback(None)


@contextlib.contextmanager
def trusting() -> Iterator[None]:
    """Views are read without comparing with the disk: a wrong view would show."""
    previous = policy.get_policy()
    policy.set_policy(policy.TRUST)
    try:
        yield
    finally:
        policy.set_policy(previous)


def snapshot(folder: str) -> Dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256), and every folder (-> "dir")."""
    found: Dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), folder)] = "dir"
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def dist_infos(folder: str) -> List[Tuple[str, str]]:
    """``(name, version)`` of every ``.dist-info`` folder in ``folder``, as the view spells them."""
    pairs = []
    for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if entry.endswith(".dist-info"):
            name, version = entry[: -len(".dist-info")].split("-", 1)
            pairs.append((name.replace("_", "-").lower(), version))
    return sorted(pairs)


def imported_versions(python: str, folder: str, *names: str) -> Dict[str, str]:
    """What a Python with ``folder`` on its path reports through importlib.metadata."""
    code = (
        "import importlib.metadata as m, sys\n"
        "for n in sys.argv[2:]:\n"
        "    found = list(m.distributions(name=n, path=[sys.argv[1]]))\n"
        "    print(n, found[0].version if found else '-')\n"
    )
    out = subprocess.run([python, "-I", "-c", code, folder, *names], check=True,
                         capture_output=True, text=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def install_words(python: str, index, *words: str) -> List[str]:
    return ["pip", "install", "--python", python, "-i", index.url, *words]


# -- the names ---------------------------------------------------------------------------------


def test_every_upstream_name_is_exported_and_callable():
    for name in UPSTREAM_NAMES:
        assert name in uv_ffi.__all__, name
        assert hasattr(uv_ffi, name), name
    for name in uv_ffi.__all__:
        value = getattr(uv_ffi, name)
        assert name == "__version__" or callable(value), name
    assert uv_ffi.run_capture is uv_ffi.run
    assert uv_ffi.mark_plan_handled() is None
    assert isinstance(uv_ffi.__version__, str) and uv_ffi.__version__


# -- the plan hook -----------------------------------------------------------------------------


def test_a_plan_taken_over_changes_nothing_and_succeeds(venv, index, tmp_path):
    bubble = str(tmp_path / "bubble")
    os.makedirs(bubble)
    before = snapshot(bubble)
    seen: List[list] = []

    def take_over(entries):
        seen.append(entries)
        return True

    uv_ffi.set_plan_callback(take_over)
    code, installed, removed, error = uv_ffi.run(
        " ".join(install_words(venv.python, index, "--target", bubble, "beta==1.0")))

    assert (code, installed, removed, error) == (0, [], [], "")
    assert seen == [[("alpha", "2.0", seen[0][0][2]), ("beta", "1.0", seen[0][1][2])]]
    assert {action for _, _, action in seen[0]} <= {"cached", "remote"}
    assert uv_ffi.get_install_plan() == seen[0]
    assert snapshot(bubble) == before


def test_a_plan_let_through_installs_exactly_it(venv, index, tmp_path):
    bubble = str(tmp_path / "bubble")
    result = uv_ffi.install(install_words(venv.python, index, "--target", bubble, "beta==1.0"),
                            on_plan=lambda plan: False)
    assert not result.taken_over
    assert [(e.name, e.version) for e in result.plan] == [("alpha", "2.0"), ("beta", "1.0")]
    assert result.installed == (("alpha", "2.0"), ("beta", "1.0"))
    assert dist_infos(bubble) == [("alpha", "2.0"), ("beta", "1.0")]
    assert imported_versions(venv.python, bubble, "alpha", "beta") == {"alpha": "2.0", "beta": "1.0"}


def test_cached_and_remote_are_told_apart(make_venv, index, tmp_path):
    cache = str(tmp_path / "cache")
    first, second = make_venv(), make_venv()
    plans: List[uv_ffi.Plan] = []

    def record(plan):
        plans.append(plan)
        return False

    uv_ffi.install(install_words(first.python, index, "--cache-dir", cache, "alpha==1.0"), on_plan=record)
    uv_ffi.install(install_words(second.python, index, "--cache-dir", cache, "alpha==1.0"), on_plan=record)
    assert [tuple(plan) for plan in plans] == [
        (("alpha", "1.0", "remote"),),
        (("alpha", "1.0", "cached"),),
    ]
    assert first.metadata_version("alpha") == second.metadata_version("alpha") == "1.0"


def test_a_swap_plans_a_reinstall(venv, index):
    uv_ffi.install(install_words(venv.python, index, "alpha==1.0"))
    plans: List[uv_ffi.Plan] = []
    result = uv_ffi.install(install_words(venv.python, index, "alpha==1.1"),
                            on_plan=lambda plan: plans.append(plan) or False)
    assert [(e.name, e.version) for e in plans[0].reinstall] == [("alpha", "1.0")]
    assert [(e.name, e.version) for e in plans[0].of("remote") + plans[0].cached] == [("alpha", "1.1")]
    assert (result.installed, result.removed) == ((("alpha", "1.1"),), (("alpha", "1.0"),))
    assert venv.metadata_version("alpha") == "1.1"


def test_an_uninstall_plans_removals_and_can_be_taken_over(venv, index):
    uv_ffi.install(install_words(venv.python, index, "beta==1.0"))
    before = snapshot(venv.site_packages)
    result = uv_ffi.install(["pip", "uninstall", "--python", venv.python, "beta", "alpha"],
                            on_plan=lambda plan: True)
    assert result.taken_over and result.removed == ()
    assert tuple(result.plan) == (("alpha", "2.0", "extraneous"), ("beta", "1.0", "extraneous"))
    assert snapshot(venv.site_packages) == before
    # Let through, the same plan removes both.
    result = uv_ffi.install(["pip", "uninstall", "--python", venv.python, "beta", "alpha"],
                            on_plan=lambda plan: None)
    assert result.removed == (("alpha", "2.0"), ("beta", "1.0"))
    assert venv.installed() == {}


def test_a_satisfied_install_has_an_empty_plan_and_no_question(venv, index):
    uv_ffi.install(install_words(venv.python, index, "alpha==1.0"))
    asked: List[object] = []
    for _ in range(3):  # the first on the engine thread, the others answered from memory
        result = uv_ffi.install(install_words(venv.python, index, "alpha==1.0"), on_plan=asked.append)
        assert result.satisfied and tuple(result.plan) == () and asked == []
        assert uv_ffi.get_install_plan() == []


@pytest.mark.parametrize("callback, cause", [
    (lambda plan: 1 / 0, ZeroDivisionError),
    (lambda plan: "yes", None),
])
def test_a_failing_callback_fails_the_call_cleanly(venv, index, callback, cause):
    uv_ffi.install(install_words(venv.python, index, "alpha==1.0"))
    before = snapshot(venv.site_packages)
    with pytest.raises(uv_ffi.PlanCallbackError) as raised:
        uv_ffi.install(install_words(venv.python, index, "alpha==1.1"), on_plan=callback)
    assert raised.value.exit_code == 1 and "nothing was changed" in str(raised.value)
    assert (type(raised.value.__cause__) if cause else None) is cause
    assert snapshot(venv.site_packages) == before
    # The tuple API reports it as a failed call; the engine is fine afterwards.
    uv_ffi.set_plan_callback(callback)
    code, _, _, error = uv_ffi.run(" ".join(install_words(venv.python, index, "alpha==1.1")))
    assert code == 1 and "plan callback" in error
    uv_ffi.set_plan_callback(None)
    assert uv_ffi.install(install_words(venv.python, index, "alpha==1.1")).installed == (("alpha", "1.1"),)
    assert venv.metadata_version("alpha") == "1.1"


def test_a_plan_is_refused_when_the_environment_changed_in_between(venv, index, uv_binary):
    def change_it_then_go_ahead(plan):
        subprocess.run([uv_binary, "pip", "install", "--python", venv.python, "-i", index.url,
                        "zeta==1.0"], check=True, capture_output=True)
        return False

    with pytest.raises(uv_ffi.StalePlan):
        uv_ffi.install(install_words(venv.python, index, "alpha==1.0"), on_plan=change_it_then_go_ahead)
    assert venv.installed() == {"zeta": "1.0"}


def test_no_callback_asks_for_no_plan(venv, index):
    result = uv_ffi.install(install_words(venv.python, index, "alpha==1.0"))
    assert result.plan is None and not result.taken_over


# -- bubbles and patches -----------------------------------------------------------------------


def test_patch_site_packages_cache_takes_both_shapes(venv, index):
    uv_ffi.install(install_words(venv.python, index, "alpha==1.0"))
    with trusting():
        # Upstream's pair lists.
        assert uv_ffi.patch_site_packages_cache([("zeta", "1.0")], [], venv.python)
        assert ("zeta", "1.0") in uv_ffi.get_site_packages_cache(venv.python)
        assert uv_ffi.patch_site_packages_cache([], [("zeta", "1.0")], venv.python)
        # One distribution by its .dist-info folder: removed when the folder is gone...
        location = os.path.join(venv.site_packages, "alpha-1.0.dist-info")
        shutil.rmtree(location)
        assert uv_ffi.patch_site_packages_cache("alpha", "1.0", location)
        assert uv_ffi.get_site_packages_cache(venv.python) == []
        # ... installed when it is there.
        os.makedirs(location)
        assert uv_ffi.patch_site_packages_cache("alpha", "1.0", location)
        assert uv_ffi.get_site_packages_cache(venv.python) == [("alpha", "1.0")]
    with pytest.raises(TypeError):
        uv_ffi.patch_site_packages_cache("alpha")


def test_patch_bubble_site_packages_cache_takes_both_shapes(venv, index, tmp_path):
    bubble = str(tmp_path / "bubble")
    uv_ffi.install(install_words(venv.python, index, "--target", bubble, "alpha==1.0"))
    with trusting():
        assert uv_ffi.get_site_packages_cache(target=bubble) == [("alpha", "1.0")]
        # (bubble_id, name, version, location): the host removed alpha from the bubble itself.
        location = os.path.join(bubble, "alpha-1.0.dist-info")
        shutil.rmtree(location)
        assert uv_ffi.patch_bubble_site_packages_cache(bubble, "alpha", "1.0", location)
        assert uv_ffi.get_site_packages_cache(target=bubble) == []
        # ([[name, version]], []): for the bubble of the last --target call.
        os.makedirs(location)
        assert uv_ffi.patch_bubble_site_packages_cache([["alpha", "1.0"]], [])
        assert uv_ffi.get_site_packages_cache(target=bubble) == [("alpha", "1.0")]
        # The environment's own view is untouched.
        assert uv_ffi.get_site_packages_cache(venv.python) == []


def test_bubble_eviction_forgets_bubble_views_only(venv, index, tmp_path):
    uv_ffi.evict_bubble_cache()  # the bubbles of earlier tests
    uv_ffi.install(install_words(venv.python, index, "alpha==1.0"))
    bubbles = [str(tmp_path / name) for name in ("b1", "b2")]
    for bubble in bubbles:
        uv_ffi.install(install_words(venv.python, index, "--target", bubble, "zeta==1.0"))
    env_rescans = uv_ffi.get_counters(venv.python)["rescans"]

    assert uv_ffi.evict_packages_from_bubble_cache(bubbles[0], "zeta")
    assert uv_ffi.evict_bubble_cache() == 1  # b1 was already forgotten
    assert uv_ffi.evict_bubble_cache() == 0
    # The environment kept its view (no rescan); the bubbles are read again, correctly.
    assert uv_ffi.get_counters(venv.python)["rescans"] == env_rescans
    with trusting():
        assert uv_ffi.get_site_packages_cache(venv.python) == [("alpha", "1.0")]
        for bubble in bubbles:
            assert uv_ffi.get_site_packages_cache(target=bubble) == [("zeta", "1.0")]


def test_a_manager_style_session_keeps_every_view_true(make_venv, index, tmp_path, uv_binary):
    venv = make_venv()
    # Warm-up, as the manager's workers do at start.
    code, _, _, error = uv_ffi.run("pip freeze --python %s" % venv.python)
    assert (code, error) == (0, "")
    uv_ffi.run(" ".join(install_words(venv.python, index, "alpha==2.0")))
    bubbles = {version: str(tmp_path / ("alpha-" + version)) for version in ("1.0", "1.1")}
    for version, bubble in bubbles.items():
        code, installed, _, _ = uv_ffi.run(" ".join(
            install_words(venv.python, index, "--target", bubble, "alpha==" + version)))
        assert (code, installed) == (0, [("alpha", version)])

    # A plan the host takes over: it installs beta into a third bubble itself, with uv.
    third = str(tmp_path / "beta-1.0")
    uv_ffi.set_plan_callback(lambda entries: True)
    assert uv_ffi.run(" ".join(install_words(venv.python, index, "--target", third, "beta==1.0", "--no-deps")))[:3] == (0, [], [])
    uv_ffi.set_plan_callback(None)
    assert [entry[:2] for entry in uv_ffi.get_install_plan()] == [("beta", "1.0")]
    subprocess.run([uv_binary, "pip", "install", "--python", venv.python, "-i", index.url, "--target",
                    third, "--no-deps", "beta==1.0"], check=True, capture_output=True)
    # Its file watcher reports the new .dist-info, in the one-distribution shape.
    assert uv_ffi.patch_bubble_site_packages_cache(third, "beta", "1.0", os.path.join(third, "beta-1.0.dist-info"))
    # And a change in the main environment, in the pairs shape.
    subprocess.run([uv_binary, "pip", "install", "--python", venv.python, "-i", index.url,
                    "zeta==1.0"], check=True, capture_output=True)
    assert uv_ffi.patch_site_packages_cache([("zeta", "1.0")], [], venv.python)

    with trusting():
        for bubble in [*bubbles.values(), third]:
            assert uv_ffi.get_site_packages_cache(target=bubble) == dist_infos(bubble), bubble
        assert uv_ffi.get_site_packages_cache(venv.python) == dist_infos(venv.site_packages)
    assert venv.installed() == {"alpha": "2.0", "zeta": "1.0"}
    assert imported_versions(venv.python, bubbles["1.1"], "alpha") == {"alpha": "1.1"}


def test_many_bubbles_keep_the_newest_views_and_every_install_works(venv, index, tmp_path):
    uv_ffi.evict_bubble_cache()
    bubbles = [str(tmp_path / ("b%02d" % i)) for i in range(20)]
    for bubble in bubbles:
        result = uv_ffi.install(install_words(venv.python, index, "--target", bubble, "zeta==1.0"))
        assert result.installed == (("zeta", "1.0"),) and dist_infos(bubble) == [("zeta", "1.0")]
    # The engine keeps the views of the 16 used most recently; older ones are read again.
    assert uv_ffi.evict_bubble_cache() == 16
    with trusting():
        assert uv_ffi.get_site_packages_cache(target=bubbles[0]) == [("zeta", "1.0")]


def test_a_host_patch_stands_while_the_engine_idles(venv, index, tmp_path):
    uv_ffi.install(install_words(venv.python, index, "alpha==1.0"))
    bubble = str(tmp_path / "elsewhere")
    with trusting():
        assert uv_ffi.patch_site_packages_cache([("zeta", "1.0")], [], venv.python)
        # Work elsewhere leaves the engine idle with this environment the last one used; the
        # second call starts only once the idle work after the first is over.
        for _ in range(2):
            uv_ffi.install(install_words(venv.python, index, "--target", bubble, "zeta==1.0"))
        assert uv_ffi.get_site_packages_cache(venv.python) == [("alpha", "1.0"), ("zeta", "1.0")]
        # Invalidating is what drops a patch: the disk is read again.
        uv_ffi.invalidate_site_packages_cache(venv.python)
        assert uv_ffi.get_site_packages_cache(venv.python) == [("alpha", "1.0")]
