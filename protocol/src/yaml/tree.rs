//! A small YAML document tree that keeps the position of every node.
//!
//! We do not deserialize `mesg.yml` or process files straight into structs with serde:
//! serde stops at the first error, loses duplicate keys and often the position. Instead
//! the parser's event stream is turned into this tree (duplicate keys kept, positions
//! kept), and the validators walk it ([`super::Walker`]) and report every problem of a
//! file at once.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Largest YAML document we accept. Definitions are small; this bounds parser work.
pub const MAX_YAML_BYTES: usize = 1024 * 1024;
/// Deepest nesting we accept (parameters nest through `object`).
pub const MAX_DEPTH: usize = 64;

/// A position in the source: line and column, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string: either quoted, or a plain scalar that is not null, bool or a number.
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// Scalars keep their source text too: a plain `80` is a number, but a field that wants
    /// a string (a port, a name) may take it as written.
    Scalar(Scalar, String),
    Sequence(Vec<Node>),
    /// Entries in source order; duplicates are kept so the validator can report them.
    Mapping(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub text: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub pos: Pos,
}

impl Node {
    /// A human name of the node's kind, for "expected X, got Y" messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(Scalar::Null, _) => "null",
            NodeKind::Scalar(Scalar::Bool(_), _) => "a boolean",
            NodeKind::Scalar(Scalar::Int(_), _) | NodeKind::Scalar(Scalar::Float(_), _) => {
                "a number"
            }
            NodeKind::Scalar(Scalar::Str(_), _) => "a string",
            NodeKind::Sequence(_) => "a list",
            NodeKind::Mapping(_) => "a mapping",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, NodeKind::Scalar(Scalar::Null, _))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parse one YAML document. An empty document gives `Ok(None)`.
