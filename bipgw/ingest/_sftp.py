# -*- test-case-name: tests.integration.test_feeds_sftp -*-
"""The SFTP door of the file feeds (C{twisted.conch}): same homes, same rules as FTP.

A partner logs in over SSH with one of its public keys (L{PartnerKeys}) and
gets the C{sftp} subsystem only (no shell, no commands, no forwarding).
Paths are relative to its home, which is C{/}: C{/incoming/B0001.out} and
C{incoming/B0001.out} are the same file; a path with a C{..} segment is
refused.  It may read files anywhere in its home, list directories, and
write a new file into C{incoming/} only; nothing can be removed, renamed or
created elsewhere.

An upload is delivered when the partner closes the file (C{SSH_FXP_CLOSE});
a session that ends with the file still open (connection dropped, client
killed) discards it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from twisted.conch.avatar import ConchUser
from twisted.conch.interfaces import IConchUser
from twisted.conch.ssh import filetransfer as ft
from twisted.conch.ssh.factory import SSHFactory
from twisted.conch.ssh.keys import Key
from twisted.conch.ssh.session import SSHSession
from twisted.conch.ssh.transport import SSHServerTransport
from twisted.cred.portal import IRealm, Portal
from twisted.python.components import registerAdapter
from zope.interface import implementer

from bipgw.ingest._ftp import Intake
from bipgw.ingest._partners import PartnerKeys
from bipgw.ingest._upload import Upload, UploadRefusedError
from bipgw.store import IStore

#: The largest read one request may ask for.
_MAX_READ = 256 * 1024
_WRITE_FLAGS = ft.FXF_WRITE | ft.FXF_APPEND | ft.FXF_CREAT | ft.FXF_TRUNC | ft.FXF_EXCL


def _denied(what: str) -> ft.SFTPError:
    return ft.SFTPError(ft.FX_PERMISSION_DENIED, what)


class PartnerUser(ConchUser):
    """A partner logged in over SSH: the C{sftp} subsystem, nothing else."""

    def __init__(self, partner: str, home: Path, intake: Intake) -> None:
        super().__init__()
        self.partner = partner
        self.home = home
        self.intake = intake
        self.channelLookup[b"session"] = SSHSession
        self.subsystemLookup[b"sftp"] = PartnerFileTransfer

    def logout(self) -> None:
        """Nothing to release: uploads still open are discarded by the subsystem."""


class PartnerFileTransfer(ft.FileTransferServer):
    """Conch's SFTP server, discarding (not closing) uploads still open at the end."""

    def connectionLost(self, reason: Any = None) -> None:
        for handle in self.openFiles.values():
            if isinstance(handle, _UploadHandle):
                handle.abort()
        super().connectionLost(reason)


@implementer(ft.ISFTPFile)
class _UploadHandle:
    def __init__(self, upload: Upload) -> None:
        self._upload = upload
        self._aborted = False

    def abort(self) -> None:
        self._aborted = True
        self._upload.fail("the upload was interrupted")

    def writeChunk(self, offset: int, data: bytes) -> None:
        self._upload.write(data, offset)
        if self._upload.problem is not None:
            raise ft.SFTPError(ft.FX_FAILURE, self._upload.problem)

    def readChunk(self, offset: int, length: int) -> bytes:
        raise _denied("uploads cannot be read")

    def close(self) -> None:
        if self._aborted:
            return
        try:
            self._upload.commit()
        except UploadRefusedError as e:
            raise ft.SFTPError(ft.FX_FAILURE, str(e)) from None

    def getAttrs(self) -> dict[str, Any]:
        return {"size": self._upload.size, "permissions": stat.S_IFREG | 0o640}

    def setAttrs(self, attrs: dict[str, Any]) -> None:
        pass  # clients set times and modes after an upload; they mean nothing here


@implementer(ft.ISFTPFile)
class _ReadHandle:
    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()

    def readChunk(self, offset: int, length: int) -> bytes:
        self._file.seek(offset)
        data = self._file.read(min(length, _MAX_READ))
        if not data:
            raise EOFError()
        return data

    def writeChunk(self, offset: int, data: bytes) -> None:
        raise _denied("files are written into incoming/ only, as new files")

    def close(self) -> None:
        self._file.close()

    def getAttrs(self) -> dict[str, Any]:
        return _attrs(os.fstat(self._file.fileno()))

    def setAttrs(self, attrs: dict[str, Any]) -> None:
        raise _denied("attributes cannot be changed")


class _Listing:
    def __init__(self, entries: list[tuple[bytes, bytes, dict[str, Any]]]) -> None:
        self._entries = iter(entries)

    def __iter__(self) -> Iterator[tuple[bytes, bytes, dict[str, Any]]]:
        return self

    def __next__(self) -> tuple[bytes, bytes, dict[str, Any]]:
        return next(self._entries)

    def close(self) -> None:
        pass


def _attrs(st: os.stat_result) -> dict[str, Any]:
    return {
        "size": st.st_size,
        "permissions": st.st_mode,
        "uid": 0,
        "gid": 0,
        "atime": int(st.st_atime),
        "mtime": int(st.st_mtime),
    }


