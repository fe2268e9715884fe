# -*- test-case-name: tests.unit.ingest.test_ftp,tests.integration.test_feeds_ftp -*-
"""The FTP door of the file feeds: each partner in its own home, uploading into C{incoming/}.

Built on C{twisted.protocols.ftp}: an L{FTPFactory} over a L{Portal} whose
checker is L{PartnerPasswords} and whose realm gives each partner a
L{PartnerShell} rooted at its home.  The shell reads anywhere in the home
(the partner fetches its reports) and writes only a new file into
C{incoming/} (or C{NAME.part}, complete once renamed to C{NAME}: the only
rename); every other change (delete, rename, mkdir) is refused.  Path
arguments with a C{..} segment or starting with C{/} are refused before any
command runs, so no spelling reaches outside the home.

An upload is delivered to the feed only when the data connection ended
cleanly while the control connection was still open: a data connection
reset, or a partner that disconnected mid-transfer, leaves nothing behind.
(Plain FTP marks the end of a file only by closing the data connection, so
a vendor file's C{Quantity:} header is the last line of defence against a
file cut at a clean close; the importer checks it.)
"""

from __future__ import annotations

import inspect
import os
import time
from pathlib import Path
from typing import Any

from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IConsumer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols import ftp
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from zope.interface import implementer

from bipgw.ingest._homes import PART_SUFFIX, Homes, file_name_problem, upload_name_problem
from bipgw.ingest._partners import PartnerPasswords
from bipgw.ingest._upload import Upload, UploadRefusedError
from bipgw.store import IStore

_log = Logger(namespace="bipgw.ingest.ftp")

#: FTP sessions served at once (all partners); more are refused with 421.
MAX_CONNECTIONS = 64

#: FTP commands whose arguments are paths.
_PATH_COMMANDS = frozenset(
    {
        "CWD",
        "LIST",
        "NLST",
        "RETR",
        "STOR",
        "APPE",
        "STOU",
        "DELE",
        "MKD",
        "RMD",
        "RNFR",
        "RNTO",
        "SIZE",
        "MDTM",
        "STAT",
        "XCWD",
        "XMKD",
        "XRMD",
    }
)


class Intake:
    """Where uploads go: the homes, the size limit and the feed to hand files to."""

    def __init__(self, homes: Homes, max_bytes: int, deliver: Any) -> None:
        """
        @param deliver: C{deliver(partner, name)} once a file is in place.
        """
        self.homes = homes
        self.max_bytes = max_bytes
        self.deliver = deliver

    def start(self, partner: str, segments: list[str]) -> Upload:
        """An upload of C{segments} (relative to the home).

        @raise UploadRefusedError: not a new file directly in C{incoming/}.
        @raise OSError: the temporary file cannot be created.
        """
        if len(segments) != 2 or segments[0] != "incoming":
            raise UploadRefusedError("files are uploaded into incoming/ only")
        problem = upload_name_problem(segments[1])
        if problem is not None:
            raise UploadRefusedError(problem)
        incoming = self.homes.home(partner) / "incoming"
        if segments[1].endswith(PART_SUFFIX):
            # Not delivered: the partner renames it to its name when complete.
            return Upload(incoming, segments[1], self.max_bytes, lambda n: None, replace=True)
        return Upload(incoming, segments[1], self.max_bytes, lambda n: self.deliver(partner, n))

    def complete(self, partner: str, source: list[str], target: list[str]) -> None:
        """C{incoming/NAME.part} renamed to C{incoming/NAME}: the upload is complete.

        The only rename a partner may do.  C{NAME} is never replaced.

        @raise PermissionError: any other rename.
        @raise UploadRefusedError: C{NAME} is still waiting to be processed.
        @raise FileNotFoundError: there is no C{NAME.part}.
        """
        if (
            len(source) != 2
            or len(target) != 2
            or source[0] != "incoming"
            or target[0] != "incoming"
            or source[1] != target[1] + PART_SUFFIX
        ):
            raise PermissionError(
                f"the only rename is incoming/NAME{PART_SUFFIX} to incoming/NAME"
                " (a finished upload)"
            )
        problem = file_name_problem(target[1])
        if problem is not None:
            raise PermissionError(problem)
        incoming = self.homes.home(partner) / "incoming"
        try:
            os.link(incoming / source[1], incoming / target[1])
        except FileExistsError:
            raise UploadRefusedError(
                f"a file named {target[1]} is still waiting to be processed; rename again once"
                " its report is in reports/"
            ) from None
        os.unlink(incoming / source[1])
        self.deliver(partner, target[1])


