//! The run history: runs, the attempts of their jobs, and the targets
//! that failed in them.

use std::collections::HashMap;

use super::db::{Arg, Db, DbResult, args};
use super::{NO_PARTITION, NodeKey, StateStore, StoreError, day_column, day_from_column};
use crate::partition::Day;
use crate::step::Step;

/// One attempt of a job, recorded when it ended: with the targets it built,
/// in their transaction, when it succeeded. (A crash loses the attempts in
/// flight from the history; their log files stay.) `history` reads them back.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub run: i64,
    pub node: NodeKey,
    pub from: Option<Day>,
    pub to: Option<Day>,
    pub attempt: u32,
    pub argv: Vec<String>,
    pub log_path: String,
    pub started_at: i64,
    /// `None` when a signal ended the job or it could not start.
    pub exit_code: Option<i32>,
    pub duration: std::time::Duration,
}

/// A run in the history.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    /// The command line.
    pub args: Vec<String>,
    pub started_at: i64,
    /// `None` while it runs, or when it crashed.
    pub ended_at: Option<i64>,
    /// `ok`, `failed`, `blocked` or `interrupted`.
    pub result: Option<String>,
}

impl Attempt {
    /// The job's target range: `step:config[#part][@from[..to]]`.
    pub fn label(&self) -> String {
        format!(
            "{}{}",
            self.node.label(),
            crate::partition::at_range(self.from, self.to)
        )
    }

    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }
}

impl StateStore {
    /// Successful attempts: per node, the partitions each covered and how
    /// long it took. Cost estimates are medians of these.
    pub fn job_durations(&self) -> Result<Vec<(NodeKey, u32, std::time::Duration)>, StoreError> {
        let ids = self.node_keys()?;
        let rows = self.select(
            "SELECT node, day_from, day_to, duration_ms FROM attempts
             WHERE exit_code = 0 AND duration_ms IS NOT NULL",
            &[],
            |row| Ok((row.int(0)?, row.int(1)?, row.int(2)?, row.int(3)?)),
        )?;
        let mut out = Vec::new();
        for (node, from, to, ms) in rows {
            let Some(key) = ids.get(&node) else {
                continue;
            };
            let partitions = if from == NO_PARTITION {
                1
            } else {
                (to - from + 1).clamp(1, i64::from(u32::MAX)) as u32
            };
            let duration = std::time::Duration::from_millis(ms.max(0) as u64);
            out.push((key.clone(), partitions, duration));
        }
        Ok(out)
    }

    /// Runs in the history, newest first, started at or after `since` (unix
    /// seconds), at most `limit`.
    pub fn runs(&self, since: i64, limit: usize) -> Result<Vec<RunRow>, StoreError> {
        self.select(
            "SELECT id, args, started_at, ended_at, result FROM runs
             WHERE started_at >= ?1 ORDER BY id DESC LIMIT ?2",
            args![since, limit.min(i64::MAX as usize) as i64],
            |row| {
                let args = row.text(1)?;
                Ok(RunRow {
                    id: row.int(0)?,
                    args: serde_json::from_str(&args).unwrap_or_else(|_| vec![args]),
                    started_at: row.int(2)?,
                    ended_at: row.opt_int(3)?,
                    result: row.opt_text(4)?,
                })
            },
        )
    }

    /// The attempts of runs `first..=last`, in the order they ended.
    pub fn attempts(&self, first: i64, last: i64) -> Result<Vec<Attempt>, StoreError> {
        self.query_attempts("run BETWEEN ?1 AND ?2", args![first, last])
    }

    /// Each node's latest attempt (the one that ended last).
    pub fn latest_attempts(&self) -> Result<HashMap<NodeKey, Attempt>, StoreError> {
        let latest =
            self.query_attempts("id IN (SELECT max(id) FROM attempts GROUP BY node)", &[])?;
        Ok(latest.into_iter().map(|a| (a.node.clone(), a)).collect())
    }

    /// Every attempt of one node, in the order they ended.
    pub fn attempts_of(&self, node: &NodeKey) -> Result<Vec<Attempt>, StoreError> {
        self.query_attempts(
            "node = (SELECT id FROM nodes WHERE step = ?1 AND config = ?2 AND part = ?3)",
            args![node.step.name(), &node.config, &node.part],
        )
    }

