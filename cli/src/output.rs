//! Everything the CLI prints: writing without panicking on a closed pipe, colours (only on
//! a terminal and without NO_COLOR), aligned tables, human times, durations and sizes.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Write one line to stdout. A closed pipe (`mesg events | head -1`) is not an error: the
/// line is dropped and [`stdout_closed`] turns true so that streaming commands can stop.
pub fn write_out(args: fmt::Arguments<'_>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let result = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    if let Err(e) = result.and_then(|()| out.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Write one line to stderr, ignoring failures (there is nowhere left to report them).
pub fn write_err(args: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// True once stdout was found closed.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// `println!` that never panics.
macro_rules! outln {
    () => { $crate::output::write_out(format_args!("")) };
    ($($t:tt)*) => { $crate::output::write_out(format_args!($($t)*)) };
}
/// `eprintln!` that never panics.
macro_rules! errln {
    () => { $crate::output::write_err(format_args!("")) };
    ($($t:tt)*) => { $crate::output::write_err(format_args!($($t)*)) };
}
pub(crate) use errln;
pub(crate) use outln;

// ------------------------------------------------------------------ colours

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    Red,
    Green,
    Yellow,
    Magenta,
    Cyan,
    Dim,
    Bold,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Red => "31",
            Paint::Green => "32",
            Paint::Yellow => "33",
            Paint::Magenta => "35",
            Paint::Cyan => "36",
            Paint::Dim => "2",
            Paint::Bold => "1",
        }
    }
}

fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Colours on stdout: a terminal and NO_COLOR unset.
pub fn color_out() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::io::stdout().is_terminal() && !no_color_env())
}

/// Colours on stderr: a terminal and NO_COLOR unset.
pub fn color_err() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::io::stderr().is_terminal() && !no_color_env())
}

/// Progress bars and spinners: only when stderr is a terminal.
pub fn progress_enabled() -> bool {
    std::io::stderr().is_terminal()
}

pub fn paint(p: Paint, text: &str, enabled: bool) -> String {
    if enabled {
        format!("\x1b[{}m{text}\x1b[0m", p.code())
    } else {
        text.to_string()
    }
}

/// Paint for stdout.
pub fn po(p: Paint, text: &str) -> String {
    paint(p, text, color_out())
}

/// Paint for stderr.
pub fn pe(p: Paint, text: &str) -> String {
    paint(p, text, color_err())
}

/// The colour of an execution status.
pub fn status_paint(status: &str) -> Paint {
    match status {
        "Completed" | "running" => Paint::Green,
        "Failed" | "crashed" | "missing" => Paint::Red,
        "InProgress" | "starting" | "partial" => Paint::Yellow,
        _ => Paint::Dim,
    }
}

// ------------------------------------------------------------------- tables

/// One table cell: its text and an optional colour (widths use the text only).
#[derive(Debug, Clone)]
pub struct Cell {
    pub text: String,
    pub paint: Option<Paint>,
}

