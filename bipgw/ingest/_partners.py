# -*- test-case-name: tests.unit.ingest.test_ftp -*-
"""Who may log in to the feeds: partners from the store, checked as tenants are.

L{PartnerPasswords} checks an FTP login (user = partner name) against the
partner's scrypt password digest; L{PartnerKeys} checks an SFTP login
against the partner's SSH public keys.  A disabled partner, or one of
another gateway's records, is refused like a wrong password, and every
refusal looks the same to the peer.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ISSHPrivateKey, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from zope.interface import implementer

from bipgw.store import IStore, Partner, TokenDigest

# Checked when the partner is unknown, so that a wrong name costs as much as
# a wrong password.
_DUMMY = TokenDigest.of("not a password")


@implementer(ICredentialsChecker)
class PartnerPasswords:
    """FTP logins: the partner's name and password."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, store: IStore) -> None:
        self._store = store

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        name = _text(credentials.username)
        password = _text(credentials.password)
        return Deferred.fromCoroutine(self._check(name, password))

    async def _check(self, name: str, password: str) -> bytes | tuple[()]:
        partner = await _partner(self._store, name)
        stored = partner.password if partner is not None else None
        digest = None if stored is None else TokenDigest.from_settings(stored)
        if digest is None:
            _DUMMY.matches(password)
            raise UnauthorizedLogin()
        if not digest.matches(password):
            raise UnauthorizedLogin()
        return name.encode("utf-8")


@implementer(ICredentialsChecker)
class PartnerKeys:
    """SFTP logins: the partner's name and one of its SSH public keys."""

    credentialInterfaces = (ISSHPrivateKey,)

    def __init__(self, store: IStore) -> None:
        self._store = store

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: Any) -> bytes | tuple[()]:
        from twisted.conch.error import ValidPublicKey
        from twisted.conch.ssh.keys import BadKeyError, Key

        name = _text(credentials.username)
        partner = await _partner(self._store, name)
        if partner is None:
            raise UnauthorizedLogin()
        try:
            offered = Key.fromString(credentials.blob)
            allowed = [Key.fromString(k.encode("ascii")) for k in partner.ssh_keys]
        except (BadKeyError, ValueError):
            raise UnauthorizedLogin() from None
        if offered not in allowed:
            raise UnauthorizedLogin()
        if not credentials.signature:
            # The client asks whether this key would do, before signing.
            raise ValidPublicKey()
        if not offered.verify(credentials.signature, credentials.sigData):
            raise UnauthorizedLogin()
        return name.encode("utf-8")


async def _partner(store: IStore, name: str) -> Partner | None:
    if not name or len(name) > 64:
        return None
    partner = await store.get_partner(name)
    if partner is None or not partner.enabled:
        return None
    return partner


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
