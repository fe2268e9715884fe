# -*- test-case-name: tests.unit.cli.test_tap -*-
"""The twistd plugin's options and service: C{twistd -n bipgw --config FILE}.

The configuration is read and checked while twistd parses its options, so a
bad file stops twistd with a usage error naming the key, before it
daemonises and before anything listens.  The gateway's services are built
by L{bipgw.app.build_gateway}, imported only when the service is made so
that C{twistd --help} stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from bipgw.config import Config, ConfigError
from bipgw.keys import KeyManagementError

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
            config.keys.open_keystore(config.keys.load_root_key(self._environ))
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


def makeService(options: Options, reactor: Any = None) -> IService:
    """The gateway service for C{options}' configuration.

    @param reactor: the reactor the services use; the global one (the one
        twistd installed) if C{None}.
    """
    if options.config is None:
        options.postOptions()
    assert options.config is not None
    if reactor is None:
        from twisted.internet import reactor as installed

        reactor = installed
    from bipgw.app import build_gateway

    service: IService = build_gateway(options.config, reactor)
    return service
