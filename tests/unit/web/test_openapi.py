"""Tests for the OpenAPI document: well-formed, complete, served, and docs/openapi.json current.

openapi-spec-validator is not installed, so the structure is checked here:
the OpenAPI 3.1 fields every operation needs, every C{$ref} resolving, and
the document agreeing with what the API really answers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from bipgw.web import ERROR_STATUSES, STATUS_OF, openapi_document
from bipgw.web._openapi import render
from tests.unit.web import WebTestCase

DOC_FILE = Path(__file__).parents[3] / "docs" / "openapi.json"
UPDATE_ENV = "BIPGW_UPDATE_DOCS"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def refs(node: Any) -> list[str]:
    """Every C{$ref} in a JSON tree."""
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def resolve(document: dict[str, Any], ref: str) -> Any:
    """The node a local C{$ref} (C{#/a/b}) points at; KeyError if none."""
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


class DocumentTests(SynchronousTestCase):
    """The document is a well-formed OpenAPI 3.1 description of every route."""

    def setUp(self) -> None:
        self.doc = openapi_document()

    def test_header(self) -> None:
        """It declares OpenAPI 3.1, a title, a version and bearer authentication."""
        self.assertEqual(self.doc["openapi"], "3.1.0")
        self.assertTrue(self.doc["info"]["title"] and self.doc["info"]["version"])
        scheme = self.doc["components"]["securitySchemes"]["bearer"]
        self.assertEqual((scheme["type"], scheme["scheme"]), ("http", "bearer"))
        self.assertEqual(self.doc["security"], [{"bearer": []}])

    def test_routes(self) -> None:
        """Exactly the API's routes and methods are described."""
        described = {
            (path, method.upper())
            for path, item in self.doc["paths"].items()
            for method in item
            if method in METHODS
        }
        self.assertEqual(
            described,
            {
                ("/v1/sessions", "POST"),
                ("/v1/sessions/{id}", "GET"),
                ("/v1/sessions/{id}", "DELETE"),
                ("/v1/sessions/{id}/commands", "POST"),
                ("/v1/offers", "GET"),
                ("/v1/offers/{id}", "POST"),
                ("/v1/cards/{iccid}/key-rotations", "POST"),
                ("/v1/events", "GET"),
                ("/v1/openapi.json", "GET"),
                ("/v1/service-requests", "POST"),
                ("/v1/service-requests/{id}", "GET"),
                ("/v1/campaigns", "POST"),
                ("/v1/campaigns", "GET"),
                ("/v1/campaigns/{id}", "GET"),
                ("/v1/campaigns/{id}/targets", "POST"),
                ("/v1/campaigns/{id}/start", "POST"),
                ("/v1/campaigns/{id}/pause", "POST"),
                ("/v1/campaigns/{id}/resume", "POST"),
                ("/v1/campaigns/{id}/cancel", "POST"),
                ("/v1/campaigns/{id}/cards", "GET"),
                ("/v1/campaigns/{id}/events", "GET"),
            },
        )

    def test_operations(self) -> None:
        """Each operation has a unique id, a summary and described responses with 3-digit codes."""
        ids = []
        for path, item in self.doc["paths"].items():
            params = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
            self.assertEqual(params, set(re.findall(r"{(\w+)}", path)), path)
            for method, op in item.items():
                if method not in METHODS:
                    continue
                ids.append(op["operationId"])
                self.assertTrue(op["summary"])
                self.assertTrue(op["responses"])
                for code, response in op["responses"].items():
                    self.assertRegex(code, r"\A[1-5][0-9]{2}\Z")
                    self.assertTrue(response["description"])
        self.assertEqual(len(ids), len(set(ids)))

    def test_refsResolve(self) -> None:
        """Every $ref points at a schema that exists."""
        found = refs(self.doc)
        self.assertTrue(found)
        for ref in found:
            self.assertIsInstance(resolve(self.doc, ref), dict, ref)

    def test_errorStatuses(self) -> None:
        """Every HTTP status an error code maps to is described, and nothing else."""
        self.assertEqual({*STATUS_OF.values(), 502}, set(ERROR_STATUSES))

    def test_fileCurrent(self) -> None:
        """docs/openapi.json is the document (BIPGW_UPDATE_DOCS=1 rewrites it)."""
        if os.environ.get(UPDATE_ENV):
            DOC_FILE.write_text(render(), encoding="utf-8")
        self.assertEqual(
            DOC_FILE.read_text(encoding="utf-8"),
            render(),
            f"docs/openapi.json is stale: run {UPDATE_ENV}=1 pytest {__file__}",
        )


class ServedTests(WebTestCase):
    """GET /v1/openapi.json serves the same document."""

    def test_served(self) -> None:
        """The served document equals openapi_document()."""
        answer = self.call("GET", "/v1/openapi.json", token=None)
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.headers["content-type"], "application/json")
        self.assertEqual(answer.body, openapi_document())

    def test_openResponseMatchesSchema(self) -> None:
        """A real open answer and status carry the schema's required fields."""
        schemas = openapi_document()["components"]["schemas"]
        session = self.ready(1)
        opened = self.call("GET", f"/v1/sessions/{session}").body
        self.assertLessEqual(set(schemas["SessionStatus"]["required"]), set(opened))
        self.assertLessEqual(set(opened), set(schemas["SessionStatus"]["properties"]))
        self.assertIn(opened["state"], schemas["SessionStatus"]["properties"]["state"]["enum"])


class AgreementTests(WebTestCase):
    """The server refuses a request body exactly when the document's schema does.

    Each body is checked against the document (jsonschema-rs, which
    schemathesis brings) and sent to the API: the schema's verdict and the
    server's (400 or not) must agree, for the bodies schemathesis found
    disagreeing before (issue 15) and their valid neighbours.  The two rules
    JSON Schema cannot state (a C-APDU's Lc, a script's TLV lengths) are the
    formats C{c-apdu} and C{expanded-script}, in words in the document.
    """

    def verdict(self, schema: str, body: Any) -> bool:
        import jsonschema_rs

        document = openapi_document()
        root = {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
        return bool(jsonschema_rs.validator_for(root).is_valid(body))

    def test_openBodies(self) -> None:
        iccid = self.iccid(1)
        bodies = [
            ({"iccid": iccid, "service": "demo"}, True),
            ({"msisdn": "4915100000001", "service": "demo"}, True),
            ({"service": "demo"}, False),
            ({"iccid": iccid, "msisdn": "4915100000001", "service": "demo"}, False),
            ({"iccid": iccid, "service": "demo", "application": "0000"}, False),
            ({"iccid": iccid, "service": "demo", "application": "00000000"}, False),
            ({"iccid": iccid, "service": "demo", "application": "A0" * 17}, False),
            ({"iccid": iccid, "service": "demo", "application": "000000"}, True),
            ({"iccid": iccid, "service": "demo", "application": "A000000151"}, True),
            ({"iccid": None, "msisdn": "4915100000001", "service": "demo"}, False),
            ({"iccid": iccid, "service": "demo", "timeouts": {"ready": None}}, False),
            ({"iccid": iccid, "service": "demo", "timeouts": {"ready": 0}}, False),
            ({"iccid": iccid, "service": "demo", "timeouts": {"ready": 5}}, True),
        ]
        for body, valid in bodies:
            with self.subTest(body=body):
                self.assertEqual(self.verdict("OpenRequest", body), valid)
                answer = self.call("POST", "/v1/sessions", body)
                self.assertEqual(answer.status != 400, valid, answer.body)
                if answer.status == 201:
                    self.call("DELETE", f"/v1/sessions/{answer.body['session']}")

    def test_commandBodies(self) -> None:
        session = self.ready(1)
        script = "AA0A2205" + "80CA9F7F00" + "2203" + "00B000"[:6]
        bodies = [
            ({"apdus": ["80CA9F7F00"]}, True),
            ({"apdus": ["80CA9F7F00"], "definite": True}, True),
            ({"apdus": []}, False),
            ({}, False),
            ({"script": "0102"}, False),
            ({"script": "BB0102"}, False),
            ({"apdus": ["80CA9F7F00"], "script": script}, False),
            ({"script": script, "definite": True}, False),
            ({"apdus": None, "script": script}, False),
        ]
        for body, valid in bodies:
            with self.subTest(body=body):
                self.assertEqual(self.verdict("CommandRequest", body), valid)
                d = self.send("POST", f"/v1/sessions/{session}/commands", body)
                self.advance(5)
                answer = self.answer(d)
                self.assertEqual(answer.status != 400, valid, answer.body)

    def test_hexInMessages(self) -> None:
        """A refused hex value is shown as hex, never as a Python bytes repr."""
        body = {"iccid": self.iccid(1), "service": "demo", "application": "0000"}
        answer = self.call("POST", "/v1/sessions", body)
        self.assertEqual(answer.status, 400)
        self.assertIn("0000 is not a TAR", answer.body["message"])
        self.assertNotIn("b'", answer.body["message"])
