"""The SCP81 admin HTTP codec (GlobalPlatform Card Specification Amendment B).

Inside the TLS-PSK session a card's security domain POSTs to the admin
server and the server answers with the next command script (C{200}) or ends
the session (C{204}).  This package turns those HTTP/1.1 messages into
frozen values with typed X-Admin-* headers and back, without doing any I/O:
L{RequestParser} is what the gateway feeds with decrypted TLS bytes, and
L{ResponseParser} is what a simulated card feeds.

The serializers write canonical bytes (CRLF, fixed header order); the
parsers accept what real cards send (bare LF, any header case, spacing in
Content-Type) but refuse anything that makes a message's end ambiguous.
"""

from bipgw.codec.admin_http._errors import AdminHttpError
from bipgw.codec.admin_http._headers import (
    ETSI_COMMAND,
    ETSI_RESPONSE,
    GP_COMMAND,
    GP_RESPONSE,
    X_ADMIN_PROTOCOL,
    ContentType,
    ScriptStatus,
    format_aid_uri,
    parse_aid_uri,
    parse_script_status,
)
from bipgw.codec.admin_http._messages import (
    AdminRequest,
    AdminResponse,
    encode_request,
    encode_response,
    script_response,
)
from bipgw.codec.admin_http._parser import DEFAULT_MAX_BODY, RequestParser, ResponseParser

__all__ = [
    "DEFAULT_MAX_BODY",
    "ETSI_COMMAND",
    "ETSI_RESPONSE",
    "GP_COMMAND",
    "GP_RESPONSE",
    "X_ADMIN_PROTOCOL",
    "AdminHttpError",
    "AdminRequest",
    "AdminResponse",
    "ContentType",
    "RequestParser",
    "ResponseParser",
    "ScriptStatus",
    "encode_request",
    "encode_response",
    "format_aid_uri",
    "parse_aid_uri",
    "parse_script_status",
    "script_response",
]
