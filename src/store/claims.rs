//! Per-target claims: which run is building a target now, so that runs
//! started together (from one host or several) build each target once.
//!
//! A run claims a job's targets just before it starts the job, all of them
//! or none, in one write transaction (the state's writers are serialized:
//! SQLite's write lock, a row lock on PostgreSQL), and releases them when
//! the job's result is recorded or the run ends. A claim names its run, the
//! runner (host, pid, start time) and a lease the runner renews while it
//! lives.
//!
//! A claim is **held** while its runner lives: on the claimant's own host
//! that is known exactly (the pid with its start time); from another host
//! only the lease tells, so a claim whose lease lapsed is taken over. A
//! taken-over claim may leave its job running on its own host (a runner
//! killed with SIGKILL) for the stop grace: the run's watchdog stops its
//! jobs when their runner dies (`exec::watch`), and a run of that host
//! waits for the dead runner's watchdog to be gone (its jobs are gone
//! then) before it starts the target again (`watch::of_runner`). From
//! another host, the lease, longer than the stop grace, lapses only after
//! they are.

use std::time::Duration;

use super::db::{Db, DbResult, Row, args};
use super::{NodeKey, StateStore, StoreError, day_column, day_from_column};
use crate::identity::Identity;
use crate::partition::Day;

/// Who claims: a run and its runner, and how long its claims hold without
/// being renewed.
#[derive(Clone, Debug)]
pub struct Claimant {
    pub run: i64,
    pub runner: Identity,
    pub lease: Duration,
}

/// A claim as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub run: i64,
    pub runner: Identity,
    /// Unix seconds after which the claim lapses unless renewed.
    pub expires: i64,
}

impl Holder {
    /// Whether the claim still holds: its runner lives (known exactly on
    /// its own host), or, from another host, its lease has not lapsed.
    pub fn holds(&self, now: i64) -> bool {
        if self.runner.is_here() {
            self.runner.alive_here()
        } else {
            now < self.expires
        }
    }

    /// "run 12 on host h (pid 345)".
    pub fn describe(&self) -> String {
        format!(
            "run {} on host {} (pid {})",
            self.run, self.runner.host, self.runner.pid
        )
    }
}

/// What claiming a job's targets found.
#[derive(Debug)]
pub enum Claimed {
    /// All are this run's now; claims taken over from runners that are gone
    /// are returned, so their jobs can be waited for.
    Taken { over: Vec<Holder> },
    /// One is held by another live run: none was claimed.
    Held(Holder),
}

/// A claim in `state info`: the target and who holds it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ActiveClaim {
    pub target: String,
    pub run: i64,
    pub host: String,
    pub pid: u32,
    pub expires: i64,
    pub held: bool,
}

const HOLDER_COLUMNS: &str = "run, host, pid, pid_start, expires";

fn holder(row: &Row, at: usize) -> DbResult<Holder> {
    Ok(Holder {
        run: row.int(at)?,
        runner: Identity {
            host: row.text(at + 1)?,
            pid: row.int(at + 2)? as u32,
            start: row.int(at + 3)? as u64,
        },
        expires: row.int(at + 4)?,
    })
}

/// Releases run `run`'s claims on targets it recorded as built, in the
/// transaction that records them.
pub(super) fn release_built(
    db: &Db,
    node_ids: &std::collections::HashMap<NodeKey, i64>,
    built: &[super::Built],
    run: i64,
) -> DbResult<()> {
    for b in built {
        if let Some(id) = node_ids.get(b.node) {
            db.execute(
                "DELETE FROM claims WHERE node = ?1 AND day = ?2 AND run = ?3",
                args![*id, day_column(b.day), run],
            )?;
        }
    }
    Ok(())
}

