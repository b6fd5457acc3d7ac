//! Samples, percentiles and the markdown the suite writes.

use std::fmt::Write as _;
use std::time::Duration;

/// min / p50 / p99 / max of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Summary {
        let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Summary {
                n: 0,
                min: f64::NAN,
                p50: f64::NAN,
                p99: f64::NAN,
                max: f64::NAN,
            };
        }
        Summary {
            n: v.len(),
            min: v[0],
            p50: percentile(&v, 50.0),
            p99: percentile(&v, 99.0),
            max: v[v.len() - 1],
        }
    }
}

impl Summary {
    /// The cells `n`, `min`, `p50`, `p99` of a table row, in ms.
    pub fn cells(&self) -> [String; 4] {
        [self.n.to_string(), ms(self.min), ms(self.p50), ms(self.p99)]
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A number of milliseconds with a precision that suits its size.
pub fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v < 1.0 {
        format!("{v:.3}")
    } else if v < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| {} |", self.headers.join(" | "));
        let _ = writeln!(
            out,
            "|{}",
            self.headers.iter().map(|_| "---|").collect::<String>()
        );
        for r in &self.rows {
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
        out
    }
}

/// A goal of the issue printed beside what was measured.
#[derive(Debug, Clone)]
pub struct Goal {
    pub what: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

impl Goal {
    pub fn new(what: &str, target: &str, measured: String, met: bool) -> Goal {
        Goal {
            what: what.into(),
            target: target.into(),
            measured,
            met,
        }
    }
}

/// What one section of the suite measured.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub title: String,
    /// What was run, in a sentence or two.
    pub method: String,
    pub tables: Vec<(String, Table)>,
    pub goals: Vec<Goal>,
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(title: &str, method: impl Into<String>) -> Section {
        Section {
            title: title.into(),
            method: method.into(),
            ..Section::default()
        }
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("## {}\n\n{}\n\n", self.title, self.method);
        for (caption, t) in &self.tables {
            if !caption.is_empty() {
                let _ = writeln!(out, "{caption}\n");
            }
            let _ = writeln!(out, "{}", t.markdown());
        }
        for n in &self.notes {
            let _ = writeln!(out, "- {n}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out
    }
}

pub fn goals_table(sections: &[Section]) -> Table {
    let mut t = Table::new(&["goal", "target", "measured", "met"]);
    for g in sections.iter().flat_map(|s| &s.goals) {
        t.row(vec![
            g.what.clone(),
            g.target.clone(),
            g.measured.clone(),
            if g.met { "yes" } else { "**no**" }.into(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        let s = Summary::of(&[Duration::from_millis(3), Duration::from_millis(1)]);
        assert_eq!((s.n, s.min, s.max), (2, 1.0, 3.0));
    }

    #[test]
    fn tables_render_as_markdown() {
        let mut t = Table::new(&["a", "b"]);
        t.row(vec!["1".into(), "2".into()]);
        assert_eq!(t.markdown(), "| a | b |\n|---|---|\n| 1 | 2 |\n");
    }
}
