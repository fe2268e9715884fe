# -*- test-case-name: tests.unit.cli.test_tap -*-
"""The twistd plugin's options and service: C{twistd -n bipgw --config FILE}.

The configuration is read and checked while twistd parses its options, so a
bad file stops twistd with a usage error naming the key, before it
daemonises and before anything listens.  The gateway's services are built
by L{bipgw.app.build_gateway}, imported only when the service is made so
that C{twistd --help} stays cheap.

Logging: twistd starts the process's one log observer itself, after the
plugin has made its service, and a plugin cannot pass it one directly.  It
does take one from the application it runs: an L{ILogObserver} component
on that application replaces the text observer it would otherwise write to
C{--logfile} (standard output under C{-n}).  So the service made here puts
the C{[log]} observer (L{bipgw.config.LogSection.observer}: the level
filter, then text or JSON) on the application when twistd adds it there,
writing where twistd would have written.  twistd's C{--logger} still wins
over it (twistd's own precedence), and with C{--syslog} twistd's syslog
observer is left alone; in both cases C{[log]} does not apply.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import IO, Any

from twisted.application.service import IService, IServiceCollection, MultiService
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from twisted.python.components import Componentized
from twisted.python.logfile import LogFile

from bipgw.config import Config, ConfigError, LogSection
from bipgw.keys import KeyManagementError, Pkcs11RootKeys

#: The environment variable read when C{--config} is not given.
CONFIG_ENV = "BIPGW_CONFIG"


class Options(usage.Options):
    """C{twistd bipgw} options: the configuration file, nothing else.

    Everything else the gateway needs is in that file, so that the command
    line, a systemd unit and a container all run the same configuration.

    @ivar config: the checked configuration, once L{postOptions} has run.
    """

    synopsis = "--config FILE"
    optParameters = [
        ["config", "c", None, f"The gateway's TOML configuration file (default: ${CONFIG_ENV})."],
    ]
    longdesc = (
        "Run the BIP/OTA gateway. Create a configuration with 'bipgw init DIR' and check it"
        " with 'bipgw check-config FILE'."
    )

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        """
        @param environ: where C{BIPGW_CONFIG} and C{BIPGW_ROOT_KEY} are looked
            up (default: C{os.environ}).
        """
        super().__init__()
        self._environ = os.environ if environ is None else environ
        self.config: Config | None = None

    def postOptions(self) -> None:
        """Read and check the configuration file, and the keys it names.

        @raise usage.UsageError: if no file is named, if it is not a valid
            configuration (the message names the key, the value and what
            was expected), or if its root key does not load or does not open
            its keystore (the message names the file).
        """
        path = self["config"] or self._environ.get(CONFIG_ENV)
        if not path:
            raise usage.UsageError(
                f"--config FILE is required (or set ${CONFIG_ENV}); 'bipgw init DIR' writes one"
            )
        try:
            config = Config.from_file(path)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        # A missing or mismatched root key would otherwise surface as a
        # traceback from makeService; refuse it here, by file name.
        try:
            root = config.keys.load_root_key(self._environ)
            try:
                config.keys.open_keystore(root)
            finally:
                if isinstance(root, Pkcs11RootKeys):
                    root.close()  # makeService opens its own session
        except KeyManagementError as e:
            raise usage.UsageError(str(e)) from None
        # Likewise the platform channel's certificate and key files.
        if config.platform is not None:
            try:
                config.platform.tls_options()
            except ConfigError as e:
                raise usage.UsageError(str(e)) from None
        self.config = config
        self["config"] = path


_log = Logger()


def twistd_log_output(server_options: Mapping[str, Any]) -> Callable[[], IO[Any]] | None:
    """Where twistd would write its log under C{server_options}, or C{None}
    when C{[log]} must not replace twistd's observer.

    twistd (on Unix) writes to standard output for C{--logfile -} or for
    C{-n} without C{--logfile}, and otherwise to C{--logfile} (default
    C{twistd.log}), a L{LogFile} that rotates by size.  Not replaced:
    C{--logger} (twistd prefers it to any application's observer anyway),
    C{--syslog}, and C{--logfile -} without C{-n} (twistd refuses that
    itself, and must still get to say so).

    @param server_options: twistd's C{ServerOptions}.
    @return: a function opening the output, called only when twistd adds
        the service to its application.
    """
    if server_options.get("logger") or server_options.get("syslog"):
        return None
    logfile = server_options.get("logfile")
    nodaemon = bool(server_options.get("nodaemon"))
    if logfile == "-" or (not logfile and nodaemon):
        return (lambda: sys.stdout) if nodaemon else None
    path = str(logfile or "twistd.log")
    return lambda: LogFile.fromFullPath(path)


class ConfiguredLogService(MultiService):
    """The service twistd runs: the gateway, which logs through C{[log]}'s observer.

    Its only addition to the gateway is L{setServiceParent}: when twistd
    adds it to the application twistd made for the plugin, it gives that
    application the observer, which twistd then starts logging to.
    """

    def __init__(self, gateway: IService, log: LogSection, output: Callable[[], IO[Any]]) -> None:
        """
        @param gateway: the gateway's service, made a child of this one.
        @param log: the C{[log]} table that builds the observer.
        @param output: opens what the observer writes to (see
            L{twistd_log_output}).
        """
        super().__init__()
        self._section = log
        self._output = output
        gateway.setServiceParent(self)

    def setServiceParent(self, parent: IServiceCollection | Componentized) -> None:
        """Join C{parent}; when it is an application without a log observer,
        give it C{[log]}'s."""
        if isinstance(parent, Componentized) and parent.getComponent(ILogObserver) is None:
            parent.setComponent(ILogObserver, self._section.observer(self._output()))
        super().setServiceParent(parent)


def makeService(options: Options, reactor: Any = None) -> IService:
    """The gateway service for C{options}' configuration.

    Under twistd (C{options.parent} is twistd's C{ServerOptions}), the
    gateway comes wrapped in a L{ConfiguredLogService} so that C{[log]}
    chooses the process's log observer, unless twistd's own options say
    otherwise (L{twistd_log_output}).

    @param reactor: the reactor the services use; the global one (the one
        twistd installed) if C{None}.
    """
    if options.config is None:
        options.postOptions()
    config = options.config
    assert config is not None
    if reactor is None:
        from twisted.internet import reactor as installed

        reactor = installed
    from bipgw.app import build_gateway

    service: IService = build_gateway(config, reactor)
    _log.debug(
        "configuration {source}: log level {level_name}, format {output_format}",
        source=str(config.source),
        level_name=config.log.level.name,
        output_format=config.log.format.value,
    )
    output = None if options.parent is None else twistd_log_output(options.parent)
    if output is None:
        return service
    return ConfiguredLogService(service, config.log, output)
