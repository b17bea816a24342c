import json
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from cua_gateway import __version__
from cua_gateway.cli import EXIT_CONFIG, EXIT_NO_INPUT, EXIT_OK, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = [ROOT / "gateway.yml", *sorted((ROOT / "config").glob("*.yml"))]
CLEAN_ENV = {"CUA_GATEWAY_TOKEN": "test-token"}  # config/remote.yml requires one


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped files must pass `check` on a fresh machine: no secrets set."""
    for name in ("GITHUB_PERSONAL_ACCESS_TOKEN", "NEO4J_URI", "SSH_KEY_PATH", "CUA_GATEWAY_CONFIG"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    for name, value in CLEAN_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configurations_pass_check(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(path)]) == EXIT_OK
    assert capsys.readouterr().out.startswith("SERVER")


def test_check_lists_the_six_servers_with_the_missing_secrets_as_reasons(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["check"]) == EXIT_OK
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert list(rows) == ["github", "playwright", "ssh", "qdrant", "neo4j", "e2b"]
    assert "disabled: missing secret GITHUB_PERSONAL_ACCESS_TOKEN" in rows["github"]
    assert "disabled: ${NEO4J_URI} is not set" in rows["neo4j"]
    assert rows["playwright"].split()[1:3] == ["docker", "build"]
    assert "cpu 1, mem 1Gi, pids 512" in rows["playwright"]
    assert rows["e2b"].endswith("enabled")


def test_secret_present_enables_its_server(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_PERSONAL_ACCESS_TOKEN", "ghp_example")
    assert main(["check", "-c", str(ROOT / "gateway.yml")]) == EXIT_OK
    out = capsys.readouterr().out
    github = next(line for line in out.splitlines() if line.startswith("github"))
    assert github.endswith("enabled")
    assert "ghp_example" not in out


def test_config_path_comes_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "alt.yml").write_text("servers:\n  only: {image: x}\n")
    monkeypatch.setenv("CUA_GATEWAY_CONFIG", str(tmp_path / "alt.yml"))
    assert main(["check"]) == EXIT_OK
    assert "only" in capsys.readouterr().out


def test_misspelt_key_exits_non_zero_with_location_and_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.yml"
    path.write_text("servers:\n  gh:\n    image: x\n    replicaz: 2\n")
    assert main(["check", "-c", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert (
        f"{path}:4:5: servers.gh.replicaz: unknown key 'replicaz'; did you mean 'replicas'?" in err
    )
    assert "1 problem in" in err
    assert "Traceback" not in err


def test_missing_config_file_exits_with_its_own_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "-c", str(tmp_path / "nope.yml")]) == EXIT_NO_INPUT
    assert "nope.yml" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as raised:
        main(["frobnicate"])
    assert raised.value.code == EXIT_USAGE


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--version"])
    assert raised.value.code == EXIT_OK
    assert capsys.readouterr().out.strip() == f"cua-gateway {__version__}"


def _schema(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["schema"]) == EXIT_OK
    schema: dict[str, object] = json.loads(capsys.readouterr().out)
    return schema


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configurations_validate_against_the_printed_schema(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = YAML(typ="safe", pure=True).load(path.read_text())
    jsonschema.validate(document, _schema(capsys))


def test_schema_rejects_what_check_rejects(capsys: pytest.CaptureFixture[str]) -> None:
    schema = _schema(capsys)
    with pytest.raises(jsonschema.ValidationError, match="replcas"):
        jsonschema.validate({"servers": {"x": {"image": "x", "replcas": 2}}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"cache": {"backend": "memcached"}}, schema)


def test_build_names_an_unknown_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "-c", str(ROOT / "gateway.yml"), "nonexistent"]) == EXIT_USAGE
    assert "no such server: nonexistent" in capsys.readouterr().err
