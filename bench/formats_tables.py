#!/usr/bin/env python3
"""The tables of bench/formats.sh, written and listed by the real libraries
(pyiceberg, deltalake: the venv `scripts/formats-venv` makes).

Usage:
  formats_tables.py make FORMAT HIVE ROOT
      For each `<ns>.db/<table>` of the hive-dir warehouse HIVE (the
      `ds=YYYY-MM-DD` folders gen_run leaves), a FORMAT table at
      `ROOT/<ns>.db/<table>` with the same days. One template table per
      distinct set of days is written with the real library (under
      `ROOT/_templates/`), then its metadata copied per table:
      - delta: `_delta_log/` only (paths in it are relative to the table, so
        a copy is a valid table to any log reader). The template's log is
        a backfill commit, two daily commits, a checkpoint, then three more
        daily commits after it;
      - iceberg: `metadata/` (pyiceberg's SQL catalog on SQLite writes the
        table; its metadata files name the template's manifest list by
        absolute path, which is fine for reading). Snapshots: a backfill
        append, then five daily appends.
      Writes ROOT/tables.txt: `<ns>.<table>` per line.
  formats_tables.py list FORMAT ROOT
      Every table of ROOT/tables.txt listed by partition as a user of the
      library would: delta, `DeltaTable(path).get_add_actions()` grouped by
      `ds`; iceberg, `StaticTable.from_metadata(newest metadata file)
      .inspect.partitions()`. Prints the tables and partitions seen.
"""
import os
import shutil
import sys

import pyarrow as pa

DAILY_BEFORE_CHECKPOINT = 2
DAILY_AFTER_CHECKPOINT = 3
ICEBERG_DAILY = 5


def rows(days, per_day=3):
    days_col, ids, values = [], [], []
    for day in days:
        for i in range(per_day):
            days_col.append(day)
            ids.append(i)
            values.append(f"v{i}")
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "value": pa.array(values, pa.string()),
        "ds": pa.array(days_col, pa.string()),
    })


def hive_tables(hive):
    """(`ns.table`, sorted days) for every table folder under `hive`."""
    out = []
    for ns_dir in sorted(os.listdir(hive)):
        if not ns_dir.endswith(".db"):
            continue
        ns = ns_dir[: -len(".db")]
        for table in sorted(os.listdir(os.path.join(hive, ns_dir))):
            days = sorted(
                name[len("ds="):]
                for name in os.listdir(os.path.join(hive, ns_dir, table))
                if name.startswith("ds=")
            )
            if days:
                out.append((f"{ns}.{table}", tuple(days)))
    return out


def delta_template(path, days):
    from deltalake import DeltaTable, write_deltalake

    daily = DAILY_BEFORE_CHECKPOINT + DAILY_AFTER_CHECKPOINT
    backfill, dailies = days[:-daily], days[-daily:]
    if len(backfill) == 0:
        backfill, dailies = days, []
    write_deltalake(path, rows(backfill), mode="append", partition_by=["ds"])
    for i, day in enumerate(dailies):
        if i == DAILY_BEFORE_CHECKPOINT:
            DeltaTable(path).create_checkpoint()
        write_deltalake(path, rows([day]), mode="append", partition_by=["ds"])
    return os.path.join(path, "_delta_log")


def iceberg_template(root, name, days):
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import LongType, NestedField, StringType

    os.makedirs(root, exist_ok=True)
    catalog = SqlCatalog(
        "default",
        uri=f"sqlite:///{os.path.join(root, 'catalog.db')}",
        warehouse=f"file://{os.path.abspath(root)}",
    )
    namespace = name.rsplit(".", 1)[0]
    try:
        catalog.create_namespace(namespace)
    except Exception:  # already there
        pass
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "value", StringType(), required=False),
        NestedField(3, "ds", StringType(), required=False),
    )
    spec = PartitionSpec(PartitionField(3, 1000, IdentityTransform(), "ds"))
    table = catalog.create_table(name, schema=schema, partition_spec=spec)
    backfill, dailies = days[:-ICEBERG_DAILY], days[-ICEBERG_DAILY:]
    if len(backfill) == 0:
        backfill, dailies = days, []
    table.append(rows(backfill))
    for day in dailies:
        table.append(rows([day]))
    location = table.location().removeprefix("file://")
    return os.path.join(location, "metadata")


def make(fmt, hive, root):
    tables = hive_tables(hive)
    templates = {}
    for _, days in tables:
        if days not in templates:
            k = len(templates)
            if fmt == "delta":
                source = delta_template(os.path.join(root, "_templates", f"t{k}"), days)
                leaf = "_delta_log"
            else:
                source = iceberg_template(os.path.join(root, "_templates"), f"tpl.t{k}", days)
                leaf = "metadata"
            templates[days] = source
            print(f"{fmt} template t{k}: {len(days)} days ({days[0]}..{days[-1]})", file=sys.stderr)
    for table, days in tables:
        ns, name = table.split(".", 1)
        dest = os.path.join(root, f"{ns}.db", name, leaf)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(templates[days], dest)
    with open(os.path.join(root, "tables.txt"), "w") as f:
        f.writelines(f"{table}\n" for table, _ in tables)
    partitions = sum(len(days) for _, days in tables)
    print(f"{fmt}: {len(tables)} tables, {partitions} partitions, "
          f"{len(templates)} templates", file=sys.stderr)


def newest_metadata(folder):
    """The highest-versioned `NNNNN-uuid.metadata.json` (or `vN.`)."""
    def version(name):
        stem = name[: -len(".metadata.json")]
        digits = stem[1:] if stem.startswith("v") else stem.split("-", 1)[0]
        return int(digits)

    names = [n for n in os.listdir(folder) if n.endswith(".metadata.json")]
    return os.path.join(folder, max(names, key=version))


def list_tables(fmt, root):
    with open(os.path.join(root, "tables.txt")) as f:
        tables = [line.strip() for line in f if line.strip()]
    partitions = 0
    if fmt == "delta":
        from deltalake import DeltaTable

        for table in tables:
            ns, name = table.split(".", 1)
            actions = pa.table(DeltaTable(os.path.join(root, f"{ns}.db", name))
                               .get_add_actions(flatten=True))
            by_day = actions.group_by("partition.ds").aggregate(
                [("path", "count"), ("size_bytes", "sum")])
            partitions += by_day.num_rows
    else:
        from pyiceberg.table import StaticTable

        for table in tables:
            ns, name = table.split(".", 1)
            metadata = newest_metadata(os.path.join(root, f"{ns}.db", name, "metadata"))
            partitions += StaticTable.from_metadata(metadata).inspect.partitions().num_rows
    print(f"{fmt}: {len(tables)} tables, {partitions} partitions")


def main():
    op, fmt, *rest = sys.argv[1:]
    if fmt not in ("delta", "iceberg"):
        sys.exit(f"unknown format {fmt}")
    if op == "make":
        make(fmt, *rest)
    elif op == "list":
        list_tables(fmt, *rest)
    else:
        sys.exit(f"unknown op {op}")


if __name__ == "__main__":
    main()
