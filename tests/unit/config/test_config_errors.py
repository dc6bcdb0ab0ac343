"""Malformed project files: every problem says what was expected, what was found, and where."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from trunkline.config import Problem, ProjectFileError, load_project
from trunkline.errors import ConfigError

Problems = Callable[..., list[str]]

DURATION = "a duration such as '7d', '36h' or '500ms'"


def test_unknown_key_with_did_you_mean(problems: Problems) -> None:
    text = """\
    topics:
      orders:
        partitions: 3
        retension: 7d
    """
    assert problems(text) == [
        "unknown key 'retension' at trunkline.yaml:4:5 - did you mean 'retention'?"
    ]


def test_unknown_key_without_close_match_lists_valid_keys(problems: Problems) -> None:
    assert problems("hub:\n  colour: blue\n") == [
        "unknown key 'colour' at trunkline.yaml:2:3 - valid keys here: backend, path, ack"
    ]


def test_unknown_top_level_key(problems: Problems) -> None:
    assert problems("topic:\n  orders: {}\n") == [
        "unknown key 'topic' at trunkline.yaml:1:1 - did you mean 'topics'?"
    ]


def test_bad_integer(problems: Problems) -> None:
    text = """\
    topics:
      orders:
        partitions: three
    """
    assert problems(text) == [
        "expected an integer >= 1 for 'partitions', found 'three' at trunkline.yaml:3:17"
    ]


@pytest.mark.parametrize("value", ["0", "-2", "true", "2.5", "[1]"])
def test_partitions_must_be_a_positive_integer(problems: Problems, value: str) -> None:
    [message] = problems(f"topics:\n  a:\n    partitions: {value}\n")
    assert message.startswith("expected an integer >= 1 for 'partitions', found ")
    assert message.endswith(" at trunkline.yaml:3:17")


def test_bare_number_duration(problems: Problems) -> None:
    assert problems("topics:\n  a:\n    segment_age: 7\n") == [
        f"expected {DURATION} for 'segment_age', found 7 at trunkline.yaml:3:18"
        " - add a unit, e.g. '7d' or '500ms'"
    ]


def test_kafka_style_unlimited(problems: Problems) -> None:
    assert problems("topics:\n  a:\n    retention: -1\n    retention_bytes: -1\n") == [
        f"expected {DURATION}, or 'forever' for 'retention', found -1 at trunkline.yaml:3:16"
        " - use 'forever' for no limit",
        "expected a size such as '1GiB', '512MB' or a number of bytes, or 'unlimited' for "
        "'retention_bytes', found -1 at trunkline.yaml:4:22 - use 'unlimited' for no limit",
    ]


def test_null_is_not_a_duration(problems: Problems) -> None:
    assert problems("topics:\n  a:\n    retention:\n") == [
        f"expected {DURATION}, or 'forever' for 'retention', found null at trunkline.yaml:3:15"
    ]


def test_size_unit_case(problems: Problems) -> None:
    assert problems("topics:\n  a: {segment_bytes: 1gb}\n") == [
        "expected a size such as '1GiB', '512MB' or a number of bytes for 'segment_bytes', "
        "found '1gb' at trunkline.yaml:2:22 - did you mean '1GB'? units are case-sensitive"
    ]


def test_size_below_kafka_minimum(problems: Problems) -> None:
    assert problems("topics:\n  a: {segment_bytes: 100, max_message_bytes: 0}\n") == [
        "expected a size of at least 1KiB for 'segment_bytes', found 100 at trunkline.yaml:2:22",
        "expected a size of at least 1B for 'max_message_bytes', found 0 at trunkline.yaml:2:46",
    ]


def test_choice_with_did_you_mean(problems: Problems) -> None:
    text = """\
    hub:
      ack: fsynch
    topics:
      a:
        cleanup: compat
        compression: gzip
    """
    assert problems(text) == [
        "expected 'fsync' or 'written' for 'ack', found 'fsynch' at trunkline.yaml:2:8"
        " - did you mean 'fsync'?",
        "expected 'delete', 'compact' or 'compact,delete' for 'cleanup', found 'compat'"
        " at trunkline.yaml:5:14 - did you mean 'compact'?",
        "expected 'none', 'lz4' or 'zstd' for 'compression', found 'gzip' at trunkline.yaml:6:18",
    ]


def test_unknown_hub_backend_lists_known_backends(problems: Problems) -> None:
    text = """\
    hub:
      backend: pulsar
      bootstrap: 127.0.0.1:6650
    """
    assert problems(text) == [
        "expected one of 'embedded', 'kafka' for 'backend', found 'pulsar' at trunkline.yaml:2:12"
    ]


def test_hub_backend_typo(problems: Problems) -> None:
    assert problems("hub:\n  backend: embeded\n") == [
        "expected one of 'embedded', 'kafka' for 'backend', found 'embeded' at "
        "trunkline.yaml:2:12 - did you mean 'embedded'?"
    ]


def test_kafka_hub_section(problems: Problems) -> None:
    assert problems('hub: {backend: kafka, bootstrap: "nohost"}\n') == [
        "expected a comma-separated list of host:port, such as '127.0.0.1:9092' for "
        "'bootstrap', found 'nohost' at trunkline.yaml:1:34"
    ]
    assert problems("hub: {backend: kafka}\n") == [
        "missing required key 'bootstrap' in 'hub' at trunkline.yaml:1:1"
    ]
    assert problems('hub: {backend: kafka, bootstrap: "h:1", path: x}\n') == [
        "unknown key 'path' at trunkline.yaml:1:41 - valid keys here: backend, bootstrap, "
        "group_protocol, client_config"
    ]


def test_section_of_the_wrong_shape(problems: Problems) -> None:
    assert problems("hub: embedded\ntopics: [orders]\nflows:\n  f: select 1\n") == [
        "expected a mapping for 'hub', found 'embedded' at trunkline.yaml:1:6",
        "expected a mapping for 'topics', found a list at trunkline.yaml:2:9",
        "expected a mapping for 'f', found 'select 1' at trunkline.yaml:4:6",
    ]


def test_wrong_scalar_types(problems: Problems) -> None:
    text = """\
    hub:
      path: 5
    topics:
      a:
        description: [x]
        tags: [ok, 7]
    flows:
      f:
        sql: select 1
        into: 3
    """
    assert problems(text) == [
        "expected a path for 'path', found 5 at trunkline.yaml:2:9",
        "expected a string for 'description', found a list at trunkline.yaml:5:18",
        "expected a string for 'tags[1]', found 7 at trunkline.yaml:6:16",
        "expected a string for 'into', found 3 at trunkline.yaml:10:11",
    ]


def test_invalid_topic_name(problems: Problems) -> None:
    assert problems("topics:\n  orders: {}\n  'bad name!': {}\n") == [
        "expected a topic name of 1-249 letters, digits, '.', '_' or '-' (not '.' or '..')"
        " as a key of 'topics', found 'bad name!' at trunkline.yaml:3:3"
    ]


def test_missing_and_empty_sql(problems: Problems) -> None:
    text = """\
    flows:
      nightly:
        into: warehouse.report
      blank:
        sql: "  "
      slow:
        sql: select 1
        freshness: soon
    """
    assert problems(text) == [
        "missing required key 'sql' in 'flows.nightly' at trunkline.yaml:2:3",
        "expected a non-empty SQL query for 'sql', found '  ' at trunkline.yaml:5:10",
        f"expected {DURATION} for 'freshness', found 'soon' at trunkline.yaml:8:16",
    ]


@pytest.mark.parametrize(
    ("meta", "found", "hint"),
    [
        ("mysql://u:pw@db/x", "a URL starting with 'mysql://'", ""),
        ("postgres://u:pw@db/x", "a URL starting with 'postgres://'", "write postgresql://"),
        ("sqlite://meta.db", "a URL starting with 'sqlite://'", "write sqlite:///relative"),
        ("u:pw@db/x", "a value that is not a URL", ""),
        ("sqlite:meta.db", "a value that is not a URL", ""),
    ],
)
def test_bad_meta_url_never_shows_the_url(
    problems: Problems, meta: str, found: str, hint: str
) -> None:
    [message] = problems(f"meta: {meta}\n")
    assert message.startswith(
        "expected a SQLAlchemy URL starting with 'sqlite:///', 'postgresql://' or "
        f"'postgresql+psycopg://' for 'meta', found {found} at trunkline.yaml:1:7"
    )
    assert hint in message
    assert "pw" not in message
    assert meta not in message


def test_all_problems_are_reported_together_in_file_order(problems: Problems) -> None:
    text = """\
    bogus: 1
    topics:
      a:
        partitions: 0
        retention: 7
      b: {cleanup: nope}
    flows:
      f: {}
    """
    found = problems(text)
    assert [line.split(" at trunkline.yaml:")[1].split(" ")[0] for line in found] == [
        "1:1",
        "4:17",
        "5:16",
        "6:16",
        "8:3",
    ]


def test_problems_are_data(load: Callable[..., object]) -> None:
    with pytest.raises(ProjectFileError) as caught:
        load("topics:\n  a: {partitions: x}\n")
    assert caught.value.problems == (
        Problem(
            Path("trunkline.yaml"), 2, 19, "expected an integer >= 1 for 'partitions', found 'x'"
        ),
    )
    assert isinstance(caught.value, ConfigError)


def test_no_pydantic_wording_reaches_users(problems: Problems) -> None:
    text = """\
    hub: {path: [1], ack: 3}
    meta: 5
    topics:
      a: {partitions: x, retention: [1], tags: {a: 1}, owner: {}, cleanup: 5}
      b: 7
    sources: [1]
    flows:
      f: {sql: 5, freshness: true, zz: 1}
    """
    for message in problems(text):
        assert "Input should" not in message
        assert "input_value" not in message
        assert "pydantic" not in message
        assert "errors.pydantic.dev" not in message
        assert " at trunkline.yaml:" in message


# -- the file itself ----------------------------------------------------------------------


def test_duplicate_keys(problems: Problems) -> None:
    text = """\
    topics:
      orders:
        partitions: 3
        partitions: 4
      orders: {}
    """
    assert problems(text) == [
        "duplicate key 'partitions' at trunkline.yaml:4:5 - it is also defined at line 3;"
        " a key may appear once per mapping",
        "duplicate key 'orders' at trunkline.yaml:5:3 - it is also defined at line 2;"
        " a key may appear once per mapping",
    ]


def test_yaml_syntax_error_has_a_position(problems: Problems) -> None:
    text = """\
    topics:
      orders:
        partitions: 3
       retention: 7d
    """
    [message] = problems(text)
    assert message.startswith("invalid YAML: ")
    assert " at trunkline.yaml:4:4" in message


def test_unclosed_flow_mapping(problems: Problems) -> None:
    assert problems("topics: {orders: {partitions: 3}\n") == [
        "invalid YAML: expected ',' or '}', but got '<stream end>' at trunkline.yaml:2:1"
        " - while parsing a flow mapping at line 1"
    ]


def test_tab_indentation(problems: Problems) -> None:
    [message] = problems("topics:\n\torders: {}\n")
    assert message.startswith("invalid YAML: found character '\\t' that cannot start any token")
    assert "trunkline.yaml:2:1" in message


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "~\n"])
def test_empty_file(problems: Problems, text: str) -> None:
    assert problems(text) == [
        "the project file is empty at trunkline.yaml - expected a mapping with keys such as"
        " 'hub', 'meta' and 'topics'; 'trunkline init' writes a starter file"
    ]


@pytest.mark.parametrize(("text", "found"), [("- a\n- b\n", "a list"), ("hello\n", "'hello'")])
def test_top_level_must_be_a_mapping(problems: Problems, text: str, found: str) -> None:
    assert problems(text) == [
        f"expected a mapping at the top of the file, found {found} at trunkline.yaml:1:1"
        " - the top level holds keys such as 'hub', 'meta' and 'topics'"
    ]


def test_several_documents(problems: Problems) -> None:
    [message] = problems("topics: {}\n---\ntopics: {}\n")
    assert message.startswith("invalid YAML: ")
    assert "trunkline.yaml:2:1" in message


def test_unsafe_and_unknown_tags(problems: Problems) -> None:
    assert problems("meta: !!python/name:os.system\ntopics: !custom {}\n") == [
        "invalid YAML: could not determine a constructor for the tag"
        " 'tag:yaml.org,2002:python/name:os.system' at trunkline.yaml:1:7",
        "unsupported YAML tag '!custom' at trunkline.yaml:2:9",
    ]


def test_recursive_alias(problems: Problems) -> None:
    [message] = problems("topics: &t {a: *t}\n")
    assert message.startswith("a YAML alias refers to a node that contains it")


def test_missing_file(project: Path) -> None:
    with pytest.raises(ProjectFileError) as caught:
        load_project(".", env={})
    assert str(caught.value) == (
        "project file not found at trunkline.yaml - 'trunkline init' writes a starter project"
    )


def test_missing_directory(project: Path) -> None:
    with pytest.raises(ProjectFileError, match=r"not found at nowhere/trunkline\.yaml"):
        load_project("nowhere", env={})


def test_missing_named_file(project: Path) -> None:
    with pytest.raises(ProjectFileError) as caught:
        load_project("other.yaml", env={})
    assert str(caught.value) == "project file not found at other.yaml"


def test_file_that_is_not_utf8(project: Path) -> None:
    (project / "trunkline.yaml").write_bytes(b"topics: {}\n# \xff\xfe\n")
    with pytest.raises(ProjectFileError, match="not UTF-8 text"):
        load_project(project, env={})
