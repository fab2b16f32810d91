//! Bounded job logs: a job's output (standard output and error, through
//! one pipe) goes to its attempt's log up to `bounds.log_limit`: the
//! first half as it comes, then only the last half is kept (in memory, a
//! ring), written after a line that says how much was left out. A job
//! that prints without end fills neither the disk nor the memory; the
//! console still shows the log's last lines.
//!
//! The log file is made when the job's first byte comes (`LazyLog`): a job
//! that prints nothing leaves none, and costs no file creation, which was
//! a tenth of the runner's time per job when jobs are short. A job that
//! fails always has one (`ensure`), its first line the command.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// A job's log, its file created (with its first line, the command) when
/// the first byte is written.
pub struct LazyLog {
    path: PathBuf,
    header: String,
    file: Option<File>,
}

impl LazyLog {
    /// The log at `path`, whose first line will be `header`.
    pub fn new(path: PathBuf, header: String) -> LazyLog {
        LazyLog {
            path,
            header,
            file: None,
        }
    }

    /// Whether the file was made.
    pub fn made(&self) -> bool {
        self.file.is_some()
    }

    fn file(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            self.file = Some(create(&self.path, &self.header)?);
        }
        Ok(self.file.as_mut().expect("made above"))
    }
}

impl Write for LazyLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.file()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

/// Creates a log (and its folder), its first line `header`.
fn create(path: &Path, header: &str) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = File::create(path)?;
    // One write: the header must not cost a syscall per piece.
    file.write_all(header.as_bytes())?;
    Ok(file)
}

/// Makes the log of a job that printed nothing, with its first line
/// `header`, so that a failure always has one to show.
pub fn ensure(path: &Path, header: &str) -> io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    create(path, header).map(drop)
}

/// Copies `from` into `log` until end of file, keeping at most `limit`
/// bytes: the head and the tail, and a line between them saying how many
/// bytes were left out. Returns the bytes read.
pub fn copy_bounded(mut from: impl Read, log: &mut impl Write, limit: u64) -> io::Result<u64> {
    let head_limit = limit / 2;
    let tail_limit = (limit - head_limit) as usize;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let mut head = 0u64;
    let mut tail = Tail::new(tail_limit);
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        let mut chunk = &buf[..n];
        if head < head_limit {
            let take = chunk.len().min((head_limit - head) as usize);
            log.write_all(&chunk[..take])?;
            head += take as u64;
            chunk = &chunk[take..];
        }
        tail.push(chunk);
    }
    if tail.dropped > 0 {
        writeln!(
            log,
            "\n[chronon-build: {} byte(s) of output left out here; the log keeps the first {head} and the last {} (bounds.log_limit)]",
            tail.dropped,
            tail.len()
        )?;
    }
    tail.write_to(log)?;
    Ok(total)
}

/// The last `limit` bytes seen, and how many before them were dropped.
struct Tail {
    ring: Vec<u8>,
    limit: usize,
    /// Where the next byte goes once the ring is full.
    at: usize,
    dropped: u64,
}

impl Tail {
    fn new(limit: usize) -> Tail {
        Tail {
            ring: Vec::new(),
            limit,
            at: 0,
            dropped: 0,
        }
    }

    fn len(&self) -> usize {
        self.ring.len()
    }

    fn push(&mut self, mut bytes: &[u8]) {
        if self.limit == 0 {
            self.dropped += bytes.len() as u64;
            return;
        }
        if bytes.len() > self.limit {
            let skip = bytes.len() - self.limit;
            self.dropped += skip as u64;
            bytes = &bytes[skip..];
        }
        let room = self.limit - self.ring.len();
        let fill = room.min(bytes.len());
        self.ring.extend_from_slice(&bytes[..fill]);
        // A full ring: each byte pushed evicts the oldest.
        let mut rest = &bytes[fill..];
        while !rest.is_empty() {
            let n = rest.len().min(self.limit - self.at);
            self.ring[self.at..self.at + n].copy_from_slice(&rest[..n]);
            self.dropped += n as u64;
            self.at = (self.at + n) % self.limit;
            rest = &rest[n..];
        }
    }

    fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        if self.ring.len() < self.limit {
            return out.write_all(&self.ring);
        }
        out.write_all(&self.ring[self.at..])?;
        out.write_all(&self.ring[..self.at])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copied(input: &[u8], limit: u64) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut file = File::create(&path).unwrap();
        let n = copy_bounded(input, &mut file, limit).unwrap();
        assert_eq!(n, input.len() as u64);
        std::fs::read_to_string(&path).unwrap()
    }

    #[test]
    fn a_log_is_made_with_its_first_byte_and_its_header_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run-1/step/log");
        let mut log = LazyLog::new(path.clone(), "$ job\n".into());
        copy_bounded(&b""[..], &mut log, 100).unwrap();
        assert!(!log.made() && !path.exists());
        copy_bounded(&b"out\n"[..], &mut log, 100).unwrap();
        assert!(log.made());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "$ job\nout\n");
        let silent = dir.path().join("silent/log");
        ensure(&silent, "$ job\n").unwrap();
        ensure(&path, "$ other\n").unwrap();
        assert_eq!(std::fs::read_to_string(&silent).unwrap(), "$ job\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "$ job\nout\n");
    }

    #[test]
    fn output_under_the_limit_is_kept_whole() {
        assert_eq!(copied(b"hello\nworld\n", 100), "hello\nworld\n");
        assert_eq!(copied(b"abcdef", 6), "abcdef");
    }

    #[test]
    fn output_over_the_limit_keeps_the_head_and_the_tail() {
        let input: Vec<u8> = (0..1000).map(|i| b'a' + (i % 26) as u8).collect();
        let log = copied(&input, 100);
        assert!(log.starts_with(std::str::from_utf8(&input[..50]).unwrap()));
        assert!(log.ends_with(std::str::from_utf8(&input[950..]).unwrap()));
        assert!(log.contains("900 byte(s) of output left out"), "{log}");
        assert!(log.len() < 300);
    }

    /// A reader that hands out its bytes a few at a time, as a pipe does.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn the_tail_is_the_last_bytes_read_whatever_the_reads() {
        let input: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        for step in [1, 7, 64, 999, 5000] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("log");
            let mut file = File::create(&path).unwrap();
            copy_bounded(Trickle(&input, step), &mut file, 1000).unwrap();
            let log = std::fs::read(&path).unwrap();
            assert!(log.starts_with(&input[..500]), "step {step}");
            assert!(log.ends_with(&input[9500..]), "step {step}");
        }
    }
}
