"""``${VAR}`` substitution: values, defaults, escapes, errors, and secrets that never leak."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from trunkline.config import ConfigModel, ProjectConfig, load_project

Load = Callable[..., ProjectConfig]
Problems = Callable[..., list[str]]


def test_variables_are_substituted(load: Load) -> None:
    config = load(
        """\
        meta: postgresql://app:${DB_PASSWORD}@${DB_HOST}/trunkline
        topics:
          orders:
            partitions: ${PARTITIONS}
            retention: ${RETENTION}
            owner: team-${TEAM}
            tags: ["${TAG}", plain]
        """,
        env={
            "DB_PASSWORD": "s3cret",
            "DB_HOST": "db.internal",
            "PARTITIONS": "6",
            "RETENTION": "3d",
            "TEAM": "shop",
            "TAG": "sales",
        },
    )
    assert config.meta_url() == "postgresql://app:s3cret@db.internal/trunkline"
    orders = config.topics["orders"]
    assert (orders.partitions, orders.retention) == (6, 3 * 86_400_000)
    assert orders.owner == "team-shop"
    assert orders.tags == ("sales", "plain")
    assert type(orders.owner) is str  # the marker class stays inside validation


def test_defaults_and_escapes(load: Load) -> None:
    config = load(
        """\
        hub:
          path: ${HUB_DIR:-state/hub}
        topics:
          a:
            description: costs $${PRICE} and $5, ${EMPTY:-n/a} ${SET_EMPTY}
            owner: ${OWNER:-}
        """,
        env={"SET_EMPTY": ""},
    )
    assert config.hub.path == Path("state/hub")
    assert config.topics["a"].description == "costs ${PRICE} and $5, n/a "
    assert config.topics["a"].owner == ""


def test_default_is_not_used_when_set(load: Load) -> None:
    config = load("hub:\n  path: ${HUB_DIR:-state/hub}\n", env={"HUB_DIR": "/data/hub"})
    assert config.hub_path() == Path("/data/hub")


def test_keys_are_not_substituted(problems: Problems) -> None:
    assert problems("topics:\n  ${NAME}: {}\n", env={"NAME": "orders"}) == [
        "expected a topic name of 1-249 letters, digits, '.', '_' or '-' (not '.' or '..')"
        " as a key of 'topics', found '${NAME}' at trunkline.yaml:2:3"
    ]


def test_missing_variable(problems: Problems) -> None:
    text = """\
    topics:
      orders:
        partitions: ${PARTITIONS}
        owner: ${OWNER}
    """
    assert problems(text, env={"OWNER": "shop"}) == [
        "environment variable 'PARTITIONS' is not set at trunkline.yaml:3:17"
        " - set it, or give a default with ${PARTITIONS:-default}"
    ]


def test_several_missing_variables_in_one_value(problems: Problems) -> None:
    assert problems("meta: postgresql://${USER}:${PW}@db/x\n") == [
        "environment variable 'PW' is not set at trunkline.yaml:1:7"
        " - set it, or give a default with ${PW:-default}",
        "environment variable 'USER' is not set at trunkline.yaml:1:7"
        " - set it, or give a default with ${USER:-default}",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("'${NAME'", "unclosed variable reference '${'"),
        ("'${1ABC}'", "invalid variable reference '${1ABC}'"),
        ("'${}'", "invalid variable reference '${}'"),
    ],
)
def test_malformed_references(problems: Problems, value: str, message: str) -> None:
    [found] = problems(f"topics:\n  a:\n    owner: {value}\n")
    assert found.startswith(f"{message} at trunkline.yaml:3:12 - ")


def test_env_defaults_to_the_process_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRUNKLINE_TEST_PARTITIONS", "5")
    (project / "trunkline.yaml").write_text(
        "topics:\n  a:\n    partitions: ${TRUNKLINE_TEST_PARTITIONS}\n"
    )
    assert load_project(project).topics["a"].partitions == 5


# -- secrets ------------------------------------------------------------------------------


def test_invalid_substituted_value_is_not_shown(problems: Problems) -> None:
    assert problems("topics:\n  a:\n    partitions: ${P}\n", env={"P": "secret-abc"}) == [
        "expected an integer >= 1 for 'partitions', found the value of ${P} (hidden)"
        " at trunkline.yaml:3:17"
    ]


@pytest.mark.parametrize(
    "text",
    [
        "topics:\n  a:\n    retention: ${P}\n",
        "topics:\n  a:\n    retention_bytes: ${P}\n",
        "topics:\n  a:\n    cleanup: ${P}\n",
        "topics:\n  a:\n    tags: ${P}\n",
        "hub:\n  backend: ${P}\n",
        "hub:\n  ack: ${P}\n",
        "meta: ${P}\n",
        "meta: postgres://${P}@db/x\n",
        "flows:\n  f:\n    sql: select 1\n    freshness: ${P}\n",
        "sources:\n  s:\n    type: ${P}\n",
    ],
)
def test_secrets_never_appear_in_errors(problems: Problems, text: str) -> None:
    # Some are close to valid values, so that a "did you mean" would repeat them.
    for secret in ("secret-abc", "9D", "9gb", "fsyncc", "embeddedd"):
        found = problems(text, env={"P": secret})
        assert found, text
        assert all(secret not in line for line in found), found
        assert all(secret.lower() not in line.lower() for line in found), found


def test_secrets_never_appear_in_reprs(load: Load) -> None:
    config = load(
        """\
        meta: postgresql://app:${DB_PASSWORD}@db/x
        topics:
          a:
            description: ${DESCRIPTION}
            tags: [public, "${TAG}"]
            partitions: 2
        flows:
          f:
            sql: select * from a where token = '${TOKEN}'
        """,
        env={"DB_PASSWORD": "pw-1", "DESCRIPTION": "desc-2", "TAG": "tag-3", "TOKEN": "tok-4"},
    )
    shown = repr(config) + str(config) + repr(config.topics["a"]) + repr(config.flows["f"])
    for secret in ("pw-1", "desc-2", "tag-3", "tok-4"):
        assert secret not in shown
    assert "<hidden: from ${DESCRIPTION}>" in repr(config.topics["a"])
    assert "partitions=2" in repr(config.topics["a"])  # only values from ${VAR} are hidden
    assert config.topics["a"].description == "desc-2"


def test_plugin_messages_with_secrets_are_hidden(
    problems: Problems, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import field_validator

    from trunkline import connectors
    from trunkline.plugins import Registry

    class Leaky:
        class Config(ConfigModel):
            dsn: str

            @field_validator("dsn")
            @classmethod
            def _check(cls, value: str) -> str:
                raise ValueError(f"cannot reach {value}")

    registry: Registry[type[object]] = Registry("source")
    registry.register("leaky", Leaky)
    monkeypatch.setattr(connectors, "SOURCES", registry)
    text = "sources:\n  s:\n    type: leaky\n    dsn: ${DSN}\n"
    assert problems(text, env={"DSN": "postgresql://u:hunter2@db"}) == [
        "invalid value for 'dsn': the reason is hidden because it would show a value from the"
        " environment at trunkline.yaml:4:10"
    ]
    assert problems("sources:\n  s:\n    type: leaky\n    dsn: plain\n") == [
        "invalid value for 'dsn': cannot reach plain at trunkline.yaml:4:10"
    ]
