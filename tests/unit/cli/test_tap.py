"""Tests for the twistd plugin: C{twistd bipgw --config FILE}."""

from __future__ import annotations

import base64
import io
import json
import sys
import types
from pathlib import Path
from typing import Any

from twisted.application.service import Application, IService, IServiceMaker, MultiService
from twisted.internet.testing import MemoryReactor
from twisted.logger import ILogObserver, Logger, LogLevel, LogPublisher
from twisted.plugin import getPlugins
from twisted.python.logfile import LogFile
from twisted.python.usage import UsageError
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase

from bipgw import tap
from bipgw.config import Config
from bipgw.keys import KeyStore, RootKey, Secret
from tests.unit.config import MINIMAL, private_directory, with_keys, write

#: A configuration whose [log] asks for JSON at level warn.
_JSON_WARN = with_keys(MINIMAL, "log", level='"warn"', format='"json"')


def _keys(directory: Path) -> None:
    """The root key file and keystore MINIMAL names, in C{directory}."""
    root = RootKey(Secret(bytes(range(32))))
    root.save(directory / "root.key")
    KeyStore.create(directory / "keystore.json", root)


class OptionsTests(SynchronousTestCase):
    """The plugin's options read and check the configuration file."""

    def setUp(self) -> None:
        self.base = private_directory(self)
        self.path = write(self.base, "bipgw.toml", MINIMAL)
        _keys(self.base)

    def _parse(self, argv: list[str], environ: dict[str, str] | None = None) -> tap.Options:
        options = tap.Options({} if environ is None else environ)
        options.parseOptions(argv)
        return options

    def test_config(self) -> None:
        """--config FILE gives the checked configuration."""
        options = self._parse(["--config", str(self.path)])
        self.assertEqual(options.config, Config.from_file(self.path))
        self.assertEqual(self._parse(["-c", str(self.path)]).config, options.config)

    def test_environment(self) -> None:
        """Without --config, BIPGW_CONFIG names the file."""
        options = self._parse([], {"BIPGW_CONFIG": str(self.path)})
        self.assertEqual(options.config, Config.from_file(self.path))
        self.assertEqual(options["config"], str(self.path))

    def test_platformCertificateChecked(self) -> None:
        """A [platform] certificate file that is not PEM is a usage error naming
        the key, not a traceback from makeService."""
        write(self.base, "cert.pem", "not a certificate\n")
        write(self.base, "key.pem", "not a key\n")
        path = write(
            self.base,
            "platform.toml",
            MINIMAL
            + '\n[platform]\nlisten = "tcp:0"\n'
            + 'tls_certificate = "cert.pem"\ntls_key = "key.pem"\n',
        )
        with self.assertRaises(UsageError) as ctx:
            self._parse(["--config", str(path)])
        self.assertIn("platform.tls_", str(ctx.exception))

    def test_missing(self) -> None:
        """No file named: a usage error that says how to make one."""
        with self.assertRaises(UsageError) as ctx:
            self._parse([])
        self.assertIn("--config FILE is required", str(ctx.exception))
        self.assertIn("bipgw init", str(ctx.exception))

    def test_fileMissing(self) -> None:
        """A file that does not exist: a usage error naming it."""
        with self.assertRaises(UsageError) as ctx:
            self._parse(["--config", str(self.base / "nope.toml")])
        self.assertIn("nope.toml: no such file", str(ctx.exception))

    def test_badValue(self) -> None:
        """An invalid file: a usage error naming the key, the value and the expectation."""
        write(self.base, "bipgw.toml", with_keys(MINIMAL, "admin", public_host='"gw.example"'))
        with self.assertRaises(UsageError) as ctx:
            self._parse(["--config", str(self.path)])
        self.assertIn(
            'admin.public_host = "gw.example": expected a unicast IPv4 address', str(ctx.exception)
        )

    def test_unknownKey(self) -> None:
        """An unknown key: a usage error naming its full dotted key."""
        write(self.base, "bipgw.toml", with_keys(MINIMAL, "services.isd", spy='"1639"'))
        with self.assertRaises(UsageError) as ctx:
            self._parse(["--config", str(self.path)])
        self.assertIn("services.isd.spy: unknown key", str(ctx.exception))

    def test_missingRootKey(self) -> None:
        """A root key that cannot be loaded: a usage error naming the file."""
        (self.base / "root.key").unlink()
        with self.assertRaises(UsageError) as ctx:
            self._parse(["--config", str(self.path)])
        self.assertIn(f"no root key file at {self.base / 'root.key'}", str(ctx.exception))

    def test_rootKeyFromEnvironment(self) -> None:
        """BIPGW_ROOT_KEY is used when set; a wrong one does not open the keystore."""
        (self.base / "root.key").unlink()
        env = {"BIPGW_ROOT_KEY": base64.b64encode(bytes(range(32))).decode()}
        self.assertIsNotNone(self._parse(["--config", str(self.path)], env).config)
        env = {"BIPGW_ROOT_KEY": base64.b64encode(bytes(32)).decode()}
        with self.assertRaises(UsageError) as ctx:
            self._parse(["--config", str(self.path)], env)
        self.assertIn("not under the loaded root key", str(ctx.exception))

    def test_unknownOption(self) -> None:
        """Everything is in the file: other options are usage errors."""
        self.assertRaises(UsageError, self._parse, ["--config", str(self.path), "--port", "1"])


