# -*- test-case-name: tests.unit.web.portal.test_admin_routes -*-
"""The portal's pages that change things: tenants and services, service requests,
imports, operators, closing a live session.

Each form post goes through L{Portal.require} with C{form=True} (a live
session, the role the action needs, the session's CSRF token) before it
reads anything else, writes its audit record (operator, source address,
what changed, never a secret) and answers C{303} to the page that shows
the result, except a new or rotated API token, which is shown once on the
answer itself and never again.

Roles: C{viewer} reads; C{operator} also uploads imports and closes
sessions; C{admin} also manages tenants, services, service requests and
operators.
"""

from __future__ import annotations

import re
from email import message_from_bytes
from email.message import Message
from typing import Any

import attrs
from klein import Klein
from twisted.web.iweb import IRequest

from bipgw.store import (
    DuplicateRecordError,
    RequestState,
    Role,
    StoreConflictError,
    Tenant,
    UnknownRecordError,
    add_tenant,
    disable_tenant,
    grant_service,
    is_reserved_row,
    replace_token,
    service_id,
)
from bipgw.web.portal._portal import Portal, RefusedError, SeeOtherError, field

__all__ = ["add_admin_routes", "sniff_kind", "upload_of"]

_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}\Z")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}){1,16}")
_KINDS = {"cards": "a card-vendor output file", "msisdn": "an MSISDN mapping file"}


def _name(value: str | None, what: str) -> str:
    if not value or not _NAME.fullmatch(value):
        raise RefusedError(
            400, f"{what}: 1 to 64 letters, digits or . _ @ - (starting with a letter or digit)"
        )
    return value


def _hex_list(value: str | None, what: str) -> list[str]:
    items = (value or "").replace(",", " ").split()
    for item in items:
        if not _HEX.fullmatch(item):
            raise RefusedError(400, f"{what}: {item[:40]!r} is not hex (whole bytes, up to 16)")
    return [i.upper() for i in items]


def _whole(value: str | None, what: str, *, low: int = 1, high: int = 10**9) -> int | None:
    if not value:
        return None
    if not value.isdigit() or not low <= int(value) <= high:
        raise RefusedError(400, f"{what}: a whole number from {low} to {high}")
    return int(value)


def _rate(value: str | None) -> float | None:
    if not value:
        return None
    try:
        rate = float(value)
    except ValueError:
        raise RefusedError(400, "rate: a number of commands per second") from None
    if not 0 < rate <= 1e6:
        raise RefusedError(400, "rate: a number of commands per second, above 0")
    return rate


