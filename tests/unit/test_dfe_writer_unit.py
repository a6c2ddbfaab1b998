"""The DFE writer's plain parts: timestamps for the native driver, repeated keys, the driver setting."""

from __future__ import annotations

from decimal import Decimal

import pytest

from storage import dfe_writer
from storage.errors import StorageConfigError
from storage.model import TableStoreSettings


@pytest.mark.parametrize(
    "ms",
    [
        0,
        1,
        999,
        1_000,
        1_763_683_200_000,
        1_763_683_200_123,
        1_763_683_200_999,
        -1,
        -1_500,
        253_402_300_799_999,
    ],
)
def test_native_timestamps_are_exact_milliseconds(ms):
    value = dfe_writer._native_timestamp(ms)
    # acsylla binds value * 1000 truncated to an int64: it must give back the exact milliseconds.
    assert int(value * 1_000) == ms
    assert isinstance(value, int if ms % 1000 == 0 else Decimal)


def test_last_row_of_each_key_is_kept_in_input_order():
    rows = [("a", 1, {}), ("b", 1, {}), ("a", 1, {"x": 1.0}), ("a", 2, {}), ("b", 1, {"y": 2.0})]
    assert dfe_writer._last_per_key(rows, range(5)) == [2, 3, 4]
    assert dfe_writer._last_per_key(rows, [0, 1, 3]) == [0, 1, 3]  # nothing repeated: unchanged


def test_partitions_split_over_workers_by_token_range():
    rows = [(f"user-{i}", 0, {}) for i in range(2_000)] + [("user-7", 1, {})]
    parts = dfe_writer._split("demo", rows, 2)
    assert sorted(i for p in parts for i in p) == list(range(len(rows)))
    assert all(dfe_writer.owner_of("demo", rows[i][0], 2) == k for k, p in enumerate(parts) for i in p)
    owner = dfe_writer.owner_of("demo", "user-7", 2)
    assert {7, 2_000} <= set(parts[owner])  # a repeated partition stays with one worker


def test_unknown_writer_driver_is_a_config_error():
    with pytest.raises(StorageConfigError, match="FRAUDBATCH_CASSANDRA_WRITER_DRIVER"):
        TableStoreSettings.from_env(
            environ={"FRAUDBATCH_TABLES_BACKEND": "cassandra", "FRAUDBATCH_CASSANDRA_WRITER_DRIVER": "java"}
        ).validate()
    s = TableStoreSettings.from_env(
        environ={"FRAUDBATCH_TABLES_BACKEND": "cassandra", "FRAUDBATCH_CASSANDRA_WRITER_DRIVER": "python"}
    )
    assert s.cassandra_writer_driver == "python"
