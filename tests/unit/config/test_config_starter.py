"""The starter project written by `trunkline init`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from trunkline.config import FlowSpec, load_project, write_starter
from trunkline.errors import ConfigError
from trunkline.hub import CleanupPolicy


def test_starter_loads(tmp_path: Path) -> None:
    written = write_starter(tmp_path)
    assert written == tmp_path / "trunkline.yaml"
    config = load_project(tmp_path, env={})
    assert set(config.topics) == {"orders", "customers"}
    assert config.topics["orders"].partitions == 3
    assert config.topics["customers"].cleanup is CleanupPolicy.COMPACT
    assert config.topics["customers"].retention is None
    assert config.hub_path() == tmp_path.resolve() / ".trunkline" / "hub"
    assert (config.sources, config.sinks, config.flows) == ({}, {}, {})


def test_starter_explains_every_key_it_uses(tmp_path: Path) -> None:
    text = write_starter(tmp_path).read_text()
    for line in text.splitlines():
        if re.match(r"^\s+\w+: \S", line) and not line.lstrip().startswith("#"):
            assert "#" in line or line.strip().startswith(("description:", "owner:", "tags:")), (
                f"no comment on {line!r}"
            )


def test_commented_flow_example_is_valid(tmp_path: Path) -> None:
    # The example arrives commented out; once uncommented it must validate.
    text = write_starter(tmp_path).read_text()
    block = text[text.index("# flows:") :]
    uncommented = "\n".join(line.removeprefix("# ") for line in block.splitlines())
    flows = yaml.safe_load(uncommented)["flows"]
    assert FlowSpec.model_validate(flows["revenue_by_hour"]).freshness == 60_000


def test_gitignore_is_written(tmp_path: Path) -> None:
    write_starter(tmp_path)
    assert ".trunkline/" in (tmp_path / ".gitignore").read_text().splitlines()


def test_existing_gitignore_is_extended_once(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.pyc")
    write_starter(tmp_path)
    assert (tmp_path / ".gitignore").read_text().splitlines() == [
        "*.pyc",
        "# trunkline's local state (hub log, metadata)",
        ".trunkline/",
    ]
    (tmp_path / "trunkline.yaml").unlink()
    write_starter(tmp_path)
    assert (tmp_path / ".gitignore").read_text().count(".trunkline/") == 1


def test_creates_the_directory(tmp_path: Path) -> None:
    assert write_starter(tmp_path / "new" / "shop").exists()


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "trunkline.yaml").write_text("topics: {mine: {}}\n")
    with pytest.raises(ConfigError, match=r"trunkline\.yaml exists already") as caught:
        write_starter(tmp_path)
    assert str(tmp_path / "trunkline.yaml") in str(caught.value)
    assert (tmp_path / "trunkline.yaml").read_text() == "topics: {mine: {}}\n"
    assert not (tmp_path / ".gitignore").exists()
