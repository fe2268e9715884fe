"""Sans-IO codecs for every wire format bipgw speaks.

Nothing in this package imports Twisted or performs I/O: each module turns
bytes into frozen values and back, so the same code serves the gateway, the
simulated cards, the SDK and the benchmarks.  A test enforces the rule.

Modules (one format each): L{apdu}, L{tlv}, L{smpp}, L{sms}, L{ota},
L{ram} (TS 102 226 scripts, PUSH and Amd B triggers), L{admin_http}
(SCP81 HTTP) and L{platform} (the platform channel's frames and messages).
"""

from bipgw.codec._errors import CodecError

__all__ = ["CodecError"]
