//! Parsing of what people type: `-d key=value` task inputs, `--env KEY=VALUE`, durations.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One `-d` argument: the key path (`a.b` -> `["a", "b"]`) and its value. The value is
/// JSON when it parses as JSON (`3`, `true`, `null`, `{"x":1}`, `"quoted"`) and the plain
/// string otherwise (`hello`, `hello world`, ``).
pub fn parse_data_arg(arg: &str) -> Result<(Vec<String>, Value), String> {
    let Some((key, raw)) = arg.split_once('=') else {
        return Err(format!(
            "`-d {arg}`: expected key=value (e.g. -d name=Ada, -d count=3, -d user.age=36)"
        ));
    };
    if key.trim().is_empty() {
        return Err(format!("`-d {arg}`: the key before `=` is empty"));
    }
    let path: Vec<String> = key.split('.').map(str::to_string).collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "`-d {arg}`: `{key}` has an empty part (a.b.c is the nesting syntax)"
        ));
    }
    let value = serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.into()));
    Ok((path, value))
}

/// Build the inputs object of every `-d` argument, in order. `-d a.b=1 -d a.c=2` gives
/// `{"a":{"b":1,"c":2}}`; giving the same key twice, or nesting under a key that holds a
/// value that is not an object, is an error.
pub fn parse_data_args(args: &[String]) -> Result<Value, String> {
    let mut root = Map::new();
    for arg in args {
        let (path, value) = parse_data_arg(arg)?;
        let (last, parents) = path.split_last().expect("a path has at least one part");
        let mut map = &mut root;
        for (i, part) in parents.iter().enumerate() {
            let entry = map
                .entry(part.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            map = match entry {
                Value::Object(m) => m,
                _ => {
                    return Err(format!(
                        "`-d {arg}`: `{}` is already set to a value that is not an object",
                        path[..=i].join(".")
                    ));
                }
            };
        }
        if map.contains_key(last) {
            return Err(format!("`-d {arg}`: `{}` is given twice", path.join(".")));
        }
        map.insert(last.clone(), value);
    }
    Ok(Value::Object(root))
}

/// `--input`: a JSON object, `@FILE` holding one, or `-` for stdin.
pub fn parse_input_json(text: &str) -> Result<Value, String> {
    let (source, body) = if text == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| format!("--input -: cannot read stdin: {e}"))?;
        ("stdin".to_string(), s)
    } else if let Some(path) = text.strip_prefix('@') {
        let s = std::fs::read_to_string(path).map_err(|e| format!("--input @{path}: {e}"))?;
        (path.to_string(), s)
    } else {
        ("--input".to_string(), text.to_string())
    };
    let value: Value = serde_json::from_str(&body).map_err(|e| {
        format!("{source} is not valid JSON ({e}); e.g. --input '{{\"name\":\"Ada\"}}'")
    })?;
    if !value.is_object() {
        return Err(format!(
            "{source} must be a JSON object of inputs, like {{\"name\":\"Ada\"}}, not {}",
            mesg_protocol::schema::json_type_name(&value)
        ));
    }
    Ok(value)
}

/// One `--env KEY=VALUE` argument.
pub fn parse_env_arg(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "`{arg}`: expected KEY=VALUE (e.g. --env LOG_LEVEL=debug)"
        )),
    }
}

/// Every `--env`, with duplicates refused.
pub fn env_map(pairs: &[(String, String)]) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    for (k, v) in pairs {
        if env.insert(k.clone(), v.clone()).is_some() {
            return Err(format!("--env {k} is given twice"));
        }
    }
    Ok(env)
}

