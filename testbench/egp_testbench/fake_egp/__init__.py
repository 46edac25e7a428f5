"""A local EGP server faithful to `GET /v5/models` (egp-api.md sections 4.2, 6 and 9), with an
admin API under `/_admin` to change models and inject faults while a test or the demo runs."""

from egp_testbench.fake_egp.app import create_app
from egp_testbench.fake_egp.generator import generate_models
from egp_testbench.fake_egp.server import FakeEGPServer
from egp_testbench.fake_egp.state import FakeEGPState, Fault, ServerConfig

__all__ = [
    "FakeEGPServer",
    "FakeEGPState",
    "Fault",
    "ServerConfig",
    "create_app",
    "generate_models",
]
