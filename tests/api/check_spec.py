"""Static checks of openapi.yaml, before any request is sent (scripts/check-api.sh runs this):

1. the document is valid OpenAPI (openapi-spec-validator);
2. every example in it (request bodies, responses, parameters, headers, components/examples
   referenced from them) validates against the schema it illustrates, so the examples readers
   copy are answers the API can really give.

Usage: python tests/api/check_spec.py openapi.yaml
"""

import sys

import yaml
from jsonschema import FormatChecker
from openapi_schema_validator import OAS30Validator, OAS31Validator
from openapi_spec_validator import validate as validate_spec


def pointer(parts):
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def resolve(document, node):
    """Follows a local `$ref` chain; answers (node, parts of where it lives or None)."""
    parts = None
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise SystemExit(f"only local references are supported: {ref}")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in ref[2:].split("/")]
        node = document
        for part in parts:
            node = node[part]
    return node, parts


def examples_of(document, holder, where):
    """(label, value) of the `example`/`examples` next to a schema."""
    if "example" in holder:
        yield where, holder["example"]
    for name, example in (holder.get("examples") or {}).items():
        example, _ = resolve(document, example)
        if "value" in example:
            yield f"{where} examples.{name}", example["value"]


def walk(document, node, parts):
    """Every (label, example, pointer of its schema) in the document."""
    if isinstance(node, dict):
        schema = node.get("schema")
        if isinstance(schema, dict) and ("example" in node or "examples" in node):
            for label, value in examples_of(document, node, pointer(parts)):
                yield label, value, pointer(parts + ["schema"])
        is_schema = parts[:2] == ["components", "schemas"] and len(parts) == 3 or parts[-1:] == ["schema"]
        if is_schema and "example" in node:
            yield pointer(parts), node["example"], pointer(parts)
        for key, child in node.items():
            if key not in ("examples", "example"):
                yield from walk(document, child, parts + [key])
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from walk(document, child, parts + [index])


def main(path):
    with open(path, encoding="utf-8") as file:
        document = yaml.safe_load(file)
    try:
        validate_spec(document)
    except Exception as error:  # the validator's message quotes the whole offending node
        where = "/".join(map(str, getattr(error, "path", []) or []))
        message = str(getattr(error, "message", error)).splitlines()[0]
        print(f"{path}: not valid OpenAPI at {where or '(root)'}: {message}", file=sys.stderr)
        return 1
    validator_class = OAS31Validator if str(document.get("openapi", "")).startswith("3.1") else OAS30Validator
    checked, failures = 0, []
    for label, value, schema_pointer in walk(document, document, []):
        # The document is the root schema resource, so `#/components/...` references resolve.
        schema = dict(document, **{"$ref": schema_pointer})
        validator = validator_class(schema, format_checker=FormatChecker())
        errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.path])
        checked += 1
        for error in errors:
            failures.append(f"{label}: {'/'.join(map(str, error.path)) or '(root)'}: {error.message}")
    if checked == 0:
        failures.append("no examples found")
    for failure in failures:
        print(f"  example does not match its schema: {failure}", file=sys.stderr)
    print(f"{path}: valid OpenAPI {document['openapi']}; {checked} examples checked, {len(failures)} wrong")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "openapi.yaml"))
