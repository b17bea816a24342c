from pathlib import Path

import pytest

from cua_gateway.config import load_config
from cua_gateway.errors import ConfigError, ConfigFileError
from tests.config.conftest import Load


def problems_of(load: Load, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load(text, env)
    return [str(p).split("gateway.yml:", 1)[1] for p in raised.value.problems]


def test_empty_file_gives_the_embedded_defaults(load: Load) -> None:
    loaded = load("")
    config = loaded.config
    assert config.gateway.port == 8080
    assert config.gateway.host == "127.0.0.1"
    assert config.cache.backend == "memory"
    assert config.cache.ttl.session == 3600
    assert config.cache.ttl.plan == 300
    assert config.cache.prefixes.artifact == "artf:"
    assert config.memory.qdrant.path == str(loaded.path.parent / ".cua/memory/qdrant")
    assert config.memory.neo4j is None
    assert config.llm.model is None
    assert config.servers == {}


def test_each_way_of_starting_a_server_picks_its_runtime(load: Load) -> None:
    loaded = load(
        """
        servers:
          box: {image: "debian:12"}
          local: {command: npx, args: [-y, some-mcp]}
          far: {url: "https://mcp.example.com/mcp", transport: sse}
        """
    )
    servers = loaded.config.servers
    assert servers["box"].runtime == "docker"
    assert servers["box"].effective_transport == "stdio"
    assert servers["local"].runtime == "process"
    assert servers["local"].args == ["-y", "some-mcp"]
    assert servers["far"].runtime == "remote"
    assert servers["far"].effective_transport == "sse"


def test_container_settings_are_parsed_to_numbers(load: Load, tmp_path: Path) -> None:
    (tmp_path / "servers" / "x").mkdir(parents=True)
    loaded = load(
        """
        servers:
          x:
            build: servers/x
            replicas: 3
            weights: [3, 1, 1]
            resources: {cpu: 500m, memory: 512Mi, pids: 64}
            volumes: ["./data:/data:rw", "cache:/cache"]
            restart: always
            prefix: ex
            timeout: 90s
        """
    )
    x = loaded.config.servers["x"]
    assert x.build is not None
    assert x.build.context == str(tmp_path / "servers" / "x")
    assert (x.resources.cpu, x.resources.memory, x.resources.pids) == (0.5, 512 * 2**20, 64)
    assert [(v.source, v.target, v.read_only) for v in x.volumes] == [
        (str(tmp_path / "data"), "/data", False),
        ("cache", "/cache", True),
    ]
    assert x.restart.policy == "always"
    assert x.prefix.name == "ex"
    assert x.timeout == 90


def test_out_of_range_value_names_line_column_path_and_bound(load: Load) -> None:
    text = """
    servers:
      github:
        image: ghcr.io/github/github-mcp-server
        replicas: 0
    """
    assert problems_of(load, text) == ["5:15: servers.github.replicas: must be >= 1 (got 0)"]


def test_misspelt_key_suggests_the_nearest_valid_key(load: Load) -> None:
    text = """
    gateway:
      helth_check_interval: 10s
    """
    assert problems_of(load, text) == [
        "3:3: gateway.helth_check_interval: unknown key 'helth_check_interval';"
        " did you mean 'health_check_interval'?"
    ]


def test_misspelt_key_deep_inside_a_server_is_located(load: Load) -> None:
    text = """
    servers:
      pw:
        image: pw
        resources:
          memroy: 1Gi
    """
    assert problems_of(load, text) == [
        "6:7: servers.pw.resources.memroy: unknown key 'memroy'; did you mean 'memory'?"
    ]


def test_unknown_section_lists_the_valid_ones_when_nothing_is_close(load: Load) -> None:
    [problem] = problems_of(load, "zzz: 1\n")
    assert problem.startswith("1:1: zzz: unknown key 'zzz'; valid keys: auth, cache, gateway")


def test_every_problem_is_reported_at_once_in_file_order(load: Load) -> None:
    text = """
    gateway:
      port: 99999
      routing: {strategy: random}
    cache: {backend: redis}
    """
    assert problems_of(load, text) == [
        "3:9: gateway.port: must be <= 65535 (got 99999)",
        "4:23: gateway.routing.strategy: must be one of 'round_robin', 'least_connections'"
        " or 'weighted' (got 'random')",
        "5:8: cache: backend redis needs url, e.g. redis://127.0.0.1:6379/0",
    ]


def test_server_needs_exactly_one_way_to_start(load: Load) -> None:
    assert problems_of(load, "servers:\n  x: {replicas: 2}\n") == [
        "2:6: servers.x: needs exactly one of image/build, command or url (got none of them)"
    ]
    assert problems_of(load, "servers:\n  x: {command: a, url: 'http://h'}\n") == [
        "2:6: servers.x: needs exactly one of image/build, command or url (got command and url)"
    ]


def test_container_only_settings_are_refused_elsewhere(load: Load) -> None:
    [problem] = problems_of(load, "servers:\n  x: {command: a, volumes: ['/a:/b']}\n")
    assert "volumes applies only to docker servers" in problem


def test_missing_build_context_is_located(load: Load) -> None:
    [problem] = problems_of(load, "servers:\n  x:\n    build: servers/nope\n")
    assert problem.startswith("3:12: servers.x.build.context: build context")
    assert "is not a directory" in problem


def test_invalid_server_name_is_explained(load: Load) -> None:
    [problem] = problems_of(load, "servers:\n  'my server': {image: x}\n")
    assert problem.startswith("2:3: servers.my server: must be a name of letters, digits")


def test_bad_volume_shorthand_is_explained(load: Load) -> None:
    [problem] = problems_of(load, "servers:\n  x:\n    image: x\n    volumes: [nocolon]\n")
    assert problem.startswith('4:15: servers.x.volumes[0]: must be "SOURCE:TARGET"')


def test_wrong_type_is_explained(load: Load) -> None:
    assert problems_of(load, "servers:\n  x: {image: x, replicas: many}\n") == [
        "2:27: servers.x.replicas: must be a whole number (got 'many')"
    ]
    assert problems_of(load, "servers: [a, b]\n") == [
        "1:10: servers: must be a mapping of keys to values (got ['a', 'b'])"
    ]


def test_yaml_syntax_error_is_located(load: Load) -> None:
    [problem] = problems_of(load, "gateway:\n  port: [8080\nservers: {}\n")
    assert problem.startswith("3:8:")


def test_duplicate_key_is_an_error(load: Load) -> None:
    [problem] = problems_of(load, "gateway: {}\ngateway: {}\n")
    assert "duplicate key" in problem


def test_unsupported_version_is_refused(load: Load) -> None:
    assert problems_of(load, "gateway: {version: '2'}\n") == [
        "1:20: gateway.version: must be one of 1, 1.0 (got '2')"
    ]


def test_interpolated_values_are_validated_like_written_ones(load: Load) -> None:
    loaded = load(
        "gateway: {port: '${PORT:-9000}'}\nservers:\n  x: {image: x, replicas: '${N}'}\n",
        {"N": "3"},
    )
    assert loaded.config.gateway.port == 9000
    assert loaded.config.servers["x"].replicas == 3


def test_missing_variable_outside_servers_is_an_error(load: Load) -> None:
    assert problems_of(load, "cache: {backend: redis, url: '${REDIS_URL}'}\n") == [
        "1:30: cache.url: ${REDIS_URL} is not set (nor REDIS_URL_FILE)"
    ]


def test_missing_variable_disables_only_its_server(load: Load) -> None:
    loaded = load(
        """
        servers:
          graph:
            image: g
            environment: {NEO4J_URI: "${NEO4J_URI}"}
          other: {image: o}
        """
    )
    assert set(loaded.enabled) == {"other"}
    assert loaded.disabled["graph"] == (
        f"${{NEO4J_URI}} is not set (nor NEO4J_URI_FILE) ({loaded.path}:5:30)"
    )


def test_server_made_invalid_by_a_missing_variable_is_left_out_not_fatal(load: Load) -> None:
    loaded = load("servers:\n  far: {url: '${REMOTE_URL}'}\n  near: {image: n}\n")
    assert "far" not in loaded.config.servers
    assert "REMOTE_URL" in loaded.disabled["far"]
    assert set(loaded.enabled) == {"near"}


def test_missing_secret_disables_the_server_with_the_reason(load: Load) -> None:
    loaded = load("servers:\n  github: {image: gh, secrets: [GITHUB_TOKEN]}\n")
    assert loaded.disabled == {"github": "missing secret GITHUB_TOKEN (or GITHUB_TOKEN_FILE)"}


def test_secret_is_read_from_the_environment(load: Load) -> None:
    loaded = load(
        "servers:\n  github: {image: gh, secrets: [GITHUB_TOKEN]}\n", {"GITHUB_TOKEN": "t0k"}
    )
    assert loaded.disabled == {}
    assert loaded.secrets["github"]["GITHUB_TOKEN"].get_secret_value() == "t0k"


def test_secret_is_read_from_its_file(load: Load, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    loaded = load(
        "servers:\n  github: {image: gh, secrets: [GITHUB_TOKEN]}\n",
        {"GITHUB_TOKEN_FILE": str(tmp_path / "token")},
    )
    assert loaded.secrets["github"]["GITHUB_TOKEN"].get_secret_value() == "from-file"


def test_secret_may_come_from_a_differently_named_variable(load: Load) -> None:
    text = "servers:\n  g: {image: g, secrets: [{name: GITHUB_TOKEN, env: GH_PAT}]}\n"
    loaded = load(text, {"GH_PAT": "p"})
    assert loaded.secrets["g"]["GITHUB_TOKEN"].get_secret_value() == "p"


def test_optional_secret_does_not_disable(load: Load) -> None:
    loaded = load("servers:\n  e2b: {image: e, secrets: [{name: E2B_API_KEY, required: false}]}\n")
    assert loaded.disabled == {}
    assert loaded.secrets["e2b"] == {}


def test_secret_values_never_show_in_the_config_repr(load: Load) -> None:
    loaded = load("auth: {bearer_tokens: ['${TOKEN}']}\n", {"TOKEN": "hunter2"})
    assert "hunter2" not in repr(loaded.config)
    assert loaded.config.auth.bearer_tokens[0].get_secret_value() == "hunter2"


def test_empty_token_from_an_unset_variable_means_no_token(load: Load) -> None:
    assert load("auth: {bearer_tokens: ['${TOKEN:-}']}\n").config.auth.bearer_tokens == []


def test_explicitly_disabled_server_says_so(load: Load) -> None:
    assert load("servers:\n  x: {image: x, enabled: false}\n").disabled == {"x": "enabled: false"}


def test_missing_file_is_its_own_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="No such file"):
        load_config(tmp_path / "absent.yml", {})


def test_two_servers_under_one_prefix_is_a_load_time_error(load: Load) -> None:
    [problem] = problems_of(
        load, "servers:\n  a: {image: a, prefix: shared}\n  b: {image: b, prefix: shared}\n"
    )
    assert "servers a and b both use the prefix 'shared'" in problem
