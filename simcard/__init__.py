"""simcard: a simulated SIM fleet (cards, BIP channel, admin agent, SMSC).

It may import only C{bipgw.codec} and C{bipgw.client}; bipgw never imports it.
"""
