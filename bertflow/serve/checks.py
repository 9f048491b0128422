"""What ``bertflow serve`` accepts: the request body of ``POST /annotate`` and
the checks every request body passes (one JSON error for each problem)."""
import json
import re
from typing import Any, Dict, List, Optional, Tuple, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from bertflow.errors import BertflowError, Errors
from bertflow.serve.batcher import TextItem

_CODE = re.compile(r"^\[([A-Z]+\d+)\] ")
_SURROGATE = re.compile("[\ud800-\udfff]")


class RequestError(BertflowError):
    """Bad input with its HTTP status (400: not JSON or not UTF-8; 422: JSON that breaks a rule)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def error_body(status: int, message: str) -> Dict[str, Any]:
    """``{"error": {"status", "code", "message"}}``; code is the catalogue's (E143, SIM016, ...)."""
    match = _CODE.match(message)
    return {"error": {"status": status, "code": match.group(1) if match else None,
                      "message": message[match.end():] if match else message}}


class Text(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    text: str
    question: Optional[str] = None
    text_pair: Optional[str] = None
    id: Optional[Union[str, int]] = None


class AnnotateRequest(BaseModel):
    """``{"text": "..."}`` answers one record; ``{"texts": [...]}`` answers
    ``{"records": [...]}`` in order. A text is a string or an object with
    ``text`` and optional ``question`` (or ``text_pair``: the same field, for
    cross-encoders) and ``id``. ``vectors`` adds each doc's vector."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: Optional[str] = None
    question: Optional[str] = None
    text_pair: Optional[str] = None
    id: Optional[Union[str, int]] = None
    texts: Optional[List[Union[str, Text]]] = None
    vectors: bool = False

    @classmethod
    def openapi_schema(cls) -> Dict[str, Any]:
        """The JSON schema with its definitions inlined (an OpenAPI page resolves no local $defs)."""
        schema = cls.model_json_schema()
        defs = schema.pop("$defs", {})

        def inline(node):
            if isinstance(node, dict):
                if "$ref" in node:
                    return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
                return {k: inline(v) for k, v in node.items()}
            return [inline(v) for v in node] if isinstance(node, list) else node
        return inline(schema)


def parse_json(body: bytes) -> Any:
    """The body as JSON; a 400 that says where it is not UTF-8 or not JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(Errors.E153.format(detail=f"byte {err.start}: {err.reason}"), 400) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RequestError(Errors.E152.format(detail=f"{err.msg} at line {err.lineno}, column {err.colno}"),
                           400) from None


def check_strings(value: Any, *, max_texts: int, max_chars: int, where: str = "body") -> None:
    """Every list in ``value`` has at most ``max_texts`` items and every string
    at most ``max_chars`` characters and no lone surrogate (JSON's ``\\ud800``
    escapes decode to one; it can't be encoded back)."""
    if isinstance(value, str):
        if len(value) > max_chars:
            raise RequestError(Errors.E144.format(where=where, n=len(value), limit=max_chars), 413)
        bad = _SURROGATE.search(value)
        if bad:
            raise RequestError(Errors.E145.format(where=where, code=ord(bad.group())))
    elif isinstance(value, list):
        if len(value) > max_texts:
            raise RequestError(Errors.E143.format(n=len(value), limit=max_texts), 413)
        for i, item in enumerate(value):
            check_strings(item, max_texts=max_texts, max_chars=max_chars, where=f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_strings(item, max_texts=max_texts, max_chars=max_chars, where=f"{where}.{key}")


def _question(obj, where: str) -> Optional[str]:
    if obj.question is not None and obj.text_pair is not None:
        raise RequestError(Errors.E155.format(where=where))
    return obj.question if obj.question is not None else obj.text_pair


def request_items(payload: Any, *, use_pairs: bool) -> Tuple[List[TextItem], bool, bool]:
    """``(items, single, vectors)`` of a ``POST /annotate`` body (whose strings
    and lists have passed ``check_strings``: the text and list limits)."""
    texts = payload.get("texts") if isinstance(payload, dict) else None
    for i, item in enumerate(texts if isinstance(texts, list) else []):
        if not isinstance(item, (str, dict)):
            raise RequestError(Errors.E154.format(where=f"body.texts[{i}]", msg="expected a string or an object "
                                                  "with a \"text\" string"))
    try:
        request = AnnotateRequest.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        loc = [p for p in first["loc"] if p not in ("str", "Text", "int")]  # pydantic's names of union branches
        where = "body" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        raise RequestError(Errors.E154.format(where=where, msg=first["msg"])) from None
    if (request.text is None) == (request.texts is None):
        got = "both" if request.text is not None else "neither"
        raise RequestError(Errors.E141.format(got=got))
    if request.texts is None:
        items = [TextItem(request.text, _question(request, "body"), request.id)]
    else:
        if request.question is not None or request.text_pair is not None or request.id is not None:
            raise RequestError(Errors.E154.format(where="body", msg="question, text_pair and id go inside each "
                                                                   "text of \"texts\", not beside the list"))
        if not request.texts:
            raise RequestError(Errors.E142)
        items = [TextItem(t) if isinstance(t, str) else TextItem(t.text, _question(t, f"body.texts[{i}]"), t.id)
                 for i, t in enumerate(request.texts)]
    asked = next((i for i, item in enumerate(items) if item.question is not None), None)
    if asked is not None and not use_pairs:
        raise RequestError(Errors.E146.format(where="body" if request.texts is None else f"body.texts[{asked}]"))
    return items, request.texts is None, request.vectors