pub fn parse(src: &str) -> Result<Option<Node>, YamlError> {
    if src.len() > MAX_YAML_BYTES {
        return Err(YamlError {
            line: 1,
            column: 1,
            message: format!(
                "file is {} bytes, larger than the {} byte limit",
                src.len(),
                MAX_YAML_BYTES
            ),
        });
    }
    let mut builder = Builder::default();
    for item in Parser::new_from_str(src) {
        let (event, span) = item.map_err(|e| YamlError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        builder.on_event(event, span)?;
    }
    Ok(builder.root)
}

enum Frame {
    Seq(Pos, Vec<Node>),
    Map(Pos, Vec<(Key, Node)>, Option<Key>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    documents: usize,
}

impl Builder {
    fn on_event(&mut self, event: Event<'_>, span: Span) -> Result<(), YamlError> {
        let pos = Pos::from_span(&span);
        let err = |message: &str| YamlError {
            line: pos.line,
            column: pos.column,
            message: message.to_string(),
        };
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(err("only one YAML document is allowed"));
                }
            }
            Event::Alias(_) => {
                return Err(err("YAML aliases (*name) are not supported"));
            }
            Event::Scalar(text, style, anchor, tag) => {
                if anchor != 0 {
                    return Err(err("YAML anchors (&name) are not supported"));
                }
                let scalar = match (&tag, style) {
                    (Some(t), _) if t.is_yaml_core_schema() && t.suffix == "str" => {
                        Scalar::Str(text.to_string())
                    }
                    (Some(_), _) => return Err(err("YAML tags are not supported")),
                    (None, ScalarStyle::Plain) => resolve_plain(&text),
                    (None, _) => Scalar::Str(text.to_string()),
                };
                let node = Node {
                    kind: NodeKind::Scalar(scalar, text.to_string()),
                    pos,
                };
                self.push_value(node, pos)?;
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag)
                if anchor != 0 || tag.is_some() =>
            {
                return Err(err("YAML anchors and tags are not supported"));
            }
            Event::SequenceStart(..) => {
                self.check_depth(pos)?;
                self.stack.push(Frame::Seq(pos, Vec::new()));
            }
            Event::MappingStart(..) => {
                self.check_depth(pos)?;
                self.stack.push(Frame::Map(pos, Vec::new(), None));
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq(start, items)) => {
                    let node = Node {
                        kind: NodeKind::Sequence(items),
                        pos: start,
                    };
                    self.push_value(node, start)?;
                }
                _ => return Err(err("unbalanced sequence")),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map(start, entries, None)) => {
                    let node = Node {
                        kind: NodeKind::Mapping(entries),
                        pos: start,
                    };
                    self.push_value(node, start)?;
                }
                _ => return Err(err("unbalanced mapping")),
            },
        }
        Ok(())
    }

    fn check_depth(&self, pos: Pos) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(YamlError {
                line: pos.line,
                column: pos.column,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        Ok(())
    }

    fn push_value(&mut self, node: Node, pos: Pos) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, pending)) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    // A key: only scalar keys are meaningful in a definition.
                    let text = match node.kind {
                        NodeKind::Scalar(_, text) => text,
                        _ => {
                            return Err(YamlError {
                                line: pos.line,
                                column: pos.column,
                                message: "mapping keys must be plain strings".into(),
                            });
                        }
                    };
                    *pending = Some(Key { text, pos });
                }
            },
        }
        Ok(())
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
pub(crate) fn resolve_plain(text: &str) -> Scalar {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(v) = text.parse::<i64>() {
            return Scalar::Int(v);
        }
        if let Ok(v) = text.parse::<f64>() {
            return Scalar::Float(v);
        }
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(v) = i64::from_str_radix(hex, 16)
    {
        return Scalar::Int(v);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(v) = i64::from_str_radix(oct, 8)
    {
        return Scalar::Int(v);
    }
    if looks_like_float(text)
        && let Ok(v) = text.parse::<f64>()
    {
        return Scalar::Float(v);
    }
    Scalar::Str(text.to_string())
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn looks_like_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (!int.is_empty() || !frac.is_empty())
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
                && !(int.is_empty() && frac.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        }
    };
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::{MAX_DEPTH, NodeKind, Pos, Scalar, parse};

    fn scalar(src: &str) -> Scalar {
        match parse(src).unwrap().unwrap().kind {
            NodeKind::Scalar(s, _) => s,
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn plain_scalars_resolve_by_the_core_schema() {
        assert_eq!(scalar("~"), Scalar::Null);
        assert_eq!(scalar("true"), Scalar::Bool(true));
        assert_eq!(scalar("FALSE"), Scalar::Bool(false));
        assert_eq!(scalar("80"), Scalar::Int(80));
        assert_eq!(scalar("-3"), Scalar::Int(-3));
        assert_eq!(scalar("0x1f"), Scalar::Int(31));
        assert_eq!(scalar("1.5"), Scalar::Float(1.5));
        assert_eq!(scalar("1e3"), Scalar::Float(1000.0));
        assert_eq!(scalar("yes"), Scalar::Str("yes".into()));
        assert_eq!(scalar("'80'"), Scalar::Str("80".into()));
        assert_eq!(scalar("80:8080"), Scalar::Str("80:8080".into()));
        assert_eq!(scalar("!!str 12"), Scalar::Str("12".into()));
    }

    #[test]
    fn positions_are_one_based() {
        let root = parse("a: 1\nb:\n  c: x\n").unwrap().unwrap();
        let NodeKind::Mapping(entries) = root.kind else {
            panic!()
        };
        assert_eq!(entries[1].0.pos, Pos { line: 2, column: 1 });
        let NodeKind::Mapping(inner) = &entries[1].1.kind else {
            panic!()
        };
        assert_eq!(inner[0].0.pos, Pos { line: 3, column: 3 });
    }

    #[test]
    fn duplicate_keys_are_kept_for_the_validator() {
        let root = parse("a: 1\na: 2\n").unwrap().unwrap();
        let NodeKind::Mapping(entries) = root.kind else {
            panic!()
        };
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn aliases_multi_documents_and_deep_nesting_are_refused() {
        assert!(parse("a: &x 1\nb: *x\n").is_err());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).unwrap_err().message.contains("nesting"));
        assert!(parse("").unwrap().is_none());
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.line >= 1, "{e}");
    }
}
