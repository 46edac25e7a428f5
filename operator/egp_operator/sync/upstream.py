"""What a cycle keeps of each listed model: the fields its mirror needs, bounded, compact.

A page is parsed, reduced to these records and dropped before the next page is read, so a
listing's memory is what it keeps, not what its bytes became once parsed (a page of empty JSON
objects parses to ~30 times its size). Every upstream string is capped and made storable here;
the free-form fields (vendor_configuration with its env_vars masked, model_metadata, unknown
fields) are kept as one compact JSON text of at most MAX_FREE_FORM_BYTES, the biggest role
left out first, so that no record, and no status built from it, can grow past its bound.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from egp_operator.bounds import (
    MAX_FREE_FORM_BYTES,
    MAX_JSON_DEPTH,
    MAX_TEXT_LENGTH,
    MAX_WORD_LENGTH,
    cut,
    json_depth,
    make_storable,
    storable_text,
)
from egp_operator.egp.models import InferenceModel

MASK: Final = "***"
#: The free-form fields of a status, by their Kubernetes names, in the order they are left out
#: when together they are too big: the biggest role first; the identity and phase always stay.
FREE_FORM_FIELDS: Final = ("vendorConfiguration", "extraFields", "modelMetadata")
#: Upstream fields a status does not mirror among `extraFields`.
_NOT_MIRRORED: Final = frozenset({"object"})
#: Why a free-form field was left out, as the Truncated condition says it.
TOO_DEEP: Final = f"nested deeper than {MAX_JSON_DEPTH} levels"
TOO_BIG: Final = f"the free-form fields together exceed {MAX_FREE_FORM_BYTES // 1024} KiB"
#: ASCII JSON, as the Kubernetes client sends it: what MAX_FREE_FORM_BYTES measures.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), check_circular=False)
#: How ASCII JSON writes any surrogate, a lone one (which the API server would store as
#: U+FFFD) or half of a pair: where it is absent, there is nothing to make storable.
_SURROGATE_ESCAPE: Final = "\\ud"
#: Bytes a record takes beside the text it holds (the object, its slots, its strings' headers,
#: its entry in the listing; its short, repeated words are shared): what `kept_bytes` counts
#: for each, so that a listing of many tiny models is counted too.
RECORD_OVERHEAD: Final = 512
#: Words up to this long (vendor, type, status, ...) are shared between the records.
_SHARED_WORD_LENGTH: Final = 64


@dataclass(frozen=True, slots=True)
class UpstreamModel:
    """One listed model as its mirror needs it. `free_form` is the compact JSON of the
    free-form fields kept (Kubernetes names), `left_out` the ones that were not and why."""

    id: str
    name: str | None
    type: str | None
    vendor: str | None
    status: str | None
    status_reason: str | None
    availability: str | None
    created_at: str | None
    created_by_user_id: str | None
    created_by_identity_type: str | None
    free_form: str
    left_out: tuple[tuple[str, str], ...]

    @property
    def fingerprint(self) -> int:
        """Equal for equal records: a status built from this record is built from nothing
        else, so an equal fingerprint means an equal status (the planner's memo)."""
        return hash(self)

    @property
    def kept_bytes(self) -> int:
        """About what this record holds in memory: what a listing's budget counts."""
        texts = (self.id, self.name, self.status_reason, self.created_at, self.free_form)
        return RECORD_OVERHEAD + sum(len(text) for text in texts if text)

    def free_form_fields(self) -> dict[str, Any]:
        """The free-form fields kept, decoded: a new object at each call, the caller's own.
        A whole float is read as the integer the API server would write back (`2.0` is
        stored as `2`), so that a status reads back equal to what was written."""
        decoded: dict[str, Any] = _DECODER.decode(self.free_form)
        return decoded


def keep_for_mirror(model: InferenceModel) -> UpstreamModel:
    """Reduce a parsed record to what its mirror needs, within every bound. Pure, and called
    once per listed model as its page is read."""
    free_form, left_out = _bounded_free_form(
        {
            "vendorConfiguration": mask_env_vars(model.vendor_configuration),
            "modelMetadata": model.model_metadata,
            "extraFields": {
                key: value
                for key, value in (model.__pydantic_extra__ or {}).items()
                if key not in _NOT_MIRRORED
            }
            or None,
        }
    )
    return UpstreamModel(
        id=model.id,
        name=_text(model.name),
        type=_word(model.model_type),
        vendor=_word(model.model_vendor),
        status=_word(model.status),
        status_reason=_text(model.status_reason),
        availability=_word(model.model_availability),
        created_at=_word(model.created_at),
        created_by_user_id=_word(model.created_by_user_id),
        created_by_identity_type=_word(model.created_by_identity_type),
        free_form=free_form,
        left_out=left_out,
    )


def _as_the_api_server_writes(text: str) -> float | int:
    """A JSON number with a fraction or an exponent, as Go's encoder writes it back: a whole
    value below 1e21 without them (`2.0` -> `2`, `1e16` -> `10000000000000000`)."""
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 1e21 else value


_DECODER: Final = json.JSONDecoder(parse_float=_as_the_api_server_writes)


def mask_env_vars(vendor_configuration: Any) -> Any:
    """Keep env_vars keys, hide their values: readers of EGPModels must not learn credentials."""
    if not isinstance(vendor_configuration, dict):
        return vendor_configuration
    image = vendor_configuration.get("model_image")
    if not isinstance(image, dict) or "env_vars" not in image:
        return vendor_configuration
    env_vars = image["env_vars"]
    masked = {key: MASK for key in env_vars} if isinstance(env_vars, dict) else MASK
    return {**vendor_configuration, "model_image": {**image, "env_vars": masked}}


def _bounded_free_form(fields: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The free-form fields that fit, as one compact JSON text, and the ones left out."""
    kept = {name: fields[name] for name in FREE_FORM_FIELDS if fields.get(name) is not None}
    left_out: list[tuple[str, str]] = []
    text = _encoded_if_shallow(kept)
    if text is None:  # some field may nest too deeply: the walk that finds which
        for name in list(kept):
            if json_depth(kept[name]) > MAX_JSON_DEPTH:
                del kept[name]
                left_out.append((name, TOO_DEEP))
        text = _ENCODER.encode(kept)
    if _SURROGATE_ESCAPE in text:  # rare: only then the walk that makes it storable
        make_storable(kept)  # the parsed page is the cycle's own, and dropped after
        text = _ENCODER.encode(kept)
    for name in FREE_FORM_FIELDS:  # the biggest role first, until the rest fits
        if len(text) <= MAX_FREE_FORM_BYTES:
            break
        if name in kept:
            del kept[name]
            left_out.append((name, TOO_BIG))
            text = _ENCODER.encode(kept)
    return text, tuple(left_out)


def _encoded_if_shallow(kept: dict[str, Any]) -> str | None:
    """`kept` encoded, when it cannot nest deeper than MAX_JSON_DEPTH below its fields: its
    text opens fewer containers than that in all (counted at C speed), which holds for every
    real record; else None."""
    try:
        text = _ENCODER.encode(kept)
    except RecursionError:
        return None
    return text if text.count("{") + text.count("[") <= MAX_JSON_DEPTH else None


def _text(value: str | None) -> str | None:
    if value is None or (len(value) <= MAX_TEXT_LENGTH and value.isascii()):
        return value
    return _bounded(value, MAX_TEXT_LENGTH)


def _word(value: str | None) -> str | None:
    """A word of EGP's vocabulary, shared by every record that repeats it."""
    if value is not None and len(value) <= _SHARED_WORD_LENGTH and value.isascii():
        return sys.intern(value)  # nearly every value: checked and shared at C speed
    return _bounded(value, MAX_WORD_LENGTH)


def _bounded(value: str | None, limit: int) -> str | None:
    """Cut to `limit`, and storable; ASCII (nearly every value) is checked at C speed."""
    if value is None:
        return None
    if len(value) > limit:
        value = cut(value, limit)
    return value if value.isascii() else storable_text(value)
