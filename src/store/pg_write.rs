//! Recording builds on PostgreSQL in bulk: a write's targets go to a
//! temporary table in one `COPY` (text format,
//! <https://www.postgresql.org/docs/15/sql-copy.html>, "Text Format"), and
//! from there into `targets` with a handful of set statements, instead of
//! a round trip per target. The effect is that of SQLite's row-by-row path
//! (`write::TargetWrites`): each target replaces its row, clears its
//! failure and forced mark, a sole version forgets its node's other days,
//! and the memos that cover a day written are deleted.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use super::db::{Db, DbError, DbResult};
use super::{Built, NO_PARTITION, NodeKey, day_column};
use crate::hash::Hash;

/// The temporary table, made once per connection.
const LOAD_TABLE: &str = "CREATE TEMPORARY TABLE IF NOT EXISTS load_targets (
    node BIGINT NOT NULL, day BIGINT NOT NULL, key BYTEA NOT NULL, slice BYTEA NOT NULL,
    inputs BYTEA NOT NULL, output BYTEA NOT NULL, inputs_doc TEXT, sole BOOLEAN NOT NULL);
    TRUNCATE load_targets";

/// What the targets loaded imply, in order.
const APPLY: &[&str] = &[
    // A sole version forgets its node's other days.
    "DELETE FROM targets t USING (SELECT DISTINCT node FROM load_targets WHERE sole) s
     WHERE t.node = s.node
       AND NOT EXISTS (SELECT 1 FROM load_targets l WHERE l.node = t.node AND l.day = t.day)",
    "INSERT INTO targets (node, day, key, slice, inputs, output, seq, built_at, inputs_doc)
     SELECT node, day, key, slice, inputs, output, $1, $2, inputs_doc FROM load_targets
     ON CONFLICT (node, day) DO UPDATE SET key = excluded.key, slice = excluded.slice,
        inputs = excluded.inputs, output = excluded.output, seq = excluded.seq,
        built_at = excluded.built_at, inputs_doc = excluded.inputs_doc",
    "DELETE FROM failures f USING load_targets l WHERE f.node = l.node AND f.day = l.day",
    "DELETE FROM forced f USING load_targets l WHERE f.node = l.node AND f.day = l.day",
    // Per node the earliest day written (any, for a sole version).
    "DELETE FROM node_memos m USING (
        SELECT node, min(CASE WHEN sole THEN $1 ELSE day END) AS first
        FROM load_targets GROUP BY node) w
     WHERE m.node = w.node AND m.last >= w.first",
];

/// Writes the targets (in the caller's transaction); returns the slices
/// written. Nodes, slices and output tables go in one statement each
/// (arrays through `unnest`), the targets in one `COPY`: a write costs a
/// fixed number of round trips, not some per node (adopt writes
/// thousands of nodes at once).
pub(super) fn write_targets(
    db: &Db,
    node_ids: &mut HashMap<NodeKey, i64>,
    slices_stored: &HashSet<Hash>,
    built: &[Built],
    seq: i64,
    now: i64,
) -> DbResult<Vec<Hash>> {
    let Db::Pg(pg) = db else {
        return Err(DbError::Other("a bulk write needs PostgreSQL".into()));
    };
    let mut pg = pg.borrow_mut();
    let fresh = store_nodes(&mut pg.client, node_ids, built)?;
    let mut new_slices: Vec<Hash> = Vec::new();
    let mut slice_json: Vec<&str> = Vec::new();
    let mut outputs: HashMap<i64, &str> = HashMap::new();
    let mut rows: Vec<(i64, &Built)> = Vec::with_capacity(built.len());
    for b in built {
        let id = node_ids
            .get(b.node)
            .copied()
            .ok_or_else(|| DbError::Other(format!("node {} not stored", b.node.label())))?;
        if let Some(table) = b.output_table {
            outputs.insert(id, table);
        }
        if !slices_stored.contains(&b.slice) && !new_slices.contains(&b.slice) {
            new_slices.push(b.slice);
            slice_json.push(b.slice_json);
        }
        rows.push((id, b));
    }
    let hashes: Vec<&[u8]> = new_slices.iter().map(|h| &h.0[..]).collect();
    pg.client.execute(
        "INSERT INTO slices (hash, json) SELECT * FROM unnest($1::bytea[], $2::text[])
         ON CONFLICT DO NOTHING",
        &[&hashes, &slice_json],
    )?;
    let (ids, tables): (Vec<i64>, Vec<&str>) = outputs.into_iter().unzip();
    pg.client.execute(
        "UPDATE nodes n SET output = u.output
         FROM unnest($1::bigint[], $2::text[]) AS u(id, output)
         WHERE n.id = u.id AND n.output IS DISTINCT FROM u.output",
        &[&ids, &tables],
    )?;
    // Targets of nodes made now go straight into `targets`: nothing of
    // theirs can be there to replace or clear (adopt's case). The others
    // go through the load table and the set statements.
    let (direct, loaded): (Vec<_>, Vec<_>) = kept(rows)
        .into_iter()
        .partition(|(id, _)| fresh.contains(id));
    if !direct.is_empty() {
        let text = copy_text(&direct, |out, b| {
            let _ = write!(out, "\t{seq}\t{now}\t");
            copy_text_value(out, b.inputs_doc);
        });
        copy_in(
            &mut pg.client,
            "COPY targets (node, day, key, slice, inputs, output, seq, built_at, inputs_doc) \
             FROM STDIN",
            &text,
        )?;
    }
    if loaded.is_empty() {
        return Ok(new_slices);
    }
    pg.client.batch_execute(LOAD_TABLE)?;
    let text = copy_text(&loaded, |out, b| {
        out.push(b'\t');
        copy_text_value(out, b.inputs_doc);
        out.extend_from_slice(if b.sole { b"\tt" } else { b"\tf" });
    });
    copy_in(
        &mut pg.client,
        "COPY load_targets (node, day, key, slice, inputs, output, inputs_doc, sole) FROM STDIN",
        &text,
    )?;
    for sql in APPLY {
        let params: &[&(dyn postgres::types::ToSql + Sync)] = match sql.matches('$').count() {
            0 => &[],
            2 => &[&seq, &now],
            _ => &[&NO_PARTITION],
        };
        pg.client.execute(*sql, params)?;
    }
    Ok(new_slices)
}

