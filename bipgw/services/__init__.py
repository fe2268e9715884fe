"""The gateway's services: each owns one resource (a port, a connection).

Every module holds one L{twisted.application.service.IService}, started and
stopped by the gateway's C{MultiService}, and is imported by name so that
loading one service never pulls in another's dependencies:

  - L{bipgw.services.smpp_client}: the SMPP client (the SCP81 listener is
    L{bipgw.scp81.AdminServer}).
"""
