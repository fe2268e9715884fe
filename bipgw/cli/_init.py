# -*- test-case-name: tests.unit.cli.test_init -*-
"""C{bipgw init DIR}: the command's words around L{bipgw.config.init_install}.

The install itself (configuration, root key, keystore, password file, data
directory, and the undo of a failed run) is made by the library function;
this module names the option behind a refused value and says what was made
and what to do next.
"""

from __future__ import annotations

from pathlib import Path

from bipgw.config import PASSWORD_FILE_NAME, ConfigError, InitResult
from bipgw.keys import ROOT_KEY_ENV

__all__ = ["OPTION_FOR_KEY", "describe", "with_option"]

#: The C{bipgw init} option that sets each configuration key, for error messages.
OPTION_FOR_KEY = {
    "gateway.node_id": "--node-id",
    "smpp.endpoint": "--smpp",
    "smpp.system_id": "--system-id",
    "smpp.password_file": "--smpp-password-file",
    "smpp.source_address": "--source-address",
    "admin.listen": "--listen",
    "admin.public_host": "--public-host",
    "admin.public_port": "--public-port",
}


def with_option(error: ConfigError) -> ConfigError:
    """C{error}, its reason naming the C{bipgw init} option that set the key."""
    option = OPTION_FOR_KEY.get(error.key or "")
    if option is None:
        return error
    return ConfigError(f"{error.reason} (from {option})", key=error.key, source=error.source)


def describe(result: InitResult) -> str:
    """What was made and what to do next, for the terminal.  Never key bytes."""
    config = result.config
    base = config.base_dir
    lines = [f"bipgw install in {base}:"]
    for path in result.created:
        if path != base:
            lines.append(f"  created {_shown(base, path)}")
    for path in result.kept:
        lines.append(f"  kept    {_shown(base, path)} (existing keys are never replaced)")
    if result.root_key_from_environment:
        lines.append(
            f"  root key {result.root_key_id} taken from ${ROOT_KEY_ENV} (no file written)"
        )
    else:
        lines.append(
            f"  root key {result.root_key_id} in {_shown(base, config.keys.root_key_file)}:"
            " back it up apart from the database; losing it loses every stored key"
        )
    cfg = _shown(base, result.config_path)
    steps = [f"Review {cfg}: [smpp] endpoint, system_id and source_address, [admin] public_host."]
    if result.password_empty:
        steps.append(
            f"Put the ESME password on the first line of {_shown(base, base / PASSWORD_FILE_NAME)}."
        )
    steps += [
        f"Add the card vendor's transport key: bipgw keys add-transport LABEL"
        f" --from-file KEYFILE -c {cfg}",
        f"Check the install: bipgw check-config {cfg}",
        f"Import cards: bipgw import cards VENDOR.out -c {cfg} (then: import msisdn FILE.csv)",
        f"Run the gateway: twistd -n bipgw --config {cfg}",
    ]
    lines.append("Next steps:")
    lines += [f"  {n}. {step}" for n, step in enumerate(steps, 1)]
    return "\n".join(lines) + "\n"


def _shown(base: Path, path: Path) -> str:
    # Absolute paths: the next steps can be pasted from any directory.
    return str(path)