/// Claims a job's targets (node `id` on `days`) for `me`, all or none, in
/// the caller's transaction.
fn claim_in(db: &Db, me: &Claimant, id: i64, days: &[Option<Day>], now: i64) -> DbResult<Claimed> {
    let mut over = Vec::new();
    let sql = format!("SELECT {HOLDER_COLUMNS} FROM claims WHERE node = ?1 AND day = ?2");
    for day in days {
        let found = db.query_opt(&sql, args![id, day_column(*day)], |row| holder(row, 0))?;
        match found {
            Some(h) if h.run == me.run => {}
            Some(h) if h.holds(now) => return Ok(Claimed::Held(h)),
            Some(h) => over.push(h),
            None => {}
        }
    }
    for day in days {
        db.execute(
            "INSERT INTO claims
             (node, day, run, host, pid, pid_start, expires)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (node, day) DO UPDATE SET run = excluded.run,
                host = excluded.host, pid = excluded.pid,
                pid_start = excluded.pid_start, expires = excluded.expires",
            args![
                id,
                day_column(*day),
                me.run,
                &me.runner.host,
                me.runner.pid,
                me.runner.start as i64,
                expiry(me.lease)
            ],
        )?;
    }
    over.dedup();
    Ok(Claimed::Taken { over })
}

fn expiry(lease: Duration) -> i64 {
    crate::clock::unix_now().saturating_add(lease.as_secs().min(i64::MAX as u64) as i64)
}

impl StateStore {
    /// Claims a job's targets for `me`, all or none (a run claims through
    /// `claim_jobs`).
    #[cfg(test)]
    pub fn claim(
        &mut self,
        me: &Claimant,
        node: &NodeKey,
        days: &[Option<Day>],
    ) -> Result<Claimed, StoreError> {
        let mut claimed = self.claim_jobs(me, &[(node, days)])?;
        Ok(claimed.remove(0))
    }

    /// Claims several jobs' targets for `me` in one transaction, each job's
    /// all or none; returns what each found, in order.
    pub fn claim_jobs(
        &mut self,
        me: &Claimant,
        jobs: &[(&NodeKey, &[Option<Day>])],
    ) -> Result<Vec<Claimed>, StoreError> {
        let node_ids = &mut self.node_ids;
        let claimed = super::retry::retrying(&self.db, &self.location, node_ids, |db, node_ids| {
            let now = crate::clock::unix_now();
            let mut claimed = Vec::with_capacity(jobs.len());
            for (node, days) in jobs {
                let id = Self::node_id(node_ids, db, node)?;
                claimed.push(claim_in(db, me, id, days, now)?);
            }
            Ok(claimed)
        });
        claimed.map_err(|e| self.err(e))
    }

