"""Hypothesis strategies for what a hostile EGP endpoint can send (tests/unit/test_fuzz_*.py).

Big values (huge strings, deep or wide JSON) are drawn as small recipes (`Repeat`, `Deep`,
`Wide`) and built only when a test runs: drawing 300 KB through Hypothesis would blow its buffer,
and a falsifying example then prints as `Deep(depth=900, kind='dict')`, not 900 brackets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import quote, quote_plus

from hypothesis import strategies as st

from egp_operator.bounds import MAX_MODEL_ID_LENGTH
from egp_operator.egp.models import MODEL_VENDORS, InferenceModel
from egp_operator.sync.model_status import PHASE_BY_STATUS

#: Values EGP documents for fields the operator keeps as plain text: seeds the fuzz varies.
MODEL_TYPES: Final = ("generic", "completion", "chat_completion")
MODEL_AVAILABILITIES: Final = ("unknown", "available", "unavailable")

#: Visible ASCII, as `check_api_key` demands; the second and third escape differently in JSON,
#: repr, and URLs (quote vs quote_plus), so every scrubbed form is exercised.
API_KEYS = ("sk-fuzz-9f8e7d6c5b4a", 'sk-"fuzz"\\key+/=', "sk-'fuzz'%2F&key~")

#: Characters that grow when escaped (repr: `\x00`, `\u200b`, `\ud800`, `\U000e0001`; JSON:
#: `\u2028`, `\"`, `\\`) or that break naive text handling (newlines, BOM, lone surrogates).
EXPANDING = (
    "\x00\x1b\x7f\n\r\t'\"\\ \u200b\u2028\u0301\ufeff\ud800\udfff\U000e0001\U0010ffff\u212aIİ"
)

#: Every code point, lone surrogates included; and every one UTF-8 can encode.
ANY_CHAR = st.characters(exclude_categories=())
UTF8_CHAR = st.characters(codec="utf-8")
UTF8_EXPANDING = "".join(c for c in EXPANDING if not "\ud800" <= c <= "\udfff")


@dataclass(frozen=True)
class Repeat:
    """`unit * times`: a huge string."""

    unit: str
    times: int

    def build(self) -> str:
        return self.unit * self.times


@dataclass(frozen=True)
class Deep:
    """JSON nested `depth` levels, built without recursion."""

    depth: int
    kind: Literal["list", "dict", "mixed"]

    def build(self) -> Any:
        value: Any = "leaf"
        for level in range(self.depth):
            as_list = self.kind == "list" or (self.kind == "mixed" and level % 2 == 0)
            value = [value] if as_list else {"n": value}
        return value


@dataclass(frozen=True)
class Wide:
    """A flat object of `width` keys, each holding `unit`."""

    width: int
    unit: str

    def build(self) -> Any:
        return {f"k{index}": self.unit for index in range(self.width)}


def build(value: Any) -> Any:
    """`value` with every recipe in it built (recipes sit in small, shallow structures)."""
    if isinstance(value, Repeat | Deep | Wide):
        return value.build()
    if isinstance(value, dict):
        return {key: build(item) for key, item in value.items()}
    if isinstance(value, list):
        return [build(item) for item in value]
    return value


def text(max_size: int = 60, *, surrogates: bool = True) -> st.SearchStrategy[str]:
    """Short hostile text: any code point, or only escape-expanding ones."""
    chars, expanding = (ANY_CHAR, EXPANDING) if surrogates else (UTF8_CHAR, UTF8_EXPANDING)
    return st.text(chars, max_size=max_size) | st.text(
        st.sampled_from(expanding), max_size=max_size
    )


def huge_text(max_length: int) -> st.SearchStrategy[Repeat]:
    """Up to `max_length` characters, of escape-expanding ones or of any."""
    units = st.text(st.sampled_from(EXPANDING), min_size=1, max_size=3) | text(8).filter(bool)
    return st.builds(
        lambda unit, times: Repeat(unit, max(1, min(times, max_length // len(unit)))),
        units,
        st.integers(1, max_length) | st.just(max_length),
    )


_TEXT = text()
_HUGE_TEXT = huge_text(20_000)


def upstream_text(known: tuple[str, ...] = ()) -> st.SearchStrategy[Any]:
    """A string field of a model record: absent-like, a known value, hostile, or huge."""
    choices: list[st.SearchStrategy[Any]] = [st.none(), _TEXT, _HUGE_TEXT]
    if known:
        choices.insert(1, st.sampled_from(known))
    return st.one_of(choices)


JSON_SCALARS: st.SearchStrategy[Any] = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text(20)
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(text(10), children, max_size=4)
    ),
    max_leaves=12,
)
#: Free-form JSON: small, deep (past the 64 levels a status keeps), wide, or one huge string
#: (past the 256 KiB a status may have).
FREE_FORM: st.SearchStrategy[Any] = st.one_of(
    JSON_VALUES,
    st.builds(Deep, depth=st.integers(1, 900), kind=st.sampled_from(["list", "dict", "mixed"])),
    st.builds(Wide, width=st.integers(0, 3_000), unit=text(12)),
    huge_text(300_000),
)
VENDOR_CONFIGURATION: st.SearchStrategy[Any] = FREE_FORM | st.fixed_dictionaries(
    {"model_image": st.fixed_dictionaries({"env_vars": FREE_FORM, "tag": FREE_FORM})},
    optional={"nested": FREE_FORM, "model_config": JSON_VALUES},
)
_FIELDS: Final[dict[str, st.SearchStrategy[Any]]] = {
    "object": upstream_text(("model",)),
    "name": upstream_text(("llama", "LLAMA", "", "---", "llama 3")),
    "model_type": upstream_text(MODEL_TYPES),
    "model_vendor": upstream_text(MODEL_VENDORS),
    "status": upstream_text(tuple(PHASE_BY_STATUS)),
    "status_reason": upstream_text(),
    "model_availability": upstream_text(MODEL_AVAILABILITIES),
    "created_at": upstream_text(("2025-03-14T18:02:11Z",)),
    "created_by_user_id": upstream_text(),
    "created_by_identity_type": upstream_text(("user", "service_account")),
    "vendor_configuration": VENDOR_CONFIGURATION,
    "model_metadata": FREE_FORM,
}
_DECLARED = frozenset(InferenceModel.model_fields)
#: Unknown fields: any value, but a name pydantic can store (a lone surrogate in one makes it
#: refuse the whole page, which the client test covers).
_EXTRA_FIELDS = st.dictionaries(
    text(16, surrogates=False).filter(lambda key: key not in _DECLARED), FREE_FORM, max_size=3
)


def _model_ids(surrogates: bool) -> st.SearchStrategy[str]:
    chars, expanding = (ANY_CHAR, EXPANDING) if surrogates else (UTF8_CHAR, UTF8_EXPANDING)
    return st.one_of(
        st.text(chars, min_size=1, max_size=40),
        st.text(st.sampled_from(expanding), min_size=1, max_size=40),
        st.from_regex(r"[a-z0-9][a-z0-9._-]{0,60}", fullmatch=True),
        st.text(chars, min_size=MAX_MODEL_ID_LENGTH - 2, max_size=400),
        st.integers(1, 3).map(lambda n: "x" * (MAX_MODEL_ID_LENGTH - 2 + n)),
    )


#: Any id a record may carry: unicode with control characters, or past the 253 allowed.
MODEL_IDS = _model_ids(surrogates=True)
#: The ids that can reach the planner: pydantic refuses an `id` holding a lone surrogate (its
#: length check needs UTF-8), so a page with one never becomes a listing.
LISTED_MODEL_IDS = _model_ids(surrogates=False)


def lookalikes(base: str) -> list[str]:
    """Ids that differ from `base` only in ways a human or a slug would not see."""
    return [
        base.upper(),
        base + " ",
        base + "\n",
        "\u200b" + base,
        base + "\x00",
        base + "\u0301",
        base.replace("-", "_"),
    ]


@st.composite
def model_record(draw: st.DrawFn, id_: str | None = None) -> dict[str, Any]:
    """One `/v5/models` item as a dict (recipes unbuilt): hostile in every field it has."""
    record: dict[str, Any] = {"id": id_ if id_ is not None else draw(MODEL_IDS)}
    for name, strategy in _FIELDS.items():
        if draw(st.booleans()):
            record[name] = draw(strategy)
    record |= draw(_EXTRA_FIELDS)
    return record


_LISTED_IDS = st.lists(LISTED_MODEL_IDS, max_size=10, unique=True)
_SHARED_NAME = upstream_text(("llama",))


@st.composite
def listing_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Records with distinct ids, some of them lookalikes of others, many sharing a name."""
    ids: list[str] = draw(_LISTED_IDS)
    with_lookalikes, one_name = draw(st.booleans()), draw(st.booleans())
    if ids and with_lookalikes:
        ids += lookalikes(ids[0])
    records = [draw(model_record(id_)) for id_ in dict.fromkeys(ids)]
    if records and one_name:
        shared = draw(_SHARED_NAME)
        for record in records:
            record["name"] = shared
    return records


