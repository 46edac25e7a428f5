"""Realistic, reproducible model records: the same seed gives the same models.

They cover both `vendor_configuration` shapes (Launch and LLM Engine), proxy-served vendors with
no configuration, every status and availability, and env_vars that look like credentials, so
the mirror's masking and phase mapping see what a real account holds.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

_BASES: Final = (
    "llama-3-8b",
    "llama-3-70b",
    "mistral-7b",
    "mixtral-8x7b",
    "qwen2-72b",
    "gemma-2-9b",
    "phi-3-mini",
    "deepseek-coder-33b",
    "bge-reranker",
    "e5-embedder",
    "whisper-large",
    "sd-xl",
)
_PURPOSES: Final = ("support", "eval", "search", "summarize", "triage", "canary", "prod", "rag")
_PROXY_VENDORS: Final = ("openai", "anthropic", "azure", "bedrock", "gemini", "vertex_ai", "xai")
_STATUSES: Final = (
    ("ready", 70),
    ("deploying", 12),
    ("failed", 12),
    ("deployment_timeout", 6),
)
_GPU_TYPES: Final = (
    "nvidia-tesla-t4",
    "nvidia-ampere-a10",
    "nvidia-ampere-a100",
    "nvidia-hopper-h100",
)
_EPOCH: Final = datetime(2024, 1, 1, tzinfo=UTC)


def generate_models(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` model records shaped as `GET /v5/models` returns them."""
    rng = random.Random(seed)
    return [_model(rng, index) for index in range(count)]


def _model(rng: random.Random, index: int) -> dict[str, Any]:
    vendor = rng.choices(("launch", "llmengine", "proxy"), weights=(40, 45, 15))[0]
    base = rng.choice(_BASES)
    name = f"{base}-{rng.choice(_PURPOSES)}-{index}"
    status = rng.choices([s for s, _ in _STATUSES], weights=[w for _, w in _STATUSES])[0]
    if vendor == "launch":
        model_type, configuration = "generic", _launch_configuration(rng, base)
    elif vendor == "llmengine":
        model_type, configuration = "chat_completion", _llmengine_configuration(rng, base)
    else:
        vendor = rng.choice(_PROXY_VENDORS)
        model_type, configuration = rng.choice(("chat_completion", "completion")), None
    created = _EPOCH + timedelta(seconds=rng.randrange(2 * 365 * 24 * 3600))
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "object": "model",
        "name": name,
        "model_type": model_type,
        "model_vendor": vendor,
        "vendor_configuration": configuration,
        "status": status,
        "status_reason": _status_reason(status),
        "model_metadata": {"team": rng.choice(_PURPOSES), "owner": f"user-{rng.randrange(50)}"},
        "model_availability": "available"
        if status == "ready"
        else rng.choice(("unknown", "unavailable")),
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "created_by_user_id": f"{rng.getrandbits(96):024x}",
        "created_by_identity_type": rng.choice(("user", "service_account")),
    }


def _status_reason(status: str) -> str | None:
    return {
        "failed": "Endpoint failed health checks: container exited with code 137 (OOMKilled)",
        "deployment_timeout": "Endpoint did not become ready within 3600 seconds",
        "deploying": "Waiting for workers to become ready",
    }.get(status)


def _launch_configuration(rng: random.Random, base: str) -> dict[str, Any]:
    gpus = rng.choice((0, 1, 1, 2, 4))
    infra: dict[str, Any] = {
        "endpoint_type": rng.choice(("sync", "async", "streaming")),
        "cpus": rng.choice((2, 3, 4, "8")),
        "gpus": gpus,
        "memory": rng.choice(("8Gi", "16Gi", "32Gi")),
        "storage": "16Gi",
        "min_workers": 0,
        "max_workers": rng.choice((1, 2, 4)),
        "per_worker": 10,
        "high_priority": False,
        "labels": {"team": rng.choice(_PURPOSES)},
        "public_inference": False,
    }
    if gpus:
        infra["gpu_type"] = rng.choice(_GPU_TYPES)
    return {
        "model_image": {
            "registry": "registry.example.internal",
            "repository": f"models/{base}",
            "tag": f"v{rng.randrange(1, 9)}.{rng.randrange(10)}",
            "command": ["python", "-m", "serve", "--port", "5005"],
            "predict_route": "/predict",
            "healthcheck_route": "/readyz",
            "readiness_delay": 120,
            "env_vars": {
                "LOG_LEVEL": "info",
                "HF_TOKEN": f"hf_{rng.getrandbits(160):040x}",
                "DATABASE_URL": f"postgres://svc:{rng.getrandbits(64):016x}@db.internal/models",
            },
            "request_schema": {},
            "response_schema": {},
        },
        "model_infra": infra,
    }


def _llmengine_configuration(rng: random.Random, base: str) -> dict[str, Any]:
    return {
        "model": f"{base}-instruct",
        "inference_framework": rng.choice(("vllm", "text_generation_inference")),
        "inference_framework_image_tag": "latest",
        "source": "hugging_face",
        "endpoint_type": "streaming",
        "num_shards": rng.choice((1, 2, 4)),
        "nodes_per_worker": 1,
        "min_workers": 0,
        "max_workers": rng.choice((1, 2)),
        "per_worker": 2,
        "gpus": rng.choice((1, 2, 4)),
        "gpu_type": rng.choice(_GPU_TYPES),
        "labels": {},
    }
