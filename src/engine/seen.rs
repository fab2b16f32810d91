//! Which days see an event: a day's value depends only on the source
//! partitions that day's target reads (`graph::Input::range`: up to D, back
//! to its lookback), whatever range the job covers. So an event whose `ts`
//! is on 2025-09-09 but which landed in `ds=2025-09-29` (late data, or a
//! producer in another time zone) counts from 2025-09-29 on, and a daily
//! cron and one backfill over the same days write the same partitions.
//!
//! Chronon's Spark backfill differs here: a job over `[S, E]` scans the
//! source once, over the partitions `[S - 1 - window, E]`
//! (airbnb/chronon `spark/src/main/scala/ai/chronon/spark/GroupBy.scala`
//! lines 621-662, `getIntersectedRange`: `effectiveEnd` is the range's end,
//! line 626; line 704 makes it the scan's partition filter; the same in
//! sardine-ai/zipline-chronon `spark/src/main/scala/ai/chronon/spark/GroupBy.scala`
//! lines 741-788 and 830-833), then computes every day of the range from
//! that one scan by `ts` alone (`snapshotEventsBase`: airbnb lines 166-184,
//! zipline lines 164-185; called per step range by `computeBackfill`,
//! airbnb line 1073, zipline line 910). Join parts do the same over the
//! left's range (airbnb `spark/src/main/scala/ai/chronon/spark/JoinBase.scala`
//! lines 319-326; zipline `spark/src/main/scala/ai/chronon/spark/batch/JoinPartJob.scala`
//! lines 209-239). There, day D of a job also sees partitions up to E: only
//! one-day jobs agree with the read set the planner keys on.
//!
//! Every event carries the days that see it (`Seen`). Evaluating a key is
//! one pass when every event is seen by every query that counts it (the
//! usual case: each event in the partition of its own day); otherwise the
//! queries are split where the set of events they see changes.

use rusqlite::types::Value;

use super::aggregate::{DAY_MS, window_start};
use crate::graph::{Input, Lookback};
use crate::partition::Day;

/// The query days whose read set holds an event's partition (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    pub from: Day,
    pub to: Day,
}

impl Seen {
    /// Seen by every day: a stream, or one snapshot read for one day.
    pub const ALWAYS: Seen = Seen {
        from: Day(i32::MIN),
        to: Day(i32::MAX),
    };

    /// An event in partition `day` of a source read through `input`: a
    /// target at D reads the days `D - shift - n ..= D - shift` (clipped by
    /// the query's cutoffs, which the scan has already applied), so the
    /// days that read `day` are `day + shift ..= day + shift + n`.
    pub fn of(input: &Input, day: Day) -> Seen {
        let from = day.0.saturating_add(input.shift);
        let to = match input.lookback {
            Lookback::Days(n) => from.saturating_add(n as i32),
            Lookback::AllHistory => i32::MAX,
        };
        Seen {
            from: Day(from),
            to: Day(to),
        }
    }

    pub fn contains(self, day: Day) -> bool {
        self.from <= day && day <= self.to
    }
}

/// A question to a group-by: its features at time `t` (events strictly
/// before it), as the target of `day` sees its sources.
#[derive(Clone, Copy, Debug)]
pub struct At {
    pub t: i64,
    pub day: Day,
}

impl At {
    /// The end of `day`, as a backfill asks.
    pub fn end_of(day: Day) -> At {
        At {
            t: (day.0 as i64 + 1) * DAY_MS,
            day,
        }
    }

    /// Whether `t` falls within its day, its end included: a backfill's
    /// query, a SNAPSHOT part's (the end of the day before the left's), and
    /// a TEMPORAL part's for a left row in the partition of its own day.
    fn within_day(self) -> bool {
        let start = self.day.0 as i64 * DAY_MS;
        (start..=start + DAY_MS).contains(&self.t)
    }
}

/// Whether every query within its day that counts an event at `ts` (with
/// `longest` the longest window, `None` for all history) also sees it.
/// Such an event needs no check per query.
pub fn regular(ts: i64, seen: Seen, longest: Option<i64>) -> bool {
    if seen == Seen::ALWAYS {
        return true;
    }
    // Counted from the day of `ts` on (a query within D after `ts`)...
    let first = Day(ts.div_euclid(DAY_MS) as i32);
    if seen.from > first {
        return false;
    }
    // ... as long as the window of a query at the start of D reaches back
    // to it.
    let Some(w) = longest else {
        return seen.to == Day(i32::MAX);
    };
    let mut last = (ts + w + DAY_MS - 1).div_euclid(DAY_MS);
    while window_start(last * DAY_MS, w) > ts {
        last -= 1;
    }
    seen.to.0 as i64 >= last
}

/// Whether one pass over all of a key's events answers every query.
pub fn sees_all(times: &[i64], seen: &[Seen], queries: &[At], longest: Option<i64>) -> bool {
    if seen.iter().all(|s| *s == Seen::ALWAYS) {
        return true;
    }
    queries.iter().all(|q| q.within_day())
        && times
            .iter()
            .zip(seen)
            .all(|(ts, s)| regular(*ts, *s, longest))
}