    /// Who holds a claim on any of these targets other than run `me`, if
    /// a live run does.
    pub fn held_elsewhere(
        &self,
        me: i64,
        node: &NodeKey,
        days: &[Option<Day>],
    ) -> Result<Option<Holder>, StoreError> {
        let Some(id) = self.node_id_if_known(node)? else {
            return Ok(None);
        };
        let now = crate::clock::unix_now();
        let sql = format!("SELECT {HOLDER_COLUMNS} FROM claims WHERE node = ?1 AND day = ?2");
        for day in days {
            let found = self.select(&sql, args![id, day_column(*day)], |row| holder(row, 0))?;
            if let Some(h) = found.into_iter().find(|h| h.run != me && h.holds(now)) {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }

    /// Releases run `run`'s claims on these targets.
    pub fn release(
        &mut self,
        run: i64,
        node: &NodeKey,
        days: &[Option<Day>],
    ) -> Result<(), StoreError> {
        let Some(id) = self.node_id_if_known(node)? else {
            return Ok(());
        };
        let done = super::retry::retrying(&self.db, &self.location, &mut self.node_ids, |db, _| {
            for day in days {
                db.execute(
                    "DELETE FROM claims WHERE node = ?1 AND day = ?2 AND run = ?3",
                    args![id, day_column(*day), run],
                )?;
            }
            Ok(())
        });
        done.map_err(|e| self.err(e))
    }

    /// Releases every claim of a run (it ends).
    pub fn release_run(&mut self, run: i64) -> Result<(), StoreError> {
        super::retry::reading(&self.db, &self.location, |db| {
            db.execute("DELETE FROM claims WHERE run = ?1", args![run])
        })
        .map(drop)
        .map_err(|e| self.err(e))
    }

    /// Renews a run's claims for another lease.
    pub fn renew(&mut self, me: &Claimant) -> Result<(), StoreError> {
        super::retry::reading(&self.db, &self.location, |db| {
            db.execute(
                "UPDATE claims SET expires = ?1 WHERE run = ?2",
                args![expiry(me.lease), me.run],
            )
        })
        .map(drop)
        .map_err(|e| self.err(e))
    }

    /// Every claim, for `state info`.
    pub fn active_claims(&self) -> Result<Vec<ActiveClaim>, StoreError> {
        let keys = self.node_keys()?;
        let now = crate::clock::unix_now();
        let sql = format!("SELECT node, day, {HOLDER_COLUMNS} FROM claims ORDER BY run, node, day");
        let rows = self.select(&sql, &[], |row| {
            Ok((row.int(0)?, row.int(1)?, holder(row, 2)?))
        })?;
        Ok(rows
            .into_iter()
            .map(|(node, day, h)| ActiveClaim {
                target: match keys.get(&node) {
                    Some(key) => format!(
                        "{}{}",
                        key.label(),
                        crate::partition::at_range(day_from_column(day), day_from_column(day))
                    ),
                    None => format!("node {node}"),
                },
                held: h.holds(now),
                run: h.run,
                host: h.runner.host,
                pid: h.runner.pid,
                expires: h.expires,
            })
            .collect())
    }

    /// A node's id when it is recorded (claims of an unknown node: none).
    fn node_id_if_known(&self, node: &NodeKey) -> Result<Option<i64>, StoreError> {
        if let Some(id) = self.node_ids.get(node) {
            return Ok(Some(*id));
        }
        let ids = self.select(
            "SELECT id FROM nodes WHERE step = ?1 AND config = ?2 AND part = ?3",
            args![node.step.name(), &node.config, &node.part],
            |row| row.int(0),
        )?;
        Ok(ids.first().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::Step;

    fn claimant(run: i64, runner: Identity) -> Claimant {
        Claimant {
            run,
            runner,
            lease: Duration::from_secs(60),
        }
    }

    fn node() -> NodeKey {
        NodeKey {
            step: Step::StagingQuery,
            config: "team.sq.v1".into(),
            part: String::new(),
        }
    }

    #[test]
    fn a_live_claim_holds_and_a_dead_runners_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("s.db")).unwrap();
        let days = [Some(Day(1)), Some(Day(2))];
        let me = claimant(1, Identity::me());
        assert!(matches!(
            store.claim(&me, &node(), &days).unwrap(),
            Claimed::Taken { over } if over.is_empty()
        ));
        // Another run, same host: run 1's runner (this process) lives.
        let other = claimant(2, Identity::me());
        match store.claim(&other, &node(), &days[1..]).unwrap() {
            Claimed::Held(h) => assert_eq!(h.run, 1),
            taken => panic!("{taken:?}"),
        }
        assert_eq!(
            store
                .held_elsewhere(2, &node(), &days)
                .unwrap()
                .unwrap()
                .run,
            1
        );
        // A runner of this host that is gone: its claims are taken over.
        let mut dead = Identity::me();
        dead.start += 1;
        let gone = claimant(3, dead);
        store.release_run(1).unwrap();
        store.claim(&gone, &node(), &days).unwrap();
        match store.claim(&other, &node(), &days).unwrap() {
            Claimed::Taken { over } => assert_eq!(over.len(), 1),
            held => panic!("{held:?}"),
        }
        assert!(store.held_elsewhere(3, &node(), &days).unwrap().is_some());
        store.release(2, &node(), &days[..1]).unwrap();
        assert_eq!(store.active_claims().unwrap().len(), 1);
    }

    #[test]
    fn another_hosts_claim_holds_until_its_lease_lapses() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("s.db")).unwrap();
        let days = [Some(Day(7))];
        let mut there = Identity::me();
        there.host.push_str("-elsewhere");
        let mut remote = claimant(1, there);
        store.claim(&remote, &node(), &days).unwrap();
        let me = claimant(2, Identity::me());
        assert!(matches!(
            store.claim(&me, &node(), &days).unwrap(),
            Claimed::Held(_)
        ));
        remote.lease = Duration::ZERO;
        store.renew(&remote).unwrap();
        assert!(matches!(
            store.claim(&me, &node(), &days).unwrap(),
            Claimed::Taken { over } if over.len() == 1
        ));
    }
}
