# -*- test-case-name: tests.unit.store.test_feeds,tests.unit.cli.test_partners -*-
"""Adding and disabling file feed partners: what C{bipgw partner ...} calls.

A partner authenticates with a password (FTP) whose scrypt digest only is
kept, or with an SSH public key (SFTP); it may have both.  Refusals are the
store's own errors, as for tenants.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from bipgw.store._feed_types import Partner
from bipgw.store._interfaces import IStore
from bipgw.store._tenants import TokenDigest
from bipgw.store._types import DuplicateRecordError, ImportKind, UnknownRecordError

__all__ = ["add_partner", "disable_partner", "parse_ssh_key"]

_SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)


def parse_ssh_key(text: str) -> str:
    """The first OpenSSH public key line of C{text}, checked for its form.

    @raise ValueError: there is none, or it is not a public key line.
    """
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2 or parts[0] not in _SSH_KEY_TYPES:
            raise ValueError(
                "not an OpenSSH public key line (expected 'ssh-ed25519 AAAA...' or"
                f" another of {', '.join(_SSH_KEY_TYPES)})"
            )
        return " ".join(parts[:2])
    raise ValueError("no public key line found")


async def add_partner(
    store: IStore,
    name: str,
    kind: ImportKind,
    *,
    password: str | None = None,
    ssh_keys: Sequence[str] = (),
    transport_key: str | None = None,
    now: float = 0.0,
) -> Partner:
    """Add the enabled partner C{name}, delivering files of C{kind}.

    @param password: its FTP password (only the digest is kept).
    @param ssh_keys: its SSH public keys (OpenSSH lines) for SFTP.
    @param transport_key: the only transport key its card files may name.
    @raise DuplicateRecordError: a partner of that name exists.
    @raise ValueError: no credential, or a bad name or key.
    """
    if password is None and not ssh_keys:
        raise ValueError("a partner needs a password (FTP) or an SSH public key (SFTP)")
    if transport_key is not None and kind is not ImportKind.CARDS:
        raise ValueError("a transport key applies only to a partner of kind cards")
    keys = tuple(parse_ssh_key(k) for k in ssh_keys)
    partner = Partner(
        name,
        kind,
        True,
        transport_key,
        None if password is None else TokenDigest.of(password).settings(),
        keys,
        now,
    )
    if await store.get_partner(name) is not None:
        raise DuplicateRecordError(f"partner {name} already exists")
    await store.put_partner(partner)
    return partner


async def disable_partner(store: IStore, name: str) -> None:
    """Refuse the partner's logins from now on (its home and records are kept).

    @raise UnknownRecordError: there is no such partner.
    """
    partner = await store.get_partner(name)
    if partner is None:
        raise UnknownRecordError(f"no partner {name}")
    await store.put_partner(attrs.evolve(partner, enabled=False))