/// Queries that see the same events: `day` decides what the irregular
/// events (and, unless `regular_kept`, every event) contribute.
pub struct Group {
    pub day: Day,
    pub regular_kept: bool,
    /// Indices into the queries, in their order.
    pub queries: Vec<usize>,
}

impl Group {
    /// Whether the group's queries see an event at `ts`.
    pub fn sees(&self, ts: i64, seen: Seen, longest: Option<i64>) -> bool {
        seen.contains(self.day) || (self.regular_kept && regular(ts, seen, longest))
    }

    /// The events of one list the group sees.
    pub fn filter(
        &self,
        events: &[(i64, Value)],
        seen: &[Seen],
        longest: Option<i64>,
    ) -> Vec<(i64, Value)> {
        events
            .iter()
            .zip(seen)
            .filter(|((ts, _), s)| self.sees(*ts, **s, longest))
            .map(|(e, _)| e.clone())
            .collect()
    }
}

/// Splits the queries where what they see changes: queries within their
/// day, between the days an irregular event enters or leaves the read set;
/// any other query, by its day alone.
pub fn groups(times: &[i64], seen: &[Seen], queries: &[At], longest: Option<i64>) -> Vec<Group> {
    let mut bounds: Vec<i64> = times
        .iter()
        .zip(seen)
        .filter(|(ts, s)| !regular(**ts, **s, longest))
        .flat_map(|(_, s)| [s.from.0 as i64, s.to.0 as i64 + 1])
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    // (segment or day, whether within days) -> group
    let mut by: std::collections::BTreeMap<(bool, i64), Group> = Default::default();
    for (i, q) in queries.iter().enumerate() {
        let within = q.within_day();
        let id = if within {
            bounds.partition_point(|b| *b <= q.day.0 as i64) as i64
        } else {
            q.day.0 as i64
        };
        by.entry((within, id))
            .or_insert_with(|| Group {
                day: q.day,
                regular_kept: within,
                queries: Vec::new(),
            })
            .queries
            .push(i);
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::DayRange;

    fn input(lookback: Lookback, shift: i32) -> Input {
        Input {
            table: "ns.t".into(),
            producer: None,
            lookback,
            shift,
            cutoff_from: None,
            cutoff_to: None,
            required: true,
            ordering_only: false,
            origin: "sources[0].events.table".into(),
            partition_column: None,
            partition_format: None,
        }
    }

    #[test]
    fn the_days_that_see_a_partition_are_those_whose_read_set_holds_it() {
        for input in [
            input(Lookback::Days(0), 0),
            input(Lookback::Days(31), 0),
            input(Lookback::Days(3), 1),
            input(Lookback::AllHistory, 0),
        ] {
            for p in 100..110 {
                let seen = Seen::of(&input, Day(p));
                for d in 90..200 {
                    let read: DayRange = input.range(Day(d), Some(Day(0)));
                    assert_eq!(seen.contains(Day(d)), read.contains(Day(p)), "{p} at {d}");
                }
            }
        }
    }

    #[test]
    fn an_event_in_its_own_days_partition_is_regular_a_late_one_is_not() {
        let window = 30 * DAY_MS;
        let lookback = input(Lookback::Days(31), 0);
        let ts = 100 * DAY_MS + 23 * 3_600_000;
        assert!(regular(ts, Seen::of(&lookback, Day(100)), Some(window)));
        // Landed the day before (a producer ahead of UTC): still seen.
        assert!(regular(ts, Seen::of(&lookback, Day(99)), Some(window)));
        // Landed the day after: day 100 counts it by `ts`, but does not read it.
        assert!(!regular(ts, Seen::of(&lookback, Day(101)), Some(window)));
        // A cumulative source reads one partition: every day needs a check.
        let cumulative = input(Lookback::Days(0), 0);
        assert!(!regular(ts, Seen::of(&cumulative, Day(100)), Some(window)));
        let all = input(Lookback::AllHistory, 0);
        assert!(regular(ts, Seen::of(&all, Day(100)), None));
    }

    #[test]
    fn queries_split_where_a_late_event_enters_the_read_set() {
        let lookback = input(Lookback::Days(31), 0);
        let window = Some(30 * DAY_MS);
        let times = [100 * DAY_MS + 5, 101 * DAY_MS];
        let seen = [Seen::of(&lookback, Day(100)), Seen::of(&lookback, Day(103))];
        let queries: Vec<At> = (100..106).map(|d| At::end_of(Day(d))).collect();
        assert!(!sees_all(&times, &seen, &queries, window));
        let groups = groups(&times, &seen, &queries, window);
        let split: Vec<Vec<usize>> = groups.iter().map(|g| g.queries.clone()).collect();
        assert_eq!(split, vec![vec![0, 1, 2], vec![3, 4, 5]]);
        assert!(!groups[0].sees(times[1], seen[1], window));
        assert!(groups[1].sees(times[1], seen[1], window));
        assert!(groups[0].sees(times[0], seen[0], window));
    }
}