/// A timeout: a plain number is milliseconds (`1500`); with a unit: `500ms`, `30s`, `2m`,
/// `1h` (at most 24h).
pub fn parse_timeout_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        let ms: u64 = t.parse().map_err(|_| format!("`{text}` is too large"))?;
        if ms == 0 {
            return Err("a timeout must be at least 1 ms".into());
        }
        if ms > mesg_protocol::definition::MAX_TIMEOUT_MS {
            return Err(format!("`{text}` is longer than the 24h limit"));
        }
        return Ok(ms);
    }
    mesg_protocol::definition::parse_duration_ms(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(args: &[&str]) -> Result<Value, String> {
        parse_data_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn values_are_json_when_they_parse_and_strings_otherwise() {
        assert_eq!(
            data(&[
                "n=3",
                "f=-1.5",
                "yes=true",
                "no=false",
                "nothing=null",
                "obj={\"x\":[1,2]}",
                "list=[1,\"a\"]",
                "word=hello",
                "phrase=hello world",
                "quoted=\"42\"",
                "empty=",
                "eq=a=b",
            ])
            .unwrap(),
            json!({
                "n": 3, "f": -1.5, "yes": true, "no": false, "nothing": null,
                "obj": {"x": [1, 2]}, "list": [1, "a"], "word": "hello",
                "phrase": "hello world", "quoted": "42", "empty": "", "eq": "a=b"
            })
        );
    }

    #[test]
    fn dotted_keys_build_nested_objects() {
        assert_eq!(
            data(&[
                "user.name=Ada",
                "user.age=36",
                "user.address.city=London",
                "top=1"
            ])
            .unwrap(),
            json!({"user": {"name": "Ada", "age": 36, "address": {"city": "London"}}, "top": 1})
        );
        // Nesting into an object given as JSON works too.
        assert_eq!(
            data(&["a={\"x\":1}", "a.y=2"]).unwrap(),
            json!({"a": {"x": 1, "y": 2}})
        );
        assert_eq!(data(&[]).unwrap(), json!({}));
    }

    #[test]
    fn malformed_arguments_are_errors() {
        let err = data(&["=x"]).unwrap_err();
        assert!(err.contains("key before `=` is empty"), "{err}");
        assert!(
            data(&["novalue"])
                .unwrap_err()
                .contains("expected key=value")
        );
        assert!(data(&["a..b=1"]).unwrap_err().contains("empty part"));
        assert!(data(&[".a=1"]).unwrap_err().contains("empty part"));
        assert!(data(&["a.=1"]).unwrap_err().contains("empty part"));
        let twice = data(&["a=1", "a=2"]).unwrap_err();
        assert!(twice.contains("`a` is given twice"), "{twice}");
        let conflict = data(&["a=1", "a.b=2"]).unwrap_err();
        assert!(conflict.contains("`a` is already set"), "{conflict}");
        let deep = data(&["a.b=1", "a.b.c=2"]).unwrap_err();
        assert!(deep.contains("`a.b` is already set"), "{deep}");
        assert!(
            data(&["a.b=1", "a={}"])
                .unwrap_err()
                .contains("given twice")
        );
    }

    #[test]
    fn input_json_must_be_an_object() {
        assert_eq!(parse_input_json(r#"{"a":1}"#).unwrap(), json!({"a": 1}));
        assert!(parse_input_json("[1]").unwrap_err().contains("JSON object"));
        assert!(
            parse_input_json("{oops")
                .unwrap_err()
                .contains("not valid JSON")
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.json");
        std::fs::write(&file, r#"{"from":"file"}"#).unwrap();
        assert_eq!(
            parse_input_json(&format!("@{}", file.display())).unwrap(),
            json!({"from": "file"})
        );
    }

    #[test]
    fn env_and_timeouts() {
        assert_eq!(
            parse_env_arg("A=b=c").unwrap(),
            ("A".to_string(), "b=c".to_string())
        );
        assert!(parse_env_arg("=x").is_err());
        assert!(parse_env_arg("A").is_err());
        let dup = vec![
            ("A".to_string(), "1".to_string()),
            ("A".to_string(), "2".to_string()),
        ];
        assert!(env_map(&dup).is_err());
        assert_eq!(parse_timeout_ms("1500").unwrap(), 1500);
        assert_eq!(parse_timeout_ms("30s").unwrap(), 30_000);
        assert_eq!(parse_timeout_ms("500ms").unwrap(), 500);
        assert_eq!(parse_timeout_ms("2m").unwrap(), 120_000);
        assert!(parse_timeout_ms("0").is_err());
        assert!(parse_timeout_ms("soon").is_err());
        assert!(parse_timeout_ms("25h").is_err());
    }
}
