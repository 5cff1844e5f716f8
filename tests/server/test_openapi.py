"""`sim/server/openapi.json` documents exactly the app's routes and the bodies the server accepts."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
from pydantic import BaseModel

from sim.model import bodies as schemas
from sim.server.app import create_app

DOC: dict[str, Any] = json.loads(resources.files("sim.server").joinpath("openapi.json").read_text())
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}

# OpenAPI component schema -> the pydantic model the server validates that body with.
BODIES: dict[str, type[BaseModel]] = {
    "PostSourceServerBody": schemas.RegisterBody,
    "ServerDisk": schemas.ServerDisk,
    "CommandBody": schemas.CommandResultBody,
    "ProgressV1": schemas.ProgressV1Body,
    "UpdateTaskSpeedReq": schemas.ProgressV3Body,
    "PostTask": schemas.CreateTaskBody,
    "TaskAction": schemas.TaskActionBody,
    "CollectLogBody": schemas.CollectLogBody,
}


def _resolve(ref: str) -> Any:
    node: Any = DOC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return ([node["$ref"]] if "$ref" in node else []) + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_documented_operations_are_exactly_the_apps_routes():
    app = create_app("memory://", {})
    # Starlette answers HEAD on every GET route by itself; the document lists the methods as routed.
    routes = {(r.path, m.lower()) for r in app.routes for m in r.methods if m != "HEAD"}
    documented = {(path, m) for path, item in DOC["paths"].items() for m in item if m in METHODS}
    assert documented == routes


def test_document_is_valid_openapi():
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(DOC)


def test_every_reference_resolves_and_every_operation_answers_200():
    for ref in _refs(DOC):
        _resolve(ref)
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            assert "200" in op["responses"], (path, method)
            secured = op.get("security", DOC["security"])
            assert secured == ([] if path == "/healthz" else [{"AuthToken": []}]), (path, method)
            if "requestBody" in op:
                assert op["requestBody"]["required"] is True
    assert DOC["components"]["securitySchemes"]["AuthToken"] == {
        **DOC["components"]["securitySchemes"]["AuthToken"],
        "type": "apiKey",
        "in": "header",
        "name": "X-Auth-Token",
    }
    for name, response in DOC["components"]["responses"].items():
        assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, name


@pytest.mark.parametrize("component", sorted(BODIES))
def test_request_bodies_match_the_models_the_server_validates_with(component):
    schema, model = DOC["components"]["schemas"][component], BODIES[component]
    assert set(schema["properties"]) == set(model.model_fields), component
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    assert set(schema.get("required", [])) == required, component
    model_schema = model.model_json_schema()
    for name, prop in schema["properties"].items():
        if "enum" in prop:  # the same closed set of values as the model (null: an optional field left out)
            expected = set(_model_enum(model_schema, name))
            if component == "TaskAction" and name == "operation":  # the others are documented as refused
                expected = set(schemas.SIMULATED_OPERATIONS)
            assert set(prop["enum"]) - {None} == expected, (component, name)
        field = model.model_fields[name]
        nullable = not field.is_required() and field.default is None
        assert _allows_null(prop) == nullable, (component, name)
        for key, value in _bounds(model_schema, name).items():  # the same limits as the server checks
            assert prop.get(key) == value, (component, name, key)


def _model_enum(model_schema: dict[str, Any], field: str) -> list[Any]:
    prop = model_schema["properties"][field]
    options = prop.get("anyOf", [prop])
    for option in options:
        if "$ref" in option:
            option = model_schema["$defs"][option["$ref"].rsplit("/", 1)[1]]
        if "enum" in option:
            return option["enum"]
        if "const" in option:
            return [option["const"]]
    raise AssertionError(f"{field} has no enum in the model")


def _allows_null(prop: dict[str, Any]) -> bool:
    kind = prop.get("type")
    return (isinstance(kind, list) and "null" in kind) or {"type": "null"} in prop.get("anyOf", [])


def _bounds(model_schema: dict[str, Any], field: str) -> dict[str, Any]:
    prop = model_schema["properties"][field]
    for option in prop.get("anyOf", [prop]):
        if option.get("type") != "null":
            keys = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength")
            return {k: option[k] for k in keys if k in option}
    return {}
