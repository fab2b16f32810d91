//! Wall-clock time as the state, the warehouse's catalog and the reports
//! store it: whole seconds since the Unix epoch.

/// Now, in seconds since the epoch (0 on a clock set before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
