//! What the runner tells the hooks: the variables of a job that failed for
//! good (`on_failure`), and of a run that ended well (`on_success_run`,
//! with the summary as JSON beside its logs).

use crate::partition::Day;

use super::Runner;

impl Runner<'_, '_> {
    /// `on_success_run`, with the summary as JSON in `run-N/summary.json`.
    pub(super) fn success_hook(&mut self, run_dir: &std::path::Path) {
        let path = run_dir.join("summary.json");
        let json = serde_json::to_string_pretty(&self.summary.json()).expect("summary serializes");
        if let Err(e) = std::fs::create_dir_all(run_dir).and_then(|()| std::fs::write(&path, json))
        {
            self.summary.hook_failures.push(format!(
                "on_success_run: cannot write {}: {e}",
                path.display()
            ));
        }
        let s = &self.summary;
        let vars = vec![
            ("CHRONON_BUILD_EVENT", "success-run".to_string()),
            ("CHRONON_BUILD_RUN_ID", s.run_id.to_string()),
            ("CHRONON_BUILD_OUTCOME", s.outcome().name().to_string()),
            ("CHRONON_BUILD_BUILT", s.built.to_string()),
            ("CHRONON_BUILD_FRESH", s.fresh.to_string()),
            ("CHRONON_BUILD_CUTOFF", s.cutoff.to_string()),
            ("CHRONON_BUILD_JOBS", s.ran.len().to_string()),
            (
                "CHRONON_BUILD_WALL_SECONDS",
                format!("{:.3}", s.wall.as_secs_f64()),
            ),
            ("CHRONON_BUILD_SUMMARY", path.to_string_lossy().into_owned()),
        ];
        if let Some(problem) = self.hooks.success_run(vars) {
            self.summary.hook_failures.push(problem);
        }
    }

    /// `on_failure` for a job that failed for good.
    pub(super) fn failure_hook(
        &mut self,
        job: usize,
        code: Option<i32>,
        how: &str,
        log: &std::path::Path,
    ) {
        let j = &self.work.jobs[job];
        let node = &self.session.graph.nodes[j.node];
        let day = |d: Option<Day>| d.map(|d| d.to_string()).unwrap_or_default();
        let vars = vec![
            ("CHRONON_BUILD_EVENT", "failure".to_string()),
            ("CHRONON_BUILD_RUN_ID", self.run_id.to_string()),
            ("CHRONON_BUILD_TARGET", self.describe(job)),
            ("CHRONON_BUILD_CONFIG", node.name.clone()),
            (
                "CHRONON_BUILD_FILE",
                self.session.repo.configs[node.config].path.clone(),
            ),
            ("CHRONON_BUILD_STEP", node.step.name().to_string()),
            ("CHRONON_BUILD_PART", node.part.clone().unwrap_or_default()),
            ("CHRONON_BUILD_TEAM", node.team.clone()),
            ("CHRONON_BUILD_START_DS", day(j.range.map(|r| r.from))),
            ("CHRONON_BUILD_END_DS", day(j.range.map(|r| r.to))),
            (
                "CHRONON_BUILD_EXIT_CODE",
                code.map(|c| c.to_string()).unwrap_or_default(),
            ),
            ("CHRONON_BUILD_REASON", how.to_string()),
            ("CHRONON_BUILD_ATTEMPTS", j.attempt.to_string()),
            ("CHRONON_BUILD_LOG", log.to_string_lossy().into_owned()),
        ];
        self.hooks.failure(vars);
    }
}
