"""Reading what a client sends, strictly, and the field types every endpoint's model is made of.

The query string, urlencoded and multipart forms and JSON bodies become text only where they are valid UTF-8
(no replacement characters, no Latin-1 guesses, no lone surrogates from JSON escapes); each endpoint then
reads its fields through one pydantic model, whose JSON Schema is also what the API description says. A
refused request is a `BadInput`: 400 naming the (first) field; nothing has been stored or mailed by then. A web
page shows a refused form again with `refused_form`: each problem in the site's language next to its field,
and what was typed kept.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import BaseModel, PlainValidator, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import Field as FormField
from python_multipart.multipart import FormParser, parse_options_header
from starlette.exceptions import HTTPException
from starlette.requests import Request

from feedsvc import subscriptions
from feedsvc.i18n import Translate
from feedsvc.subscriptions import Address, InvalidInput
from feedsvc.vocabulary import FREQUENCIES, STATUSES

MAX_FIELDS = 100
JSON_TYPE = "application/json"
MAX_ID = 2**63 - 1  # the stores' BIGINT
TAG_PATTERN = r"^[\w][\w-]{0,63}$"
_TAG = re.compile(TAG_PATTERN)
_DIGITS = re.compile(r"[0-9]{1,20}")  # ASCII only: not '²', '①' or Arabic-Indic digits
# For the API description, the characters refused in text fields as a regular expression class: control
# characters (Unicode category Cc), line and paragraph separators, and for names the bidirectional controls.
_CONTROLS = r"\u0000-\u001f\u007f-\u009f\u2028\u2029"
_NAME_PATTERN = "^[^" + _CONTROLS + "".join(f"\\u{ord(char):04x}" for char in sorted(subscriptions.BIDI_CONTROLS)) + "]*$"
_SPACE = r"[^\S\r\n]*"  # what str.strip() takes off, short of a line break
_EMAIL = "[Ee][Mm][Aa][Ii][Ll]"
# A header cell as the import's strict CSV reader takes it: unquoted (not starting with a quote), or quoted
# with its quotes doubled.
_CSV_CELL = r'([^",\r\n][^,\r\n]*|"([^"]|"")*")?'
_CSV_HEADER = f'({_SPACE}{_EMAIL}{_SPACE}|"{_SPACE}{_EMAIL}{_SPACE}")'
# What the import reads as a whole: nothing at all, or a header row that reads as CSV with an `email` column
# (rows are judged one by one, each refusal reported by line).
CSV_PATTERN = r"^$|^\ufeff?(" + _CSV_CELL + ",)*" + _CSV_HEADER + "(," + _CSV_CELL + r")*(\r|\n|$)"

# email-validator refuses domains under the special-use names (RFC 6761: test, invalid, onion…).
_SPECIAL_USE = "|".join(
    "".join(f"[{char.upper()}{char}]" if char.isalpha() else re.escape(char) for char in name)
    for name in SPECIAL_USE_DOMAIN_NAMES
)
_ADDRESS_PATTERN = rf"^(?![^@]*@(.*\.)?({_SPECIAL_USE})$)"

Model = TypeVar("Model", bound=BaseModel)

# The fields a refusal may name that the pages have a label for, each the key of its label among the "web"
# strings (`body`: the whole form); any other field is shown by its own name.
FIELD_LABELS = frozenset({"email", "name", "frequency", "tags", "body"})


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str  # as sent; "body" for the request as a whole
    kind: str  # the reason as a word (see InvalidInput), for the pages' translated messages
    reason: str  # in English, for API clients


class BadInput(HTTPException):
    """400 naming the field and the problem; `errors` holds every refused field of the request, this one first."""

    def __init__(self, field: str, reason: str, kind: str = "invalid", *, also: Sequence[FieldError] = ()) -> None:
        super().__init__(400, f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.errors = (FieldError(field, kind, reason), *also)


# --- text ------------------------------------------------------------------------------------------------------


def _is_text(value: str) -> bool:
    """False for lone surrogates: undecodable bytes (surrogateescape) or a JSON `\\ud800` escape."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(field: str, value: object) -> None:
    if isinstance(value, str) and not _is_text(value):
        raise BadInput(field, "is not valid UTF-8 text", "not_text")
    if isinstance(value, list):
        for item in value:
            _check_text(field, item)
    if isinstance(value, dict):
        for key, item in value.items():
            _check_text(field, key)
            _check_text(field, item)