impl Cell {
    pub fn painted(text: impl Into<String>, paint: Paint) -> Cell {
        Cell {
            text: text.into(),
            paint: Some(paint),
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell { text, paint: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::from(text.to_string())
    }
}

/// A table with aligned columns, two spaces apart, no trailing spaces.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self, color: bool) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.text.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: Vec<(String, Option<Paint>)>| {
            let n = cells.len();
            let mut text = String::new();
            for (i, (t, p)) in cells.into_iter().enumerate() {
                let pad = widths[i].saturating_sub(t.chars().count());
                text.push_str(&match p {
                    Some(p) => paint(p, &t, color),
                    None => t,
                });
                if i + 1 < n {
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(
            &mut out,
            self.header
                .iter()
                .map(|h| (h.clone(), Some(Paint::Bold)))
                .collect(),
        );
        for row in &self.rows {
            line(
                &mut out,
                row.iter()
                    .take(columns)
                    .map(|c| (c.text.clone(), c.paint))
                    .collect(),
            );
        }
        out
    }

    pub fn print(&self) {
        let text = self.render(color_out());
        outln!("{}", text.trim_end_matches('\n'));
    }
}

// ----------------------------------------------------------------- progress

/// A spinner with the latest step on a terminal; plain lines on stderr otherwise.
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

/// One line of build output fit for a spinner: no control characters, the part after
/// the last carriage return.
pub fn clean_line(text: &str) -> String {
    let last = text
        .rsplit('\r')
        .find(|s| !s.trim().is_empty())
        .unwrap_or("");
    last.chars()
        .filter(|c| !c.is_control() || *c == '\t')
        .collect::<String>()
        .trim()
        .to_string()
}

impl Progress {
    pub fn new(first: &str) -> Progress {
        if !progress_enabled() {
            errln!("{first}");
            return Progress { bar: None };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        let style =
            indicatif::ProgressStyle::with_template("{spinner:.cyan} {elapsed:>4} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_message(first.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        Progress { bar: Some(bar) }
    }

    /// The latest step: replaces the spinner's message, or prints a line.
    pub fn step(&self, message: &str) {
        let line = clean_line(message);
        if line.is_empty() {
            return;
        }
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None => errln!("  {line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Show a transfer's progress (`what: 1.2 MiB of 4.0 MiB (30%)`) on a terminal;
    /// nothing otherwise (a log would get one line per chunk).
    pub fn bytes(&self, what: &str, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            bar.set_message(format!(
                "{what}: {} of {} ({pct}%)",
                format_bytes(done),
                format_bytes(total)
            ));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

// ------------------------------------------------------------------- errors

/// What to do about an API error, by its stable code.
pub fn hint(code: &str, message: &str) -> Option<&'static str> {
    Some(match code {
        "unknown_task" => {
            "list the service's tasks and their inputs with `mesg service show SERVICE`"
        }
        "unknown_event" => "list the service's events with `mesg service show SERVICE`",
        "invalid_inputs" => {
            "each line above is the JSON path of a wrong input; see the expected types with `mesg service show SERVICE`"
        }
        "invalid_event_data" => {
            "each line above is the JSON path of a wrong value; see the expected types with `mesg service show SERVICE`"
        }
        "invalid_definition" => "check the file locally with `mesg service validate DIR`",
        "invalid_process" => {
            "each line above is LINE:COL (when known), the step and field path, and the problem; check a file with `mesg process validate FILE`"
        }
        "docker_unavailable" => {
            "start Docker on the node's machine (e.g. `sudo systemctl start docker`), then check with `mesg node info`"
        }
        "unauthorized" => {
            "every node requires its API token: pass --token TOKEN (or MESG_TOKEN); for a node on this machine mesg reads DIR/api.token, DIR being ~/.mesg or --node-data-dir (MESG_DATA_DIR)"
        }
        "bad_host" => {
            "reach the node by its IP address or localhost, or start it with --api-host NAME"
        }
        "no_provider" => "start an instance first: `mesg service start SERVICE`",
        "undeclared_env" => {
            "only variables declared under configuration.env in the mesg.yml can be set with --env"
        }
        "missing_image" => {
            "images of dependencies must exist on the node's machine: docker pull or docker build them first"
        }
        "image_not_allowed" => {
            "dependencies and the Dockerfile may use images the node built, or ones its operator allows with `mesg-node --allow-image NAME`; FROM scratch always works"
        }
        "reserved_port" => {
            "that host port is the node's own: change the `ports:` entry in mesg.yml (\"80\" lets Docker pick the host port)"
        }
        "build_failed" => {
            "check the Dockerfile, and that every file it COPYs is in the service directory and not excluded by .dockerignore"
        }
        "bad_signature" | "replayed" => {
            "check this machine's clock; a signed request is valid once and for a limited time"
        }
        "timeout" => "raise the timeout with --timeout",
        "ambiguous_sid" | "sid_pinned_elsewhere" => {
            "choose the publisher with SID@PUBLISHER_KEY, pin it with `mesg-node --pin SID=KEY`, or use the service hash; `mesg network services` lists the publishers"
        }
        "bad_publisher_claim" => {
            "the claim must be signed for this package and its sid: deploy with `mesg --account NAME service deploy DIR`"
        }
        "route_not_found" | "method_not_allowed" => {
            "this node does not know that route: is it a mesg node of a compatible version?"
        }
        "not_found" if message.starts_with("service") => {
            "list the services this node knows with `mesg service list`"
        }
        "not_found" if message.starts_with("execution") => {
            "list recent executions with `mesg executions list`"
        }
        "not_found" if message.starts_with("process") => {
            "list the processes this node runs with `mesg process list`"
        }
        "not_found" if message.starts_with("run") => {
            "list the runs of a process with `mesg process runs PROCESS`"
        }
        "not_found" if message.starts_with("instance") => {
            "list a service's instances with `mesg service show SERVICE`"
        }
        _ => return None,
    })
}

/// The message of an API error without the details it repeats (they are printed one per
/// line below it).
pub fn headline(api: &crate::client::ApiError) -> String {
    if api.details.is_empty() {
        return api.message.clone();
    }
    let first = api.message.lines().next().unwrap_or_default();
    let first = first
        .strip_suffix(api.details.join("; ").as_str())
        .unwrap_or(first);
    first.trim_end_matches([':', ' ']).to_string()
}

/// Print an error for a person: `error: message`, each detail indented, then a hint.
pub fn print_error(e: &anyhow::Error) {
    let label = pe(Paint::Red, "error:");
    if let Some(api) = e.downcast_ref::<crate::client::ApiError>() {
        errln!("{label} {}", headline(api));
        for d in &api.details {
            errln!("  {d}");
        }
        if let Some(h) = hint(&api.code, &api.message) {
            errln!("{} {h}", pe(Paint::Cyan, "hint:"));
        }
        if api.code == "invalid_inputs"
            && api
                .details
                .iter()
                .any(|d| d.contains("expected String, got"))
        {
            errln!(
                "{} a -d value that parses as JSON (5, true, null) is sent as JSON; quote it to send a string: -d 'key=\"5\"'",
                pe(Paint::Cyan, "hint:")
            );
        }
    } else if let Some(u) = e.downcast_ref::<crate::client::Unreachable>() {
        errln!("{label} {u}");
    } else {
        errln!("{label} {e:#}");
    }
}

// ----------------------------------------------------------- ids and values

/// The first `n` characters of an id (for tables; `--json` shows ids whole).
pub fn short(id: &str, n: usize) -> String {
    id.chars().take(n).collect()
}

/// Length of shortened ids and hashes in tables.
pub const SHORT: usize = 8;

/// Text from a container or a service (log lines, task errors), safe for a terminal:
/// control characters and escape sequences are removed, except colour sequences
/// (`ESC [ ... m`) when `keep_colours`.
pub fn sanitize(text: &str, keep_colours: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                let mut seq = String::from("\x1b[");
                let mut ok = false;
                for n in chars.by_ref() {
                    seq.push(n);
                    if ('\x40'..='\x7e').contains(&n) {
                        ok = n == 'm';
                        break;
                    }
                }
                if ok && keep_colours {
                    out.push_str(&seq);
                }
            }
            continue;
        }
        if c.is_control() && c != '\t' {
            continue;
        }
        out.push(c);
    }
    if keep_colours && out.contains('\x1b') {
        out.push_str("\x1b[0m");
    }
    out
}

/// A JSON value on one line, cut to `max` characters.
pub fn compact_json(v: &serde_json::Value, max: usize) -> String {
    let text = v.to_string();
    if text.chars().count() <= max {
        text
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// A JSON value, pretty, indented by `indent` spaces.
pub fn pretty_json(v: &serde_json::Value, indent: usize) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    let pad = " ".repeat(indent);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// -------------------------------------------------------- times and sizes

/// A duration: `120 ms`, `3.2 s`, `2m 05s`, `1h 03m`, `2d 04h`.
pub fn format_duration_ms(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms} ms");
    }
    if ms < 10_000 {
        return format!("{:.1} s", ms as f64 / 1000.0);
    }
    let s = ms / 1000;
    if s < 60 {
        return format!("{s} s");
    }
    let two = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit} {small:02}{small_unit}")
        }
    };
    if s < 3600 {
        return two(s / 60, "m", s % 60, "s");
    }
    if s < 86_400 {
        return two(s / 3600, "h", (s % 3600) / 60, "m");
    }
    two(s / 86_400, "d", (s % 86_400) / 3600, "h")
}

/// How long ago `then_ms` was, seen at `now_ms`: `just now`, `3s ago`, `5m ago`, `2h ago`,
/// `4d ago`. A time slightly in the future (clock skew) reads `just now`.
pub fn format_age(now_ms: u64, then_ms: u64) -> String {
    if then_ms > now_ms {
        return if then_ms - now_ms < 5_000 {
            "just now".to_string()
        } else {
            format!(
                "in {}",
                format_age(then_ms, now_ms).trim_end_matches(" ago")
            )
        };
    }
    let s = (now_ms - then_ms) / 1000;
    match s {
        0 => "just now".to_string(),
        1..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `2026-11-28 19:48:02 UTC`.
pub fn format_timestamp(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} UTC",
        t / 3600,
        (t % 3600) / 60,
        t % 60
    )
}

/// `19:48:02.123` (UTC), for streams.
pub fn format_clock(ms: u64) -> String {
    let t = (ms / 1000) % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        t / 3600,
        (t % 3600) / 60,
        t % 60,
        ms % 1000
    )
}

