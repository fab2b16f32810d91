"""Writes real Iceberg and Delta tables for the `formats` tests.

    python write_tables.py OUT_DIR SCENARIO

Runs one scenario's steps under OUT_DIR and prints one JSON document: the
steps in order, each with

- `location`: where the table is as of that step: Iceberg, the metadata file
  the step committed (metadata files are immutable, so an older one is the
  table as it was); Delta, a copy of the table folder made after the step;
- `touched`: the days the step changed (`yyyy-MM-dd`), as the scenario means
  them: the days whose fingerprint must change, and only those;
- `files`: the live files as the writing library reports them (pyiceberg's
  `inspect.files()`, deltalake's `get_add_actions()`), with their day.

Iceberg tables are written through pyiceberg's SqlCatalog on SQLite
(`OUT_DIR/catalog.db`, catalog `test`, namespace `ns`) with a local
warehouse; Delta tables with deltalake (delta-rs). Rows, schemas, the
catalog and the `replace` step come from tests/fixtures/tables_lib.py,
shared with the other table writers.

pyiceberg has no public API to rewrite files (compaction), so the `replace`
step commits a snapshot through `_OverwriteFiles`, pyiceberg's own snapshot
producer for overwrites, with `Operation.REPLACE`: it deletes the day's data
files and adds one file with the same rows, as Spark's `rewrite_data_files`
does. pyiceberg's summary builder refuses `replace`, so the summary is built
as for an overwrite and its operation then set to `replace`.

deltalake cannot write a multi-part checkpoint; the `delta-multipart`
scenario splits the classic checkpoint delta-rs wrote into two parts with
pyarrow (same schema, rows divided between the parts, named
`V.checkpoint.0000000001.0000000002.parquet` and so on, as PROTOCOL.md's
"Multi-part checkpoint" says) and points `_last_checkpoint` at them.
"""

import datetime
import json
import os
import shutil
import sys
import urllib.parse

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from tables_lib import create_ds_table, ds_rows, ds_schema, ensure_namespace, iceberg_replace, local_catalog  # noqa: E402

DAYS = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
# The column order of these tables.
COLUMNS = ("ds", "id", "value")


def rows(days, ids, value="v"):
    return ds_rows(days, ids, value, COLUMNS)


# ---------------------------------------------------------------------------
# Iceberg


def iceberg_catalog(out):
    catalog = local_catalog(out, os.path.join(out, "warehouse"), "test")
    # One catalog serves several tables: the namespace may be there.
    ensure_namespace(catalog, "ns")
    return catalog


def iceberg_files(table):
    """Live files, data and delete, from pyiceberg's own reading."""
    if table.current_snapshot() is None:
        return []
    files = table.inspect.files().to_pylist()
    out = []
    for f in files:
        partition = f["partition"] or {}
        day = next((v for v in partition.values() if v is not None), None)
        if isinstance(day, datetime.date):
            day = day.isoformat()
        out.append(
            {
                "path": f["file_path"],
                "day": day,
                "size": f["file_size_in_bytes"],
                "records": f["record_count"],
                "content": f["content"],
            }
        )
    return out


def iceberg_step(table, name, touched):
    table = table.refresh()
    snapshot = table.current_snapshot()
    return {
        "step": name,
        "location": table.metadata_location,
        "snapshot_id": snapshot.snapshot_id if snapshot else None,
        "operation": snapshot.summary.operation.value if snapshot else None,
        "touched": touched,
        "files": iceberg_files(table),
    }