def _decoded(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def parse_urlencoded(data: bytes, where: str) -> list[tuple[str, str]]:
    """The name-value pairs of a query string or an urlencoded form; bytes and escapes must spell UTF-8."""
    try:
        pairs = parse_qsl(
            _decoded(data), keep_blank_values=True, encoding="utf-8", errors="surrogateescape", max_num_fields=MAX_FIELDS
        )
    except ValueError:
        raise BadInput(where, f"has more than {MAX_FIELDS} fields") from None
    for name, value in pairs:
        _check_text(name if _is_text(name) else where, value)
        _check_text(where, name)
    return pairs


def parse_multipart(data: bytes, content_type: str) -> list[tuple[str, str]]:
    """The text fields of a multipart/form-data body (a file part is refused)."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadInput("body", "multipart/form-data needs a boundary")
    pairs: list[tuple[str, str]] = []

    def on_field(field: FormField) -> None:
        if len(pairs) >= MAX_FIELDS:
            raise BadInput("body", f"has more than {MAX_FIELDS} fields")
        pairs.append((_decoded(field.field_name or b""), _decoded(field.value or b"")))

    def on_file(file: object) -> None:
        raise BadInput("body", "carries a file; only text fields are accepted")

    parser = FormParser("multipart/form-data", on_field, on_file, boundary=boundary)
    try:
        parser.write(data)
        parser.finalize()
    except FormParserError:
        raise BadInput("body", "is not valid multipart/form-data") from None
    for name, value in pairs:
        _check_text(name if _is_text(name) else "body", value)
        _check_text("body", name)
    return pairs


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise BadInput(duplicate if _is_text(duplicate) else "body", "is given more than once", "repeated")
    return dict(pairs)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json_object(data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("body", "is not UTF-8 text") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise BadInput("body", "is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadInput("body", "must be a JSON object")
    for key, item in value.items():
        _check_text("body", key)
        _check_text(key, item)
    return value


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


async def body_fields(request: Request) -> tuple[list[tuple[str, str]] | dict[str, Any], bool]:
    """The submitted fields (pairs from a form, an object from JSON), and whether they came as JSON."""
    kind = media_type(request)
    if kind == JSON_TYPE:
        return parse_json_object(await request.body()), True
    if kind == "application/x-www-form-urlencoded":
        return parse_urlencoded(await request.body(), "body"), False
    if kind == "multipart/form-data":
        return parse_multipart(await request.body(), request.headers["content-type"]), False
    raise HTTPException(415, "send application/x-www-form-urlencoded, multipart/form-data or application/json")


# --- models ----------------------------------------------------------------------------------------------------


@cache
def _field_names(model: type[BaseModel]) -> tuple[frozenset[str], frozenset[str]]:
    """The model's field names as sent (aliases), and those of them that are arrays (given repeatedly)."""
    properties = model.model_json_schema()["properties"]
    return frozenset(properties), frozenset(name for name, schema in properties.items() if schema.get("type") == "array")


def pair_fields(model: type[BaseModel], pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The model's fields among name-value pairs (others, e.g. a CSRF token, are left out): array fields take
    every value given, other fields exactly one."""
    names, repeated = _field_names(model)
    fields: dict[str, Any] = {}
    for name, value in pairs:
        if name not in names:
            continue
        if name in repeated:
            fields.setdefault(name, []).append(value)
        elif name in fields:
            raise BadInput(name, "is given more than once", "repeated")
        else:
            fields[name] = value
    return fields


# pydantic's own error types as the kinds of FieldError, with the reason said for API clients (None: pydantic's).
_PYDANTIC_ERRORS: dict[str, tuple[str, str | None]] = {
    "missing": ("required", "is required"),
    "extra_forbidden": ("unknown_field", "is not a field of this request"),
    "string_too_long": ("too_long", None),
}


def validated(model: type[Model], fields: Mapping[str, Any]) -> Model:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            # The field validators' errors carry their kind as their type (see _rule).
            kind, reason = _PYDANTIC_ERRORS.get(error["type"], (error["type"], None))
            errors.append(FieldError(str(error["loc"][0]) if error["loc"] else "body", kind, reason or error["msg"]))
        first = errors[0]
        raise BadInput(first.field, first.reason, first.kind, also=errors[1:]) from None


def query(model: type[Model], request: Request) -> Model:
    return validated(model, pair_fields(model, parse_urlencoded(request.scope["query_string"], "query")))


def path(model: type[Model], request: Request) -> Model:
    return validated(model, request.path_params)


def form_or_json(model: type[Model], fields: list[tuple[str, str]] | dict[str, Any]) -> Model:
    return validated(model, fields if isinstance(fields, dict) else pair_fields(model, fields))


def form_value(fields: list[tuple[str, str]] | dict[str, Any], name: str) -> str | None:
    """One form field outside the endpoint's model (the CSRF token); None from JSON or when absent."""
    if isinstance(fields, dict):
        return None
    return next((value for key, value in fields if key == name), None)


# --- a refused form, shown again -------------------------------------------------------------------------------

FORM_WIDE = "form"  # where a problem with the form as a whole is said
# Problems nobody filling in the page's form can cause (a tampered or stale form): said of the form as a whole.
_FORM_WIDE_KINDS = frozenset({"repeated", "not_text", "unknown_field"})
# The fields with messages of their own (see _said).
_FIELDS_SAID = frozenset({"email", "name", "frequency", "tags"})


def _said(translate: Translate, field: str, kind: str) -> str:
    """A problem of `kind` with `field` (FORM_WIDE: with the form), in the site's language. The keys are
    literals so that the catalogs' test finds them."""
    if field == "email":
        if kind == "required":
            return translate("error_email_required")
        if kind == "too_long":
            return translate("error_email_too_long", max=subscriptions.MAX_ADDRESS_LENGTH)
        return translate("error_email_invalid")
    if field == "name":
        return translate("error_name_too_long", max=subscriptions.MAX_NAME_LENGTH) if kind == "too_long" else translate("error_name_invalid")
    if field == "frequency":
        return translate("error_frequency")
    if field == "tags":
        return translate("error_tags_too_many", max=subscriptions.MAX_TAGS) if kind == "too_many" else translate("error_tags_invalid")
    return translate("error_form")


@dataclass(frozen=True)
class FormState:
    """What a form shows: the values to put in its fields, and a message for each refused field (FORM_WIDE
    for the form as a whole), in the order of the form."""

    values: Mapping[str, Any] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)


BLANK_FORM = FormState()


async def typed_values(request: Request, model: type[BaseModel]) -> dict[str, Any]:
    """What was sent in a form for the model's fields, to put back into them: the first value of each field,
    every value of an array field; nothing when the body cannot be read."""
    try:
        fields, _ = await body_fields(request)
    except HTTPException:
        return {}
    names, repeated = _field_names(model)
    values: dict[str, Any] = {}
    for name, value in fields if isinstance(fields, list) else ():
        if name in repeated:
            values.setdefault(name, []).append(value)
        elif name in names:
            values.setdefault(name, value)
    return values


def refused_form(
    refused: BadInput, typed: Mapping[str, Any], shown: Sequence[str], translate: Translate
) -> FormState:
    """The form showing `shown` fields again after `refused`, with `typed` in them and each problem said in
    the site's language (the first one of each field); a problem with a field the form does not show is said
    of the form as a whole."""
    said: dict[str, str] = {}
    for error in refused.errors:
        about = error.field if error.field in _FIELDS_SAID and error.kind not in _FORM_WIDE_KINDS else FORM_WIDE
        where = about if about in shown else FORM_WIDE
        if where not in said:
            said[where] = _said(translate, about, error.kind)
    return FormState(typed, {where: said[where] for where in (FORM_WIDE, *shown) if where in said})


# --- field types -----------------------------------------------------------------------------------------------


def _rule(check: Callable[[object], Any]) -> PlainValidator:
    """A pydantic validator from a check that raises InvalidInput, ValueError or TypeError."""

    def validate(raw: object) -> Any:
        try:
            return check(raw)
        except InvalidInput as exc:
            raise PydanticCustomError(exc.kind, exc.reason) from None
        except (ValueError, TypeError) as exc:
            raise PydanticCustomError("invalid", str(exc)) from None

    return PlainValidator(validate)


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise TypeError("must be text")
    return unicodedata.normalize("NFC", raw)


def _address(raw: object) -> Address:
    return subscriptions.normalise_address(_text(raw))


def _name(raw: object) -> str:
    return subscriptions.clean_name(_text(raw))


def _frequency(raw: object) -> str:
    if raw not in FREQUENCIES:
        raise ValueError(f"must be one of {', '.join(FREQUENCIES)}")
    return str(raw)


def _status(raw: object) -> str:
    if raw not in STATUSES:
        raise ValueError(f"must be one of {', '.join(STATUSES)}")
    return str(raw)


def _tags(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise TypeError("must be a list of tags")
    if len(raw) > subscriptions.MAX_TAGS:
        raise InvalidInput("tags", f"at most {subscriptions.MAX_TAGS} tags", "too_many")
    for item in raw:
        if not isinstance(item, str) or not _TAG.fullmatch(unicodedata.normalize("NFC", item)):
            raise InvalidInput("tags", f"{str(item)[:70]!r} is not a tag (letters, digits and dashes, up to 64)", "not_tag")
    return subscriptions.parse_tags([unicodedata.normalize("NFC", item) for item in raw])


def _search_text(raw: object) -> str:
    text = _text(raw)
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in text):
        raise ValueError("contains control characters")
    if len(text) > 320:
        raise ValueError("at most 320 characters")
    return text


def _flag(raw: object) -> bool:
    # The query form of a JSON Schema boolean; a JSON body's booleans arrive as such.
    if isinstance(raw, bool):
        return raw
    if raw in ("true", "false"):
        return raw == "true"
    raise ValueError("must be true or false")


def bounded_int(low: int, high: int) -> Any:
    """A whole number from low to high: an int, or its ASCII decimal digits (from a path or query)."""

    def check(raw: object) -> int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            number = raw
        elif isinstance(raw, str) and _DIGITS.fullmatch(raw):
            number = int(raw)
        else:
            number = low - 1
        if not low <= number <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return number

    return Annotated[int, _rule(check), WithJsonSchema({"type": "integer", "minimum": low, "maximum": high})]


EmailAddress = Annotated[
    Address,
    _rule(_address),
    WithJsonSchema(
        {"type": "string", "format": "email", "maxLength": subscriptions.MAX_ADDRESS_LENGTH, "pattern": _ADDRESS_PATTERN}
    ),
]
Name = Annotated[
    str,
    _rule(_name),
    WithJsonSchema({"type": "string", "maxLength": subscriptions.MAX_NAME_LENGTH, "pattern": _NAME_PATTERN}),
]
Frequency = Annotated[str, _rule(_frequency), WithJsonSchema({"type": "string", "enum": list(FREQUENCIES)})]
Status = Annotated[str, _rule(_status), WithJsonSchema({"type": "string", "enum": list(STATUSES)})]
Tags = Annotated[
    tuple[str, ...],
    _rule(_tags),
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "string", "pattern": TAG_PATTERN},
            "maxItems": subscriptions.MAX_TAGS,
        }
    ),
]
SearchText = Annotated[
    str, _rule(_search_text), WithJsonSchema({"type": "string", "maxLength": 320, "pattern": f"^[^{_CONTROLS}]*$"})
]
Flag = Annotated[bool, _rule(_flag), WithJsonSchema({"type": "boolean"})]
Id = bounded_int(1, MAX_ID)
Offset = bounded_int(0, MAX_ID)
PageSize = bounded_int(1, 1000)