# --- /v5/models responses -------------------------------------------------------------------


def key_forms(key: str) -> list[str]:
    """How an endpoint may echo the key: raw, and as JSON, repr and URLs escape it."""
    return [key, json.dumps(key)[1:-1], repr(key)[1:-1], quote(key, safe=""), quote_plus(key)]


@dataclass(frozen=True)
class Body:
    """A response body recipe; `render(key)` makes the bytes, echoing `key` where asked."""

    kind: str
    page: Any = None
    cut: int = 0
    raw: bytes = b""
    depth: int = 0
    form: int = 0
    pad: int = 0
    ensure_ascii: bool = True

    def render(self, key: str) -> bytes:
        echoed = key_forms(key)[self.form % 5]
        if self.kind == "page":
            return _encode(build(self.page), self.ensure_ascii)
        if self.kind == "truncated":
            whole = _encode(build(self.page), self.ensure_ascii)
            return whole[: self.cut % max(len(whole), 1)]
        if self.kind == "bytes":
            return self.raw
        if self.kind == "brackets":
            return b"[" * self.depth + b"]" * self.depth
        if self.kind == "deep_item":
            deep = '{"a":' * self.depth + "1" + "}" * self.depth
            return f'{{"items":[{{"id":"m","vendor_configuration":{deep}}}]}}'.encode()
        if self.kind == "detail":  # a key cut in half by a limit must not survive either
            return _encode({"detail": "x" * self.pad + echoed + "y" * self.pad}, True)
        if self.kind == "nested_detail":
            detail = {"detail": [{"loc": ["query", echoed], "msg": echoed, "input": key}]}
            return _encode(detail, self.ensure_ascii)
        if self.kind == "text":
            return ("x" * self.pad + echoed).encode()
        if self.kind == "key_as_id":  # listed twice: the message quotes the id
            page = {"items": [{"id": "x" * self.pad + echoed}], "has_more": True}
            return _encode(page, self.ensure_ascii)
        if self.kind == "non_finite":
            return b'{"items":[{"id":"m","vendor_configuration":{"x":NaN,"y":-Infinity}}]}'
        raise AssertionError(self.kind)