class _Refused(ftp.FTPCmdError):
    errorCode = ftp.REQ_ACTN_ABRTD_FILE_UNAVAIL

    def response(self) -> str:
        return f"450 {self.errorMessage}"


@implementer(IConsumer)
class _UploadConsumer:
    """Receives the data connection into an L{Upload}; notes how it ended."""

    def __init__(self, upload: Upload) -> None:
        self.upload = upload
        self.clean = True

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        # The DTP protocol only says "the connection is gone", never how: wrap
        # its connectionLost to learn whether the partner closed it (the end of
        # the file) or it was reset (an interrupted upload).
        lost = producer.connectionLost

        def connectionLost(reason: Failure) -> None:
            if not reason.check(ConnectionDone):
                self.clean = False
            lost(reason)

        producer.connectionLost = connectionLost

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.upload.write(data)


@implementer(ftp.IWriteFile)
class _UploadFile:
    def __init__(self, shell: PartnerShell, upload: Upload) -> None:
        self._shell = shell
        self._consumer = _UploadConsumer(upload)

    def receive(self) -> Deferred[IConsumer]:
        return succeed(self._consumer)

    def close(self) -> Deferred[None]:
        upload = self._consumer.upload
        if not self._consumer.clean or self._shell.closed:
            upload.fail("the upload was interrupted")
            return fail(_Refused(upload.problem))
        try:
            upload.commit()
        except UploadRefusedError as e:
            return fail(_Refused(str(e)))
        return succeed(None)


class PartnerShell(ftp.FTPAnonymousShell):
    """A partner's view: its home, read-only but for new files in C{incoming/}."""

    def __init__(self, partner: str, home: Path, intake: Intake) -> None:
        super().__init__(FilePath(str(home)))
        self.partner = partner
        self._intake = intake
        self.closed = False

    def logout(self) -> None:
        """The control connection is gone: no upload of this session is delivered."""
        self.closed = True

    def openForWriting(self, path: list[str]) -> Deferred[Any]:
        try:
            upload = self._intake.start(self.partner, list(path))
        except (UploadRefusedError, OSError):
            return fail(ftp.PermissionDeniedError("/".join(path)))
        return succeed(_UploadFile(self, upload))

    def _denied(self, path: list[str]) -> Deferred[None]:
        return fail(ftp.PermissionDeniedError("/".join(path)))

    def makeDirectory(self, path: list[str]) -> Deferred[None]:
        return self._denied(path)

    def removeDirectory(self, path: list[str]) -> Deferred[None]:
        return self._denied(path)

    def removeFile(self, path: list[str]) -> Deferred[None]:
        return self._denied(path)

    def rename(self, fromPath: list[str], toPath: list[str]) -> Deferred[None]:
        """Only C{incoming/NAME.part} to C{incoming/NAME}: the upload is then complete."""
        try:
            self._intake.complete(self.partner, list(fromPath), list(toPath))
        except UploadRefusedError as e:
            return fail(_Refused(str(e)))
        except FileNotFoundError:
            return fail(ftp.FileNotFoundError("/".join(fromPath)))
        except PermissionError:
            return fail(ftp.PermissionDeniedError("/".join(toPath)))
        except OSError:
            return fail(ftp.PermissionDeniedError("/".join(toPath)))
        return succeed(None)


@implementer(IRealm)
class PartnerRealm:
    """Each partner logs in to a L{PartnerShell} at its home."""

    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        if ftp.IFTPShell not in interfaces:
            raise TypeError("only FTP shells are served here")
        name = avatarId.decode() if isinstance(avatarId, bytes) else avatarId
        shell = PartnerShell(name, self._intake.homes.home(name), self._intake)
        return ftp.IFTPShell, shell, shell.logout


