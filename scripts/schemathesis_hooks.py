"""schemathesis hooks for agentcast (loaded by scripts/schemathesis.sh via SCHEMATHESIS_HOOKS).

- `application/x-ndjson` request bodies (`POST /api/v1/publish/stream`) are sent as the
  generated text, as `text/plain` would be: schemathesis has no NDJSON serializer.
- `ndjson_lines_conform`: every line of an `application/x-ndjson` response must be a JSON
  object valid against the schema its media type names in `x-ndjson-item` (OpenAPI 3.1 has
  no per-line schema; 3.2's `itemSchema` is the same idea), and the last line must be the
  stream's final line (`end`). schemathesis's own `response_schema_conformance` only sees
  the body as a string.
"""

import json

import jsonschema_rs
import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")


def _line_validator(doc: dict, ref: str):
    # A root holding the document's components, so `#/components/...` refs resolve.
    return jsonschema_rs.validator_for({"$ref": ref, "components": doc["components"]})


@schemathesis.check
def ndjson_lines_conform(ctx, response, case):
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    if not content_type.startswith("application/x-ndjson"):
        return None
    # The document schemathesis loaded (the server's own, in scripts/schemathesis.sh).
    doc = case.operation.schema.raw_schema
    op = doc["paths"][case.operation.path][case.method.lower()]
    media = op["responses"][str(response.status_code)]["content"]["application/x-ndjson"]
    ref = media["schema"]["x-ndjson-item"]["$ref"]
    validator = _line_validator(doc, ref)
    lines = [l for l in response.text.split("\n") if l.strip()]
    if not lines:
        raise AssertionError("an NDJSON response with no line (the final line is missing)")
    for n, line in enumerate(lines, 1):
        value = json.loads(line)
        errors = [e.message for e in validator.iter_errors(value)]
        if errors:
            raise AssertionError(f"line {n} does not match {ref}: {line}: {errors}")
    if "end" not in json.loads(lines[-1]):
        raise AssertionError(f"the last line is not the final line: {lines[-1]}")
    return None
