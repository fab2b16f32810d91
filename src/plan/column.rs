//! Columns: one table's partitions by day, as targets read them. External
//! tables' come from the probe; internal tables' from the producer's
//! recorded outputs, with pending marks where the producer is not fresh.
//! Prefix sums make any range's digest one subtraction.

use super::Status;
use crate::hash::{self, Hash, Lanes};
use crate::partition::{Day, DayRange};
use crate::probe::Partitions;

/// A day of a column.
#[derive(Clone, Debug)]
pub enum Entry {
    Absent,
    Present(Hash),
    /// The producer's target is not fresh: the reader must wait, or is
    /// blocked with it.
    Pending(Status),
}

/// One table's partitions by day, with prefix sums for range digests.
pub struct Column {
    pub table: String,
    first: Day,
    entries: Vec<Entry>,
    sums: Vec<Lanes>,
    present: Vec<u32>,
    pending: Vec<u32>,
}

impl Column {
    pub fn new(table: &str, first: Day, entries: Vec<Entry>) -> Column {
        let mut sums = Vec::with_capacity(entries.len() + 1);
        let mut present = Vec::with_capacity(entries.len() + 1);
        let mut pending = Vec::with_capacity(entries.len() + 1);
        let (mut s, mut p, mut w) = (Lanes::default(), 0u32, 0u32);
        sums.push(s);
        present.push(p);
        pending.push(w);
        for (i, entry) in entries.iter().enumerate() {
            match entry {
                Entry::Present(fp) => {
                    s = s.plus(Lanes::of(&hash::partition_hash(
                        table,
                        first.plus(i as i32),
                        fp,
                    )));
                    p += 1;
                }
                Entry::Pending(_) => w += 1,
                Entry::Absent => {}
            }
            sums.push(s);
            present.push(p);
            pending.push(w);
        }
        Column {
            table: table.to_string(),
            first,
            entries,
            sums,
            present,
            pending,
        }
    }

    pub fn from_partitions(table: &str, partitions: &Partitions) -> Column {
        let (Some(first), Some(last)) = (partitions.keys().next(), partitions.keys().next_back())
        else {
            return Column::new(table, Day(0), Vec::new());
        };
        let mut entries = vec![Entry::Absent; (last.0 - first.0 + 1) as usize];
        for (day, fp) in partitions {
            entries[(day.0 - first.0) as usize] = Entry::Present(*fp);
        }
        Column::new(table, *first, entries)
    }

    /// Replaces the entry of a day inside the column's span, keeping the
    /// prefix sums right: O(days after it), with one hash for the new entry.
    pub fn set(&mut self, day: Day, entry: Entry) {
        let i = day.0 - self.first.0;
        if i < 0 || i as usize >= self.entries.len() {
            return;
        }
        let i = i as usize;
        let weigh = |e: &Entry| match e {
            Entry::Present(fp) => (
                Lanes::of(&hash::partition_hash(&self.table, day, fp)),
                1u32,
                0u32,
            ),
            Entry::Pending(_) => (Lanes::default(), 0, 1),
            Entry::Absent => (Lanes::default(), 0, 0),
        };
        let (old_lanes, old_present, old_pending) = weigh(&self.entries[i]);
        let (new_lanes, new_present, new_pending) = weigh(&entry);
        self.entries[i] = entry;
        for k in i + 1..self.sums.len() {
            self.sums[k] = self.sums[k].minus(old_lanes).plus(new_lanes);
            self.present[k] = self.present[k] - old_present + new_present;
            self.pending[k] = self.pending[k] - old_pending + new_pending;
        }
    }

    pub fn get(&self, day: Day) -> &Entry {
        let i = day.0 - self.first.0;
        if i < 0 {
            &Entry::Absent
        } else {
            self.entries.get(i as usize).unwrap_or(&Entry::Absent)
        }
    }

    pub fn first_present(&self) -> Option<Day> {
        self.entries
            .iter()
            .position(|e| matches!(e, Entry::Present(_)))
            .map(|i| self.first.plus(i as i32))
    }

    /// Index bounds of `range` within the column, as `lo..hi`.
    fn span(&self, range: DayRange) -> (usize, usize) {
        let len = self.entries.len() as i32;
        let lo = (range.from.0 - self.first.0).clamp(0, len);
        let hi = (range.to.0 - self.first.0 + 1).clamp(0, len);
        (lo as usize, hi.max(lo) as usize)
    }

    pub fn digest(&self, range: DayRange) -> (u32, Hash) {
        let (lo, hi) = self.span(range);
        let present = self.present[hi] - self.present[lo];
        (present, self.sums[hi].minus(self.sums[lo]).digest(present))
    }

    /// The first pending entry in range, if any.
    pub fn first_pending(&self, range: DayRange) -> Option<&Status> {
        let (lo, hi) = self.span(range);
        if self.pending[hi] == self.pending[lo] {
            return None;
        }
        self.entries[lo..hi].iter().find_map(|e| match e {
            Entry::Pending(status) => Some(status),
            _ => None,
        })
    }

    /// Present partitions in range with their fingerprints.
    pub fn present_in(&self, range: DayRange) -> Vec<(Day, Hash)> {
        let (lo, hi) = self.span(range);
        (lo..hi)
            .filter_map(|i| match &self.entries[i] {
                Entry::Present(fp) => Some((self.first.plus(i as i32), *fp)),
                _ => None,
            })
            .collect()
    }
}
