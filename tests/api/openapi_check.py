"""Checks recorded responses of a real run against the served OpenAPI document.

Usage: openapi_check.py DOCUMENT.json EXCHANGES.json

EXCHANGES is a list of {"method", "path" (the documented template), "status",
"content_type", "body" (JSON or null)}. Each status must be documented for its
operation, and each JSON body must validate against the documented schema
(OpenAPI 3.1 = JSON Schema 2020-12, `$ref`s resolved in the document), strictly:
objects take no properties the schema does not name, so a field renamed on the
wire or in the document fails. Prints one line per exchange; exits 1 on any failure.
"""

import copy
import json
import sys

from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOC_URI = "urn:whospoke:openapi"


def strict(node):
    """The schema with `additionalProperties: false` on every object that lists properties."""
    if isinstance(node, dict):
        node = {key: strict(value) for key, value in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(value) for value in node]
    return node


def pointer(*parts):
    return "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def main(document_path, exchanges_path):
    with open(document_path) as f:
        document = json.load(f)
    with open(exchanges_path) as f:
        exchanges = json.load(f)
    resource = Resource.from_contents(strict(copy.deepcopy(document)), default_specification=DRAFT202012)
    registry = Registry().with_resource(DOC_URI, resource)
    failures = []
    for exchange in exchanges:
        method, path, status = exchange["method"].lower(), exchange["path"], str(exchange["status"])
        label = f"{exchange['method']} {path} -> {status}"
        operation = document.get("paths", {}).get(path, {}).get(method)
        if operation is None:
            failures.append(f"{label}: the operation is not documented")
            continue
        response = operation.get("responses", {}).get(status)
        if response is None:
            failures.append(f"{label}: status {status} is not documented (documented: {sorted(operation.get('responses', {}))})")
            continue
        content_type = (exchange.get("content_type") or "").split(";")[0].strip()
        content = response.get("content", {})
        if exchange["body"] is None:
            if content and content_type and content_type not in content:
                failures.append(f"{label}: answered {content_type}, documented {sorted(content)}")
            else:
                print(f"ok    {label} ({content_type or 'no body'})")
            continue
        if "application/json" not in content:
            failures.append(f"{label}: a JSON body, but the response documents {sorted(content) or 'no body'}")
            continue
        ref = "#" + "/" + pointer("paths", path, method, "responses", status, "content", "application/json", "schema")
        validator = OAS31Validator({"$ref": DOC_URI + ref}, registry=registry)
        errors = sorted(validator.iter_errors(exchange["body"]), key=lambda e: list(e.absolute_path))
        if errors:
            for error in errors:
                where = "/".join(str(p) for p in error.absolute_path) or "(body)"
                failures.append(f"{label}: {where}: {error.message}")
        else:
            print(f"ok    {label} (body validates)")
    for failure in failures:
        print(f"FAIL  {failure}")
    print(f"{len(exchanges)} responses checked, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
