//! The least work a hive-dir probe does on a warm plan, without any of
//! ours: per partition folder of every table under a hive-dir root, one
//! `fstatat` (the `folder` fingerprint mode), or an open, a read of its
//! entries and an `fstatat` per file (the `listing` mode), on every core.
//! bench/run.sh adopt prints it beside the plans, as the floor a hive-dir
//! plan cannot go under.
//!
//!     cargo run --release --example hive_floor -- bench/out/adopt1m/repo/warehouse
use std::os::fd::AsFd;
use std::time::Instant;

use rayon::prelude::*;
use rustix::fs::{AtFlags, Dir, Mode, OFlags};

fn main() {
    let root = std::env::args().nth(1).expect("a hive-dir root");
    let mut tables = Vec::new();
    for db in std::fs::read_dir(&root).expect("the root lists") {
        let db = db.expect("an entry").path();
        for table in std::fs::read_dir(&db).expect("a database lists") {
            tables.push(table.expect("an entry").path());
        }
    }
    for mode in ["folder", "listing"] {
        let start = Instant::now();
        let partitions: usize = tables
            .par_iter()
            .map(|table| {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
                let fd = rustix::fs::open(table, flags, Mode::empty()).expect("a table opens");
                let mut dir = Dir::read_from(&fd).expect("a table lists");
                let mut count = 0;
                while let Some(entry) = dir.read() {
                    let entry = entry.expect("an entry");
                    let name = entry.file_name();
                    if !name.to_bytes().starts_with(b"ds=") {
                        continue;
                    }
                    count += 1;
                    if mode == "folder" {
                        rustix::fs::statat(&fd, name, AtFlags::empty()).expect("a stat");
                        continue;
                    }
                    let part = rustix::fs::openat(&fd, name, flags, Mode::empty()).expect("opens");
                    let mut files = Dir::new(part).expect("lists");
                    while let Some(file) = files.read() {
                        let file = file.expect("an entry");
                        let file = file.file_name();
                        if file.to_bytes().starts_with(b".") {
                            continue;
                        }
                        let at = files.fd().expect("its folder");
                        rustix::fs::statat(at.as_fd(), file, AtFlags::empty()).expect("a stat");
                    }
                }
                count
            })
            .sum();
        println!(
            "{mode:8} floor: {partitions} partitions in {:.2} s",
            start.elapsed().as_secs_f64()
        );
    }
}
