# -*- test-case-name: tests.unit.cli.test_card_keys,tests.integration.test_demo -*-
"""C{bipgw keys list --iccid|--cards}, C{keys show}, C{keys rotate-card}: card keys.

Listing and showing read the card key versions from the database and print
metadata only: purpose, key version, state, source, algorithm, when.  A
key value, a check value or a sealed blob is never printed.

Rotating runs on the gateway that holds the cards' sessions: the command
asks the running gateway's HTTP API (C{POST /v1/cards/{iccid}/key-rotations},
with a tenant token granted C{put-key} on a service with C{secure_apdus})
and prints the outcome.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from bipgw.config import Config, server_endpoint_port
from bipgw.errors import BipGwError
from bipgw.keys import normalise_iccid
from bipgw.store import IStore, KeyVersion, card_key_versions_for

__all__ = ["add_parsers", "api_url", "print_versions", "rotate_card", "show_card"]

_HEAD = "ICCID\tPURPOSE\tKVN\tSTATE\tSOURCE\tALGORITHM\tCHANGED"


class CardKeyCommandError(BipGwError):
    """A card key command that cannot run; the message says why."""


def add_parsers(key_commands: Any, config_option: argparse.ArgumentParser) -> None:
    """Add C{show} and C{rotate-card} to C{bipgw keys}."""
    show = key_commands.add_parser(
        "show", help="a card's key versions (metadata only)", parents=[config_option]
    )
    show.add_argument("iccid", metavar="ICCID")
    rotate = key_commands.add_parser(
        "rotate-card",
        help="rotate a card's keys over the air (asks the running gateway's HTTP API)",
        parents=[config_option],
    )
    rotate.add_argument("--iccid", required=True)
    rotate.add_argument("--purpose", required=True, choices=("psk", "ota", "scp03"))
    rotate.add_argument("--service", help="service carrying PUT KEY (default: the first allowed)")
    rotate.add_argument(
        "--token-file", required=True, metavar="FILE", help="a tenant token granted put-key"
    )
    rotate.add_argument(
        "--api", metavar="URL", help="the HTTP API (default: from [http_api] listen)"
    )


def _line(v: KeyVersion) -> str:
    when = (
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(v.changed_at))
        if v.changed_at
        else "(vendor file)"
    )
    return (
        f"{v.iccid}\t{v.purpose.value}\t{v.kvn:02X}\t{v.state.value}\t{v.source.value}"
        f"\t{v.algorithm}\t{when}"
    )


def print_versions(versions: Sequence[KeyVersion], out: TextIO) -> None:
    """One line per key version: metadata, never a key."""
    out.write(_HEAD + "\n")
    for version in versions:
        out.write(_line(version) + "\n")


async def show_card(store: IStore, iccid: str | None, out: TextIO) -> int:
    """Print the key versions of one card (C{iccid}) or of every card.

    Keys a card gets derived at run time without a lifecycle row (a vendor
    file without the column) are not listed: nothing of them is stored.
    """
    lifecycle = card_key_versions_for(store)
    if iccid is not None:
        iccid = normalise_iccid(iccid)
        if await store.get_card(iccid) is None:
            raise CardKeyCommandError(f"card {iccid} is not in the database")
    if lifecycle is None:
        raise CardKeyCommandError("card key versions are kept in an SQL database only")
    versions = await (lifecycle.versions(iccid) if iccid is not None else lifecycle.list_versions())
    print_versions(versions, out)
    if not versions:
        out.write("(no stored or rotated keys: keys are derived from master keys if any)\n")
    return 0


def api_url(config: Config, given: str | None) -> str:
    """Where the running gateway's HTTP API is: C{given}, else from C{[http_api]}."""
    if given:
        return given.rstrip("/")
    if config.http_api is None:
        raise CardKeyCommandError(
            "rotate-card asks the running gateway's HTTP API: the configuration has no"
            " [http_api] table (or give --api URL)"
        )
    port = server_endpoint_port(config.http_api.listen)
    if port is None:
        raise CardKeyCommandError("cannot tell the HTTP API's port from [http_api] listen")
    scheme = "https" if config.http_api.listen.startswith("ssl:") else "http"
    return f"{scheme}://127.0.0.1:{port}"


def _token(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CardKeyCommandError(f"cannot read the token file {path}: {e}") from None
    if not text or not text[0].strip():
        raise CardKeyCommandError(f"the token file {path} is empty")
    return text[0].strip()


async def rotate_card(
    reactor: Any,
    url: str,
    token_file: str,
    iccid: str,
    purpose: str,
    service: str | None,
    out: TextIO,
) -> int:
    """Ask the gateway at C{url} to rotate a card's keys; print the outcome.

    @return: 0 once the card confirmed, 1 when the rotation failed (the old
        keys stay active).
    """
    from bipgw.client import request_key_rotation

    iccid = normalise_iccid(iccid)
    result = await request_key_rotation(reactor, url, _token(token_file), iccid, purpose, service)
    out.write(result.describe(iccid, purpose) + "\n")
    return 0 if result.ok else 1