class MakeServiceTests(SynchronousTestCase):
    """makeService hands the checked configuration to bipgw.app.build_gateway."""

    def setUp(self) -> None:
        self.calls: list[tuple[Config, Any]] = []
        self.service = MultiService()

        def build_gateway(config: Config, reactor: Any) -> MultiService:
            self.calls.append((config, reactor))
            return self.service

        app = types.ModuleType("bipgw.app")
        app.build_gateway = build_gateway  # type: ignore[attr-defined]
        previous = sys.modules.get("bipgw.app")
        sys.modules["bipgw.app"] = app
        self.addCleanup(self._restore, previous)
        base = private_directory(self)
        _keys(base)
        self.options = tap.Options({})
        self.options.parseOptions(["--config", str(write(base, "bipgw.toml", MINIMAL))])

    def _restore(self, previous: types.ModuleType | None) -> None:
        if previous is None:
            del sys.modules["bipgw.app"]
        else:
            sys.modules["bipgw.app"] = previous

    def test_delegates(self) -> None:
        """The service is build_gateway's, built from the options' configuration and reactor."""
        reactor = MemoryReactor()
        self.assertIs(tap.makeService(self.options, reactor), self.service)
        self.assertEqual(self.calls, [(self.options.config, reactor)])

    def test_unparsedOptions(self) -> None:
        """Options built by hand are checked before the gateway is built."""
        options = tap.Options({})
        with self.assertRaises(UsageError):
            tap.makeService(options, MemoryReactor())
        self.assertEqual(self.calls, [])


class TwistdLogOutputTests(SynchronousTestCase):
    """[log] writes where twistd would, unless twistd's options choose the observer."""

    def test_stdoutUnderNodaemon(self) -> None:
        """-n without --logfile, and --logfile -, write to standard output."""
        for options in ({"nodaemon": True}, {"nodaemon": True, "logfile": "-"}):
            with self.subTest(options=options):
                output = tap.twistd_log_output(options)
                assert output is not None
                self.assertIs(output(), sys.stdout)

    def test_logfile(self) -> None:
        """--logfile FILE (or twistd.log for a daemon) is a size-rotated LogFile."""
        base = private_directory(self)
        for options, name in (
            ({"nodaemon": True, "logfile": str(base / "gw.log")}, "gw.log"),
            ({"nodaemon": False, "logfile": str(base / "d.log")}, "d.log"),
        ):
            with self.subTest(options=options):
                output = tap.twistd_log_output(options)
                assert output is not None
                opened = output()
                self.addCleanup(opened.close)
                assert isinstance(opened, LogFile)
                self.assertEqual(Path(opened.path), base / name)

    def test_daemonDefault(self) -> None:
        """A daemon without --logfile writes twistd.log, as twistd does (not opened here)."""
        self.assertIsNotNone(tap.twistd_log_output({"nodaemon": False, "logfile": None}))

    def test_twistdChooses(self) -> None:
        """--logger and --syslog keep twistd's choice; so does --logfile - for a
        daemon, which twistd itself refuses."""
        for options in (
            {"nodaemon": True, "logger": lambda: None},
            {"nodaemon": True, "syslog": True},
            {"nodaemon": False, "logfile": "-"},
        ):
            with self.subTest(options=options):
                self.assertIsNone(tap.twistd_log_output(options))


