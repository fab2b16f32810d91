//! How much a command says, and how wide: `-q` (errors only), the default
//! (grouped, bounded output), `-v` (every line). Lines are wrapped to the
//! terminal's width, and to at most `PIPE_WIDTH` columns outside a
//! terminal. Notes always go to standard error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};

/// The widest line outside a terminal.
pub const PIPE_WIDTH: usize = 100;

/// Up to this many blocked or waiting ranges are listed one per node; more
/// are grouped one line per cause (`-v` lists them all).
pub const LIST_MAX: usize = 20;

/// How much the commands of this process say, set once from `-q`/`-v`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet = 0,
    Normal = 1,
    Verbose = 2,
}

static VERBOSITY: AtomicU8 = AtomicU8::new(Verbosity::Normal as u8);

pub fn set_verbosity(v: Verbosity) {
    VERBOSITY.store(v as u8, Ordering::Relaxed);
}

pub fn verbosity() -> Verbosity {
    match VERBOSITY.load(Ordering::Relaxed) {
        0 => Verbosity::Quiet,
        2 => Verbosity::Verbose,
        _ => Verbosity::Normal,
    }
}

pub fn verbose() -> bool {
    verbosity() == Verbosity::Verbose
}

pub fn quiet() -> bool {
    verbosity() == Verbosity::Quiet
}

/// The standard streams, for their widths.
#[derive(Clone, Copy)]
pub enum Stream {
    Out,
    Err,
}

/// The columns a line may take on `stream`: `COLUMNS` when set (as shells
/// and `less` read it), else the terminal's width, else `PIPE_WIDTH`; at
/// least 40.
pub fn width(stream: Stream) -> usize {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0)
    {
        return columns.max(40);
    }
    let fd = match stream {
        Stream::Out => libc::STDOUT_FILENO,
        Stream::Err => libc::STDERR_FILENO,
    };
    // SAFETY: isatty and TIOCGWINSZ only read the descriptor's state into
    // a zeroed struct this function owns.
    unsafe {
        if libc::isatty(fd) != 1 {
            return PIPE_WIDTH;
        }
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) == 0 && size.ws_col > 0 {
            (size.ws_col as usize).max(40)
        } else {
            PIPE_WIDTH
        }
    }
}

/// Each line of `text` cut into lines of at most `width` columns, at spaces
/// when it can, continued with an indent of four spaces.
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / width.max(1) * 5);
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        wrap_line(body, width.max(20), &mut out);
        out.push_str(newline);
    }
    out
}

fn wrap_line(line: &str, width: usize, out: &mut String) {
    const INDENT: &str = "    ";
    let chars: Vec<char> = line.chars().collect();
    let mut start = 0;
    let mut first = true;
    loop {
        let room = if first { width } else { width - INDENT.len() };
        if !first {
            out.push('\n');
            out.push_str(INDENT);
        }
        if chars.len() - start <= room {
            out.extend(&chars[start..]);
            return;
        }
        // The last space within the room, else a hard cut.
        let cut = (start + 1..=start + room)
            .rev()
            .find(|&i| chars[i] == ' ')
            .unwrap_or(start + room);
        out.extend(&chars[start..cut]);
        start = cut;
        while start < chars.len() && chars[start] == ' ' {
            start += 1;
        }
        if start == chars.len() {
            return;
        }
        first = false;
    }
}

/// Prints `text` on standard output, wrapped to its width.
pub fn out(text: &str) {
    use std::io::Write as _;
    let text = wrap(text, width(Stream::Out));
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Prints one line on standard error, wrapped to its width; quiet skips it.
pub fn err(line: &str) {
    if quiet() {
        return;
    }
    error(line);
}

/// A line on standard error wrapped as `err`'s are, even with `-q`, which
/// keeps errors.
pub fn error(line: &str) {
    use std::io::Write as _;
    let text = wrap(line, width(Stream::Err));
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Notes on standard error, each `note: ...`. By default, notes that say
/// the same of several subjects (`SUBJECT: message`) are one line naming
/// the first two and how many more; `-v` prints every note.
pub fn notes(notes: &[String]) {
    for line in note_lines(notes, verbose()) {
        err(&line);
    }
}

pub fn note_lines(notes: &[String], every: bool) -> Vec<String> {
    if every {
        return notes.iter().map(|n| format!("note: {n}")).collect();
    }
    let mut by_message: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for note in notes {
        let (subject, message) = note.split_once(": ").unwrap_or(("", note));
        let subjects = by_message.entry(message).or_default();
        if subjects.is_empty() {
            order.push(message);
        }
        subjects.push(subject);
    }
    order
        .into_iter()
        .map(|message| {
            let subjects = &by_message[message];
            match subjects.len() {
                1 if subjects[0].is_empty() => format!("note: {message}"),
                1 => format!("note: {}: {message}", subjects[0]),
                2 => format!("note: {} and {}: {message}", subjects[0], subjects[1]),
                n => format!(
                    "note: {}, {} and {} more (-v lists them): {message}",
                    subjects[0],
                    subjects[1],
                    thousands(n - 2)
                ),
            }
        })
        .collect()
}

/// `1240` as `1,240`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_spaces_and_cuts_long_words() {
        let text = format!("{} {}\nshort\n", "a".repeat(30), "b".repeat(50));
        let wrapped = wrap(&text, 40);
        assert!(
            wrapped.lines().all(|l| l.chars().count() <= 40),
            "{wrapped}"
        );
        assert!(wrapped.ends_with("short\n"));
        assert_eq!(
            wrapped.replace("\n    ", "").replace(' ', ""),
            text.replace(' ', "")
        );
    }

    #[test]
    fn groups_notes_saying_the_same() {
        let notes: Vec<String> = ["a: x", "b: x", "c: x", "d: y"].map(String::from).to_vec();
        assert_eq!(
            note_lines(&notes, false),
            ["note: a, b and 1 more (-v lists them): x", "note: d: y"]
        );
        assert_eq!(note_lines(&notes, true).len(), 4);
        assert_eq!(thousands(1240), "1,240");
        assert_eq!(thousands(155028), "155,028");
    }
}
