# -*- test-case-name: tests.unit.web.test_openapi -*-
"""The HTTP API's OpenAPI 3.1 document, as data.

Served at C{GET /v1/openapi.json} and written to C{docs/openapi.json} (a
test fails when that file is stale), so the document platform developers
generate clients from is the one the gateway itself serves.  The error
codes and their HTTP statuses come from L{bipgw.web._json.STATUS_OF};
L{ERROR_STATUSES} describes each status, and a test checks that every one
is described.
Regenerate the file with C{python -m bipgw.web._openapi > docs/openapi.json}.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Final

import bipgw
from bipgw.web._openapi_campaigns import CAMPAIGN_SCHEMAS, campaign_paths
from bipgw.web._openapi_schemas import SCHEMAS, SESSION_ID

ERROR_STATUSES: Final[dict[int, str]] = {
    400: "malformed JSON, or a field that is missing, unknown or wrong (the message names it)",
    401: (
        "no bearer token, an unknown or disabled one, two Authorization headers or one not"
        " ASCII; checked before anything else in the request, its body included"
    ),
    403: "the tenant may not use that service, or the service not that application or AID",
    404: "no such session (or campaign) for this tenant, or no card under that ICCID/MSISDN",
    405: "the path does not take that method",
    409: (
        "the card is busy with another session, or the session is closing or has ended;"
        " a campaign not in a state that allows the action"
    ),
    413: "the request body is over the limit",
    415: "the body is not application/json",
    429: (
        "a limit: sessions of the tenant or service, commands in flight, queued commands,"
        " or the service's commands per second (rate-limited)"
    ),
    500: "a bug in the gateway (logged)",
    502: "the card or the push failed (card-dropped, script-status, push-failed, ...)",
    503: (
        "the tenant directory is unavailable, or the gateway is shutting down; in a cluster,"
        " the node holding the session or the cluster's command limits cannot be reached"
    ),
    504: "the card did not connect or answer in time",
}


def _error_ref(status: int) -> dict[str, Any]:
    return {
        "description": ERROR_STATUSES[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _error_ref(s) for s in (401, 503, *statuses)}


_SESSION_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "the session id from POST /v1/sessions",
    "schema": SESSION_ID,
}

_LINKS: Final[dict[str, Any]] = {
    name: {
        "operationId": operation,
        "parameters": {"id": "$response.body#/session"},
        "description": f"{what} the session just opened",
    }
    for name, operation, what in (
        ("GetSession", "getSession", "the status of"),
        ("RunCommand", "runCommand", "run C-APDUs in"),
        ("CloseSession", "closeSession", "close"),
    )
}
"""OpenAPI links from an open to the session routes (clients and stateful testers follow them)."""

_PATHS: Final[dict[str, Any]] = {
    "/v1/service-requests": {
        "post": {
            "operationId": "requestService",
            "summary": "Ask for a gateway service; it waits for an operator's decision",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/ServiceRequestBody"}
                    }
                },
            },
            "responses": {
                "201": _json("ServiceRequest", "kept, pending; its id for GET .../{id}"),
                **_errors(400, 413, 415),
            },
        }
    },
    "/v1/service-requests/{id}": {
        "parameters": [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "description": "the id from POST /v1/service-requests",
                "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
            }
        ],
        "get": {
            "operationId": "getServiceRequest",
            "summary": "Where the tenant's own service request stands",
            "responses": {"200": _json("ServiceRequest", "the request"), **_errors(404)},
        },
    },
    "/v1/sessions": {
        "post": {
            "operationId": "openSession",
            "summary": "Open a session with a card (by ICCID or MSISDN) for a service",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/OpenRequest"}}
                },
            },
            "responses": {
                "201": {**_json("Opened", "accepted; the card is being pushed"), "links": _LINKS},
                **_errors(400, 403, 404, 409, 413, 415, 429),
            },
        }
    },
    "/v1/sessions/{id}": {
        "parameters": [_SESSION_PARAM],
        "get": {
            "operationId": "getSession",
            "summary": "The session's status",
            "responses": {"200": _json("SessionStatus", "the status"), **_errors(404)},
        },
        "delete": {
            "operationId": "closeSession",
            "summary": "Close the session after the commands already sent",
            "responses": {
                "200": _json("SessionStatus", "closed (or its final status)"),
                **_errors(404, 502, 504),
            },
        },
    },
    "/v1/sessions/{id}/commands": {
        "parameters": [_SESSION_PARAM],
        "post": {
            "operationId": "runCommand",
            "summary": "Run C-APDUs on the card as one script (waits while it connects)",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/CommandRequest"}}
                },
            },
            "responses": {
                "200": _json("CommandResult", "the card's answer"),
                **_errors(400, 403, 404, 409, 413, 415, 429, 502, 504),
            },
        },
    },
    "/v1/cards/{iccid}/key-rotations": {
        "parameters": [
            {
                "name": "iccid",
                "in": "path",
                "required": True,
                "description": "the card's ICCID",
                "schema": {"type": "string", "pattern": "^[0-9]{18,20}[Ff]?$"},
            }
        ],
        "post": {
            "operationId": "rotateCardKeys",
            "summary": "Rotate one key family of the card over the air (PUT KEY through SCP03);"
            " needs a grant of put-key on a service with secure_apdus",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/KeyRotationRequest"}
                    }
                },
            },
            "responses": {
                "201": _json("KeyRotation", "the card confirmed: the new version is active"),
                **_errors(400, 403, 404, 409, 413, 415, 502),
            },
        },
    },
    "/v1/offers": {
        "get": {
            "operationId": "listOffers",
            "summary": "Card-initiated sessions (a card that connected on its own) the tenant's"
            " services with card_initiated may take",
            "responses": {"200": _json("Offers", "the offers, oldest first"), **_errors()},
        }
    },
    "/v1/offers/{id}": {
        "parameters": [_SESSION_PARAM],
        "post": {
            "operationId": "takeOffer",
            "summary": "Take a card-initiated session for one of the tenant's services; its"
            " card is connected already",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/TakeRequest"}}
                },
            },
            "responses": {
                "201": _json("Opened", "taken; commands may be sent at once"),
                **_errors(400, 403, 404, 409, 413, 415, 429),
            },
        },
    },
    "/v1/events": {
        "get": {
            "operationId": "streamEvents",
            "summary": "Server-Sent Events: the engine's events of the tenant's sessions",
            "parameters": [
                {
                    "name": "session",
                    "in": "query",
                    "required": False,
                    "description": "only this session's events",
                    "schema": SESSION_ID,
                }
            ],
            "responses": {
                "200": {
                    "description": "a stream of `event: session` frames whose data is a"
                    " SessionEvent",
                    "content": {
                        "text/event-stream": {
                            "schema": {
                                "type": "object",
                                "description": "one event (OpenAPI 3.1: the schema of each)",
                                "required": ["event", "data"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "event": {"const": "session"},
                                    "data": {
                                        "type": "string",
                                        "contentMediaType": "application/json",
                                        "contentSchema": {
                                            "$ref": "#/components/schemas/SessionEvent"
                                        },
                                    },
                                    "retry": {"type": "integer"},
                                },
                            },
                        }
                    },
                },
                **_errors(404),
            },
        }
    },
    "/v1/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "the OpenAPI document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the HTTP API (a fresh copy each call)."""
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "bipgw HTTP API",
                "version": bipgw.__version__,
                "summary": "Admin sessions with SIM cards over the air (SCP80 push, SCP81 BIP)",
                "description": "The platform channel's request/response sessions over HTTP"
                " JSON; see docs/http-api.md.",
                "license": {"name": "MIT", "identifier": "MIT"},
            },
            "servers": [{"url": "/"}],
            "security": [{"bearer": []}],
            "paths": {**_PATHS, **campaign_paths(_errors)},
            "components": {
                "schemas": {**SCHEMAS, **CAMPAIGN_SCHEMAS},
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "the tenant's API token (bipgw tenant add)",
                    }
                },
            },
        }
    )


def render() -> str:
    """The document as C{docs/openapi.json} holds it (sorted keys, two-space indent)."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m bipgw.web._openapi > docs/openapi.json
    import sys

    sys.stdout.write(render())
