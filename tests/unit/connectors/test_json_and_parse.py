"""JSON values both ways, and chunks of CSV / JSON lines with their bad lines set aside."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.json as pj
import pytest

from trunkline.connectors._json import JsonEncoder, decode_json
from trunkline.connectors._sql import qualified, quote_identifier, quote_literal
from trunkline.connectors.sources._parse import CsvFormat, parse_csv, parse_jsonl
from trunkline.errors import ConfigError


def test_quoting() -> None:
    assert quote_identifier('we"ird name') == '"we""ird name"'
    assert quote_literal("it's") == "'it''s'"
    assert qualified("main", "a.b") == '"main"."a.b"'
    with pytest.raises(ConfigError):
        quote_identifier("nul\x00")
    with pytest.raises(ConfigError):
        quote_identifier("")


def test_encode_keys_timestamps_and_odd_names() -> None:
    rows = pa.table(
        {
            'a "b"': [1, 2],
            "c": ["x", "y"],
            "ts": pa.array([1_000, 2_000], pa.timestamp("ms", tz="UTC")),
            "f": [1.5, float("nan")],
        }
    )
    single = JsonEncoder(key=("c",), timestamp="ts").encode(rows)
    assert single.column("key").to_pylist() == [b"x", b"y"]
    assert single.column("timestamp").to_pylist() == [1_000, 2_000]
    first = json.loads(single.column("value")[0].as_py())
    assert first['a "b"'] == 1 and first["f"] == 1.5
    assert json.loads(single.column("value")[1].as_py())["f"] is None  # NaN is not JSON
    several = JsonEncoder(key=('a "b"', "c")).encode(rows)
    assert json.loads(several.column("key")[0].as_py()) == {'a "b"': 1, "c": "x"}
    # A key column a row set does not have gives null keys, not an error.
    assert JsonEncoder(key=("zz",)).encode(rows).column("key").null_count == 2


def test_decode_skips_tombstones_and_isolates_bad_values() -> None:
    values = [b'{"a": 1}', None, b"", b"nope", b'{"a": 2}', b'{\n  "a": 3\n}', b"[1]"]
    out = decode_json(pa.array(values, pa.binary()))
    assert out.table.column("a").to_pylist() == [1, 2, 3]
    assert out.rows.tolist() == [0, 4, 5]
    assert [row for row, _ in out.bad] == [2, 3, 6]
    assert all(error for _, error in out.bad)


def test_decode_type_conflicts_keep_text_and_timestamps_are_promoted() -> None:
    out = decode_json(pa.array([b'{"a": 1, "t": "2026-01-01 10:00:00.5+00"}', b'{"a": "x"}']))
    assert out.table.column("a").to_pylist() == ["1", "x"]
    assert pa.types.is_timestamp(out.table.schema.field("t").type)
    assert out.table.schema.field("t").type.tz == "UTC"


def test_decode_large_batch_uses_the_fast_path() -> None:
    values = pa.array([json.dumps({"i": i, "s": "v" * (i % 7)}).encode() for i in range(20_000)])
    out = decode_json(values)
    assert out.table.num_rows == 20_000 and not out.bad
    assert out.table.column("i").to_pylist()[-1] == 19_999


def test_decode_a_batch_of_a_few_mb_in_blocks_as_in_one() -> None:
    # ~3 MB: integers that later turn decimal, a field that only shows up at the end, objects.
    values = [
        json.dumps({"i": i, "a": i if i < 15_000 else i + 0.5, "o": {"k": i}, "s": "x" * 100})
        for i in range(20_000)
    ]
    values[-1] = json.dumps({"i": 19_999, "late": True})
    out = decode_json(pa.array([v.encode() for v in values]))
    whole = pj.read_json(
        io.BytesIO("\n".join(values).encode()), read_options=pj.ReadOptions(block_size=64 << 20)
    )
    # Parsed in several blocks (on several cores), to the same types and values as in one.
    assert out.table.column("i").num_chunks > 1
    assert out.table.schema == whole.schema
    assert out.table.to_pylist() == whole.to_pylist()
    assert out.table.column("a").type == pa.float64() and not out.bad


@pytest.mark.parametrize("large", [3 << 20, 17 << 20])
def test_decode_a_batch_with_one_large_value(large: int) -> None:
    # Larger than the 4 MiB blocks of a large batch; the second also than 16 MiB.
    big = json.dumps({"i": 1, "s": "y" * large}).encode()
    values = [json.dumps({"i": i, "s": "v"}).encode() for i in range(5_000)]
    out = decode_json(pa.array([*values[:2_000], big, *values[2_000:]]))
    assert not out.bad and out.table.num_rows == 5_001
    assert len(out.table.column("s")[2_000].as_py()) == large
    assert out.table.column("i").to_pylist()[1_999:2_002] == [1_999, 1, 2_000]


FMT = CsvFormat(names=("id", "amount"))


def test_csv_invalid_rows_keep_their_line_numbers() -> None:
    chunk = b"1,2.5\n2\n\n3,4,5\n4,6\n"
    parsed = parse_csv(chunk, 2, FMT, None, {})
    assert parsed.table.column("id").to_pylist() == [1, 4]
    assert [(b.line, b.text) for b in parsed.bad] == [(3, b"2"), (5, b"3,4,5")]
    assert "expected 2 fields" in parsed.bad[0].error


def test_csv_values_that_do_not_convert_are_bisected_out() -> None:
    chunk = b"".join(f"{i},{i}.5\n".encode() for i in range(100)) + b"x,1\n" + b"101,3\n"
    parsed = parse_csv(chunk, 1, FMT, None, {"id": pa.int64()})
    assert parsed.table.num_rows == 101
    assert [(b.line, b.text) for b in parsed.bad] == [(101, b"x,1")]
    assert parsed.schema is not None and parsed.schema.field("id").type == pa.int64()


def test_csv_integers_widen_to_decimals_later_in_the_file() -> None:
    first = parse_csv(b"1,2\n2,3\n", 2, FMT, None, {})
    assert first.schema is not None and first.schema.field("amount").type == pa.int64()
    later = parse_csv(b"3,4.5\n", 4, FMT, first.schema, {})
    assert later.bad == []
    assert later.table.column("amount").to_pylist() == [4.5]
    assert later.schema is not None and later.schema.field("amount").type == pa.float64()


def test_csv_empty_columns_are_text_not_null_typed() -> None:
    parsed = parse_csv(b"1,\n2,\n", 2, FMT, None, {})
    assert parsed.schema is not None and parsed.schema.field("amount").type == pa.string()
    later = parse_csv(b"3,hello\n", 4, FMT, parsed.schema, {})
    assert later.table.column("amount").to_pylist() == ["hello"]


def test_jsonl_bad_lines_new_fields_and_blank_lines() -> None:
    chunk = b'{"id": 1}\n\n{"id": 2, oops}\n{"id": 3, "extra": true}\n   \n[4]\n'
    parsed = parse_jsonl(chunk, 10, None, {})
    assert parsed.table.column("id").to_pylist() == [1, 3]
    assert parsed.table.column("extra").to_pylist() == [None, True]
    assert [(b.line, b.text) for b in parsed.bad] == [(12, b'{"id": 2, oops}'), (15, b"[4]")]
    assert parsed.schema is not None and "extra" in parsed.schema.names
    later = parse_jsonl(b'{"id": 5, "more": "x"}\n', 16, parsed.schema, {})
    assert later.table.column("more").to_pylist() == ["x"]
    assert later.schema is not None and {"id", "extra", "more"} <= set(later.schema.names)


def test_jsonl_declared_types_win() -> None:
    parsed = parse_jsonl(b'{"id": 1, "amount": 2}\n', 1, None, {"amount": pa.float64()})
    assert parsed.table.schema.field("amount").type == pa.float64()