    /// Attempts matching a condition on the `attempts` table, in the order
    /// they ended; those of steps this binary does not know are left out.
    fn query_attempts(&self, condition: &str, args: &[Arg]) -> Result<Vec<Attempt>, StoreError> {
        let ids = self.node_keys()?;
        let sql = format!(
            "SELECT run, node, day_from, day_to, attempt, argv, exit_code, duration_ms,
                    log_path, started_at
             FROM attempts WHERE {condition} ORDER BY id"
        );
        let rows = self.select(&sql, args, |row| {
            let argv = row.text(5)?;
            Ok((
                row.int(1)?,
                Attempt {
                    run: row.int(0)?,
                    node: NodeKey::new(Step::GroupByBackfill, "", None),
                    from: day_from_column(row.int(2)?),
                    to: day_from_column(row.int(3)?),
                    attempt: row.int(4)?.clamp(0, i64::from(u32::MAX)) as u32,
                    argv: serde_json::from_str(&argv).unwrap_or_else(|_| vec![argv]),
                    exit_code: row.opt_int(6)?.map(|c| c as i32),
                    duration: std::time::Duration::from_millis(
                        row.opt_int(7)?.unwrap_or(0).max(0) as u64
                    ),
                    log_path: row.opt_text(8)?.unwrap_or_default(),
                    started_at: row.int(9)?,
                },
            ))
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(node, mut attempt)| {
                attempt.node = ids.get(&node)?.clone();
                Some(attempt)
            })
            .collect())
    }

    /// Starts a run in the history; returns its id.
    pub fn begin_run(&mut self, args: &[String]) -> Result<i64, StoreError> {
        let args = serde_json::to_string(args).expect("args serialize");
        let id = super::retry::reading(&self.db, &self.location, |db| {
            db.query_opt(
                "INSERT INTO runs (args, started_at) VALUES (?1, ?2) RETURNING id",
                args![&args, crate::clock::unix_now()],
                |row| row.int(0),
            )
        })
        .map_err(|e| self.err(e))?;
        id.ok_or_else(|| self.err(super::db::DbError::Other("no run id returned".into())))
    }

    pub fn end_run(&mut self, run: i64, result: &str) -> Result<(), StoreError> {
        super::retry::reading(&self.db, &self.location, |db| {
            db.execute(
                "UPDATE runs SET ended_at = ?2, result = ?3 WHERE id = ?1",
                args![run, crate::clock::unix_now(), result],
            )
        })
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records an ended attempt.
    pub fn record_attempt(&mut self, attempt: &Attempt) -> Result<(), StoreError> {
        let node_ids = &mut self.node_ids;
        let done = super::retry::retrying(&self.db, &self.location, node_ids, |db, node_ids| {
            Self::insert_attempt(node_ids, db, attempt)
        });
        done.map_err(|e| self.err(e))
    }

    pub(super) fn insert_attempt(
        cache: &mut HashMap<NodeKey, i64>,
        db: &Db,
        attempt: &Attempt,
    ) -> DbResult<()> {
        let node = Self::node_id(cache, db, &attempt.node)?;
        let argv = serde_json::to_string(&attempt.argv).expect("argv serializes");
        db.execute(
            "INSERT INTO attempts (run, node, day_from, day_to, attempt, argv, exit_code, duration_ms, log_path, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            args![
                attempt.run,
                node,
                day_column(attempt.from),
                day_column(attempt.to),
                attempt.attempt,
                &argv,
                attempt.exit_code,
                attempt.duration.as_millis() as i64,
                &attempt.log_path,
                attempt.started_at,
            ],
        )?;
        Ok(())
    }

    /// Marks targets as failed in a run (cleared when they are next built).
    pub fn record_failed(
        &mut self,
        node: &NodeKey,
        days: &[Option<Day>],
        run: i64,
        exit_code: i32,
    ) -> Result<(), StoreError> {
        let node_ids = &mut self.node_ids;
        let done = super::retry::retrying(&self.db, &self.location, node_ids, |db, node_ids| {
            let id = Self::node_id(node_ids, db, node)?;
            for day in days {
                db.execute(
                    "INSERT INTO failures (node, day, run, exit_code) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (node, day) DO UPDATE SET run = excluded.run, exit_code = excluded.exit_code",
                    args![id, day_column(*day), run, exit_code],
                )?;
            }
            Ok(())
        });
        done.map_err(|e| self.err(e))
    }
}
