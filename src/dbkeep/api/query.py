"""AWS Query / EC2 protocol (de)serialisation, shaped by botocore's own service models.

Requests: a flat form (``Tags.member.1.Key=k``) is parsed back into the nested structure the
operation's input shape describes — the inverse of botocore's ``QuerySerializer`` and
``EC2Serializer`` (lists as ``Name.member.N`` for query and ``Name.N`` for ec2, maps as
``Name.entry.N.key``, member names from ``locationName``/``queryName``). Scalars are typed and
validated (required members, integer and boolean syntax, IAM-style length/pattern/enum
constraints) so that handlers only ever see well-formed values.

Responses: a nested dict is written as the XML botocore's ``QueryParser``/``EC2QueryParser``
read: ``<OpResponse xmlns=…><OpResult>…</OpResult><ResponseMetadata><RequestId>…`` (ec2: no
result wrapper, ``<requestId>``), lists wrapped in ``<member>``/the member's locationName, ec2
lists in ``<item>``.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from xml.sax.saxutils import escape

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape

from dbkeep.errors import ApiError

MAX_PARAMS = 2000
MAX_LIST_INDEX = 1000

_session = botocore.session.get_session()


@lru_cache(maxsize=None)
def service_model(name: str) -> ServiceModel:
    return _session.get_service_model(name)


def namespace(model: ServiceModel) -> str:
    ns = model.metadata.get("xmlNamespace", "")
    if model.protocol == "ec2" and not ns.endswith("/"):
        ns += "/"  # real EC2 responses carry the trailing slash the model lacks
    return ns


# --- requests --------------------------------------------------------------------------------


class _Node:
    """One level of the dotted parameter names: ``a.b.1`` → node a → node b → node 1."""

    __slots__ = ("value", "children")

    def __init__(self) -> None:
        self.value: str | None = None
        self.children: dict[str, _Node] = {}


def _tree(params: Mapping[str, str]) -> _Node:
    root = _Node()
    for key, value in params.items():
        node = root
        for part in key.split("."):
            node = node.children.setdefault(part, _Node())
        node.value = value
    return root


class _Reader:
    def __init__(self, model: ServiceModel, error_style: str) -> None:
        self.ec2 = model.protocol == "ec2"
        self.error_style = error_style  # "validation" (iam/sts) or "parameter" (rds/ec2)

    def name(self, shape: Shape, default: str) -> str:
        if self.ec2:
            if "queryName" in shape.serialization:
                return shape.serialization["queryName"]
            if "name" in shape.serialization:
                n = shape.serialization["name"]
                return n[0].upper() + n[1:]
            return default
        return shape.serialization.get("name", default)

    def bad(self, path: str, value: str, constraint: str) -> ApiError:
        if self.error_style == "validation":
            return ApiError(
                "ValidationError",
                f"1 validation error detected: Value '{value}' at '{_camel(path)}' failed to satisfy constraint: {constraint}",
            )
        return ApiError("InvalidParameterValue", f"Invalid value '{value}' for {path}: {constraint}")

    def read(self, node: _Node | None, shape: Shape, path: str) -> Any:
        if node is None:
            return None
        if isinstance(shape, StructureShape):
            return self.structure(node, shape, path)
        if isinstance(shape, ListShape):
            return self.list(node, shape, path)
        if isinstance(shape, MapShape):
            return self.map(node, shape, path)
        if node.value is None:
            raise self.bad(path, "", "Member must be a scalar value")
        return self.scalar(node.value, shape, path)

    def structure(self, node: _Node, shape: StructureShape, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, member in shape.members.items():
            member_path = f"{path}.{key}" if path else key
            if isinstance(member, ListShape) and (self.ec2 or member.serialization.get("flattened")):
                child = node.children.get(self.name(member, key))
                if child is None and not self.ec2 and member.member.serialization.get("name"):
                    child = node.children.get(member.member.serialization["name"])
                value = self.flat_list(child, member, member_path) if child is not None else None
            else:
                value = self.read(node.children.get(self.name(member, key)), member, member_path)
            if value is not None:
                out[key] = value
        for key in shape.required_members:
            if key not in out:
                if self.error_style == "validation":
                    raise ApiError(
                        "ValidationError",
                        f"1 validation error detected: Value null at '{_camel(key)}' failed to satisfy constraint: Member must not be null",
                    )
                raise ApiError("MissingParameter", f"The request must contain the parameter {key}")
        return out

    def _indexed(self, node: _Node, path: str) -> list[_Node]:
        items = []
        for index, child in node.children.items():
            if not index.isdigit() or not 1 <= int(index) <= MAX_LIST_INDEX:
                raise self.bad(path, index, f"list index must be between 1 and {MAX_LIST_INDEX}")
            items.append((int(index), child))
        return [child for _, child in sorted(items)]

    def list(self, node: _Node, shape: ListShape, path: str) -> list[Any]:
        if node.value == "" and not node.children:
            return []
        holder = node.children.get(shape.member.serialization.get("name", "member"))
        if holder is None:
            if node.children:
                raise self.bad(path, next(iter(node.children)), "Member must be a list")
            return []
        return [self.read(child, shape.member, path) for child in self._indexed(holder, path)]

    def flat_list(self, node: _Node, shape: ListShape, path: str) -> list[Any]:
        if node.value == "" and not node.children:
            return []
        return [self.read(child, shape.member, path) for child in self._indexed(node, path)]

    def map(self, node: _Node, shape: MapShape, path: str) -> dict[str, Any]:
        holder = node if shape.serialization.get("flattened") else node.children.get("entry")
        if holder is None:
            return {}
        out = {}
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        for entry in self._indexed(holder, path):
            k = self.read(entry.children.get(key_name), shape.key, path)
            v = self.read(entry.children.get(value_name), shape.value, path)
            if k is None:
                raise self.bad(path, "", "map entry must have a key")
            out[k] = v
        return out

    def scalar(self, value: str, shape: Shape, path: str) -> Any:
        t = shape.type_name
        if t == "string":
            self.check_string(value, shape, path)
            return value
        if t in ("integer", "long"):
            if not re.fullmatch(r"-?\d{1,19}", value):
                raise self.bad(path, value, "Member must be a number")
            number = int(value)
            lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
            if lo is not None and number < lo:
                raise self.bad(path, value, f"Member must have value greater than or equal to {lo}")
            if hi is not None and number > hi:
                raise self.bad(path, value, f"Member must have value less than or equal to {hi}")
            return number
        if t == "boolean":
            if value.lower() not in ("true", "false"):
                raise self.bad(path, value, "Member must be true or false")
            return value.lower() == "true"
        if t in ("double", "float"):
            try:
                return float(value)
            except ValueError:
                raise self.bad(path, value, "Member must be a number") from None
        if t == "timestamp":
            try:
                parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise self.bad(path, value, "Member must be an ISO 8601 timestamp") from None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
        if t == "blob":
            try:
                return base64.b64decode(value, validate=True)
            except ValueError:
                raise self.bad(path, value, "Member must be base64") from None
        return value

    def check_string(self, value: str, shape: Shape, path: str) -> None:
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        # a sensitive member (a password) is never echoed back in an error
        shown = "***" if shape.metadata.get("sensitive") else value if len(value) <= 256 else value[:256] + "..."
        if lo is not None and len(value) < lo:
            raise self.bad(path, shown, f"Member must have length greater than or equal to {lo}")
        if hi is not None and len(value) > hi:
            raise self.bad(path, shown, f"Member must have length less than or equal to {hi}")
        if shape.enum and value not in shape.enum and self.error_style == "validation":
            raise self.bad(path, shown, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        pattern = shape.metadata.get("pattern")
        if pattern and self.error_style == "validation":
            compiled = _pattern(pattern)
            if compiled is not None and not compiled.fullmatch(value):
                raise self.bad(path, shown, f"Member must satisfy regular expression pattern: {pattern}")


@lru_cache(maxsize=512)
def _pattern(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error:
        return None  # a Java-only construct: the other constraints still apply


def _camel(name: str) -> str:
    last = name.split(".")[-1]
    return last[:1].lower() + last[1:]


def parse_request(operation: OperationModel, params: Mapping[str, str], error_style: str) -> dict[str, Any]:
    """Turn the flat form of a request into the input shape's nested values, validated."""
    if len(params) > MAX_PARAMS:
        raise ApiError("InvalidParameterValue", f"Too many parameters (more than {MAX_PARAMS})")
    shape = operation.input_shape
    if shape is None:
        return {}
    fields = {k: v for k, v in params.items() if k not in ("Action", "Version")}
    reader = _Reader(operation.service_model, error_style)
    return reader.structure(_tree(fields), shape, "")