def iceberg_basic(out):
    """identity(ds) on a string column, format version 2."""
    table = create_ds_table(iceberg_catalog(out), "ns.basic", COLUMNS)
    steps = []
    table.append(rows(DAYS[:3] * 2, [1, 2, 3, 4, 5, 6]))
    steps.append(iceberg_step(table, "append", DAYS[:3]))
    table.append(rows([DAYS[1]], [7], "late"))
    steps.append(iceberg_step(table, "late-row", [DAYS[1]]))
    table.delete(f"ds = '{DAYS[0]}'")
    steps.append(iceberg_step(table, "delete-day", [DAYS[0]]))
    table.overwrite(rows([DAYS[2]], [8], "new"), overwrite_filter=f"ds = '{DAYS[2]}'")
    steps.append(iceberg_step(table, "overwrite-day", [DAYS[2]]))
    rewritten = iceberg_replace(table.refresh(), DAYS[1])
    assert rewritten == 2, rewritten
    steps.append(iceberg_step(table, "replace", []))
    table.refresh().append(rows([DAYS[3]], [9]))
    steps.append(iceberg_step(table, "append-after-replace", [DAYS[3]]))
    table.refresh().delete(f"ds = '{DAYS[1]}'")
    steps.append(iceberg_step(table, "delete-replaced-day", [DAYS[1]]))
    return steps


def iceberg_merge(out):
    """Manifest merging on: an append writes one manifest holding its
    ADDED entries and the EXISTING entries of the manifests it merged."""
    properties = {
        "commit.manifest-merge.enabled": "true",
        "commit.manifest.min-count-to-merge": "2",
    }
    table = create_ds_table(iceberg_catalog(out), "ns.merged", COLUMNS, properties)
    steps = []
    table.append(rows(DAYS[:2], [1, 2]))
    steps.append(iceberg_step(table, "append", DAYS[:2]))
    for i, day in enumerate([DAYS[1], DAYS[2], DAYS[0]]):
        table.refresh().append(rows([day], [3 + i]))
        steps.append(iceberg_step(table, f"append-merged-{i}", [day]))
    return steps


def iceberg_position_deletes(table, data_file, positions):
    """Commits a v2 position delete file for rows of `data_file`.

    pyiceberg deletes copy-on-write only; this writes the delete file
    (`file_path`, `pos`, with the spec's reserved field ids) with pyarrow
    and commits it through `_FastAppendFiles` (operation `delete`) whose
    manifest writer says `content: deletes`, as Java's RowDelta would."""
    import uuid

    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat, ManifestContent, ManifestWriterV2
    from pyiceberg.table.snapshots import Operation
    from pyiceberg.table.update.snapshot import _FastAppendFiles
    from pyiceberg.typedef import Record

    class DeleteManifestWriter(ManifestWriterV2):
        def content(self):
            return ManifestContent.DELETES

        @property
        def _meta(self):
            return {**super()._meta, "content": "deletes"}

    class AddDeletes(_FastAppendFiles):
        def new_manifest_writer(self, spec):
            return DeleteManifestWriter(
                spec, self.schema(), self.new_manifest_output(), self._snapshot_id, self._compression
            )

    schema = pa.schema(
        [
            pa.field("file_path", pa.string(), nullable=False, metadata={"PARQUET:field_id": "2147483546"}),
            pa.field("pos", pa.int64(), nullable=False, metadata={"PARQUET:field_id": "2147483545"}),
        ]
    )
    deletes = pa.table({"file_path": [data_file.file_path] * len(positions), "pos": positions}, schema=schema)
    location = data_file.file_path.rsplit("/", 1)[0] + f"/deletes-{uuid.uuid4()}.parquet"
    pq.write_table(deletes, location.removeprefix("file://"))
    delete_file = DataFile.from_args(
        content=DataFileContent.POSITION_DELETES,
        file_path=location,
        file_format=FileFormat.PARQUET,
        partition=data_file.partition,
        record_count=len(positions),
        file_size_in_bytes=os.path.getsize(location.removeprefix("file://")),
    )
    delete_file.spec_id = data_file.spec_id
    with table.transaction() as tx:
        with AddDeletes(operation=Operation.DELETE, transaction=tx, io=table.io) as producer:
            producer.append_data_file(delete_file)


