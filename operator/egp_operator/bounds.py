"""Every fixed bound on what a tenant or an EGP endpoint can make the operator hold or write.

One place each (docs/security.md lists them with the tests that prove them). The bounds a
platform admin may want to change per installation (bytes per page, models per source,
deadlines, allowed hosts) are settings (`settings.py`); these are the ones that follow from
Kubernetes' own limits or keep a single object, message or metric sane, and have no reason to
vary.
"""

from __future__ import annotations

import re
from typing import Any, Final

#: Deepest JSON an EGP page may nest. EGP's records nest 4 levels; 64 leaves room for any
#: free-form metadata while every recursive walk (comparison, serialization) stays far from
#: Python's recursion limit.
MAX_JSON_DEPTH: Final = 64

#: An EGPModel's status, serialized. Far below etcd's 1.5 MiB request limit, so metadata,
#: conditions and managedFields always fit beside it.
MAX_STATUS_BYTES: Final = 256 * 1024

#: The free-form fields of one model (vendor_configuration, model_metadata, unknown fields)
#: together, as compact ASCII JSON: real Launch records are 1-3 KiB. What a listing keeps of a
#: model, and what its status can hold beside capped strings, is bounded by it, far below
#: MAX_STATUS_BYTES: past it the biggest field is left out (`truncatedFields`).
MAX_FREE_FORM_BYTES: Final = 16 * 1024

#: Free text from upstream (name, status_reason) kept in a status.
MAX_TEXT_LENGTH: Final = 4096

#: Enum-like strings from upstream (status, vendor, type, availability, created_at, ids of
#: creators): EGP's real values are a few dozen characters.
MAX_WORD_LENGTH: Final = 256

#: A model id, stored in `spec.modelID` (the CRD's maxLength). A model with a longer id is not
#: mirrored; the source says so and mirrors the rest.
MAX_MODEL_ID_LENGTH: Final = 253

#: A message the operator writes (conditions, status.message, Events, logs of upstream text).
MAX_MESSAGE_LENGTH: Final = 1024

#: How much of an upstream value (an id, an error detail) a message quotes.
MAX_QUOTED_LENGTH: Final = 120

#: An API key read from a Secret: EGP's keys are a few dozen characters, and the key goes into a
#: header of every request. A longer value is refused (SecretKeyInvalid), and a Secret watch
#: keeps no more of any value than this.
MAX_API_KEY_BYTES: Final = 4096
#: The same bound on the key as a Secret stores it, in base64.
MAX_API_KEY_BASE64_LENGTH: Final = 4 * -(-MAX_API_KEY_BYTES // 3)

#: Phase transitions an EGPModel's `status.history` keeps, the newest last (Flux keeps as many
#: releases in a HelmRelease's history).
MAX_PHASE_HISTORY: Final = 5
#: The upstream reason a history entry quotes, on one line.
MAX_HISTORY_MESSAGE_LENGTH: Final = 256
#: Events posted per cycle of one source; past it one aggregate Event on the source says how
#: many more models changed phase.
MAX_EVENTS_PER_CYCLE: Final = 50


#: A lone UTF-16 surrogate: JSON can escape one (`"\ud800"`), UTF-8 cannot hold it, and the API
#: server stores it as U+FFFD. Valid pairs are joined into one character by the JSON parser, so
#: any surrogate left in a Python string is a lone one.
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
REPLACEMENT_CHARACTER: Final = "\ufffd"


def storable_text(text: str) -> str:
    """`text` as the API server would store it: lone surrogates become U+FFFD."""
    return _LONE_SURROGATE.sub(REPLACEMENT_CHARACTER, text)


def make_storable(document: dict[str, Any] | list[Any]) -> None:
    """Replace, in place, every lone surrogate in the strings and keys of `document`, so that
    what is written reads back equal (without it, every cycle would rewrite the object).
    Iterative, like `json_depth`."""
    stack: list[dict[str, Any] | list[Any]] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            for index, value in enumerate(node):
                if isinstance(value, str):
                    node[index] = storable_text(value)
                elif isinstance(value, dict | list):
                    stack.append(value)
            continue
        for key, value in list(node.items()):
            if isinstance(value, str):
                value = storable_text(value)
            elif isinstance(value, dict | list):
                stack.append(value)
            stored_key = storable_text(key)
            if stored_key != key:
                del node[key]
            node[stored_key] = value


def cut(text: str, limit: int) -> str:
    """`text`, shortened to at most `limit` characters with a visible mark when cut."""
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def json_depth(value: Any, *, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply `value` nests (a scalar is 0), counting at most to `limit + 1`.

    Level by level and without recursion, so that a hostile value cannot exhaust the stack,
    and in list comprehensions because it runs over every page (~3 ms per 1,000 models)."""
    level: list[Any] = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level and depth <= limit:
        depth += 1
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
    return depth
