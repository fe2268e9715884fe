"""simcard: a simulated SIM fleet (cards, BIP channel, admin agent, SMSC).

It may import only the gateway's shared building blocks: C{bipgw.codec}
(wire formats), C{bipgw.tls} (TLS-PSK, which a card needs as a client),
C{bipgw.keys} (the documented card-key KDF and transport wrapping, which the
fleet generator must share with the gateway) and C{bipgw.client}.  bipgw
never imports simcard; C{tests/unit/test_layering.py} enforces both rules.
"""