/// Stores the nodes of `built` not in `node_ids` yet and learns their ids:
/// one insert and one select for all of them. Returns the nodes made now,
/// which have no rows anywhere yet.
fn store_nodes(
    client: &mut postgres::Client,
    node_ids: &mut HashMap<NodeKey, i64>,
    built: &[Built],
) -> DbResult<HashSet<i64>> {
    let mut steps: Vec<&str> = Vec::new();
    let mut configs: Vec<&str> = Vec::new();
    let mut parts: Vec<&str> = Vec::new();
    let mut wanted: HashMap<(&str, &str, &str), &NodeKey> = HashMap::new();
    for b in built {
        let key = (
            b.node.step.name(),
            b.node.config.as_str(),
            b.node.part.as_str(),
        );
        if !node_ids.contains_key(b.node) && wanted.insert(key, b.node).is_none() {
            steps.push(key.0);
            configs.push(key.1);
            parts.push(key.2);
        }
    }
    if steps.is_empty() {
        return Ok(HashSet::new());
    }
    let keys: &[&(dyn postgres::types::ToSql + Sync)] = &[&steps, &configs, &parts];
    let made = client.query(
        "INSERT INTO nodes (step, config, part)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING
         RETURNING id",
        keys,
    )?;
    let fresh = made
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<HashSet<i64>, _>>()?;
    let found = client.query(
        "SELECT n.id, n.step, n.config, n.part FROM nodes n
         JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(step, config, part)
           ON n.step = k.step AND n.config = k.config AND n.part = k.part",
        keys,
    )?;
    for row in found {
        let id: i64 = row.try_get(0)?;
        let (step, config, part): (&str, &str, &str) =
            (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        if let Some(key) = wanted.get(&(step, config, part)) {
            node_ids.insert((*key).clone(), id);
        }
    }
    Ok(fresh)
}

/// The rows as one statement may take them: per (node, day) the last one
/// written, and of a node with a sole version only what came after its
/// last (what writing them one by one would leave).
fn kept<'b>(rows: Vec<(i64, &'b Built<'b>)>) -> Vec<(i64, &'b Built<'b>)> {
    let mut last_sole: HashMap<i64, usize> = HashMap::new();
    let mut last_of: HashMap<(i64, i64), usize> = HashMap::new();
    for (i, (id, b)) in rows.iter().enumerate() {
        if b.sole {
            last_sole.insert(*id, i);
        }
        last_of.insert((*id, day_column(b.day)), i);
    }
    rows.into_iter()
        .enumerate()
        .filter(|(i, (id, b))| {
            last_of[&(*id, day_column(b.day))] == *i && last_sole.get(id).is_none_or(|s| i >= s)
        })
        .map(|(_, row)| row)
        .collect()
}

/// The rows in COPY's text format: tab-separated, `\N` for NULL, bytea as
/// `\\x` and hex; `node, day, key, slice, inputs, output`, then what
/// `rest` writes, then the newline.
fn copy_text(rows: &[(i64, &Built)], rest: impl Fn(&mut Vec<u8>, &Built)) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 256);
    for (id, b) in rows {
        let _ = write!(out, "{id}\t{}", day_column(b.day));
        for hash in [&b.key, &b.slice, &b.inputs, &b.output] {
            out.extend_from_slice(b"\t\\\\x");
            out.extend_from_slice(&hash.hex_bytes());
        }
        rest(&mut out, b);
        out.push(b'\n');
    }
    out
}

/// One `COPY ... FROM STDIN` of `text`.
fn copy_in(client: &mut postgres::Client, sql: &str, text: &[u8]) -> DbResult<()> {
    let mut copy = client.copy_in(sql)?;
    copy.write_all(text)
        .map_err(|e| DbError::Other(format!("COPY: {e}")))?;
    copy.finish()?;
    Ok(())
}

/// A text value in COPY's text format: backslash, tab, newline and return
/// escaped.
pub(super) fn copy_text_value(out: &mut Vec<u8>, text: &str) {
    for c in text.bytes() {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            c => out.push(c),
        }
    }
}

/// A bytea value in COPY's text format: `\\x` and hex (the backslash
/// doubled, as COPY unescapes it once).
pub(super) fn copy_bytea_value(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\\\x");
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0xf)]);
    }
}
