# -*- test-case-name: tests.unit.web.test_openapi -*-
"""The schemas of the HTTP API's OpenAPI document (C{components/schemas}):
what a session, a command, an event, a service request and an error look
like.  The paths that use them are in L{bipgw.web._openapi}."""

from __future__ import annotations

from typing import Any, Final

__all__ = ["EXAMPLE_ICCID", "SCHEMAS", "SESSION_ID"]

EXAMPLE_ICCID: Final = "8988211000000000011"
"""The example card: the first card of a simulated fleet (C{simfleet generate}),
so that the document's examples open a real session against one."""

_HEX = {"type": "string", "pattern": "^([0-9A-Fa-f]{2})*$"}
_TARGET = {
    "type": "string",
    "pattern": "^([0-9A-Fa-f]{2}){5,16}$",
    "description": "the AID (5-16 bytes, hex) of the application the card runs the scripts"
    " in (GP Amd B X-Admin-Targeted-Application): an RFM file system, a supplementary"
    " security domain; it must be one the service allows",
}
_CAPDU = {
    "type": "string",
    "pattern": "^([0-9A-Fa-f]{2}){4,}$",
    "format": "c-apdu",
    "description": "one complete C-APDU in hex (format c-apdu, ISO 7816-4 5.1: CLA INS P1 P2"
    " [Lc data] [Le], short or extended); its Lc must agree with the bytes that follow it",
}
SESSION_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}


SCHEMAS: Final[dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {
                "type": "string",
                "description": "stable, for programs: the platform channel's and the engine's"
                " codes (invalid-message, auth-failed, service-not-allowed, unknown-session,"
                " card-busy, limit-reached, rate-limited, card-timeout, script-status ...)",
            },
            "message": {"type": "string", "description": "for people"},
            "session": SESSION_ID,
        },
    },
    "Timeouts": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "ready": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
            "command": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
        },
    },
    "OpenRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["service"],
        "description": "exactly one of iccid and msisdn; no field may be null",
        "oneOf": [
            {"required": ["iccid"], "not": {"required": ["msisdn"]}},
            {"required": ["msisdn"], "not": {"required": ["iccid"]}},
        ],
        "properties": {
            "iccid": {"type": "string", "pattern": "^[0-9]{18,20}[Ff]?$"},
            "msisdn": {"type": "string", "pattern": "^\\+?[0-9]{1,15}$"},
            "service": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"},
            "application": {
                "type": "string",
                "pattern": "^([0-9A-Fa-f]{6}|([0-9A-Fa-f]{2}){5,16})$",
                "description": "a TAR (3 bytes) or AID (5-16 bytes) the service allows, in hex",
            },
            "timeouts": {"$ref": "#/components/schemas/Timeouts"},
            "target": _TARGET,
        },
        "examples": [{"iccid": EXAMPLE_ICCID, "service": "isd"}],
    },
    "Offers": {
        "type": "object",
        "required": ["offers"],
        "properties": {
            "offers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["session", "iccid", "agent", "services", "expires_in_ms"],
                    "properties": {
                        "session": SESSION_ID,
                        "iccid": {"type": "string"},
                        "msisdn": {"type": "string"},
                        "agent": {"type": "string", "description": "the card's X-Admin-From"},
                        "services": {"type": "array", "items": {"type": "string"}},
                        "expires_in_ms": {"type": "integer", "minimum": 0},
                    },
                },
            }
        },
    },
    "TakeRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["service"],
        "description": "no field may be null",
        "properties": {
            "service": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"},
            "timeouts": {"$ref": "#/components/schemas/Timeouts"},
            "target": _TARGET,
        },
        "examples": [{"service": "poll"}],
    },
    "Opened": {
        "type": "object",
        "required": ["session", "state"],
        "properties": {"session": SESSION_ID, "state": {"type": "string"}},
    },
    "SessionStatus": {
        "type": "object",
        "required": ["session", "state", "service", "opened_at", "updated_at"],
        "properties": {
            "session": SESSION_ID,
            "state": {
                "type": "string",
                "enum": [
                    "requested",
                    "pushing",
                    "awaiting-card",
                    "connected",
                    "relaying",
                    "closing",
                    "closed",
                    "failed",
                ],
            },
            "service": {"type": "string"},
            "iccid": {"type": "string"},
            "msisdn": {"type": "string"},
            "opened_at": {"type": "number"},
            "updated_at": {"type": "number"},
            "ended_at": {"type": "number"},
            "scripts": {"type": "integer", "minimum": 0},
            "push_attempts": {"type": "integer", "minimum": 0},
            "reason": {"type": "string", "description": "why it failed"},
            "detail": {"type": "string"},
            "node": {
                "type": "string",
                "description": "in a cluster: the node running the session (docs/cluster.md)",
            },
        },
    },
    "KeyRotationRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["purpose"],
        "properties": {
            "purpose": {
                "enum": ["psk", "ota", "scp03"],
                "description": "the key family to rotate: the SCP81 PSK, the OTA key set, the"
                " SCP03 key set",
            },
            "service": {
                "type": "string",
                "description": "the service whose session carries PUT KEY (secure_apdus and"
                " put-key); default: the first such service the tenant may use",
            },
        },
    },
    "KeyRotation": {
        "type": "object",
        "required": ["iccid", "purpose", "old_kvn", "new_kvn", "state"],
        "properties": {
            "iccid": {"type": "string"},
            "purpose": {"type": "string"},
            "old_kvn": {"type": "integer"},
            "new_kvn": {"type": "integer"},
            "state": {
                "enum": ["active", "failed"],
                "description": "active: the card confirmed, the new version is in use;"
                " failed: the old version stays active",
            },
            "session": {"type": ["string", "null"]},
            "reason": {"type": "string"},
        },
    },
    "CommandRequest": {
        "type": "object",
        "additionalProperties": False,
        "description": "exactly one of apdus and script; definite only with apdus;"
        " no field may be null",
        "oneOf": [
            {"required": ["apdus"], "not": {"required": ["script"]}},
            {
                "required": ["script"],
                "not": {"anyOf": [{"required": ["apdus"]}, {"required": ["definite"]}]},
            },
        ],
        "properties": {
            "apdus": {"type": "array", "minItems": 1, "maxItems": 255, "items": _CAPDU},
            "script": {
                "type": "string",
                "pattern": "^([Aa][Aa]|[Aa][Ee])([0-9A-Fa-f]{2})+$",
                "format": "expanded-script",
                "description": "an expanded command script (format expanded-script, ETSI TS"
                " 102 226 5.2.1): an AA"
                " (definite length) or AE (indefinite length) template of C-APDU TLVs, its"
                " lengths agreeing with its bytes, 1 to 255 C-APDUs; chaining, immediate and"
                " error action TLVs are refused",
            },
            "definite": {"type": "boolean", "description": "send AA (definite length)"},
            "target": _TARGET,
        },
        "examples": [{"apdus": ["00A4040008A000000151000000", "80CA9F7F00"]}],
    },
    "CommandResult": {
        "type": "object",
        "required": ["session", "rapdus", "executed", "elapsed_ms", "complete", "sw", "meanings"],
        "properties": {
            "session": SESSION_ID,
            "rapdus": {"type": "array", "items": _HEX},
            "executed": {"type": "integer", "minimum": 0},
            "elapsed_ms": {"type": "integer", "minimum": 0},
            "complete": {"type": "boolean", "description": "false: the card stopped early"},
            "sw": {"type": "array", "items": {"type": "string", "pattern": "^[0-9A-F]{4}$"}},
            "meanings": {"type": "array", "items": {"type": "string"}},
        },
    },
    "SessionEvent": {
        "type": "object",
        "required": ["session", "seq", "at", "state", "transition"],
        "properties": {
            "session": SESSION_ID,
            "seq": {"type": "integer"},
            "at": {"type": "number"},
            "state": {"type": "string"},
            "previous": {"type": "string"},
            "reason": {"type": "string"},
            "detail": {"type": "string"},
            "transition": {"type": "boolean"},
        },
    },
}

