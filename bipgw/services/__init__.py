"""The gateway's services: each owns one resource (a port, a connection).

Every module holds one L{twisted.application.service.IService}, started and
stopped by the gateway's C{MultiService}, and is imported by name so that
loading one service never pulls in another's dependencies:

  - L{bipgw.services.admin_server}: the SCP81 TLS-PSK listener for cards.
"""
