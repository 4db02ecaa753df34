"""
Tests for C{twisted/plugins/swooletw_plugins.py}: the C{twistd swoole-tcp}
plugin is declared, found by Twisted's plugin system, resolves lazily to
L{swooletw.tap.tcp} and imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

import os
import subprocess
import sys

from twisted.application.service import IServiceMaker, ServiceMaker
from twisted.plugin import IPlugin, getPlugins
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

#: The repository root (this file is C{tests/test_plugins.py}).
REPO = FilePath(__file__).parent().parent()


def assertCheckoutPlugin(testCase: Any, path: str) -> None:
    """
    C{path} is the checkout's plugin file, or an installed copy of it (after
    C{pip install .}, as .ci/run does, the installed one may come first).
    """
    expected = REPO.child("twisted").child("plugins").child("swooletw_plugins.py").path
    if os.path.realpath(path) == os.path.realpath(expected):
        return
    with open(path, "rb") as imported, open(expected, "rb") as checkout:
        testCase.assertEqual(imported.read(), checkout.read(), f"{path} is not this checkout's plugin")



class PluginDeclarationTests(SynchronousTestCase):
    """
    The C{swooleTCP} service maker in C{twisted.plugins.swooletw_plugins}.
    """

    def setUp(self) -> None:
        from twisted.plugins import swooletw_plugins

        self.module = swooletw_plugins
        self.maker = swooletw_plugins.swooleTCP

    def test_providesIServiceMaker(self) -> None:
        """
        The maker provides L{IServiceMaker} and L{IPlugin}.
        """
        self.assertTrue(verifyObject(IServiceMaker, self.maker))
        self.assertTrue(IPlugin.providedBy(self.maker))

    def test_tapname(self) -> None:
        """
        The subcommand is C{swoole-tcp}.
        """
        self.assertEqual(self.maker.tapname, "swoole-tcp")

    def test_describedAndNamed(self) -> None:
        """
        The maker has a name and a one-line description for C{twistd --help}.
        """
        self.assertIsInstance(self.maker, ServiceMaker)
        self.assertTrue(self.maker.name)
        self.assertTrue(self.maker.description)
        self.assertNotIn("\n", self.maker.description)

    def test_optionsResolve(self) -> None:
        """
        C{options} resolves (through the lazy module path) to
        L{swooletw.tap.tcp.Options}.
        """
        from swooletw.tap import tcp

        self.assertEqual(self.maker.module, "swooletw.tap.tcp")
        self.assertIs(self.maker.options, tcp.Options)

    def test_makeServiceResolves(self) -> None:
        """
        C{makeService} resolves to L{swooletw.tap.tcp.makeService}.
        """
        from swooletw.tap import tcp

        self.assertIs(self.maker.makeService, tcp.makeService)

    def test_optionsParse(self) -> None:
        """
        The resolved options class parses an empty command line.
        """
        options = self.maker.options()
        options.parseOptions([])
        self.assertEqual(options["app"], "swooletw.mail.taskserver:makeServer")

    def test_pluginFileFromCheckout(self) -> None:
        """
        The plugin module imported here is the checkout's
        C{twisted/plugins/swooletw_plugins.py}.
        """
        assertCheckoutPlugin(self, os.path.abspath(self.module.__file__))

    def test_noPackageInitInCheckout(self) -> None:
        """
        The checkout has no C{twisted/__init__.py} or
        C{twisted/plugins/__init__.py} (they would shadow Twisted or hide the
        plugin directory from the plugin scanner).
        """
        self.assertFalse(REPO.child("twisted").child("__init__.py").exists())
        self.assertFalse(REPO.child("twisted").child("plugins").child("__init__.py").exists())


class PluginDiscoveryTests(SynchronousTestCase):
    """
    Twisted's plugin system finds the plugin.
    """

    def test_getPluginsFindsSwooleTCP(self) -> None:
        """
        L{getPlugins}C{(IServiceMaker)} includes a C{swoole-tcp} maker, once.
        """
        tapnames = [plugin.tapname for plugin in getPlugins(IServiceMaker)]
        self.assertEqual(tapnames.count("swoole-tcp"), 1)

    def test_foundPluginResolves(self) -> None:
        """
        The discovered C{swoole-tcp} maker resolves to the swooletw tap
        module.
        """
        from swooletw.tap import tcp

        [maker] = [p for p in getPlugins(IServiceMaker) if p.tapname == "swoole-tcp"]
        self.assertIs(maker.makeService, tcp.makeService)


class PluginImportCostTests(SynchronousTestCase):
    """
    Importing the plugin module (which every C{twistd} start does) imports
    no reactor and does not import swooletw itself.
    """

    def importIn(self, expression: str) -> str:
        """
        Import the plugin module in a fresh interpreter with the checkout on
        C{sys.path}, print C{expression}, return the output.
        """
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO.path, env.get("PYTHONPATH")]))
        code = f"import twisted.plugins.swooletw_plugins, sys; print({expression})"
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=self.mktempDir(),
            env=env,
            capture_output=True,
            timeout=30,
        )
        self.assertEqual(result.returncode, 0, result.stderr.decode("utf-8", "replace"))
        return result.stdout.decode("ascii").strip()

    def mktempDir(self) -> str:
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        return path

    def test_noReactorImported(self) -> None:
        """
        C{twisted.internet.reactor} is not in C{sys.modules} after importing
        the plugin module.
        """
        self.assertEqual(self.importIn("'twisted.internet.reactor' in sys.modules"), "False")

    def test_tapModuleNotImported(self) -> None:
        """
        The tap module (and so the server) is imported only when the
        subcommand is used.
        """
        self.assertEqual(
            self.importIn("'swooletw.tap.tcp' in sys.modules, 'swooletw.api.server' in sys.modules"),
            "False False",
        )

    def test_importedFromCheckout(self) -> None:
        """
        The subprocess imported the checkout's plugin file (so the two
        checks above are about this file).
        """
        assertCheckoutPlugin(self, self.importIn("twisted.plugins.swooletw_plugins.__file__"))
