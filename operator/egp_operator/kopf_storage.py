"""kopf's diff base ("last-handled-configuration"), without copying what it throws away.

kopf builds the diff base of every watch event of every watched kind, even one with only an
index handler: it deep-copies the whole body, then drops `status` and most of `metadata`. An
EGPModel's body is mostly status and managedFields, and a mirror of 10,000 models brings 20,000
events, so that copy was ~5% of the operator's CPU (py-spy, bench/FINDINGS.md). Leaving both
out before kopf copies gives the same essence.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import kopf


class StatuslessDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Iterable[kopf.FieldSpec] | None = None,
    ) -> kopf.BodyEssence:
        fields = list(extra_fields or [])
        if fields:  # a handler may track a status field: let kopf copy everything
            return super().build(body=body, extra_fields=fields)
        metadata = {k: v for k, v in body.metadata.items() if k != "managedFields"}
        slim = {k: v for k, v in body.items() if k not in ("status", "metadata")}
        return super().build(body=kopf.Body(cast(kopf.RawBody, {**slim, "metadata": metadata})))
