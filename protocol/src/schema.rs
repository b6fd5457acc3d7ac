//! Typed parameters (task inputs and outputs, event data) and validation of JSON values
//! against them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// The type of a parameter, as written in `mesg.yml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParamType {
    String,
    Number,
    Boolean,
    Object,
    Any,
}

impl ParamType {
    pub const ALL: [ParamType; 5] = [
        ParamType::String,
        ParamType::Number,
        ParamType::Boolean,
        ParamType::Object,
        ParamType::Any,
    ];

    pub fn parse(s: &str) -> Option<ParamType> {
        ParamType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "String",
            ParamType::Number => "Number",
            ParamType::Boolean => "Boolean",
            ParamType::Object => "Object",
            ParamType::Any => "Any",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            ParamType::String => v.is_string(),
            ParamType::Number => v.is_number(),
            ParamType::Boolean => v.is_boolean(),
            ParamType::Object => v.is_object(),
            ParamType::Any => true,
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One declared parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    // No `skip_serializing_if` anywhere in types that go through bincode: a binary
    // format cannot tell a skipped field from the next one.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: ParamType,
    #[serde(default)]
    pub optional: bool,
    #[serde(default)]
    pub repeated: bool,
    /// Nested parameters of an `Object`. `None` accepts any object.
    #[serde(default)]
    pub object: Option<ParamMap>,
}

impl Parameter {
    pub fn new(kind: ParamType) -> Parameter {
        Parameter {
            name: None,
            description: None,
            kind,
            optional: false,
            repeated: false,
            object: None,
        }
    }
}

/// Parameters by key; ordered so that canonical encodings do not depend on file order.
pub type ParamMap = BTreeMap<String, Parameter>;

/// One mismatch between a value and its parameters, with the JSON path of the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// All mismatches of one value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub struct ValueErrors(pub Vec<ValueError>);

impl fmt::Display for ValueErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Name of a JSON value's type, in the vocabulary of [`ParamType`].
pub fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "Boolean",
        Value::Number(_) => "Number",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Object",
    }
}

/// Check `value` (an object, or null for "nothing") against `params`. `root` names the value
/// in error paths: `inputs`, `outputs`, `data`.
pub fn validate(params: &ParamMap, value: &Value, root: &str) -> Result<(), ValueErrors> {
    let mut errors = Vec::new();
    let empty = serde_json::Map::new();
    let object = match value {
        Value::Object(map) => map,
        Value::Null => &empty,
        other => {
            errors.push(ValueError {
                path: root.to_string(),
                message: format!("expected Object, got {}", json_type_name(other)),
            });
            return Err(ValueErrors(errors));
        }
    };
    check_object(params, object, root, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValueErrors(errors))
    }
}

fn check_object(
    params: &ParamMap,
    object: &serde_json::Map<String, Value>,
    path: &str,
    errors: &mut Vec<ValueError>,
) {
    for (key, param) in params {
        let child = format!("{path}.{key}");
        match object.get(key) {
            None | Some(Value::Null) => {
                if !param.optional {
                    errors.push(ValueError {
                        path: child,
                        message: format!(
                            "required {} is missing",
                            if param.repeated {
                                format!("list of {}", param.kind)
                            } else {
                                param.kind.to_string()
                            }
                        ),
                    });
                }
            }
            Some(v) => check_param(param, v, &child, errors),
        }
    }
    for key in object.keys() {
        if !params.contains_key(key) {
            errors.push(ValueError {
                path: format!("{path}.{key}"),
                message: "unknown field (not declared in the definition)".into(),
            });
        }
    }
}

/// Check one value against one parameter (used for constants in process inputs).
pub fn check_param(param: &Parameter, v: &Value, path: &str, errors: &mut Vec<ValueError>) {
    if param.repeated {
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_single(param, item, &format!("{path}[{i}]"), errors);
                }
            }
            other => errors.push(ValueError {
                path: path.to_string(),
                message: format!(
                    "expected a list of {}, got {}",
                    param.kind,
                    json_type_name(other)
                ),
            }),
        }
    } else {
        check_single(param, v, path, errors);
    }
}

