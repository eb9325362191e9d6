"""Kubernetes' OpenAPI document (api/openapi-spec/swagger.json of the k8s.io/kubernetes Go
module, which the Go module proxy serves) as the JSON schemas kubeconform validates against:
one file per kind, `{kind}-{group}-{version}.json` (`statefulset-apps-v1.json`,
`configmap-v1.json`), its definitions inlined, strict (a field Kubernetes does not know is
an error, as `kubectl apply --validate=strict` says), quantities and int-or-strings taking
either form. The same conversion as kubeconform's own openapi2jsonschema script, for a
machine that cannot download the ready-made schemas.

    python deploy/k8s/json_schemas.py SWAGGER_JSON OUTPUT_FOLDER
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REF = "#/definitions/"
EITHER = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": [{"type": "string"}, {"type": "integer"}],
    "io.k8s.apimachinery.pkg.api.resource.Quantity": [{"type": "string"}, {"type": "number"}],
}


def strict(node: Any) -> Any:
    """Objects with declared properties refuse others; int-or-string and quantities take both."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("format") == "int-or-string":
        return {"oneOf": EITHER["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]}
    converted = {key: strict(value) for key, value in node.items()}
    if "properties" in converted and "additionalProperties" not in converted:
        converted["additionalProperties"] = False
    return converted


def schemas(swagger: dict[str, Any]) -> dict[str, dict[str, Any]]:
    definitions = {name: strict(schema) for name, schema in swagger["definitions"].items()}
    for name, either in EITHER.items():
        if name in definitions:
            definitions[name] = {"oneOf": either}
    files = {}
    for schema in definitions.values():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            group = gvk["group"].split(".")[0]
            name = "-".join(part for part in (gvk["kind"], group, gvk["version"]) if part).lower()
            used = {ref: definitions[ref] for ref in sorted(references(schema, definitions))}
            files[f"{name}.json"] = {"$schema": "http://json-schema.org/draft-07/schema#", **schema} | {
                "definitions": used
            }
    return files


def references(schema: Any, definitions: dict[str, Any]) -> set[str]:
    """The definitions a schema refers to, directly or through others (what its file carries)."""
    found: set[str] = set()
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(REF) and ref[len(REF) :] not in found:
                found.add(ref[len(REF) :])
                pending.append(definitions[ref[len(REF) :]])
            pending.extend(value for key, value in node.items() if key != "$ref")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    swagger = json.loads(Path(argv[1]).read_text())
    folder = Path(argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas(swagger).items():
        (folder / name).write_text(json.dumps(schema))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
