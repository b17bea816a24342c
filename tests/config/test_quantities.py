import pytest

from cua_gateway.config.quantities import format_bytes, parse_bytes, parse_cpu, parse_duration


@pytest.mark.parametrize(
    ("written", "cores"), [("500m", 0.5), ("2", 2.0), (2, 2.0), (0.25, 0.25), ("1500m", 1.5)]
)
def test_cpu_quantities_parse_to_cores(written: object, cores: float) -> None:
    assert parse_cpu(written) == cores


@pytest.mark.parametrize(
    ("written", "size"),
    [
        ("512Mi", 512 * 2**20),
        ("2Gi", 2 * 2**30),
        ("1G", 10**9),
        ("128k", 128_000),
        (1048576, 1048576),
        ("1.5Gi", int(1.5 * 2**30)),
    ],
)
def test_memory_quantities_parse_to_bytes(written: object, size: int) -> None:
    assert parse_bytes(written) == size


@pytest.mark.parametrize(
    ("written", "seconds"),
    [(30, 30.0), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("500ms", 0.5), ("1h30m", 5400.0)],
)
def test_durations_parse_to_seconds(written: object, seconds: float) -> None:
    assert parse_duration(written) == seconds


def test_docker_style_memory_suffix_is_refused_with_the_kubernetes_spelling() -> None:
    with pytest.raises(ValueError, match='did you mean "512Mi"'):
        parse_bytes("512m")


@pytest.mark.parametrize("written", ["lots", "-1", "0", "1.2.3", True])
def test_nonsense_cpu_is_refused(written: object) -> None:
    with pytest.raises(ValueError, match="cores"):
        parse_cpu(written)


@pytest.mark.parametrize("written", ["soon", "5 minutes", "1x", "-5s"])
def test_nonsense_duration_is_refused(written: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(written)


def test_bytes_are_shown_in_their_shortest_exact_form() -> None:
    assert format_bytes(512 * 2**20) == "512Mi"
    assert format_bytes(2 * 2**30) == "2Gi"
    assert format_bytes(1000) == "1000"