SCHEMAS["ServiceRequestBody"] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["service"],
    "description": "a request for a gateway service, approved or rejected by an operator"
    " in the portal; no field may be null",
    "properties": {
        "service": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"},
        "aids": {
            "type": "array",
            "maxItems": 32,
            "items": {"type": "string", "pattern": "^([0-9A-Fa-f]{2}){5,16}$"},
        },
        "tars": {
            "type": "array",
            "maxItems": 32,
            "items": {"type": "string", "pattern": "^[0-9A-Fa-f]{6}$"},
        },
        "expected_volume": {
            "type": "integer",
            "minimum": 0,
            "maximum": 1000000000,
            "description": "sessions a day",
        },
        "note": {"type": "string", "maxLength": 500},
    },
    "examples": [{"service": "isd", "aids": ["A000000151000000"], "expected_volume": 1000}],
}
SCHEMAS["ServiceRequest"] = {
    "type": "object",
    "required": ["id", "service", "aids", "tars", "expected_volume", "state", "submitted_at"],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "service": {"type": "string"},
        "aids": {"type": "array", "items": {"type": "string"}},
        "tars": {"type": "array", "items": {"type": "string"}},
        "expected_volume": {"type": "integer"},
        "note": {"type": "string"},
        "state": {"type": "string", "enum": ["pending", "approved", "rejected"]},
        "submitted_at": {"type": "number"},
        "decided_at": {"type": "number"},
    },
}
