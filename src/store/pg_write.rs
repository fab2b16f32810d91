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

use super::db::{Db, DbError, DbResult, args};
use super::{Built, NO_PARTITION, NodeKey, StateStore, day_column};
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
/// written.
pub(super) fn write_targets(
    db: &Db,
    node_ids: &mut HashMap<NodeKey, i64>,
    slices_stored: &HashSet<Hash>,
    built: &[Built],
    seq: i64,
    now: i64,
) -> DbResult<Vec<Hash>> {
    let mut new_slices = Vec::new();
    let mut outputs: HashMap<i64, &str> = HashMap::new();
    let mut rows: Vec<(i64, &Built)> = Vec::with_capacity(built.len());
    let mut last: Option<(&NodeKey, i64)> = None;
    for b in built {
        let id = match last {
            Some((key, id)) if key == b.node => id,
            _ => StateStore::node_id(node_ids, db, b.node)?,
        };
        last = Some((b.node, id));
        if let Some(table) = b.output_table {
            outputs.insert(id, table);
        }
        if !slices_stored.contains(&b.slice) && !new_slices.contains(&b.slice) {
            db.execute(
                "INSERT INTO slices (hash, json) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                args![&b.slice.0[..], b.slice_json],
            )?;
            new_slices.push(b.slice);
        }
        rows.push((id, b));
    }
    for (id, table) in outputs {
        db.execute(
            "UPDATE nodes SET output = ?2 WHERE id = ?1 AND output IS DISTINCT FROM ?2",
            args![id, table],
        )?;
    }
    let Db::Pg(pg) = db else {
        return Err(DbError::Other("a bulk write needs PostgreSQL".into()));
    };
    let mut pg = pg.borrow_mut();
    pg.client.batch_execute(LOAD_TABLE)?;
    let mut copy = pg.client.copy_in(
        "COPY load_targets (node, day, key, slice, inputs, output, inputs_doc, sole) FROM STDIN",
    )?;
    let text = copy_text(&kept(rows));
    copy.write_all(&text)
        .map_err(|e| DbError::Other(format!("COPY: {e}")))?;
    copy.finish()?;
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
/// `\\x` and hex, text with backslash, tab, newline and return escaped.
fn copy_text(rows: &[(i64, &Built)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 256);
    for (id, b) in rows {
        let _ = write!(out, "{id}\t{}", day_column(b.day));
        for hash in [&b.key, &b.slice, &b.inputs, &b.output] {
            out.extend_from_slice(b"\t\\\\x");
            out.extend_from_slice(&hash.hex_bytes());
        }
        out.push(b'\t');
        copy_text_value(&mut out, b.inputs_doc);
        out.extend_from_slice(if b.sole { b"\tt\n" } else { b"\tf\n" });
    }
    out
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
