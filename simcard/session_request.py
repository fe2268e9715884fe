# -*- test-case-name: tests.unit.simcard.test_session_request -*-
"""What a trigger asks the card for: one admin session, and how to retry it.

The OTA receiver turns a TS 102 226 PUSH or GP Amd B triggering parameters
(C{81}) into an L{AdminSessionRequest}: where to connect, as whom, with
which PSK, and the L{SessionRetryPolicy} of the trigger, with what the
trigger leaves out taken from the card's personalised
L{AdminDefaults<simcard.model.AdminDefaults>}.  The channel opens the
connection it names and the admin agent (L{simcard.agent}) runs the POST
loop over it; the fleet's router and service carry it between the two.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
from attrs import field, frozen

from bipgw.codec.ram import (
    AdminSessionTrigger,
    BearerDescription,
    ConnectionParams,
    PushBipOpening,
    PushTcpConnection,
    TransportProtocol,
)
from bipgw.codec.ram import RetryPolicy as TriggerRetryPolicy
from simcard.model import AdminDefaults

__all__ = ["AdminSessionRequest", "SessionRetryPolicy", "TriggerKind"]


def _check_non_negative(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if type(value) not in (int, float) or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative number, not {value!r}")


@frozen
class SessionRetryPolicy:
    """How often, and how long apart, a card retries an admin session (Amd B C{86}).

    The trigger's retry policy gives a retry counter and a waiting delay:
    after a failed attempt the card waits C{delay} seconds and tries again,
    at most C{retries} times, then reports the failure (PROTOCOLS.md 3.5;
    the details are UNVERIFIED, this is the plain reading).  A PUSH carries
    no policy, so the default is "no retry".

    @ivar retries: how many retries follow the first attempt.
    @ivar delay: seconds to wait before each retry.
    """

    retries: int = field(default=0, validator=_check_non_negative)
    delay: float = field(default=0.0, validator=_check_non_negative)

    @classmethod
    def from_trigger(cls, policy: TriggerRetryPolicy) -> SessionRetryPolicy:
        """The schedule a decoded Amd B retry policy (C{86}) asks for."""
        return cls(policy.counter, policy.delay.total_seconds())

    def next_retry_delay(self, attempt: int) -> float | None:
        """The wait before the next try, after C{attempt} failed attempts; C{None} to give up.

        @param attempt: how many attempts have failed so far (1 after the first).
        """
        if attempt < 1:
            raise ValueError(f"attempt counts failed attempts from 1, not {attempt}")
        return float(self.delay) if attempt <= self.retries else None


class TriggerKind(enum.Enum):
    """What asked the card to open its admin session."""

    PUSH = "push"
    """The TS 102 226 PUSH C{80 EC 01 01/03} in a compact script."""
    AMDB = "amdb"
    """The GP Amd B administration session triggering parameters C{81}."""
    CARD = "card"
    """Nothing from the network: the card opened the session on its own (a
    polling timer, a card event), with its personalised defaults."""


def _check_text(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable():
        raise ValueError(f"{attribute.name} must be non-empty printable ASCII, not {value!r}")


def _int_in(low: int, high: int, *, optional: bool = False) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if optional and value is None:
            return
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"{attribute.name} must be an int in {low}..{high}, not {value!r}")

    return check


@frozen(kw_only=True)
class AdminSessionRequest:
    """Everything a card needs to open one admin session, as its trigger said.

    Built by the OTA receiver from a PUSH or an Amd B trigger, with what
    the trigger leaves out taken from the card's personalised
    L{AdminDefaults<simcard.model.AdminDefaults>}.

    @ivar address: where to connect: the IP address from the trigger (text),
        or the default admin host name.
    @ivar port: the TCP port to connect to.
    @ivar host: the HTTP C{Host} header value.
    @ivar uri: the target of the first POST.
    @ivar agent_id: the C{X-Admin-From} value.
    @ivar bearer: the bearer description the trigger asked for, if any.
    @ivar buffer_size: the channel buffer size asked for, if any.
    @ivar apn: the network access name asked for, if any.
    @ivar psk_identity: the PSK identity the trigger names (C{85}); C{None}
        means the card's own.
    @ivar psk_kvn: the key version of the PSK the trigger names, if any.
    @ivar psk_kid: the key identifier of that PSK, if any.
    @ivar retry: the retry schedule (none for a PUSH).
    @ivar trigger: what asked for the session.
    """

    address: str = field(validator=_check_text)
    port: int = field(validator=_int_in(1, 0xFFFF))
    host: str = field(validator=_check_text)
    uri: str = field(validator=_check_text)
    agent_id: str = field(validator=_check_text)
    bearer: BearerDescription | None = None
    buffer_size: int | None = field(default=None, validator=_int_in(0, 0xFFFF, optional=True))
    apn: str | None = None
    psk_identity: bytes | None = None
    psk_kvn: int | None = field(default=None, validator=_int_in(0, 0xFF, optional=True))
    psk_kid: int | None = field(default=None, validator=_int_in(0, 0xFF, optional=True))
    retry: SessionRetryPolicy = field(factory=SessionRetryPolicy)
    trigger: TriggerKind = TriggerKind.PUSH

    @classmethod
    def from_push(
        cls, push: PushBipOpening | PushTcpConnection, defaults: AdminDefaults, agent_id: str
    ) -> AdminSessionRequest:
        """The session a TS 102 226 PUSH (P2 C{01}/C{03}) asks for.

        What the PUSH leaves out comes from the card's C{defaults}
        (TS 102 226 9.2.1: the PUSH's objects take precedence).

        @raise ValueError: a transport other than TCP client (remote), or
            port 0: the simulated BIP stack has nothing else.
        """
        params = ConnectionParams(
            push.bearer, push.buffer_size, push.nan, push.transport, push.address
        )
        return cls._merge(params, defaults, agent_id, TriggerKind.PUSH)

    @classmethod
    def on_its_own(
        cls,
        defaults: AdminDefaults,
        agent_id: str,
        *,
        address: str | None = None,
        port: int | None = None,
    ) -> AdminSessionRequest:
        """The session a card opens by itself, to its personalised admin server.

        @param address: connect here instead of C{defaults.host} (a test's
            gateway on a free port); C{port} likewise.
        """
        request = cls._merge(ConnectionParams(), defaults, agent_id, TriggerKind.CARD)
        if address is not None or port is not None:
            request = attrs.evolve(
                request, address=address or request.address, port=port or request.port
            )
        return request

    @classmethod
    def from_trigger(
        cls, trigger: AdminSessionTrigger, defaults: AdminDefaults, agent_id: str
    ) -> AdminSessionRequest:
        """The session GP Amd B triggering parameters (C{81}) ask for, over C{defaults}.

        @raise ValueError: as L{from_push}.
        """
        http, security = trigger.http, trigger.security
        return cls._merge(
            trigger.connection or ConnectionParams(),
            defaults,
            agent_id,
            TriggerKind.AMDB,
            host=http.host if http is not None else None,
            uri=http.uri if http is not None else None,
            agent_id_override=http.agent_id if http is not None else None,
            psk_identity=security.psk_identity if security is not None else None,
            psk_kvn=security.kvn if security is not None else None,
            psk_kid=security.kid if security is not None else None,
            retry=SessionRetryPolicy.from_trigger(trigger.retry) if trigger.retry else None,
        )

    @classmethod
    def _merge(
        cls,
        params: ConnectionParams,
        defaults: AdminDefaults,
        agent_id: str,
        kind: TriggerKind,
        *,
        host: str | None = None,
        uri: str | None = None,
        agent_id_override: str | None = None,
        psk_identity: bytes | None = None,
        psk_kvn: int | None = None,
        psk_kid: int | None = None,
        retry: SessionRetryPolicy | None = None,
    ) -> AdminSessionRequest:
        transport, address = params.transport, params.address
        if transport is not None and transport.protocol is not TransportProtocol.TCP_CLIENT_REMOTE:
            raise ValueError(f"transport {transport.protocol.name} is not supported")
        return cls(
            address=str(address.address) if address is not None else defaults.host,
            port=transport.port if transport is not None else defaults.port,
            host=host or defaults.host,
            uri=uri or defaults.uri,
            agent_id=agent_id_override or agent_id,
            bearer=params.bearer,
            buffer_size=params.buffer_size.size if params.buffer_size is not None else None,
            apn=params.nan.name if params.nan is not None else None,
            psk_identity=psk_identity,
            psk_kvn=psk_kvn,
            psk_kid=psk_kid,
            retry=retry or SessionRetryPolicy(),
            trigger=kind,
        )
