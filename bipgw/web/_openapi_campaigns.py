# -*- test-case-name: tests.unit.web.test_openapi -*-
"""The campaign part of the OpenAPI document (C{/v1/campaigns...}), merged
into it by L{bipgw.web._openapi.openapi_document}."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

__all__ = ["CAMPAIGN_SCHEMAS", "campaign_paths"]

_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
_NAME = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,31}$"}
_WINDOW = {
    "type": "string",
    "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$",
    "description": "HH:MM-HH:MM, UTC; an end before the start spans midnight; start != end",
}
_ICCID = {"type": "string", "pattern": "^[0-9]{18,20}[Ff]?$"}
_MSISDN = {"type": "string", "pattern": "^\\+?[0-9]{1,15}$"}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_TARGET = {
    "oneOf": [
        _ICCID,
        {
            "type": "object",
            "additionalProperties": False,
            "oneOf": [
                {"required": ["iccid"], "not": {"required": ["msisdn"]}},
                {"required": ["msisdn"], "not": {"required": ["iccid"]}},
            ],
            "properties": {
                "iccid": _ICCID,
                "msisdn": _MSISDN,
                "variables": {
                    "type": "object",
                    "maxProperties": 32,
                    "propertyNames": _NAME,
                    "additionalProperties": {
                        "type": "string",
                        "pattern": "^([0-9A-Fa-f]{2})*$",
                        "maxLength": 1024,
                    },
                    "description": "the card's own script variables, NAME: hex",
                },
            },
        },
    ],
    "description": "an ICCID, or a card by ICCID or MSISDN with its own variables",
}

CAMPAIGN_SCHEMAS: Final[dict[str, Any]] = {
    "CampaignTargets": {
        "type": "object",
        "additionalProperties": False,
        "required": ["targets"],
        "properties": {"targets": {"type": "array", "items": _TARGET, "minItems": 1}},
    },
    "CampaignRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "service", "script"],
        "description": "targets, batch, or both (every card of a vendor batch); no field may"
        " be null.  pace.concurrency may not exceed the tenant's (and the service's)"
        " max-sessions",
        "anyOf": [{"required": ["targets"]}, {"required": ["batch"]}],
        "properties": {
            "name": {"type": "string", "pattern": "\\S", "maxLength": 255},
            "service": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"},
            "script": {
                "type": "string",
                "format": "apdu-script",
                "pattern": "\\S",
                "maxLength": 1048576,
                "description": "an APDU script (docs/apdu-scripts.md, the format bipgw replay"
                " runs; format apdu-script), with at least one command; no include; per-card"
                " variables ${ICCID}, ${MSISDN} (swapped-nibble BCD) and the targets' own",
            },
            "targets": {"type": "array", "items": _TARGET, "minItems": 1},
            "batch": {"type": "string", "pattern": "\\S", "maxLength": 64},
            "idempotent": {
                "type": "boolean",
                "description": "the script may run twice on a card (rerun after a crash)",
            },
            "pace": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e9},
                    "concurrency": {"type": "integer", "minimum": 1, "maximum": 10000},
                    "burst": {"type": "integer", "minimum": 1, "maximum": 10000},
                },
            },
            "retry": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "attempts": {"type": "integer", "minimum": 1, "maximum": 100},
                    "backoff": {"type": "number", "minimum": 0, "maximum": 1e9},
                    "factor": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e3},
                    "max_backoff": {"type": "number", "minimum": 0, "maximum": 1e9},
                    "give_up": {"type": "array", "items": {"type": "string"}},
                },
            },
            "windows": {"type": "array", "items": _WINDOW},
            "start": {"type": "boolean", "description": "start it at once"},
        },
        "examples": [
            {
                "name": "read CPLC",
                "service": "isd",
                "script": "80 CA 9F 7F 00 => 9000",
                "targets": ["8988211000000000011"],
                "pace": {"rate": 10, "concurrency": 5},
            }
        ],
    },
    "Campaign": {
        "type": "object",
        "required": ["campaign", "name", "service", "state", "cards", "created_at"],
        "properties": {
            "campaign": _ID,
            "name": {"type": "string"},
            "service": {"type": "string"},
            "state": {
                "type": "string",
                "enum": ["created", "running", "paused", "completed", "cancelled"],
            },
            "cards": {"type": "integer", "minimum": 0},
            "idempotent": {"type": "boolean"},
            "pace": {"type": "object"},
            "retry": {"type": "object"},
            "windows": {"type": "array", "items": {"type": "string"}},
            "created_at": {"type": "number"},
            "updated_at": {"type": "number"},
            "counts": {
                "type": "object",
                "additionalProperties": {"type": "integer", "minimum": 0},
                "description": "cards per state: pending, running, succeeded, failed,"
                " interrupted, cancelled",
            },
            "in_flight": {"type": "integer", "minimum": 0},
        },
    },
    "CampaignList": {
        "type": "object",
        "required": ["campaigns"],
        "properties": {
            "campaigns": {"type": "array", "items": {"$ref": "#/components/schemas/Campaign"}}
        },
    },
    "CampaignCard": {
        "type": "object",
        "required": ["index", "state", "attempts", "rapdus"],
        "properties": {
            "index": {"type": "integer", "minimum": 0},
            "iccid": {"type": "string"},
            "msisdn": {"type": "string"},
            "state": {
                "type": "string",
                "enum": ["pending", "running", "succeeded", "failed", "interrupted", "cancelled"],
            },
            "attempts": {"type": "integer", "minimum": 0},
            "reason": {"type": "string", "description": "why its last try failed"},
            "detail": {"type": "string"},
            "rapdus": {"type": "array", "items": {"type": "string"}},
            "session": {"type": "string"},
            "updated_at": {"type": "number"},
        },
    },
    "CampaignCards": {
        "type": "object",
        "required": ["cards"],
        "properties": {
            "cards": {"type": "array", "items": {"$ref": "#/components/schemas/CampaignCard"}},
            "next_offset": {"type": "integer", "minimum": 0},
        },
    },
}

_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "the campaign id from POST /v1/campaigns",
    "schema": _ID,
}
_LINKS = {
    name: {
        "operationId": operation,
        "parameters": {"id": "$response.body#/campaign"},
        "description": f"{what} the campaign just created",
    }
    for name, operation, what in (
        ("GetCampaign", "getCampaign", "the status of"),
        ("AddCampaignTargets", "addCampaignTargets", "add cards to"),
        ("StartCampaign", "startCampaign", "start"),
        ("PauseCampaign", "pauseCampaign", "pause"),
        ("ResumeCampaign", "resumeCampaign", "resume"),
        ("CampaignCards", "getCampaignCards", "the cards of"),
        ("CancelCampaign", "cancelCampaign", "cancel"),
    )
}


def campaign_paths(errors: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The campaign paths, their errors described by C{errors(*statuses)} (the
    document's own, so that every status is described once)."""
    _errors = errors

    def _action(operation: str, summary: str) -> dict[str, Any]:
        return {
            "parameters": [_PARAM],
            "post": {
                "operationId": operation,
                "summary": summary,
                "responses": {"200": _json("Campaign", "its new state"), **_errors(404, 409)},
            },
        }

    return {
        "/v1/campaigns": {
            "post": {
                "operationId": "createCampaign",
                "summary": "Define a campaign: one script on many cards (started at once if asked)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/CampaignRequest"}
                        }
                    },
                },
                "responses": {
                    "201": {**_json("Campaign", "created"), "links": _LINKS},
                    **_errors(400, 403, 413, 415),
                },
            },
            "get": {
                "operationId": "listCampaigns",
                "summary": "The tenant's campaigns",
                "responses": {"200": _json("CampaignList", "oldest first"), **_errors()},
            },
        },
        "/v1/campaigns/{id}": {
            "parameters": [_PARAM],
            "get": {
                "operationId": "getCampaign",
                "summary": "A campaign, its cards counted per state",
                "responses": {"200": _json("Campaign", "the campaign"), **_errors(404)},
            },
        },
        "/v1/campaigns/{id}/targets": {
            "parameters": [_PARAM],
            "post": {
                "operationId": "addCampaignTargets",
                "summary": "Add cards to a campaign not started yet",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/CampaignTargets"}
                        }
                    },
                },
                "responses": {
                    "200": _json("Campaign", "the campaign"),
                    **_errors(400, 404, 409, 413, 415),
                },
            },
        },
        "/v1/campaigns/{id}/start": _action(
            "startCampaign", "Start a created (or paused) campaign"
        ),
        "/v1/campaigns/{id}/pause": _action("pauseCampaign", "Start no new card"),
        "/v1/campaigns/{id}/resume": _action("resumeCampaign", "Start new cards again"),
        "/v1/campaigns/{id}/cancel": _action("cancelCampaign", "Stop for good"),
        "/v1/campaigns/{id}/cards": {
            "parameters": [_PARAM],
            "get": {
                "operationId": "getCampaignCards",
                "summary": "A page of the campaign's cards: state, failure reason, R-APDUs",
                "parameters": [
                    {
                        "name": "offset",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0, "maximum": 999999999},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": {
                    "200": _json("CampaignCards", "in target order"),
                    **_errors(400, 404),
                },
            },
        },
        "/v1/campaigns/{id}/events": {
            "parameters": [_PARAM],
            "get": {
                "operationId": "streamCampaignEvents",
                "summary": "Server-Sent Events of one campaign: card and campaign frames",
                "responses": {
                    "200": {
                        "description": "`event: card` (a card's try started or ended: a"
                        " CampaignCard with campaign and campaign_state) and `event: campaign`"
                        " ({campaign, state}); the stream ends after the campaign's last event",
                        "content": {
                            "text/event-stream": {
                                "schema": {
                                    "type": "object",
                                    "required": ["event", "data"],
                                    "properties": {
                                        "event": {"enum": ["card", "campaign"]},
                                        "data": {
                                            "type": "string",
                                            "contentMediaType": "application/json",
                                        },
                                        "retry": {"type": "integer"},
                                    },
                                }
                            }
                        },
                    },
                    **_errors(404),
                },
            },
        },
    }
