from pathlib import Path

import pytest

from cua_gateway.config.interpolation import Environment, Unresolved, interpolate


def test_variables_are_replaced_inside_text() -> None:
    env = Environment({"HOST": "db", "PORT": "5432"})
    assert interpolate("bolt://${HOST}:${PORT}", env) == "bolt://db:5432"


def test_default_applies_when_unset_or_empty() -> None:
    env = Environment({"EMPTY": ""})
    assert interpolate("${MISSING:-fallback}", env) == "fallback"
    assert interpolate("${EMPTY:-fallback}", env) == "fallback"


def test_a_set_variable_wins_over_its_default() -> None:
    assert interpolate("${A:-b}", Environment({"A": "a"})) == "a"


def test_double_dollar_writes_a_literal_reference() -> None:
    assert interpolate("$${HOME}", Environment({"HOME": "/root"})) == "${HOME}"


def test_plain_dollars_are_left_alone() -> None:
    assert interpolate("costs $5", Environment({})) == "costs $5"


def test_missing_variable_names_itself() -> None:
    with pytest.raises(Unresolved, match=r"\$\{TOKEN\} is not set") as raised:
        interpolate("${TOKEN}", Environment({}))
    assert raised.value.variable == "TOKEN"


def test_required_marker_carries_its_message() -> None:
    with pytest.raises(Unresolved, match="set it to the API host"):
        interpolate("${API:?set it to the API host}", Environment({}))


def test_malformed_reference_is_an_error() -> None:
    with pytest.raises(Unresolved, match="malformed reference"):
        interpolate("${not valid}", Environment({}))


def test_variable_is_read_from_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    env = Environment({"TOKEN_FILE": str(secret)})
    assert interpolate("${TOKEN}", env) == "s3cret"


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    env = Environment({"TOKEN_FILE": str(tmp_path / "absent")})
    with pytest.raises(Unresolved, match=r"TOKEN_FILE=.*absent"):
        interpolate("${TOKEN}", env)