# --- responses -------------------------------------------------------------------------------


def _timestamp(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _Writer:
    def __init__(self, ec2: bool) -> None:
        self.ec2 = ec2
        self.out: list[str] = []

    def value(self, tag: str, value: Any, shape: Shape) -> None:
        if value is None:
            return
        if isinstance(shape, StructureShape):
            self.out.append(f"<{tag}>")
            self.members(value, shape)
            self.out.append(f"</{tag}>")
        elif isinstance(shape, ListShape):
            item_tag = shape.member.serialization.get("name", "item" if self.ec2 else "member")
            if shape.serialization.get("flattened"):
                for item in value:
                    self.value(tag, item, shape.member)
            else:
                self.out.append(f"<{tag}>")
                for item in value:
                    self.value(item_tag, item, shape.member)
                self.out.append(f"</{tag}>")
        elif isinstance(shape, MapShape):
            key_tag = shape.key.serialization.get("name", "key")
            value_tag = shape.value.serialization.get("name", "value")
            self.out.append(f"<{tag}>")
            for k, v in value.items():
                self.out.append("<entry>")
                self.value(key_tag, k, shape.key)
                self.value(value_tag, v, shape.value)
                self.out.append("</entry>")
            self.out.append(f"</{tag}>")
        else:
            self.out.append(f"<{tag}>{escape(self.scalar(value, shape))}</{tag}>")

    @staticmethod
    def scalar(value: Any, shape: Shape) -> str:
        t = shape.type_name
        if t == "boolean":
            return "true" if value else "false"
        if t == "timestamp":
            return _timestamp(value) if isinstance(value, dt.datetime) else str(value)
        if t == "blob":
            return base64.b64encode(value).decode()
        return str(value)

    def members(self, value: Mapping[str, Any], shape: StructureShape) -> None:
        for key, member in shape.members.items():
            if key in value:
                self.value(member.serialization.get("name", key), value[key], member)


def serialize_response(operation: OperationModel, result: Mapping[str, Any] | None, request_id: str) -> str:
    model = operation.service_model
    ns = namespace(model)
    name = operation.name
    shape = operation.output_shape
    ec2 = model.protocol == "ec2"
    writer = _Writer(ec2)
    if ec2:
        writer.out.append(f'<?xml version="1.0" encoding="UTF-8"?>\n<{name}Response xmlns="{ns}">')
        writer.out.append(f"<requestId>{request_id}</requestId>")
        if shape is not None and result:
            writer.members(result, shape)
        writer.out.append(f"</{name}Response>")
        return "".join(writer.out)
    writer.out.append(f'<{name}Response xmlns="{ns}">')
    if shape is not None:
        wrapper = shape.serialization.get("resultWrapper", f"{name}Result")
        writer.out.append(f"<{wrapper}>")
        writer.members(result or {}, shape)
        writer.out.append(f"</{wrapper}>")
    writer.out.append(f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{name}Response>")
    return "".join(writer.out)


def serialize_error(model: ServiceModel | None, error: ApiError, request_id: str) -> str:
    code, message = escape(error.code), escape(error.message)
    if model is not None and model.protocol == "ec2":
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
    ns = f' xmlns="{namespace(model)}"' if model is not None else ""
    kind = "Sender" if error.sender else "Receiver"
    return (
        f"<ErrorResponse{ns}><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )
