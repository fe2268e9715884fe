"""schemathesis hooks for docs/openapi.json: generators for its two string formats.

JSON Schema cannot say that a C-APDU's Lc agrees with the bytes after it, or
that an expanded script's TLV lengths agree with its bytes; the document
says so in words and names the rule with a C{format} (C{c-apdu},
C{expanded-script}), which a validator may ignore.  A tester generating
valid data has to know the rule, so these strategies make values that keep
it (from the gateway's own codecs), and schemathesis's check that valid
data is accepted stays strict.  Loaded with
C{SCHEMATHESIS_HOOKS=tests.integration.schemathesis_hooks}.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import strategies as st

from bipgw.codec.apdu import CommandApdu
from bipgw.codec.ram import CommandScript


@st.composite
def _capdu(draw: Any) -> bytes:
    header = draw(st.binary(min_size=4, max_size=4))
    data = draw(st.binary(max_size=32))
    le = draw(st.none() | st.integers(1, 256))
    return CommandApdu(header[0], header[1], header[2], header[3], data, le, False).encode()


@st.composite
def _script(draw: Any) -> str:
    commands = draw(st.lists(_capdu(), min_size=1, max_size=4))
    definite = draw(st.booleans())
    return CommandScript(tuple(commands), definite).encode().hex().upper()


schemathesis.openapi.format("c-apdu", _capdu().map(lambda b: b.hex().upper()))
schemathesis.openapi.format("expanded-script", _script())
