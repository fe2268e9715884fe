"""schemathesis hooks for docs/openapi.json: generators for its string formats.

JSON Schema cannot say that a C-APDU's Lc agrees with the bytes after it, or
that an expanded script's TLV lengths agree with its bytes; the document
says so in words and names the rule with a C{format} (C{c-apdu},
C{expanded-script}), which a validator may ignore.  A tester generating
valid data has to know the rule, so these strategies make values that keep
it (from the gateway's own codecs), and schemathesis's check that valid
data is accepted stays strict.

A C-APDU's class byte also says which logical channel it goes to, and the
gateway authorises a command by what is selected there: a class that
addresses no channel it can check (C{2X}, C{3X}, C{AX}, C{BX}, C{FF}) is
refused C{403 application-not-allowed} before the card (C{docs/security.md}).
A generated list of C-APDUs with any such class is refused whole, so with
classes drawn from all 256 nearly every valid command is refused and the
stateful links never get one run on the session they opened; the
generator draws the classes the gateway can check (the unit tests of
L{bipgw.core} cover the refusal).  Loaded with
C{SCHEMATHESIS_HOOKS=tests.integration.schemathesis_hooks}.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import strategies as st

from bipgw.codec.apdu import CommandApdu
from bipgw.codec.ram import CommandScript

_CHECKABLE_CLASS = st.one_of(
    st.integers(0x00, 0x1F), st.integers(0x40, 0x9F), st.integers(0xC0, 0xFE)
)
"""Class bytes that address a logical channel (C{0X}/C{8X}/C{9X}: 0-3, C{4X}-C{7X},
C{CX}-C{FE}: 4-19), as L{bipgw.core}'s reach reads them.  C{1X} is a chained C{0X}."""


@st.composite
def _capdu(draw: Any) -> bytes:
    header = bytes([draw(_CHECKABLE_CLASS)]) + draw(st.binary(min_size=3, max_size=3))
    data = draw(st.binary(max_size=32))
    le = draw(st.none() | st.integers(1, 256))
    return CommandApdu(header[0], header[1], header[2], header[3], data, le, False).encode()


@st.composite
def _script(draw: Any) -> str:
    commands = draw(st.lists(_capdu(), min_size=1, max_size=4))
    definite = draw(st.booleans())
    return CommandScript(tuple(commands), definite).encode().hex().upper()


@st.composite
def _apdu_script(draw: Any) -> str:
    """An APDU script (docs/apdu-scripts.md): C-APDUs one a line, hex with spaces."""
    commands = draw(st.lists(_capdu(), min_size=1, max_size=3))
    return "\n".join(" ".join(f"{b:02X}" for b in c) + " => *" for c in commands) + "\n"


schemathesis.openapi.format("c-apdu", _capdu().map(lambda b: b.hex().upper()))
schemathesis.openapi.format("apdu-script", _apdu_script())
schemathesis.openapi.format("expanded-script", _script())