def iceberg_deletes(out):
    """Format 2 delete files: a position delete file on one day."""
    from pyiceberg.expressions import EqualTo

    table = create_ds_table(iceberg_catalog(out), "ns.deletes", COLUMNS)
    steps = []
    table.append(rows(DAYS[:2] * 2, [1, 2, 3, 4]))
    steps.append(iceberg_step(table, "append", DAYS[:2]))
    table = table.refresh()
    [task] = table.scan(row_filter=EqualTo("ds", DAYS[0])).plan_files()
    iceberg_position_deletes(table, task.file, [0])
    table = table.refresh()
    # pyiceberg applies the delete file when it reads the table.
    assert table.scan(row_filter=EqualTo("ds", DAYS[0])).to_arrow().num_rows == 1
    steps.append(iceberg_step(table, "position-delete", DAYS[:1]))
    return steps


def iceberg_day_transform(out):
    """day(ts) on a timestamp column."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import DayTransform
    from pyiceberg.types import LongType, NestedField, TimestampType

    catalog = iceberg_catalog(out)
    schema = Schema(
        NestedField(1, "ts", TimestampType(), required=False),
        NestedField(2, "id", LongType(), required=False),
    )
    spec = PartitionSpec(PartitionField(1, 1000, DayTransform(), "ts_day"))
    table = catalog.create_table("ns.by_ts", schema=schema, partition_spec=spec)

    def ts_rows(stamps, ids):
        return pa.table(
            {
                "ts": pa.array([datetime.datetime.fromisoformat(s) for s in stamps], pa.timestamp("us")),
                "id": pa.array(ids, pa.int64()),
            }
        )

    steps = []
    table.append(ts_rows(["2024-01-01T05:00:00", "2024-01-02T23:59:59", "2024-01-02T00:00:00"], [1, 2, 3]))
    steps.append(iceberg_step(table, "append", DAYS[:2]))
    table.append(ts_rows(["2024-01-01T12:00:00"], [4]))
    steps.append(iceberg_step(table, "late-row", [DAYS[0]]))
    return steps


def iceberg_evolution(out):
    """Format version 1; identity(ds), then identity(region) added (spec 1):
    old manifests keep spec 0, new ones have spec 1."""
    columns = ("ds", "id", "region")
    table = create_ds_table(iceberg_catalog(out), "ns.evolved", columns, {"format-version": "1"})

    def region_rows(days, ids, region):
        return ds_rows(days, ids, region, columns)

    steps = []
    table.append(region_rows(DAYS[:2], [1, 2], "eu"))
    steps.append(iceberg_step(table, "append-spec-0", DAYS[:2]))
    with table.update_spec() as update:
        update.add_identity("region")
    table = table.refresh()
    table.append(region_rows([DAYS[1], DAYS[2]], [3, 4], "us"))
    steps.append(iceberg_step(table, "append-spec-1", DAYS[1:3]))
    return steps


def iceberg_unpartitioned(out):
    table = iceberg_catalog(out).create_table("ns.flat", schema=ds_schema(COLUMNS))
    table.append(rows(DAYS[:2], [1, 2]))
    return [iceberg_step(table, "append", DAYS[:2])]


# ---------------------------------------------------------------------------
# Delta


def delta_files(path):
    """Live files; paths URL-decoded, as the reader keys them (the log
    writes them URL-encoded, and deltalake reports them so)."""
    from deltalake import DeltaTable

    actions = pa.table(DeltaTable(path).get_add_actions(flatten=True))
    out = []
    for a in actions.to_pylist():
        decoded = urllib.parse.unquote(a["path"])
        assert os.path.exists(os.path.join(path, decoded)), decoded
        out.append(
            {
                "path": decoded,
                "day": a.get("partition.ds"),
                "size": a["size_bytes"],
                "records": a.get("num_records"),
                "content": 0,
            }
        )
    return out


def delta_step(table, out, steps, name, touched):
    from deltalake import DeltaTable

    copy = os.path.join(out, "steps", f"{len(steps)}-{name}")
    shutil.copytree(table, copy)
    steps.append(
        {
            "step": name,
            "location": copy,
            "version": DeltaTable(table).version(),
            "touched": touched,
            "files": delta_files(copy),
        }
    )


def delta_basic(out, multipart=False):
    from deltalake import DeltaTable, write_deltalake

    table = os.path.join(out, "table")
    steps = []
    write_deltalake(table, rows(DAYS[:3] * 2, [1, 2, 3, 4, 5, 6]), partition_by=["ds"])
    delta_step(table, out, steps, "append", DAYS[:3])
    write_deltalake(table, rows([DAYS[1]], [7], "late"), mode="append")
    delta_step(table, out, steps, "late-row", [DAYS[1]])
    DeltaTable(table).delete(f"ds = '{DAYS[0]}'")
    delta_step(table, out, steps, "delete-day", [DAYS[0]])
    write_deltalake(table, rows([DAYS[2]], [8], "new"), mode="overwrite", predicate=f"ds = '{DAYS[2]}'")
    delta_step(table, out, steps, "overwrite-day", [DAYS[2]])
    metrics = DeltaTable(table).optimize.compact()
    assert metrics["numFilesRemoved"] >= 2, metrics
    delta_step(table, out, steps, "compact", [])
    DeltaTable(table).create_checkpoint()
    if multipart:
        split_checkpoint(table, DeltaTable(table).version())
    write_deltalake(table, rows([DAYS[3]], [9]), mode="append")
    delta_step(table, out, steps, "checkpoint-then-append", [DAYS[3]])
    write_deltalake(table, rows([DAYS[1]], [10], "later"), mode="append")
    delta_step(table, out, steps, "append-after-checkpoint", [DAYS[1]])
    return steps


def delta_encoded(out):
    """Partition values with spaces: folders `ds=2024%2001%2001`, paths in
    the log encoded once more (`ds=2024%252001%252001/...`)."""
    from deltalake import DeltaTable, write_deltalake

    spaced = [d.replace("-", " ") for d in DAYS]
    table = os.path.join(out, "table")
    steps = []
    write_deltalake(table, rows(spaced[:2], [1, 2]), partition_by=["ds"])
    delta_step(table, out, steps, "append", DAYS[:2])
    DeltaTable(table).delete(f"ds = '{spaced[0]}'")
    delta_step(table, out, steps, "delete-day", DAYS[:1])
    write_deltalake(table, rows([spaced[1]], [3]), mode="append")
    delta_step(table, out, steps, "late-row", DAYS[1:2])
    return steps


def split_checkpoint(table, version):
    """Replaces the classic checkpoint at `version` by a two-part one."""
    log = os.path.join(table, "_delta_log")
    single = os.path.join(log, f"{version:020}.checkpoint.parquet")
    whole = pq.read_table(single)
    half = whole.num_rows // 2
    for part, piece in [(1, whole.slice(0, half)), (2, whole.slice(half))]:
        pq.write_table(piece, os.path.join(log, f"{version:020}.checkpoint.{part:010}.{2:010}.parquet"))
    os.remove(single)
    with open(os.path.join(log, "_last_checkpoint")) as f:
        last = json.load(f)
    last["parts"] = 2
    for key in ["checksum", "sizeInBytes"]:
        last.pop(key, None)
    with open(os.path.join(log, "_last_checkpoint"), "w") as f:
        json.dump(last, f)


SCENARIOS = {
    "iceberg-basic": iceberg_basic,
    "iceberg-day-transform": iceberg_day_transform,
    "iceberg-merge": iceberg_merge,
    "iceberg-deletes": iceberg_deletes,
    "iceberg-evolution": iceberg_evolution,
    "iceberg-unpartitioned": iceberg_unpartitioned,
    "delta-basic": delta_basic,
    "delta-multipart": lambda out: delta_basic(out, multipart=True),
    "delta-encoded": delta_encoded,
}


def main():
    out, scenario = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    steps = SCENARIOS[scenario](out)
    json.dump({"scenario": scenario, "steps": steps}, sys.stdout, indent=1, default=str)
    print()


if __name__ == "__main__":
    main()
