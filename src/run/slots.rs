//! How many jobs may run at once: overall (`-j`), per step and per team
//! (`[limits]`).

use std::collections::HashMap;

use crate::graph::{Node, Step};
use crate::settings::LimitSettings;

pub struct Slots<'a> {
    jobs: usize,
    limits: &'a LimitSettings,
    running: usize,
    by_step: HashMap<Step, usize>,
    by_team: HashMap<String, usize>,
}

impl<'a> Slots<'a> {
    pub fn new(jobs: usize, limits: &'a LimitSettings) -> Slots<'a> {
        Slots {
            jobs,
            limits,
            running: 0,
            by_step: HashMap::new(),
            by_team: HashMap::new(),
        }
    }

    /// Whether every slot is taken.
    pub fn full(&self) -> bool {
        self.running >= self.jobs
    }

    /// Whether a job of `node` fits its step's and team's limits.
    pub fn fits(&self, node: &Node) -> bool {
        let step_ok = self
            .limits
            .steps
            .get(node.step.name())
            .is_none_or(|max| self.by_step.get(&node.step).copied().unwrap_or(0) < *max);
        let team_ok = self
            .limits
            .teams
            .get(&node.team)
            .is_none_or(|max| self.by_team.get(&node.team).copied().unwrap_or(0) < *max);
        step_ok && team_ok
    }

    pub fn take(&mut self, node: &Node) {
        self.running += 1;
        *self.by_step.entry(node.step).or_default() += 1;
        *self.by_team.entry(node.team.clone()).or_default() += 1;
    }

    pub fn give_back(&mut self, node: &Node) {
        self.running -= 1;
        *self.by_step.entry(node.step).or_default() -= 1;
        *self.by_team.entry(node.team.clone()).or_default() -= 1;
    }
}
