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
      Rows, schema, catalog and writes: tests/fixtures/tables_lib.py.
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
from tables_lib import create_ds_table, daily_rows, delta_append, ensure_namespace, local_catalog  # noqa: E402

DAILY_BEFORE_CHECKPOINT = 2
DAILY_AFTER_CHECKPOINT = 3
ICEBERG_DAILY = 5


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
    from deltalake import DeltaTable

    daily = DAILY_BEFORE_CHECKPOINT + DAILY_AFTER_CHECKPOINT
    backfill, dailies = days[:-daily], days[-daily:]
    if len(backfill) == 0:
        backfill, dailies = days, []
    delta_append(path, daily_rows(backfill))
    for i, day in enumerate(dailies):
        if i == DAILY_BEFORE_CHECKPOINT:
            DeltaTable(path).create_checkpoint()
        delta_append(path, daily_rows([day]))
    return os.path.join(path, "_delta_log")


def iceberg_template(root, name, days):
    catalog = local_catalog(root, os.path.abspath(root))
    ensure_namespace(catalog, name.rsplit(".", 1)[0])
    table = create_ds_table(catalog, name)
    backfill, dailies = days[:-ICEBERG_DAILY], days[-ICEBERG_DAILY:]
    if len(backfill) == 0:
        backfill, dailies = days, []
    table.append(daily_rows(backfill))
    for day in dailies:
        table.append(daily_rows([day]))
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