class ConfiguredLogServiceTests(SynchronousTestCase):
    """The service twistd runs hands [log]'s observer to twistd's application."""

    def setUp(self) -> None:
        self.gateway = MultiService()
        self.out = io.StringIO()
        config = Config.from_string(_JSON_WARN, base_dir=private_directory(self))
        self.service = tap.ConfiguredLogService(self.gateway, config.log, lambda: self.out)

    def test_gatewayIsChild(self) -> None:
        """The gateway is the one child, and starts and stops with it."""
        self.assertEqual(list(self.service), [self.gateway])
        self.service.startService()
        self.assertTrue(self.gateway.running)
        self.service.stopService()
        self.assertFalse(self.gateway.running)

    def test_observerOnApplication(self) -> None:
        """Added to an application, it gives it [log]'s observer: JSON, level warn."""
        application = Application("bipgw")
        self.service.setServiceParent(application)
        self.assertIs(self.service.parent, IService(application))
        observer = application.getComponent(ILogObserver)
        log = Logger(namespace="bipgw.test", observer=observer)
        log.info("quiet")
        log.warn("loud {n}", n=1)
        lines = self.out.getvalue().splitlines()
        self.assertEqual([json.loads(line)["log_format"] for line in lines], ["loud {n}"])

    def test_existingObserverKept(self) -> None:
        """An application that already has an observer keeps it, and nothing is opened."""
        application = Application("bipgw")
        mine = LogPublisher()
        application.setComponent(ILogObserver, mine)
        opened: list[object] = []

        def output() -> io.StringIO:
            opened.append(output)
            return self.out

        log = Config.from_string(MINIMAL, base_dir=private_directory(self)).log
        service = tap.ConfiguredLogService(MultiService(), log, output)
        service.setServiceParent(application)
        self.assertIs(application.getComponent(ILogObserver), mine)
        self.assertEqual(opened, [])

    def test_plainParent(self) -> None:
        """Under a plain service collection (not an application), it is only a parent."""
        parent = MultiService()
        self.service.setServiceParent(parent)
        self.assertIs(self.service.parent, parent)
        self.assertEqual(self.out.getvalue(), "")


class TwistdTests(SynchronousTestCase):
    """Under twistd's own options, makeService applies [log]."""

    def setUp(self) -> None:
        self.gateway = MultiService()
        app = types.ModuleType("bipgw.app")
        app.build_gateway = lambda config, reactor: self.gateway  # type: ignore[attr-defined]
        previous = sys.modules.get("bipgw.app")
        sys.modules["bipgw.app"] = app
        self.addCleanup(MakeServiceTests._restore, self, previous)  # type: ignore[arg-type]
        self.base = private_directory(self)
        _keys(self.base)
        self.config = write(self.base, "bipgw.toml", _JSON_WARN)

    def _application(self, *twistd: str) -> Any:
        options = ServerOptions()
        options.parseOptions([*twistd, "bipgw", "--config", str(self.config)])
        service = tap.makeService(options.subOptions, MemoryReactor())
        application = Application("bipgw")
        service.setServiceParent(application)
        return application

    def test_logfile(self) -> None:
        """twistd -n --logfile FILE: the gateway's events go to FILE as JSON lines,
        below warn dropped."""
        path = self.base / "gw.log"
        observer = self._application("-n", "--logfile", str(path)).getComponent(ILogObserver)
        log = Logger(namespace="bipgw.test", observer=observer)
        for level in LogLevel.iterconstants():
            log.emit(level, "at {name}", name=level.name)
        names = [json.loads(line)["name"] for line in path.read_text().splitlines()]
        self.assertEqual(names, ["warn", "error", "critical"])

    def test_loggerWins(self) -> None:
        """twistd --logger: twistd's option is left to decide; the gateway is not wrapped."""
        options = ServerOptions()
        logger = "twisted.logger.LogPublisher"
        options.parseOptions(["-n", "--logger", logger, "bipgw", "--config", str(self.config)])
        self.assertIs(tap.makeService(options.subOptions, MemoryReactor()), self.gateway)


class PluginTests(SynchronousTestCase):
    """twistd finds the plugin."""

    def test_discoverable(self) -> None:
        """Exactly one IServiceMaker named bipgw, whose options are bipgw.tap's."""
        makers = [p for p in getPlugins(IServiceMaker) if p.tapname == "bipgw"]
        self.assertEqual(len(makers), 1)
        self.assertIs(makers[0].options, tap.Options)
        self.assertIn("gateway", makers[0].description.lower() + makers[0].name.lower())
