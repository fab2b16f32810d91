//! Whole-join runs (`executor.joins = "whole"`): one `backfill` per join
//! computes its left, parts and final, which stay separate targets. Per join
//! config, the day ranges a backfill of this run covers, and how it went.

use std::collections::HashMap;

use crate::partition::{Day, DayRange};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cover {
    Pending,
    Done,
    Failed,
}

#[derive(Default)]
pub struct Covers(HashMap<usize, Vec<(DayRange, Cover)>>);

impl Covers {
    /// How the latest backfill of `config` covering `day` went, if any did.
    pub fn get(&self, config: usize, day: Option<Day>) -> Option<Cover> {
        let day = day?;
        self.0
            .get(&config)?
            .iter()
            .rev()
            .find(|(range, _)| range.contains(day))
            .map(|(_, c)| *c)
    }

    /// A backfill of `config` over `range` was queued.
    pub fn queued(&mut self, config: usize, range: DayRange) {
        self.0
            .entry(config)
            .or_default()
            .push((range, Cover::Pending));
    }

    /// The backfill of `config` over `range` ended.
    pub fn ended(&mut self, config: usize, range: DayRange, cover: Cover) {
        if let Some(covers) = self.0.get_mut(&config) {
            for entry in covers.iter_mut().filter(|(r, _)| *r == range) {
                entry.1 = cover;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_backfill_covering_a_day_says_how_it_went() {
        let mut covers = Covers::default();
        let (first, retry) = (
            DayRange::new(Day(10), Day(14)),
            DayRange::new(Day(12), Day(12)),
        );
        covers.queued(1, first);
        assert_eq!(covers.get(1, Some(Day(12))), Some(Cover::Pending));
        covers.ended(1, first, Cover::Failed);
        covers.queued(1, retry);
        covers.ended(1, retry, Cover::Done);
        assert_eq!(covers.get(1, Some(Day(12))), Some(Cover::Done));
        assert_eq!(covers.get(1, Some(Day(13))), Some(Cover::Failed));
        assert_eq!(covers.get(1, Some(Day(15))), None);
        assert_eq!(covers.get(2, Some(Day(12))), None);
        assert_eq!(covers.get(1, None), None);
    }
}