/// `812 B`, `4.7 KiB`, `12.3 MiB`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration_ms(0), "0 ms");
        assert_eq!(format_duration_ms(120), "120 ms");
        assert_eq!(format_duration_ms(999), "999 ms");
        assert_eq!(format_duration_ms(1000), "1.0 s");
        assert_eq!(format_duration_ms(3250), "3.2 s");
        assert_eq!(format_duration_ms(42_000), "42 s");
        assert_eq!(format_duration_ms(125_000), "2m 05s");
        assert_eq!(format_duration_ms(3_780_000), "1h 03m");
        assert_eq!(format_duration_ms(3_600_000), "1h");
        assert_eq!(format_duration_ms(60_000), "1m");
        assert_eq!(format_duration_ms(2 * 86_400_000 + 4 * 3_600_000), "2d 04h");
    }

    #[test]
    fn ages_are_relative_to_now() {
        let now = 1_800_000_000_000;
        assert_eq!(format_age(now, now), "just now");
        assert_eq!(format_age(now, now - 3_000), "3s ago");
        assert_eq!(format_age(now, now - 59_999), "59s ago");
        assert_eq!(format_age(now, now - 60_000), "1m ago");
        assert_eq!(format_age(now, now - 2 * 3_600_000), "2h ago");
        assert_eq!(format_age(now, now - 3 * 86_400_000), "3d ago");
        assert_eq!(format_age(now, now + 1_000), "just now");
        assert_eq!(format_age(now, now + 120_000), "in 2m");
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00 UTC");
        // 2024-02-29 12:34:56 UTC (a leap day)
        assert_eq!(
            format_timestamp(1_709_210_096_000),
            "2024-02-29 12:34:56 UTC"
        );
        assert_eq!(format_clock(1_709_210_096_789), "12:34:56.789");
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(format_bytes(812), "812 B");
        assert_eq!(format_bytes(4812), "4.7 KiB");
        assert_eq!(format_bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn tables_align_on_visible_text_and_ignore_colours() {
        let mut t = Table::new(&["ID", "STATUS", "TASK"]);
        t.row(vec![
            "abc".into(),
            Cell::painted("Completed", Paint::Green),
            "echo".into(),
        ]);
        t.row(vec!["a".into(), "Failed".into(), "x".into()]);
        let plain = t.render(false);
        assert_eq!(
            plain,
            "ID   STATUS     TASK\nabc  Completed  echo\na    Failed     x\n"
        );
        let coloured = t.render(true);
        assert!(coloured.contains("\x1b[32mCompleted\x1b[0m  echo"));
    }

    #[test]
    fn api_error_headlines_do_not_repeat_their_details() {
        let e = |message: &str, details: &[&str]| crate::client::ApiError {
            status: 400,
            code: "x".into(),
            message: message.into(),
            details: details.iter().map(|d| d.to_string()).collect(),
        };
        assert_eq!(
            headline(&e(
                "invalid inputs: inputs.a: missing; inputs.b: bad",
                &["inputs.a: missing", "inputs.b: bad"]
            )),
            "invalid inputs"
        );
        assert_eq!(
            headline(&e(
                "invalid service definition:\n3:1: name: missing",
                &["3:1: name: missing"]
            )),
            "invalid service definition"
        );
        assert_eq!(
            headline(&e("service `x` not found", &[])),
            "service `x` not found"
        );
    }

    #[test]
    fn container_text_cannot_drive_the_terminal() {
        let text = "\x1b[2mdim\x1b[0m \x1b]0;title\x07ok\x1b[2Jcleared\r\n\tend";
        assert_eq!(sanitize(text, false), "dim ]0;titleokcleared\tend");
        assert_eq!(
            sanitize(text, true),
            "\x1b[2mdim\x1b[0m ]0;titleokcleared\tend\x1b[0m"
        );
    }

    #[test]
    fn long_json_is_cut() {
        let v = serde_json::json!({"message": "a long message that goes on"});
        assert_eq!(
            compact_json(&v, 100),
            r#"{"message":"a long message that goes on"}"#
        );
        let cut = compact_json(&v, 10);
        assert_eq!(cut.chars().count(), 10);
        assert!(cut.ends_with('…'));
    }
}
