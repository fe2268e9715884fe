"""Thin Twisted protocols: bytes in, codec messages to the core, bytes out.

Each module adapts one wire protocol to the pure logic in C{bipgw.core}:
the protocol feeds received bytes to a sans-IO parser from C{bipgw.codec},
passes complete messages on, and writes what comes back.  Protocols hold no
business rules (STYLE.md, rule 2), so they are imported by name:

  - L{bipgw.protocols.smpp}: the SMPP ESME protocol (the SCP81 admin
    connection is L{bipgw.scp81.AdminProtocol}).
"""
