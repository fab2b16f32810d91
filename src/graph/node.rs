//! A node and what it reads: `Input`s with their lookback and shifts, and
//! the `Schedule` of partitions it wants.

use serde::Serialize;
use serde_json::Value;

use crate::config::{Query, TableRef};
use crate::hash::Hash;
use crate::partition::{Day, DayRange};
use crate::step::Step;

pub type NodeId = usize;

/// How far back from the target's day an input reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lookback {
    /// Days `D-n ..= D`.
    Days(u32),
    /// Everything from the table's first partition (or the start cutoff) to D.
    AllHistory,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Input {
    /// The table as probed: with its sub-partition, e.g. `ns.t/hr=00:00`.
    /// Shared with every target blocked on it (`plan::Missing`): a name is
    /// stored once per node, never per target.
    pub table: std::sync::Arc<str>,
    #[serde(skip)]
    pub producer: Option<NodeId>,
    pub lookback: Lookback,
    /// Days every read is shifted back (`lag`, snapshot offsets); negative
    /// reads ahead (a label join's `leftEndOffset` of 0).
    pub shift: i32,
    /// `startPartition` / `endPartition` of the reading query.
    pub cutoff_from: Option<Day>,
    pub cutoff_to: Option<Day>,
    /// The newest partition read must exist, or the target is blocked.
    pub required: bool,
    /// Orders the work but does not enter the key (streaming after KV upload).
    pub ordering_only: bool,
    /// The JSON path in the config this input comes from.
    pub origin: String,
    /// The reading query's `partitionColumn` / `partitionFormat`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_column: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_format: Option<crate::partition::DayFormat>,
}

impl Input {
    pub(super) fn new(
        table: String,
        lookback: Lookback,
        shift: u32,
        query: Option<&Query>,
        origin: String,
    ) -> Input {
        Input {
            table: table.into(),
            producer: None,
            lookback,
            shift: shift as i32,
            cutoff_from: query.and_then(|q| q.start_partition),
            cutoff_to: query.and_then(|q| q.end_partition),
            required: true,
            ordering_only: false,
            origin,
            partition_column: query.and_then(|q| q.partition_column.clone()),
            partition_format: query.and_then(|q| q.partition_format.clone()),
        }
    }

    /// The table without its sub-partition.
    pub fn base_table(&self) -> &str {
        TableRef::split(&self.table).0
    }

    /// The days a target at `day` reads, clipped by the cutoffs; `first` is
    /// the table's first known partition, for all-history reads.
    pub fn range(&self, day: Day, first: Option<Day>) -> DayRange {
        let to = day.minus(self.shift);
        let from = match self.lookback {
            Lookback::Days(n) => to.minus(n as i32),
            Lookback::AllHistory => self.cutoff_from.or(first).unwrap_or(to),
        };
        let mut range = DayRange::new(from, to);
        if let Some(cut) = self.cutoff_from {
            range.from = range.from.max(cut);
        }
        if let Some(cut) = self.cutoff_to {
            range.to = range.to.min(cut);
        }
        range
    }

    /// The partition that must exist for a target at `day`, if any: the
    /// newest one read, unless a cutoff excludes it.
    pub fn anchor(&self, day: Day) -> Option<Day> {
        let anchor = day.minus(self.shift);
        let inside = self.cutoff_from.is_none_or(|c| anchor >= c)
            && self.cutoff_to.is_none_or(|c| anchor <= c);
        (self.required && inside).then_some(anchor)
    }
}

/// Which partitions of a node are wanted up to `--until D`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Schedule {
    /// Every day from the start to D.
    Daily { start: Start },
    /// D only: serving needs the latest.
    Latest,
    /// One target with no partition.
    Unpartitioned,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Start {
    Day(Day),
    /// The first partition present in this table (the primary input).
    FirstPartitionOf(String),
    /// That many days after the first partition of this table: a label
    /// join's first `label_ds` whose window reaches the left's first day.
    FirstPartitionPlus {
        table: String,
        days: i32,
    },
    /// Nothing names a start: only `--from` or the `start` setting give one.
    Unknown,
}

impl Start {
    /// The table whose first partition decides the start, if any.
    pub fn probed_table(&self) -> Option<&str> {
        match self {
            Start::FirstPartitionOf(table) | Start::FirstPartitionPlus { table, .. } => Some(table),
            Start::Day(_) | Start::Unknown => None,
        }
    }

    /// The first day, given the probed tables' first partitions.
    pub fn day(&self, first_of: impl Fn(&str) -> Option<Day>) -> Option<Day> {
        match self {
            Start::Day(day) => Some(*day),
            Start::FirstPartitionOf(table) => first_of(table),
            Start::FirstPartitionPlus { table, days } => first_of(table).map(|d| d.plus(*days)),
            Start::Unknown => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub id: NodeId,
    pub step: Step,
    /// Index into `Repo::configs`.
    pub config: usize,
    pub name: String,
    /// The join part's label, for `join-part` nodes.
    pub part: Option<String>,
    pub team: String,
    /// The table this node writes, when it writes one.
    pub output: Option<String>,
    /// Whether the output is probed to record and check a build. When not
    /// (KV uploads, deploys, a whole join's left and parts), the recorded
    /// output is the key.
    pub probed_output: bool,
    pub schedule: Schedule,
    pub inputs: Vec<Input>,
    /// Canonical JSON of the fields of the config that this step's data
    /// depends on (see `crate::hash`).
    pub slice: Value,
    pub slice_hash: Hash,
}

impl Node {
    /// `step:config` or `step:config#part`: how targets are named on the
    /// command line.
    pub fn label(&self) -> String {
        crate::step::node_label(self.step, &self.name, self.part.as_deref())
    }

    /// The nodes whose output this node reads (not only waits for).
    pub fn producers_read(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.inputs
            .iter()
            .filter(|i| !i.ordering_only)
            .filter_map(|i| i.producer)
    }

    /// The inputs this node reads from tables no node writes: what is
    /// probed for it.
    pub fn external_inputs(&self) -> impl Iterator<Item = &Input> + '_ {
        self.inputs
            .iter()
            .filter(|i| i.producer.is_none() && !i.ordering_only)
    }

    /// The table whose first partition starts this daily node, if any.
    pub fn start_table(&self) -> Option<&str> {
        match &self.schedule {
            Schedule::Daily { start } => start.probed_table(),
            Schedule::Unpartitioned | Schedule::Latest => None,
        }
    }

    /// The table this node writes whose partitions are probed to record
    /// and check a build (`probed_output`), if any.
    pub fn probed_table(&self) -> Option<&str> {
        self.output.as_deref().filter(|_| self.probed_output)
    }
}
