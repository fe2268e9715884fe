# -*- test-case-name: tests.integration.test_replay_direct -*-
"""C{bipgw replay --direct FLEET_DIR}: a simulated card, with no gateway between.

Replaying a script straight into one card of a fleet directory is how
scripts are written and checked before they go over the air, and how the
example scripts are tested: no SMSC, no push, no TLS, just the card's
L{SimCard.transmit}.  The card is loaded from the fleet's C{cards.db} with
the fleet's applets and SCP03 card side (as C{simfleet run} loads it), and
its state (registry, applet data, keys) is saved back when the target is
closed, so a replayed INSTALL is still there for the next replay, or for
the fleet when it runs.

Do not replay into a fleet that C{simfleet run} is serving at the same
time: the running fleet keeps its cards in memory and would write its own
copy over the replay's changes.  Go through the gateway instead.

bipgw finds this module through the C{"direct"} plugin of
C{twisted/plugins/simcard_replay.py} (bipgw never imports simcard).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from bipgw.client import IReplayTarget, IReplayTargetFactory, ReplayTargetError
from simcard.agent import script_continues
from simcard.applets import APPLET_FACTORIES
from simcard.card import SimCard
from simcard.fleet import FleetConfig, FleetConfigError
from simcard.gp.secure_channel import Scp03SecureChannel
from simcard.state import FleetState, FleetStateError, UnknownCardError

__all__ = ["DirectReplayTarget", "DirectTargetFactory", "fleet_file", "open_target"]


def fleet_file(location: str) -> Path:
    """The C{cards.db} a C{--direct} location names.

    A fleet directory (its C{fleet.toml} says where the file is; without
    one, C{cards.db} in it), or the SQLite file itself.

    @raise ReplayTargetError: nothing usable there.
    """
    where = Path(location)
    if where.is_file():
        return where
    if not where.is_dir():
        raise ReplayTargetError(f"{location}: no such fleet directory or cards file")
    settings = where / "fleet.toml"
    if settings.is_file():
        try:
            path = FleetConfig.from_file(settings).fleet.cards_db
        except FleetConfigError as e:
            raise ReplayTargetError(str(e)) from None
    else:
        path = where / "cards.db"
    if not path.is_file():
        raise ReplayTargetError(
            f"{path}: no such file; is {location} a fleet directory (simfleet generate)?"
        )
    return path


@implementer(IReplayTarget)
class DirectReplayTarget:
    """One simulated card of a fleet file, driven APDU by APDU.

    @param state: the open fleet file (the target closes it).
    @param card: the card, loaded from C{state}.
    @param description: what the trace calls it.
    """

    def __init__(self, state: FleetState, card: SimCard, description: str) -> None:
        self._state: FleetState | None = state
        self.card = card
        self.description = description

    def transmit(self, capdu: bytes) -> Deferred[bytes]:
        """Run one C-APDU on the card (which never raises: it answers a status word)."""
        return succeed(self.card.transmit(capdu))

    def transmit_batch(self, capdus: Sequence[bytes]) -> Deferred[list[bytes]]:
        """Run the commands in turn, stopping after a failure as a remote script does."""
        responses = []
        for capdu in capdus:
            rapdu = self.card.transmit(capdu)
            responses.append(rapdu)
            if not script_continues(int.from_bytes(rapdu[-2:], "big")):
                break
        return succeed(responses)

    def close(self) -> Deferred[None]:
        """Save the card if it changed, commit and close the fleet file."""
        state, self._state = self._state, None
        if state is not None:
            try:
                if self.card.dirty:
                    state.save_card(self.card)
                state.commit()
            finally:
                state.close()
        return succeed(None)


def open_target(location: str, iccid: str) -> DirectReplayTarget:
    """Open card C{iccid} of the fleet at C{location} (see L{fleet_file}).

    @raise ReplayTargetError: no fleet there, no such card, or a corrupt row.
    """
    path = fleet_file(location)
    try:
        state = FleetState.open(
            path,
            applet_factories=APPLET_FACTORIES,
            secure_channel_factory=Scp03SecureChannel,
        )
    except FleetStateError as e:
        raise ReplayTargetError(str(e)) from None
    try:
        card = state.load_card(iccid)
    except UnknownCardError:
        count = len(state)
        state.close()
        raise ReplayTargetError(
            f"no card with ICCID {iccid} in {path} ({count} cards there)"
        ) from None
    except FleetStateError as e:
        state.close()
        raise ReplayTargetError(str(e)) from None
    return DirectReplayTarget(state, card, f"card {iccid} of the simulated fleet {path} (direct)")


@implementer(IReplayTargetFactory)
class DirectTargetFactory:
    """The C{"direct"} replay target kind, for use without the plugin lookup."""

    name = "direct"
    description = "a card of a simulated fleet directory, no gateway (simcard)"

    def open(self, location: str, iccid: str) -> IReplayTarget:
        """See L{open_target}."""
        return open_target(location, iccid)
