//! Paths into JSON values (`a.b[0].c`): what filters test and references read in a step's
//! output. Written as text in process files and in the stored definition.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// A path into a JSON value: `a.b[0].c`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path(pub Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

impl Path {
    pub fn parse(text: &str) -> Result<Path, String> {
        let mut segments = Vec::new();
        if text.is_empty() {
            return Ok(Path(segments));
        }
        for part in text.split('.') {
            let (name, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            // A part is a key with optional indexes; only the first part may be bare
            // indexes (`[0].a` reads an array at the top).
            let first = segments.is_empty();
            if name.is_empty() && (rest.is_empty() || !first) {
                return Err(format!("`{text}`: empty path segment"));
            }
            if !name.is_empty() {
                segments.push(Segment::Key(name.to_string()));
            }
            while !rest.is_empty() {
                let close = rest
                    .find(']')
                    .ok_or_else(|| format!("`{text}`: `[` without `]`"))?;
                let index = rest[1..close]
                    .parse::<usize>()
                    .map_err(|_| format!("`{text}`: `{}` is not an index", &rest[1..close]))?;
                segments.push(Segment::Index(index));
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(format!("`{text}`: unexpected `{rest}`"));
                }
            }
        }
        Ok(Path(segments))
    }

    pub fn get<'v>(&self, mut v: &'v Value) -> Option<&'v Value> {
        for s in &self.0 {
            v = match s {
                Segment::Key(k) => v.as_object()?.get(k)?,
                Segment::Index(i) => v.as_array()?.get(*i)?,
            };
        }
        Some(v)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl Serialize for Path {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Path {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Path::parse(&s).map_err(serde::de::Error::custom)
    }
}
