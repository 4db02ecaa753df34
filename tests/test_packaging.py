"""
Packaging tests (integration, real processes): the wheel holds the right
files, and once installed into a fresh virtualenv C{twistd} lists
C{swoole-tcp}, also after a reinstall (an upgrade).

The wheel is built once per test module with
C{pip wheel --no-deps --no-build-isolation} from a copy of the checkout
(so that the build does not write C{build/} and C{*.egg-info} into the
shared working tree, nor pick up a stale C{build/lib}).  The virtualenv sees
the packages of the environment running the tests, so that Twisted and the
other dependencies come from there: no network is needed.  When that
environment is the system, C{--system-site-packages} does it; when it is
itself a virtualenv (C{pip install '.[test]'} in one, as the README says),
the new venv is made from the I{base} interpreter, which may have no
Twisted, so a C{.pth} file adds this environment's site-packages too.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from typing import Any

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, SynchronousTestCase

#: The repository root (this file is C{tests/test_packaging.py}).
REPO = FilePath(__file__).parent().parent()

_TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"

#: What the module builds once: the wheel's path (or the error).
_built: dict[str, Any] = {}


def _tempDir(prefix: str) -> str:
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, True)
    return path


def _run(argv: list[str], timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def _cleanEnv() -> dict[str, str]:
    """
    The environment without anything that would put the checkout on
    C{sys.path}.
    """
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(name, None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def inVirtualenv() -> bool:
    """
    Whether the tests run inside a virtualenv (C{python -m venv} or
    C{virtualenv}).
    """
    return sys.prefix != sys.base_prefix


def seeRunningEnvironment(siteDir: str) -> None:
    """
    Make the venv whose site-packages is C{siteDir} see the packages of the
    environment running the tests, when that is a virtualenv: a venv made
    from one is made from the base interpreter, and its
    C{--system-site-packages} are the base's.
    """
    if inVirtualenv():
        writeEnvironmentPth(siteDir)


def writeEnvironmentPth(siteDir: str) -> None:
    """
    Write a C{.pth} file into C{siteDir} listing this environment's
    C{purelib} and C{platlib} (where C{pip install} put Twisted); Python
    appends them to C{sys.path} right after the venv's own site-packages,
    before the base's.
    """
    paths = sysconfig.get_paths()
    with open(os.path.join(siteDir, "_swooletw_test_environment.pth"), "w") as pth:
        pth.write("".join(f"{path}\n" for path in dict.fromkeys([paths["purelib"], paths["platlib"]])))


def buildWheel() -> str:
    """
    Build the wheel (once per module); return its path.
    """
    if "wheel" not in _built:
        root = _tempDir("swooletw-wheel-")
        source = os.path.join(root, "src")
        shutil.copytree(
            REPO.path,
            source,
            ignore=shutil.ignore_patterns(
                ".git", "build", "dist", "*.egg-info", "_trial_temp*", "__pycache__", "bench",
                "*.pyc",
            ),
        )
        out = os.path.join(root, "dist")
        result = _run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--no-index", "-w", out, source],
            timeout=120,
            cwd=root,
            env=_cleanEnv(),
        )
        if result.returncode != 0:
            raise AssertionError(f"pip wheel failed:\n{result.stdout}\n{result.stderr}")
        [wheel] = [os.path.join(out, name) for name in os.listdir(out) if name.endswith(".whl")]
        _built["wheel"] = wheel
    return _built["wheel"]


class CheckoutIgnoresTests(SynchronousTestCase):
    """
    What a default run writes into the working directory is ignored by git.
    """

    def test_outboxIgnored(self) -> None:
        """
        The Maildir C{outbox/} that C{twistd -n swoole-tcp} creates without
        C{--smtp} is in C{.gitignore}.
        """
        if shutil.which("git") is None or not REPO.child(".git").exists():
            raise SkipTest("not a git checkout")
        result = _run(["git", "-C", REPO.path, "check-ignore", "--no-index", "outbox/new/1.eml"])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


class WheelContentsTests(SynchronousTestCase):
    """
    The files in the built wheel.
    """

    def setUp(self) -> None:
        with zipfile.ZipFile(buildWheel()) as wheel:
            self.names = wheel.namelist()

    def test_wheelName(self) -> None:
        """
        The wheel is a pure-Python C{swooletw} wheel.
        """
        name = os.path.basename(buildWheel())
        self.assertTrue(name.startswith("swooletw-"), name)
        self.assertTrue(name.endswith("-py3-none-any.whl"), name)

    def test_containsPlugin(self) -> None:
        """
        The wheel contains C{twisted/plugins/swooletw_plugins.py}.
        """
        self.assertIn("twisted/plugins/swooletw_plugins.py", self.names)

    def test_containsPackage(self) -> None:
        """
        The wheel contains the package, its tap module, its examples and
        the C{py.typed} marker.
        """
        for name in (
            "swooletw/__init__.py",
            "swooletw/tap/__init__.py",
            "swooletw/tap/tcp.py",
            "swooletw/py.typed",
            "swooletw/examples/echo.py",
            "swooletw/examples/packets.py",
            "swooletw/examples/timers.py",
        ):
            self.assertIn(name, self.names)

    def test_noTwistedPackageInits(self) -> None:
        """
        The wheel has no C{twisted/__init__.py} nor
        C{twisted/plugins/__init__.py} (they would overwrite Twisted's).
        """
        self.assertNotIn("twisted/__init__.py", self.names)
        self.assertNotIn("twisted/plugins/__init__.py", self.names)

    def test_onlyThePluginUnderTwisted(self) -> None:
        """
        The only file under C{twisted/} is the plugin module.
        """
        self.assertEqual(
            [name for name in self.names if name.startswith("twisted/")],
            ["twisted/plugins/swooletw_plugins.py"],
        )

    def test_noDropinCache(self) -> None:
        """
        No C{dropin.cache} is shipped.
        """
        self.assertEqual([name for name in self.names if name.endswith("dropin.cache")], [])

    def test_noTestsTapOrBytecode(self) -> None:
        """
        No C{tests/}, no top-level C{tap/} (the .tac files), no bytecode.
        """
        self.assertEqual(
            [name for name in self.names
             if name.startswith(("tests/", "tap/", "bench/")) or name.endswith((".pyc", ".tac"))],
            [],
        )

    def test_topLevelNames(self) -> None:
        """
        The top-level entries are exactly C{swooletw}, C{twisted} and the
        dist-info directory.
        """
        top = {name.split("/", 1)[0] for name in self.names}
        distInfo = {name for name in top if name.endswith(".dist-info")}
        self.assertEqual(len(distInfo), 1)
        self.assertEqual(top - distInfo, {"swooletw", "twisted"})


class RunningEnvironmentTests(SynchronousTestCase):
    """
    L{writeEnvironmentPth}: how the venv sees Twisted when the tests run in
    a virtualenv whose base interpreter has none.
    """

    def test_venvWithoutSystemPackagesSeesTwisted(self) -> None:
        """
        A venv that cannot see the base's site-packages (as when the base has
        no Twisted) imports Twisted from this environment once the C{.pth}
        file is written.
        """
        venv = os.path.abspath(self.mktemp())
        created = _run([sys.executable, "-m", "venv", "--without-pip", venv], env=_cleanEnv())
        python = os.path.join(venv, "bin", "python")
        if created.returncode != 0 or not os.path.exists(python):
            raise SkipTest(f"cannot create a virtualenv: {created.stderr.strip()}")
        cwd = _tempDir("swooletw-cwd-")

        def run(code: str) -> subprocess.CompletedProcess[str]:
            return _run([python, "-c", code], cwd=cwd, env=_cleanEnv())

        if run("import twisted.internet").returncode == 0:
            raise SkipTest("the venv sees a Twisted without the .pth file")
        writeEnvironmentPth(run("import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
        imported = run("import twisted.internet")
        self.assertEqual(imported.returncode, 0, imported.stderr)


class InstalledWheelTests(SynchronousTestCase):
    """
    The wheel installed into a fresh virtualenv, run from a directory that
    is not the checkout.
    """

    #: Shared by the tests of this class: set up once by L{_install}.
    _state: dict[str, Any] = {}

    def setUp(self) -> None:
        if "error" in self._state:
            raise SkipTest(self._state["error"])
        if "failure" in self._state:
            self.fail(self._state["failure"])
        if "firstHelp" not in self._state:
            try:
                self._install()
            except AssertionError as e:
                # Fail every test of the class with the reason, without
                # building the venv again for each one.
                self._state["failure"] = str(e)
                raise
        self.__dict__.update(self._state)

    @classmethod
    def _install(cls) -> None:
        state = cls._state
        wheel = buildWheel()
        root = _tempDir("swooletw-venv-")
        venv = os.path.join(root, "venv")
        created = _run(
            [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv],
            env=_cleanEnv(),
        )
        python = os.path.join(venv, "bin", "python")
        if created.returncode != 0 or not os.path.exists(python):
            state["error"] = f"cannot create a virtualenv: {created.stderr.strip()}"
            raise SkipTest(state["error"])
        cwd = os.path.join(root, "elsewhere")
        os.makedirs(cwd)
        state.update(venv=venv, python=python, cwd=cwd, wheel=wheel)
        siteDir = cls._probe(python, cwd, "import sysconfig; print(sysconfig.get_paths()['purelib'])")
        state["siteDir"] = siteDir
        seeRunningEnvironment(siteDir)
        cls._pip(python, cwd, wheel)
        # What a first start after the install sees (recorded now so that the
        # reinstall test may run in any order).
        state["firstHelp"] = cls._twistdHelp(python, cwd)
        state["firstCacheModules"] = cls._cacheModules(python, cwd, siteDir)

    @staticmethod
    def _probe(python: str, cwd: str, code: str) -> str:
        result = _run([python, "-c", code], cwd=cwd, env=_cleanEnv())
        if result.returncode != 0:
            raise AssertionError(f"{code!r} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout.strip()

    @staticmethod
    def _pip(python: str, cwd: str, wheel: str, *extra: str) -> None:
        result = _run(
            # --ignore-installed: the venv sees the running environment's
            # site-packages, where .ci/run (or the README's pip install) has
            # installed the same version already.
            [python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", *extra, wheel],
            cwd=cwd,
            env=_cleanEnv(),
        )
        if result.returncode != 0:
            raise AssertionError(f"pip install failed:\n{result.stdout}\n{result.stderr}")

    @staticmethod
    def _twistdHelp(python: str, cwd: str) -> str:
        result = _run([python, "-c", _TWISTD, "--help"], cwd=cwd, env=_cleanEnv())
        return result.stdout + result.stderr

    @classmethod
    def _cacheModules(cls, python: str, cwd: str, siteDir: str) -> list[str] | None:
        """
        The module names in the venv's C{twisted/plugins/dropin.cache}, or
        L{None} if there is none.
        """
        cache = os.path.join(siteDir, "twisted", "plugins", "dropin.cache")
        if not os.path.exists(cache):
            return None
        # Unpickled in the venv (the cache holds twisted.plugin objects).
        code = (
            "import pickle, sys, twisted.plugin; "
            f"print(' '.join(sorted(pickle.load(open({cache!r}, 'rb')))))"
        )
        return cls._probe(python, cwd, code).split()

    def test_importsFromVenv(self) -> None:
        """
        In the venv, from elsewhere, C{swooletw} is imported from the venv's
        site-packages, not the checkout, and the plugin module is the
        wheel's.
        """
        printed = self._probe(
            self.python,
            self.cwd,
            "import swooletw, twisted.plugins.swooletw_plugins as p; "
            "print(swooletw.__file__); print(p.__file__)",
        ).splitlines()
        site = os.path.realpath(self.siteDir)
        package, plugin = (os.path.realpath(path) for path in printed)
        self.assertEqual(package, os.path.join(site, "swooletw", "__init__.py"))
        installed = os.path.join(site, "twisted", "plugins", "swooletw_plugins.py")
        self.assertTrue(os.path.exists(installed))
        if plugin != installed:
            # Twisted's own twisted/plugins comes first in the package path;
            # after .ci/run's "pip install ." the system has the same plugin
            # file there: it must be the wheel's, byte for byte.
            with open(plugin, "rb") as found, open(installed, "rb") as wheel:
                self.assertEqual(found.read(), wheel.read())
            self.assertNotEqual(os.path.dirname(plugin), os.path.dirname(os.path.abspath(__file__)))

    def test_twistedFromSystem(self) -> None:
        """
        Twisted itself comes from the environment running the tests (the
        system's site-packages, or the virtualenv the tests run in), not
        the venv (so the plugin lives in a second C{twisted/plugins}
        directory).
        """
        printed = self._probe(self.python, self.cwd, "import twisted; print(twisted.__file__)")
        self.assertFalse(
            os.path.realpath(printed).startswith(os.path.realpath(self.venv) + os.sep), printed
        )

    def test_twistdListsPlugin(self) -> None:
        """
        After the install, the venv's C{twistd --help} lists C{swoole-tcp}.
        """
        self.assertIn("swoole-tcp", self.firstHelp)
        self.assertIn("A Swoole-style TCP server", self.firstHelp)

    def test_twistListsPlugin(self) -> None:
        """
        The venv's C{python -m twisted --help} (twist) lists C{swoole-tcp}.
        """
        result = _run([self.python, "-m", "twisted", "--help"], cwd=self.cwd, env=_cleanEnv())
        self.assertIn("swoole-tcp", result.stdout + result.stderr)

    def test_subcommandHelp(self) -> None:
        """
        C{twistd swoole-tcp --help} loads the tap module from the venv and
        shows its options.
        """
        result = _run([self.python, "-c", _TWISTD, "swoole-tcp", "--help"], cwd=self.cwd, env=_cleanEnv())
        output = result.stdout + result.stderr
        self.assertIn("--listen", output)
        self.assertIn("--app", output)
        self.assertNotIn("Traceback", output)

    def test_firstCacheListsPlugin(self) -> None:
        """
        The cache twistd wrote in the venv's C{twisted/plugins} (if it wrote
        one) lists C{swooletw_plugins}.
        """
        if self.firstCacheModules is None:
            raise SkipTest("twistd wrote no dropin.cache in the venv")
        self.assertIn("swooletw_plugins", self.firstCacheModules)

    def test_reinstallKeepsPlugin(self) -> None:
        """
        After C{pip install --force-reinstall} (an upgrade), twistd still
        lists C{swoole-tcp} and the venv's cache lists C{swooletw_plugins}.
        """
        self._pip(self.python, self.cwd, self.wheel, "--force-reinstall")
        pluginFile = os.path.join(self.siteDir, "twisted", "plugins", "swooletw_plugins.py")
        self.assertTrue(os.path.exists(pluginFile))
        output = self._twistdHelp(self.python, self.cwd)
        self.assertIn("swoole-tcp", output)
        modules = self._cacheModules(self.python, self.cwd, self.siteDir)
        if modules is not None:
            self.assertIn("swooletw_plugins", modules)
        # Twisted's own plugins are still found too.
        self.assertIn("web ", output)