fn check_single(param: &Parameter, v: &Value, path: &str, errors: &mut Vec<ValueError>) {
    if !param.kind.accepts(v) {
        errors.push(ValueError {
            path: path.to_string(),
            message: format!("expected {}, got {}", param.kind, json_type_name(v)),
        });
        return;
    }
    if let (ParamType::Object, Some(nested), Value::Object(map)) = (param.kind, &param.object, v) {
        check_object(nested, map, path, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(kind: ParamType) -> Parameter {
        Parameter::new(kind)
    }

    fn user_schema() -> ParamMap {
        let mut user = ParamMap::new();
        user.insert("name".into(), p(ParamType::String));
        user.insert(
            "emails".into(),
            Parameter {
                repeated: true,
                ..p(ParamType::String)
            },
        );
        user.insert(
            "age".into(),
            Parameter {
                optional: true,
                ..p(ParamType::Number)
            },
        );
        let mut root = ParamMap::new();
        root.insert(
            "user".into(),
            Parameter {
                object: Some(user),
                ..p(ParamType::Object)
            },
        );
        root.insert(
            "meta".into(),
            Parameter {
                optional: true,
                ..p(ParamType::Any)
            },
        );
        root.insert(
            "flag".into(),
            Parameter {
                optional: true,
                ..p(ParamType::Boolean)
            },
        );
        root
    }

    /// (value, expected error strings; empty = valid)
    fn table() -> Vec<(Value, Vec<&'static str>)> {
        vec![
            (json!({"user": {"name": "a", "emails": []}}), vec![]),
            (
                json!({"user": {"name": "a", "emails": ["x"], "age": 3}, "meta": [1, {"a": null}], "flag": true}),
                vec![],
            ),
            (
                json!({"user": {"name": "a", "emails": ["x"], "age": null}}),
                vec![],
            ),
            (
                json!({"user": {"name": "a", "emails": ["x", "y", 3]}}),
                vec!["inputs.user.emails[2]: expected String, got Number"],
            ),
            (
                json!({"user": {"name": 1, "emails": "x"}}),
                vec![
                    "inputs.user.emails: expected a list of String, got String",
                    "inputs.user.name: expected String, got Number",
                ],
            ),
            (json!({}), vec!["inputs.user: required Object is missing"]),
            (
                json!({"user": null}),
                vec!["inputs.user: required Object is missing"],
            ),
            (
                json!({"user": {"emails": []}}),
                vec!["inputs.user.name: required String is missing"],
            ),
            (
                json!({"user": {"name": "a"}}),
                vec!["inputs.user.emails: required list of String is missing"],
            ),
            (
                json!({"user": "bob"}),
                vec!["inputs.user: expected Object, got String"],
            ),
            (
                json!({"user": {"name": "a", "emails": []}, "flag": "yes"}),
                vec!["inputs.flag: expected Boolean, got String"],
            ),
            (
                json!({"user": {"name": "a", "emails": []}, "extra": 1}),
                vec!["inputs.extra: unknown field (not declared in the definition)"],
            ),
            (json!([1, 2]), vec!["inputs: expected Object, got Array"]),
            (
                json!({"user": {"name": "a", "emails": [], "age": "3"}}),
                vec!["inputs.user.age: expected Number, got String"],
            ),
            (
                json!({"user": {"name": "a", "emails": [], "zip": 1}}),
                vec!["inputs.user.zip: unknown field (not declared in the definition)"],
            ),
        ]
    }

    #[test]
    fn value_validation_table() {
        let schema = user_schema();
        for (value, expected) in table() {
            let got: Vec<String> = match validate(&schema, &value, "inputs") {
                Ok(()) => vec![],
                Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
            };
            assert_eq!(got, expected, "value {value}");
        }
    }

    #[test]
    fn null_is_an_empty_object_and_object_without_schema_accepts_any_object() {
        let mut params = ParamMap::new();
        params.insert(
            "o".into(),
            Parameter {
                optional: true,
                ..p(ParamType::Object)
            },
        );
        assert!(validate(&params, &Value::Null, "data").is_ok());
        assert!(validate(&params, &json!({"o": {"anything": [1]}}), "data").is_ok());
        assert!(validate(&params, &json!({"o": 1}), "data").is_err());
    }
}