def upload_of(request: IRequest, limit: int) -> tuple[str, bytes]:
    """The C{file} part of a C{multipart/form-data} post: its name and bytes.

    @raise RefusedError: no file, or larger than C{limit} (nothing is imported).
    """
    kind = request.getHeader(b"content-type") or b""
    if not kind.lower().startswith(b"multipart/form-data"):
        raise RefusedError(415, "send the file as multipart/form-data (the upload form)")
    assert request.content is not None
    request.content.seek(0)
    body = request.content.read()
    message = message_from_bytes(b"Content-Type: " + kind + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise RefusedError(400, "the upload is not a multipart form")
    for part in message.get_payload():
        if not isinstance(part, Message):
            continue
        if part.get_param("name", header="content-disposition") != "file":
            continue
        name = part.get_filename() or "upload"
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if len(data) > limit:
            raise RefusedError(
                413,
                f"the file has {len(data)} bytes: at most {limit} may be"
                " uploaded; nothing was imported",
            )
        if not data:
            raise RefusedError(400, "the file is empty: nothing was imported")
        return name.replace("/", "_").replace("\\", "_")[:255], data
    raise RefusedError(400, "choose a file to upload: nothing was imported")


def sniff_kind(data: bytes) -> str | None:
    """C{"cards"} or C{"msisdn"}: what the file looks like, or C{None} for neither."""
    head = data[:65536]
    if b"\x00" in head:
        return None
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return None
    if "Var_Out:" in text or "Var_out:" in text:
        return "cards"
    first = next((line for line in text.splitlines() if line.strip()), "")
    if first.count(",") == 4:
        return "msisdn"
    return None


def add_admin_routes(app: Klein, portal: Portal) -> None:
    """Add the administrative routes to C{app} (module docstring)."""

    # -- tenants and services -------------------------------------------------------

    @app.route("/tenants", methods=["GET"])
    async def tenants(request: IRequest) -> bytes:
        login = await portal.require(request)
        rows = []
        for tenant in await portal.store.list_tenants():
            services = await portal.store.list_services(tenant_id=tenant.tenant_id)
            rows.append((tenant, [s for s in services if not is_reserved_row(s)]))
        return portal.page(
            request, "tenants.html", login, tenants=rows, token=None, services=portal.services
        )

    @app.route("/tenants", methods=["POST"])
    async def create_tenant(request: IRequest) -> bytes:
        login = await portal.require(request, Role.ADMIN, form=True)
        name = field(request, "id", 64) or ""
        if not _TENANT.match(name):
            raise RefusedError(
                400,
                "tenant id: 1 to 32 letters, digits or _ . : - (starting with a letter or"
                " digit), as bipgw tenant add takes it",
            )
        display = (field(request, "name", 1024) or "").strip() or name
        if len(display) > 255 or not display.isprintable():
            raise RefusedError(400, "tenant name: printable text of at most 255 characters")
        max_sessions = _whole(field(request, "max_sessions"), "max sessions")
        try:
            token = await add_tenant(portal.store, name, max_sessions=max_sessions)
        except DuplicateRecordError as e:
            raise RefusedError(409, str(e)) from None
        if display != name:
            await portal.store.put_tenant(Tenant(name, display, True, portal.wall()))
        detail = f"name={display!r}" + (f" max_sessions={max_sessions}" if max_sessions else "")
        await portal.audit(request, login, "tenant.add", f"tenant:{name}", detail)
        return portal.page(request, "token.html", login, tenant=name, token=token, new=True)

    @app.route("/tenants/<id:tenant>/disable", methods=["POST"])
    async def disable(request: IRequest, tenant: str) -> bytes:
        login = await portal.require(request, Role.ADMIN, form=True)
        try:
            await disable_tenant(portal.store, tenant)
        except UnknownRecordError as e:
            raise RefusedError(404, str(e)) from None
        await portal.audit(request, login, "tenant.disable", f"tenant:{tenant}")
        raise SeeOtherError("/tenants")

    @app.route("/tenants/<id:tenant>/token", methods=["POST"])
    async def rotate(request: IRequest, tenant: str) -> bytes:
        login = await portal.require(request, Role.ADMIN, form=True)
        try:
            token = await replace_token(portal.store, tenant)
        except UnknownRecordError as e:
            raise RefusedError(404, str(e)) from None
        await portal.audit(request, login, "tenant.rotate-token", f"tenant:{tenant}")
        return portal.page(request, "token.html", login, tenant=tenant, token=token, new=False)

    @app.route("/tenants/<id:tenant>/services", methods=["POST"])
    async def grant(request: IRequest, tenant: str) -> bytes:
        login = await portal.require(request, Role.ADMIN, form=True)
        service = _name(field(request, "service", 64), "service")
        if portal.services and service not in portal.services:
            raise RefusedError(
                400,
                f"service {service}: the gateway has no such service"
                f" (it has {', '.join(portal.services)})",
            )
        aids = _hex_list(field(request, "aids"), "AIDs")
        tars = _hex_list(field(request, "tars"), "TARs")
        rate = _rate(field(request, "rate", 32))
        max_sessions = _whole(field(request, "max_sessions"), "max sessions")
        try:
            await grant_service(
                portal.store,
                tenant,
                service,
                aids=aids,
                tars=tars,
                rate=rate,
                max_sessions=max_sessions,
            )
        except UnknownRecordError as e:
            raise RefusedError(404, str(e)) from None
        except DuplicateRecordError as e:
            raise RefusedError(409, str(e)) from None
        detail = f"aids={' '.join(aids)} tars={' '.join(tars)} rate={rate} max={max_sessions}"
        await portal.audit(request, login, "service.grant", f"tenant:{tenant}/{service}", detail)
        raise SeeOtherError("/tenants")

    @app.route("/tenants/<id:tenant>/services/<id:service>/disable", methods=["POST"])
    async def disable_grant(request: IRequest, tenant: str, service: str) -> bytes:
        login = await portal.require(request, Role.ADMIN, form=True)
        row = await portal.store.get_service(service_id(tenant, service))
        if row is None or is_reserved_row(row):
            raise RefusedError(404, f"tenant {tenant} has no service {service}")
        await portal.store.put_service(attrs.evolve(row, enabled=False))
        await portal.audit(request, login, "service.disable", f"tenant:{tenant}/{service}")
        raise SeeOtherError("/tenants")

    # -- service requests ------------------------------------------------------------

    @app.route("/requests", methods=["GET"])
    async def requests(request: IRequest) -> bytes:
        login = await portal.require(request)
        rows = await portal.requests.list(limit=200)
        return portal.page(request, "requests.html", login, requests=rows)

    async def _decide(request: IRequest, request_id: str, state: RequestState) -> bytes:
        login = await portal.require(request, Role.ADMIN, form=True)
        number = _whole(request_id, "request", high=2**62)
        assert number is not None
        found = await portal.requests.get(number)
        if found is None:
            raise RefusedError(404, f"no service request {number}")
        note = (field(request, "note", 1024) or "").strip()
        if state is RequestState.APPROVED:
            if found.state is not RequestState.PENDING:
                raise RefusedError(409, f"service request {number} was {found.state.value} already")
            try:
                await grant_service(
                    portal.store, found.tenant_id, found.service, aids=found.aids, tars=found.tars
                )
            except (UnknownRecordError, DuplicateRecordError) as e:
                raise RefusedError(409, f"cannot grant: {e}") from None
        try:
            await portal.requests.decide(
                number, state, by=login.operator, at=portal.wall(), note=note
            )
        except StoreConflictError as e:
            raise RefusedError(409, str(e)) from None
        await portal.audit(
            request,
            login,
            f"service-request.{state.value}",
            f"tenant:{found.tenant_id}/{found.service}",
            f"request={number} note={note[:200]}",
        )
        raise SeeOtherError("/requests")

    @app.route("/requests/<id:request_id>/approve", methods=["POST"])
    async def approve(request: IRequest, request_id: str) -> bytes:
        return await _decide(request, request_id, RequestState.APPROVED)

    @app.route("/requests/<id:request_id>/reject", methods=["POST"])
    async def reject(request: IRequest, request_id: str) -> bytes:
        return await _decide(request, request_id, RequestState.REJECTED)

    # -- imports -----------------------------------------------------------------------

    @app.route("/imports", methods=["GET"])
    async def imports(request: IRequest) -> bytes:
        login = await portal.require(request)
        reports = await portal.store.list_imports(limit=100)
        return portal.page(
            request,
            "imports.html",
            login,
            reports=reports,
            max_upload=portal.settings.max_upload,
            can_upload=portal.importer is not None,
        )

    @app.route("/imports", methods=["POST"])
    async def upload(request: IRequest) -> bytes:
        login = await portal.require(request, Role.OPERATOR, form=True)
        if portal.importer is None:
            raise RefusedError(503, "this gateway takes no imports from the portal")
        kind = field(request, "kind", 16) or ""
        if kind not in _KINDS:
            raise RefusedError(
                400, "kind: cards (a card-vendor output file) or msisdn (an MSISDN mapping file)"
            )
        name, data = upload_of(request, portal.settings.max_upload)
        looks = sniff_kind(data)
        if looks != kind:
            what = _KINDS.get(looks or "", "neither a vendor output file nor an MSISDN file")
            raise RefusedError(415, f"{name} is {what}, not {_KINDS[kind]}: nothing was imported")
        report = await portal.importer(kind, data, name, f"portal:{login.operator}")
        await portal.audit(
            request,
            login,
            "import.upload",
            f"import:{report.import_id}",
            f"kind={kind} file={name} added={report.added} rejected={report.rejected}",
        )
        raise SeeOtherError(f"/imports/{report.import_id}")

    @app.route("/imports/<id:import_id>", methods=["GET"])
    async def import_page(request: IRequest, import_id: str) -> bytes:
        login = await portal.require(request)
        number = _whole(import_id, "import", high=2**62)
        assert number is not None
        report = await portal.store.get_import(number)
        if report is None:
            raise RefusedError(404, f"no import {number}")
        return portal.page(request, "import.html", login, r=report)

    # -- operators ----------------------------------------------------------------------

    @app.route("/operators", methods=["GET"])
    async def operators(request: IRequest) -> bytes:
        login = await portal.require(request, Role.ADMIN)
        return portal.page(
            request,
            "operators.html",
            login,
            operators=await portal.operators.list(),
            roles=list(Role),
        )

    @app.route("/operators/<id:name>/role", methods=["POST"])
    async def set_role(request: IRequest, name: str) -> bytes:
        login = await portal.require(request, Role.ADMIN, form=True)
        try:
            role = Role(field(request, "role", 16) or "")
        except ValueError:
            raise RefusedError(400, "role: admin, operator or viewer") from None
        try:
            await portal.operators.set_role(name, role, at=portal.wall())
        except UnknownRecordError as e:
            raise RefusedError(404, str(e)) from None
        await portal.audit(
            request, login, "operator.set-role", f"operator:{name}", f"role={role.value}"
        )
        raise SeeOtherError("/operators")

    @app.route("/operators/<id:name>/disable", methods=["POST"])
    async def disable_operator(request: IRequest, name: str) -> bytes:
        login = await portal.require(request, Role.ADMIN, form=True)
        if name == login.operator:
            raise RefusedError(409, "an operator cannot disable themselves")
        try:
            await portal.operators.set_enabled(name, False, at=portal.wall())
        except UnknownRecordError as e:
            raise RefusedError(404, str(e)) from None
        portal.logins.close_operator(name)
        await portal.audit(request, login, "operator.disable", f"operator:{name}")
        raise SeeOtherError("/operators")

    # -- sessions --------------------------------------------------------------------

    @app.route("/sessions/<id:session_id>/close", methods=["POST"])
    async def close(request: IRequest, session_id: str) -> Any:
        login = await portal.require(request, Role.OPERATOR, form=True)
        if portal.close_session is None:
            raise RefusedError(503, "this gateway does not close sessions from the portal")
        try:
            portal.close_session(session_id)
        except (KeyError, LookupError, ValueError) as e:
            raise RefusedError(404, f"session {session_id} is not open here: {e}") from None
        await portal.audit(request, login, "session.close", f"session:{session_id}")
        raise SeeOtherError(f"/sessions/{session_id}")
