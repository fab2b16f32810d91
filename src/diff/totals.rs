//! The totals of a report, its one-line headline, and numbers and job time
//! as people write them.

use super::{ConfigChanges, Invalidated, ServingChange, Totals};
use crate::hash::FieldClass;
/// One way to write big counts: the output's (`say`).
pub use crate::say::thousands;

pub(super) fn totals(
    configs: &ConfigChanges,
    targets: &[Invalidated],
    serving: &[ServingChange],
    with_state: bool,
) -> Totals {
    let mut totals = Totals {
        configs_changed: configs.count(),
        targets: targets.len(),
        ..Totals::default()
    };
    let mut seconds = 0.0;
    for target in targets {
        match (target.partitioned, target.partitions) {
            (_, None) => totals.uncounted += 1,
            (true, Some(n)) => totals.partitions += n,
            (false, Some(n)) => totals.redeploys += n,
        }
        match target.estimate {
            Some(estimate) => seconds += estimate.seconds,
            None if with_state && target.partitions.is_some() => totals.unestimated += 1,
            None => {}
        }
    }
    totals.job_seconds = with_state.then_some(seconds);
    for change in serving {
        match change.kind {
            "join" => totals.online_joins_changing_serving += 1,
            _ => totals.online_group_bys_changing_serving += 1,
        }
        if change.in_place {
            totals.in_place_online_changes += 1;
        }
    }
    totals
}

/// Job time as people say it: `14.2 h`, `25 min`, `40 s`.
pub fn job_time(seconds: f64) -> String {
    if seconds >= 3600.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else if seconds >= 60.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{seconds:.0} s")
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

pub(super) fn headline(configs: &ConfigChanges, totals: &Totals) -> String {
    let mut out = match totals.configs_changed {
        0 => "no config changed".to_string(),
        n => format!("{} changed", plural(n, "config", "configs")),
    };
    let mut parts = Vec::new();
    if totals.partitions > 0 {
        let mut text = format!(
            "{} to recompute",
            plural(totals.partitions, "partition", "partitions")
        );
        if let Some(seconds) = totals.job_seconds {
            text.push_str(&format!(" (≈ {} of job time", job_time(seconds)));
            if totals.unestimated > 0 {
                text.push_str(&format!(
                    ", {} with no history",
                    thousands(totals.unestimated)
                ));
            }
            text.push(')');
        }
        parts.push(text);
    }
    if totals.uncounted > 0 {
        parts.push(format!(
            "{} with uncounted partitions",
            plural(totals.uncounted, "step", "steps")
        ));
    }
    if totals.redeploys > 0 {
        parts.push(format!(
            "{} to redeploy",
            plural(totals.redeploys, "streaming job", "streaming jobs")
        ));
    }
    if parts.is_empty() && totals.configs_changed > 0 {
        let only_non_semantic = configs.added.is_empty()
            && configs.renamed.is_empty()
            && configs
                .modified
                .iter()
                .all(|m| m.classes == [FieldClass::NonSemantic]);
        parts.push(if only_non_semantic {
            "nothing to recompute (non-semantic changes only)".to_string()
        } else {
            "nothing to recompute".to_string()
        });
    }
    let serving = [
        (
            totals.online_group_bys_changing_serving,
            "online group-by",
            "online group-bys",
        ),
        (
            totals.online_joins_changing_serving,
            "online join",
            "online joins",
        ),
    ];
    for (n, one, many) in serving {
        if n > 0 {
            parts.push(format!(
                "{} {} serving",
                plural(n, one, many),
                if n == 1 { "changes" } else { "change" }
            ));
        }
    }
    if !parts.is_empty() {
        out.push_str(": ");
        out.push_str(&parts.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_job_time_read_as_people_write_them() {
        assert_eq!(thousands(1095), "1,095");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(12), "12");
        assert_eq!(job_time(14.2 * 3600.0), "14.2 h");
        assert_eq!(job_time(1500.0), "25 min");
    }
}
