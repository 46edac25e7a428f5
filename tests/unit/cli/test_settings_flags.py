"""The command's settings are built once and validated: a bad flag or variable stops the
command with exit status 2 and names what to fix."""

from __future__ import annotations

import pytest

from egp_operator.cli import load_settings, main


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ["run", "--metrics-port", "99999"],
            "--metrics-port: Input should be less than or equal to 65535",
        ),
        (
            ["run", "--liveness-port", "-5"],
            "--liveness-port: Input should be greater than or equal to 0",
        ),
    ],
)
def test_a_bad_flag_exits_2_naming_it(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2

    assert capsys.readouterr().err == f"egp-operator run: {said}\n"


def test_a_bad_variable_is_named_by_its_environment_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EGP_OPERATOR_KUBE_CONCURRENCY", "0")

    assert main(["sync", "src", "--once"]) == 2

    assert "EGP_OPERATOR_KUBE_CONCURRENCY: " in capsys.readouterr().err


def test_a_flag_wins_over_the_environment_and_the_rest_comes_from_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EGP_OPERATOR_METRICS_PORT", "9000")
    monkeypatch.setenv("EGP_OPERATOR_LIVENESS_PORT", "9001")

    settings = load_settings({"metrics_port": 9100, "liveness_port": None})

    assert (settings.metrics_port, settings.liveness_port) == (9100, 9001)
