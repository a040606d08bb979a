"""Append one commit's rows to an Iceberg table: one Parquet file per ``day(created_at)`` partition,
then one snapshot carrying the snapshot properties (the Kafka offsets), in one catalog commit.

``Table.append`` would do the same, but it splits the table into partitions itself (grouping and
filtering every row again), casts every column to the table schema and hashes every string of every
row into Parquet dictionaries. The buffer (``consumers.lake.arrow_buffer``) already gives the rows
sorted and cut by day, with the strings repeated per row as Arrow dictionary arrays: written as they
are, Parquet stores them as its own dictionary encoding. The data files are what pyiceberg writes
(field ids in the Parquet schema, the table's compression and page settings, column statistics
through pyiceberg's own ``data_file_statistics_from_parquet_metadata``), minus the embedded Arrow
schema, so readers see plain Parquet string columns. An empty commit still makes a snapshot: it
stores offsets that moved without new rows (only duplicates, only dead letters).
"""

from __future__ import annotations

import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io.pyarrow import (
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey
from pyiceberg.table import Table, TableProperties
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.typedef import Properties
from pyiceberg.utils.properties import property_as_bool, property_as_int

__all__ = ["append_days", "parquet_options"]


def parquet_options(props: Properties) -> dict[str, Any]:
    """The ``pq.ParquetWriter`` options of the table's ``write.parquet.*`` properties (pyiceberg's
    defaults: zstd, 1 MiB pages, 2 MiB dictionary pages, 20,000 rows per page)."""
    codec = props.get(TableProperties.PARQUET_COMPRESSION, TableProperties.PARQUET_COMPRESSION_DEFAULT)
    return {
        "compression": "none" if codec == "uncompressed" else codec,
        "compression_level": property_as_int(props, TableProperties.PARQUET_COMPRESSION_LEVEL,
                                             TableProperties.PARQUET_COMPRESSION_LEVEL_DEFAULT),
        "data_page_size": property_as_int(props, TableProperties.PARQUET_PAGE_SIZE_BYTES,
                                          TableProperties.PARQUET_PAGE_SIZE_BYTES_DEFAULT),
        "dictionary_pagesize_limit": property_as_int(props, TableProperties.PARQUET_DICT_SIZE_BYTES,
                                                     TableProperties.PARQUET_DICT_SIZE_BYTES_DEFAULT),
        "write_batch_size": property_as_int(props, TableProperties.PARQUET_PAGE_ROW_LIMIT,
                                            TableProperties.PARQUET_PAGE_ROW_LIMIT_DEFAULT),
    }


def _write_day(table: Table, meta: TableMetadata, write_uuid: uuid.UUID, task: int, day: int,
               rows: pa.Table) -> DataFile:
    schema = meta.schema()
    spec = meta.spec()
    key = PartitionKey([PartitionFieldValue(spec.fields[0], day)], spec, schema)
    path = table.location_provider().new_data_location(f"00000-{task}-{write_uuid}.parquet", key)
    out = table.io.new_output(path)
    props = meta.properties
    row_group = property_as_int(props, TableProperties.PARQUET_ROW_GROUP_LIMIT,
                                TableProperties.PARQUET_ROW_GROUP_LIMIT_DEFAULT)
    with out.create(overwrite=True) as fos:
        writer = pq.ParquetWriter(fos, rows.schema, store_schema=False, **parquet_options(props))
        with writer:
            writer.write_table(rows, row_group_size=row_group)
    stats = data_file_statistics_from_parquet_metadata(
        parquet_metadata=writer.writer.metadata,
        stats_columns=compute_statistics_plan(schema, props),
        parquet_column_mapping=parquet_path_to_id_mapping(schema),
    )
    return DataFile.from_args(
        content=DataFileContent.DATA, file_path=path, file_format=FileFormat.PARQUET, partition=key.partition,
        file_size_in_bytes=len(out), sort_order_id=None, spec_id=meta.default_spec_id, equality_ids=None,
        key_metadata=None, **stats.to_serialized_dict(),
    )


def append_days(table: Table, days: list[tuple[int, pa.Table]], snapshot_properties: dict[str, str]) -> int:
    """Write ``days`` ((day since the epoch, its rows), the table's columns with their field ids) and
    commit them as one append snapshot with ``snapshot_properties``. Returns the rows committed.
    Raises what the catalog raises (``CommitFailedException`` on a concurrent commit)."""
    with table.transaction() as tx:
        producer = tx.update_snapshot(snapshot_properties=snapshot_properties)
        merge = property_as_bool(tx.table_metadata.properties, TableProperties.MANIFEST_MERGE_ENABLED,
                                 TableProperties.MANIFEST_MERGE_ENABLED_DEFAULT)
        with producer.merge_append() if merge else producer.fast_append() as append:
            for task, (day, rows) in enumerate(days):
                append.append_data_file(_write_day(table, tx.table_metadata, append.commit_uuid, task, day, rows))
    return sum(rows.num_rows for _, rows in days)