class PartnerFTP(ftp.FTP):
    """The FTP protocol, refusing path arguments that climb or start at C{/}.

    C{STOR} is Twisted's, less its C{log.err} of every failed transfer: a
    refused upload is the partner's doing, answered to the partner and
    logged at most L{_REFUSALS_LOGGED} times a minute.
    """

    def ftp_STOR(self, path: str) -> Deferred[Any]:
        if self.dtpInstance is None:
            raise ftp.BadCmdSequenceError("PORT, PASV, EPRT, or EPSV required before STOR")
        try:
            segments = ftp.toSegments(self.workingDirectory, path)
        except ftp.InvalidPath:
            return fail(ftp.FileNotFoundError(path))
        self.setTimeout(None)

        def opened(file: Any) -> Deferred[Any]:
            d = file.receive()
            d.addCallback(receiving)
            d.addCallback(lambda _: file.close())
            d.addCallbacks(lambda _: (ftp.TXFR_COMPLETE_OK,), not_sent)
            return d

        def not_opened(reason: Failure) -> Any:
            if isinstance(reason.value, ftp.FTPCmdError):
                return (reason.value.errorCode, "/".join(segments))
            _refusal(self, f"cannot open {'/'.join(segments)}: {reason.getErrorMessage()}")
            return (ftp.FILE_NOT_FOUND, "/".join(segments))

        def receiving(consumer: Any) -> Deferred[None]:
            if not self.binary:
                consumer = ftp.ASCIIConsumerWrapper(consumer)
            d: Deferred[None] = self.dtpInstance.registerConsumer(consumer)
            if self.dtpInstance.isConnected:
                self.reply(ftp.DATA_CNX_ALREADY_OPEN_START_XFR)
            else:
                self.reply(ftp.FILE_STATUS_OK_OPEN_DATA_CNX)
            return d

        def not_sent(reason: Failure) -> Any:
            _refusal(self, f"upload of {'/'.join(segments)} refused: {reason.getErrorMessage()}")
            if reason.check(ftp.FTPCmdError):
                return reason
            return (ftp.CNX_CLOSED_TXFR_ABORTED,)

        def timeout_back(result: Any) -> Any:
            self.setTimeout(self.factory.timeOut)
            return result

        d: Deferred[Any] = self.shell.openForWriting(segments)
        d.addCallbacks(opened, not_opened)
        d.addBoth(timeout_back)
        return d

    def processCommand(self, cmd: str, *params: str) -> Any:
        if cmd.upper() in _PATH_COMMANDS and any(_climbs(p) for p in params):
            return succeed((ftp.PERMISSION_DENIED, " ".join(params)))
        if params and _takes_nothing(getattr(self, f"ftp_{cmd.upper()}", None)):
            # Twisted would call ftp_FEAT("x"), log the TypeError and answer
            # "internal server error": a partner's typo is not our error.
            return succeed((ftp.SYNTAX_ERR_IN_ARGS, f"{cmd.upper()} takes no argument"))
        return super().processCommand(cmd, *params)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # FTP.connectionLost closes the data connection before it logs the
        # shell out; an upload ending that way must not count as complete.
        if isinstance(self.shell, PartnerShell):
            self.shell.logout()
        super().connectionLost(reason)


#: Refused uploads logged per minute, at most (the partners trigger them).
_REFUSALS_LOGGED = 10


class _LogBudget:
    """At most L{_REFUSALS_LOGGED} log lines a minute, for one FTP server."""

    def __init__(self) -> None:
        self._window = -60.0
        self._count = 0

    def allows(self, now: float) -> bool:
        if now - self._window >= 60.0:
            self._window, self._count = now, 0
        self._count += 1
        return self._count <= _REFUSALS_LOGGED


def _refusal(protocol: PartnerFTP, message: str) -> None:
    budget: _LogBudget | None = getattr(protocol.factory, "refusals", None)
    if budget is None or budget.allows(time.monotonic()):
        partner = getattr(protocol.shell, "partner", "?")
        _log.info("FTP partner {partner}: {message}", partner=partner, message=message)


def _takes_nothing(method: Any) -> bool:
    """Whether C{method} (an C{ftp_*} handler, or C{None}) takes no argument."""
    if method is None:
        return False
    try:
        inspect.signature(method).bind("argument")
    except TypeError:
        return True
    except ValueError:  # pragma: no cover - no signature to read
        return False
    return False


def _climbs(path: str) -> bool:
    return path.startswith("/") or ".." in path.replace("\\", "/").split("/")


def ftp_factory(store: IStore, intake: Intake, *, timeout: int = 600) -> ftp.FTPFactory:
    """The FTP server of the feeds: partners log in with their password."""
    portal = Portal(PartnerRealm(intake), [PartnerPasswords(store)])
    factory = ftp.FTPFactory(portal)
    factory.protocol = PartnerFTP
    factory.allowAnonymous = False
    factory.timeOut = timeout
    factory.welcomeMessage = "bipgw partner file feed"
    factory.refusals = _LogBudget()  # type: ignore[attr-defined]
    factory.connectionLimit = MAX_CONNECTIONS  # type: ignore[assignment]
    return factory


def close_ftp_connections(factory: ftp.FTPFactory) -> None:
    """End every partner's FTP session (the service stops); uploads in progress are dropped."""
    for protocol in list(factory.instances):
        protocol.setTimeout(None)
        if protocol.dtpFactory is not None:
            protocol.cleanupDTP()
        if protocol.transport is not None:
            protocol.transport.abortConnection()
