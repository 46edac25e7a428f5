"""A source's API key: from its Secret's watch when one is up, else read from the API server.

Either way the key comes only from the Secret of the source's own namespace that its
`credentialsSecretRef` names, and is checked the same way; no message says what it holds.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from egp_operator.bounds import MAX_API_KEY_BASE64_LENGTH, MAX_API_KEY_BYTES
from egp_operator.egp.client import check_api_key
from egp_operator.kube import KubeAPI, KubeError, core_path
from egp_operator.resources.models import SecretKeyRef
from egp_operator.sync.secret_watches import Holder, SecretState, SecretWatches
from egp_operator.vocabulary import Reason


class CredentialsError(Exception):
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


async def read_api_key(
    kube: KubeAPI,
    watches: SecretWatches | None,
    holder: Holder,
    ref: SecretKeyRef,
) -> SecretStr:
    """The key `holder` (a source: namespace, name, uid) names, from the watch of its Secret when
    that is up, else by one GET. The name is a validated DNS-1123 name and the path quotes it
    whole, and what comes back must still be that Secret of this namespace: a Secret of
    another namespace is never read into a cycle."""
    namespace = holder[0]
    known = None
    if watches is not None:
        watches.use(holder, (namespace, ref.name), ref.key)
        known = watches.values((namespace, ref.name))
    if isinstance(known, SecretState):  # the watch saw it deleted, or never created
        raise CredentialsError(Reason.SECRET_NOT_FOUND, f"Secret {ref.name}: NotFound")
    data = known if known is not None else await _get_data(kube, namespace, ref.name)
    return api_key_from_data(data, ref)


async def _get_data(kube: KubeAPI, namespace: str, name: str) -> Mapping[str, Any]:
    try:
        secret = await kube.get(core_path(namespace, "secrets", name))
    except KubeError as error:
        reason = Reason.SECRET_NOT_FOUND if error.not_found else Reason.SECRET_UNREADABLE
        raise CredentialsError(reason, f"Secret {name}: {error.reason}") from None
    meta = secret.get("metadata") if isinstance(secret, dict) else None
    if not isinstance(meta, dict) or (meta.get("namespace"), meta.get("name")) != (
        namespace,
        name,
    ):
        raise CredentialsError(
            Reason.SECRET_UNREADABLE, f"Secret {name}: the API server answered another object"
        )
    data = secret.get("data")
    return data if isinstance(data, dict) else {}


def api_key_from_data(data: Mapping[str, Any], ref: SecretKeyRef) -> SecretStr:
    """The key in `data` (a Secret's base64 values), checked: present, text, not too long."""
    encoded = data.get(ref.key)
    if not encoded or not isinstance(encoded, str):
        raise CredentialsError(
            Reason.SECRET_KEY_NOT_FOUND, f"Secret {ref.name} has no key {ref.key!r}"
        )
    if len(encoded) > MAX_API_KEY_BASE64_LENGTH:
        raise CredentialsError(
            Reason.SECRET_KEY_INVALID,
            f"Secret {ref.name} key {ref.key!r} is longer than {MAX_API_KEY_BYTES} bytes",
        )
    try:
        value = base64.b64decode(encoded).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        raise CredentialsError(
            Reason.SECRET_KEY_INVALID, f"Secret {ref.name} key {ref.key!r} is not text"
        ) from None
    if not value:
        raise CredentialsError(
            Reason.SECRET_KEY_NOT_FOUND, f"Secret {ref.name} key {ref.key!r} is empty"
        )
    try:
        check_api_key(value)
    except ValueError as invalid:
        raise CredentialsError(
            Reason.SECRET_KEY_INVALID, f"Secret {ref.name} key {ref.key!r}: {invalid}"
        ) from None
    return SecretStr(value)
