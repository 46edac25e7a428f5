"""Pydantic models of the `/v5/models` responses.

The API has grown fields and enum values over time (see egp-api.md section 5), so every model
keeps unknown fields (`extra="allow"`), every enum is a plain `str` (an unknown value is kept,
never rejected), and a missing optional key reads the same as `null`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, JsonValue, SkipValidation

MODEL_VENDORS: Final = (
    "openai",
    "cohere",
    "vertex_ai",
    "anthropic",
    "azure",
    "gemini",
    "launch",
    "llmengine",
    "model_zoo",
    "bedrock",
    "xai",
    "fireworks_ai",
)

MAX_PAGE_SIZE: Final = 1000
#: The fewest models the operator asks for per page, whatever a source says: EGP's own default,
#: so that 20,000 models cost 200 requests, not 20,000.
MIN_PAGE_SIZE: Final = 100


FreeForm = Annotated[JsonValue, SkipValidation]


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)


class InferenceModel(_Tolerant):
    """One model record. Only `id` is needed to mirror it; the rest is observed as given."""

    id: str = Field(min_length=1)
    object: str | None = None
    name: str | None = None
    model_type: str | None = None
    model_vendor: str | None = None
    status: str | None = None
    status_reason: str | None = None
    model_availability: str | None = None
    created_at: str | None = None  # RFC 3339 as sent; the format varies, so kept verbatim
    created_by_user_id: str | None = None
    created_by_identity_type: str | None = None
    # Free-form (one of two vendor_configuration shapes, or anything newer). Parsed JSON is JSON
    # already: validating it again, recursively, cost ~0.1 s of CPU per 10,000 models a cycle.
    vendor_configuration: FreeForm = None
    model_metadata: FreeForm = None

    @property
    def extra_fields(self) -> dict[str, Any]:
        """Fields the API sent that this version does not know, kept for the mirror."""
        return dict(self.__pydantic_extra__ or {})


class InferenceModelList(_Tolerant):
    """One page of `GET /v5/models`. `has_more` may be absent: absent does not stop a walk."""

    object: str | None = None
    items: list[InferenceModel]
    limit: int | None = None
    total: int | None = None
    has_more: bool | None = None
