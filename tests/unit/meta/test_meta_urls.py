"""Store URLs, secrets in locations and options, and how database errors reach the caller."""

from __future__ import annotations

import socket
import traceback

import pytest

from trunkline.errors import ConfigError, MetaError, MetaUnavailable, MissingDependency
from trunkline.meta import MetaStore, _engine, _validation


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///meta.db", "sqlite"),
        ("sqlite+pysqlite:///meta.db", "sqlite"),
        ("sqlite://", "sqlite"),
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
    ],
)
def test_supported_urls(url: str, driver: str) -> None:
    assert _engine.parse_url(url).url.drivername == driver


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root:hunter2@db/meta",
        "postgresql+psycopg2://root:hunter2@db/meta",
        "not a url :hunter2@",
        "meta.db",
    ],
)
def test_unsupported_urls_are_config_errors_without_password(url: str) -> None:
    with pytest.raises(ConfigError, match=r"sqlite:///path/to/meta\.db") as info:
        MetaStore.open(url)
    assert "hunter2" not in str(info.value)


def test_postgres_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _engine.importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "psycopg" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_engine.importlib.util, "find_spec", find_spec)
    with pytest.raises(MissingDependency, match=r"pip install 'trunkline\[postgres\]'"):
        MetaStore.open("postgresql://u@h/db")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_unreachable_postgres_error_hides_the_password() -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://admin:hunter2@127.0.0.1:{_closed_port()}/meta?connect_timeout=3"
    with pytest.raises(MetaUnavailable) as info:
        MetaStore.open(url)
    error = info.value
    assert error.retryable
    assert "postgresql+psycopg://admin:***@127.0.0.1" in str(error)
    everything = "".join(traceback.format_exception(error))
    assert "hunter2" not in everything, "not in the message, nor in the chained driver error"


def test_translate_masks_a_password_echoed_by_a_driver() -> None:
    target = _engine.parse_url("sqlite:///x.db").url.set(password="hunter2")
    error = _engine.translate(RuntimeError("login hunter2 refused"), _engine.StoreUrl(target))
    assert isinstance(error, MetaError) and "hunter2" not in str(error)


@pytest.mark.parametrize(
    ("location", "stored"),
    [
        ("postgresql://app:s3cret@db:5432/shop", "postgresql://app@db:5432/shop"),
        ("postgresql://:s3cret@db/shop", "postgresql://@db/shop"),
        ("postgresql://app@db/shop?sslmode=require&password=s3cret", None),
        ("host=db user=app password='s3 cret' dbname=shop", "host=db user=app dbname=shop"),
        ("host=db password=s3cret", "host=db"),
        ("https://api.example/v1?token=s3cret&page=2", "https://api.example/v1?page=2"),
    ],
)
def test_secrets_are_stripped_from_locations(location: str, stored: str | None) -> None:
    cleaned, removed = _validation.location(location)
    assert removed and "s3" not in cleaned
    if stored is not None:
        assert cleaned == stored
    else:
        assert cleaned == "postgresql://app@db/shop?sslmode=require"


@pytest.mark.parametrize(
    "location", ["/data/lake", "127.0.0.1:9092", "postgresql://app@db/shop", "host=db  port=5"]
)
def test_plain_locations_are_kept_as_given(location: str) -> None:
    assert _validation.location(location) == (location, False)


def test_options_must_be_plain_json() -> None:
    assert _validation.options("s", {"a": (1, 2)}) == {"a": [1, 2]}
    with pytest.raises(ConfigError, match="not plain JSON"):
        _validation.options("s", {"a": object()})
    with pytest.raises(ConfigError, match=r"secret under 'hosts\[0\].Token'"):
        _validation.options("s", {"hosts": [{"Token": "x"}]})
