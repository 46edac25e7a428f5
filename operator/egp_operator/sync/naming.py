"""Object names and labels of mirrored models.

Names are chosen once, at creation: readable (a slug of the upstream name) and unique (a hash of
namespace, source and model id), so an upstream rename never renames the object. Labels carry
the selectors users filter on; values that are not label-safe are replaced by a hash.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

LABEL_PREFIX: Final = "egp-operator.io"
SOURCE_LABEL: Final = f"{LABEL_PREFIX}/source"
MODEL_ID_LABEL: Final = f"{LABEL_PREFIX}/model-id"
VENDOR_LABEL: Final = f"{LABEL_PREFIX}/vendor"
TYPE_LABEL: Final = f"{LABEL_PREFIX}/type"
PHASE_LABEL: Final = f"{LABEL_PREFIX}/phase"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "egp-operator"

_SLUG_MAX: Final = 40
#: 64 bits: finding two model ids with one name takes ~2^32 tries per target, not seconds.
_HASH_LENGTH: Final = 16
#: What marks a label value as a hash; a value that starts with it is hashed too, so that no
#: upstream value can spell another's hashed label.
_HASHED: Final = "h-"
#: A label value (at most 63 characters); checked with fullmatch, since `$` also matches
#: before a trailing newline.
_LABEL_VALUE: Final = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?")


def short_hash(*parts: str, length: int = _HASH_LENGTH) -> str:
    # surrogatepass: a lone surrogate from upstream JSON still hashes, to a stable value.
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:length]


def slug(text: str | None) -> str:
    """Lower-case ASCII letters, digits and single dashes; empty when nothing survives."""
    lowered = (text or "").lower()
    dashed = re.sub(r"[^a-z0-9]+", "-", lowered)
    return dashed[:_SLUG_MAX].strip("-")


def object_name(namespace: str, source: str, model_id: str, upstream_name: str | None) -> str:
    """A DNS-1123 name: `<slug of name>-<hash>`, or `model-<hash>` when the name has no slug."""
    digest = short_hash(namespace, source, model_id)
    return f"{slug(upstream_name) or 'model'}-{digest}"


def label_value(value: str | None) -> str:
    """`value` if it is a valid label value, else a stable 64-bit hash of it (`h-...`), as
    names carry: `kubectl delete -l` must never take two models for one."""
    text = value or ""
    if _LABEL_VALUE.fullmatch(text) and not text.startswith(_HASHED):
        return text
    return _HASHED + short_hash(text)


def model_labels(
    *, source: str, model_id: str, vendor: str | None, model_type: str | None, phase: str
) -> dict[str, str]:
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        SOURCE_LABEL: label_value(source),
        MODEL_ID_LABEL: label_value(model_id),
        VENDOR_LABEL: label_value(vendor),
        TYPE_LABEL: label_value(model_type),
        PHASE_LABEL: phase,
    }