@implementer(ft.ISFTPServer)
class PartnerSFTP:
    """The SFTP operations on a partner's home (module docstring)."""

    def __init__(self, user: PartnerUser) -> None:
        self.avatar = user
        self._user = user

    def _segments(self, path: bytes) -> list[str]:
        try:
            text = path.decode("utf-8")
        except UnicodeDecodeError:
            raise ft.SFTPError(ft.FX_NO_SUCH_FILE, "path is not UTF-8") from None
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if ".." in parts or any("\\" in p or "\0" in p for p in parts):
            raise _denied(f"{text}: paths may not climb out of the home")
        return parts

    def _path(self, path: bytes) -> Path:
        return self._user.home.joinpath(*self._segments(path))

    def gotVersion(self, otherVersion: int, extData: dict[bytes, bytes]) -> dict[bytes, bytes]:
        return {}

    def openFile(self, filename: bytes, flags: int, attrs: dict[str, Any]) -> Any:
        segments = self._segments(filename)
        if flags & _WRITE_FLAGS:
            try:
                upload = self._user.intake.start(self._user.partner, segments)
            except UploadRefusedError as e:
                raise _denied(str(e)) from None
            except OSError as e:
                raise ft.SFTPError(ft.FX_FAILURE, f"cannot store the file: {e.strerror}") from None
            return _UploadHandle(upload)
        path = self._user.home.joinpath(*segments)
        if not path.is_file() or path.name.startswith("."):
            raise ft.SFTPError(ft.FX_NO_SUCH_FILE, "no such file")
        return _ReadHandle(path)

    def removeFile(self, filename: bytes) -> None:
        raise _denied("files cannot be removed")

    def renameFile(self, oldpath: bytes, newpath: bytes) -> None:
        """Only C{incoming/NAME.part} to C{incoming/NAME} (see L{Intake.complete})."""
        try:
            self._user.intake.complete(
                self._user.partner, self._segments(oldpath), self._segments(newpath)
            )
        except UploadRefusedError as e:
            raise _denied(str(e)) from None
        except FileNotFoundError:
            raise ft.SFTPError(ft.FX_NO_SUCH_FILE, "no such file") from None
        except PermissionError as e:
            raise _denied(str(e)) from None
        except OSError as e:
            raise ft.SFTPError(ft.FX_FAILURE, f"cannot rename: {e.strerror}") from None

    def makeDirectory(self, path: bytes, attrs: dict[str, Any]) -> None:
        raise _denied("directories cannot be made")

    def removeDirectory(self, path: bytes) -> None:
        raise _denied("directories cannot be removed")

    def openDirectory(self, path: bytes) -> _Listing:
        directory = self._path(path)
        if not directory.is_dir():
            raise ft.SFTPError(ft.FX_NO_SUCH_FILE, "no such directory")
        entries = []
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            st = entry.stat(follow_symlinks=False)
            name = entry.name.encode("utf-8")
            entries.append((name, name, _attrs(st)))
        return _Listing(entries)

    def getAttrs(self, path: bytes, followLinks: bool) -> dict[str, Any]:
        target = self._path(path)
        try:
            return _attrs(target.lstat())
        except FileNotFoundError:
            raise ft.SFTPError(ft.FX_NO_SUCH_FILE, "no such file") from None

    def setAttrs(self, path: bytes, attrs: dict[str, Any]) -> None:
        raise _denied("attributes cannot be changed")

    def readLink(self, path: bytes) -> bytes:
        raise _denied("no links here")

    def makeLink(self, linkPath: bytes, targetPath: bytes) -> None:
        raise _denied("links cannot be made")

    def realPath(self, path: bytes) -> bytes:
        return ("/" + "/".join(self._segments(path))).encode("utf-8")

    def extendedRequest(self, extendedName: bytes, extendedData: bytes) -> bytes:
        raise ft.SFTPError(ft.FX_OP_UNSUPPORTED, "no extensions")


registerAdapter(PartnerSFTP, PartnerUser, ft.ISFTPServer)


@implementer(IRealm)
class PartnerSshRealm:
    """Each partner logs in to a L{PartnerUser} at its home."""

    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        if IConchUser not in interfaces:
            raise TypeError("only SSH users are served here")
        name = avatarId.decode() if isinstance(avatarId, bytes) else avatarId
        user = PartnerUser(name, self._intake.homes.home(name), self._intake)
        return IConchUser, user, user.logout


def load_host_key(path: Path) -> Key:
    """The SSH host private key at C{path}.

    @raise ValueError: it cannot be read or is not a private key.
    """
    try:
        key = Key.fromFile(str(path))
    except Exception as e:
        raise ValueError(f"cannot read the SSH host key {path}: {e}") from None
    if key.isPublic():
        raise ValueError(f"{path} is a public key; sftp_host_key needs the private key")
    return key


class _Transport(SSHServerTransport):
    def connectionLost(self, reason: Any = None) -> None:
        factory: Any = self.factory
        factory.connections.discard(self)
        super().connectionLost(reason)


class PartnerSshFactory(SSHFactory):
    """Conch's SSH server factory, keeping its connections to end them at stop."""

    protocol = _Transport

    def __init__(self) -> None:
        self.connections: set[SSHServerTransport] = set()

    def buildProtocol(self, addr: Any) -> Any:
        transport = super().buildProtocol(addr)
        self.connections.add(transport)
        return transport

    def close_connections(self) -> None:
        """End every partner's SSH connection (the service stops); open uploads are dropped."""
        for transport in list(self.connections):
            tcp: Any = transport.transport
            if tcp is not None:
                tcp.abortConnection()


def sftp_factory(store: IStore, intake: Intake, host_key: Path) -> PartnerSshFactory:
    """The SSH server of the feeds: partners log in with their public keys."""
    key = load_host_key(host_key)
    factory = PartnerSshFactory()
    factory.portal = Portal(PartnerSshRealm(intake), [PartnerKeys(store)])  # type: ignore[attr-defined]
    algorithm = key.sshType()
    factory.publicKeys = {algorithm: key.public()}
    factory.privateKeys = {algorithm: key}
    return factory