def _encode(value: Any, ensure_ascii: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


_ITEMS = st.lists(model_record(), max_size=8, unique_by=lambda record: str(record["id"]))
_BAD_ITEMS = st.sampled_from([None, "items", {"id": "m"}, [1, None], [{"id": ""}]])
_PAGE_FIELDS: Final[dict[str, st.SearchStrategy[Any]]] = {
    "object": st.just("list") | JSON_SCALARS,
    "has_more": st.sampled_from([True, False, None, "true", 1]),
    "total": st.integers(-1, 10**12) | st.sampled_from([20_001, 10**30, "many", 1.5]),
    "limit": st.integers(-1, 2_000) | JSON_SCALARS,
}


@st.composite
def page(draw: st.DrawFn) -> dict[str, Any]:
    """A `/v5/models` page, valid or almost: too many items, totals past any bound, bad types."""
    items: Any = draw(_BAD_ITEMS) if draw(st.integers(0, 3)) == 0 else draw(_ITEMS)
    result: dict[str, Any] = {"items": items}
    for name, strategy in _PAGE_FIELDS.items():
        if draw(st.booleans()):
            result[name] = draw(strategy)
    return result


@st.composite
def last_page(draw: st.DrawFn) -> dict[str, Any]:
    """A page a listing can end on: a few hostile records with ids pydantic accepts."""
    ids = draw(st.lists(LISTED_MODEL_IDS, max_size=3, unique=True))
    items = [draw(model_record(id_)) for id_ in ids]
    endings: list[dict[str, Any]] = [{}, {"has_more": False}, {"total": len(items)}]
    ending = draw(st.sampled_from(endings))
    return {"items": items, **ending}


BODIES: st.SearchStrategy[Body] = st.one_of(
    st.builds(Body, kind=st.just("page"), page=last_page(), ensure_ascii=st.just(True)),
    st.builds(Body, kind=st.just("page"), page=page(), ensure_ascii=st.booleans()),
    st.builds(Body, kind=st.just("truncated"), page=page(), cut=st.integers(0, 10**6)),
    st.builds(Body, kind=st.just("bytes"), raw=st.binary(max_size=300)),
    st.builds(Body, kind=st.just("brackets"), depth=st.integers(1, 5_000)),
    st.builds(Body, kind=st.just("deep_item"), depth=st.integers(1, 5_000)),
    st.builds(
        Body,
        kind=st.sampled_from(["detail", "text", "key_as_id"]),
        form=st.integers(0, 4),
        pad=st.integers(0, 1_100) | st.sampled_from([290, 297, 1_000, 1_010, 200_000]),
        ensure_ascii=st.booleans(),
    ),
    st.builds(Body, kind=st.just("nested_detail"), form=st.integers(0, 4)),
    st.just(Body(kind="non_finite")),
)


@dataclass(frozen=True)
class Answer:
    """One answer to one request: a response, or a transport failure (before or mid-body)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Body = Body(kind="bytes")
    failure: str = ""  # "", "connect", "timeout", "protocol" or "mid_body"
    #: Header values (and a failure's text) that echo the key, by name.
    echo: tuple[str, ...] = ()
    form: int = 0


HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
STATUSES = st.one_of(
    st.just(200),
    st.sampled_from([201, 204, 301, 400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503]),
    st.integers(100, 999),
)
#: Seconds, or an HTTP date whose every part may be out of range (a year of 12 digits).
HTTP_DATES = st.builds(
    "{}, {:02d} {} {} {:02d}:00:00{}".format,
    st.sampled_from(["Mon", "Wed"]),
    st.integers(0, 40),
    st.sampled_from(["Jan", "Oct"]),
    st.sampled_from([0, 1, 1970, 2038, 9999, 10_000, 2**31, 9_999_999_999])
    | st.integers(0, 10**12),
    st.integers(0, 99),
    st.sampled_from(["", " GMT", " +2359", " -9999"]),
)
RETRY_AFTER = st.one_of(
    st.sampled_from(
        [
            "nan",
            "-1",
            "1e999",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Mon, 01 Jan 0001 00:00:00 +2359",
            "Mon, 01 Jan 9999999999 00:00:00",
        ]
    ),
    HTTP_DATES,
    st.from_regex(r"[0-9]{1,4}", fullmatch=True),
    HEADER_TEXT,
)


_HEADERS: Final[dict[str, st.SearchStrategy[str]]] = {
    "content-type": st.sampled_from(["application/json", "text/html"]) | HEADER_TEXT,
    "content-encoding": st.sampled_from(["identity", "", "gzip", "br"]) | HEADER_TEXT,
    "content-length": st.from_regex(r"[0-9]{1,12}", fullmatch=True),
    "retry-after": RETRY_AFTER,
    "retry-after-ms": RETRY_AFTER,
    "x-should-retry": st.sampled_from(["true", "false", "maybe"]),
}
_ECHOED = st.lists(st.sampled_from(["content-type", "content-encoding", "x-echo"]), max_size=2)
_ONE_IN_FOUR = st.integers(0, 3).map(lambda n: n == 3)
_FAILURES = st.sampled_from(["", "", "", "", "connect", "timeout", "protocol", "mid_body"])


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    headers = {name: draw(value) for name, value in _HEADERS.items() if draw(_ONE_IN_FOUR)}
    echo = tuple(draw(_ECHOED))
    failure = draw(_FAILURES)
    return Answer(
        status=draw(STATUSES),
        headers=headers,
        body=draw(BODIES),
        failure=failure,
        echo=echo,
        form=draw(st.integers(0, 4)),
    )
