"""A source's loop validates its spec once per generation, and a new generation's spec is the
one in force at the next cycle."""

from __future__ import annotations

from typing import Any

from egp_operator.resources.models import EGPSourceSpec
from egp_operator.sync.spec import InvalidSpec, SpecOfGeneration


def _source(generation: int | None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "prod", "namespace": "ml"}
    if generation is not None:
        metadata["generation"] = generation
    return {"metadata": metadata, "spec": {"credentialsSecretRef": {"name": "egp"}, **spec}}


def test_the_same_generation_is_not_validated_again() -> None:
    specs = SpecOfGeneration()
    first = specs.read(_source(1, refreshInterval="30s"))

    assert specs.read(_source(1, refreshInterval="30s")) is first


def test_a_new_generation_brings_its_spec() -> None:
    specs = SpecOfGeneration()
    specs.read(_source(1, refreshInterval="30s"))

    spec = specs.read(_source(2, refreshInterval="5m"))

    assert isinstance(spec, EGPSourceSpec)
    assert spec.refresh.total_seconds() == 300


def test_a_spec_made_invalid_by_a_new_generation_is_refused() -> None:
    specs = SpecOfGeneration()
    specs.read(_source(1))

    assert isinstance(specs.read(_source(2, pageSize=0)), InvalidSpec)


def test_a_source_without_a_generation_is_validated_every_time() -> None:
    specs = SpecOfGeneration()
    specs.read(_source(None, refreshInterval="30s"))

    spec = specs.read(_source(None, refreshInterval="5m"))

    assert isinstance(spec, EGPSourceSpec)
    assert spec.refresh.total_seconds() == 300
