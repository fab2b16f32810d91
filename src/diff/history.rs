//! Run history from a state file: which partitions exist, and the pace of
//! past jobs that estimates what a change will cost.

use std::collections::HashMap;

use super::{Basis, Estimate};
use crate::graph::{Node, Step};
use crate::partition::Day;
use crate::store::{NodeKey, StateStore};

/// What a state file tells `diff`: which partitions exist, and how long
/// jobs took.
#[derive(Default)]
pub struct History {
    pub(super) built: HashMap<NodeKey, Vec<Option<Day>>>,
    /// Median seconds per partition of successful attempts, per node: step,
    /// config and join part.
    per_node: HashMap<NodeKey, f64>,
    /// The same, per step across configs: the estimate for a config with no
    /// history yet.
    per_step: HashMap<Step, f64>,
}

impl History {
    pub fn from_store(store: &StateStore) -> Result<History, crate::store::StoreError> {
        let mut by_node: HashMap<NodeKey, Vec<f64>> = HashMap::new();
        let mut by_step: HashMap<Step, Vec<f64>> = HashMap::new();
        for (node, partitions, duration) in store.job_durations()? {
            let each = duration.as_secs_f64() / f64::from(partitions);
            by_step.entry(node.step).or_default().push(each);
            by_node.entry(node).or_default().push(each);
        }
        Ok(History {
            built: store.built_days()?,
            per_node: by_node.into_iter().map(|(k, v)| (k, median(v))).collect(),
            per_step: by_step.into_iter().map(|(k, v)| (k, median(v))).collect(),
        })
    }

    /// `partitions` of a node at the median pace of its own history (under
    /// any of `names`: a renamed config keeps its old name's), else of its
    /// step's.
    pub(super) fn estimate(
        &self,
        node: &Node,
        names: &[&str],
        partitions: usize,
    ) -> Option<Estimate> {
        let (each, basis) = names
            .iter()
            .find_map(|name| {
                self.per_node
                    .get(&NodeKey::new(node.step, name, node.part.as_deref()))
            })
            .map(|each| (*each, Basis::Config))
            .or_else(|| {
                self.per_step
                    .get(&node.step)
                    .map(|each| (*each, Basis::Step))
            })?;
        Some(Estimate {
            seconds: each * partitions as f64,
            per_partition_seconds: each,
            basis,
        })
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[mid],
        _ => (values[mid - 1] + values[mid]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_take_the_middle_value_or_the_mean_of_the_two() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
