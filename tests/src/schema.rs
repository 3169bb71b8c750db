//! A validator for the subset of JSON Schema 2020-12 that `docs/openapi.json` uses, so the
//! tests can check a real response body against the documented schema without a schema
//! crate (and its dependency tree) in the workspace.
//!
//! Supported: `$ref` (local, `#/...`), `type` (a name or a list), `const`, `enum`,
//! `properties`, `required`, `additionalProperties` (a bool or a schema), `items`,
//! `maxItems`, `minimum`, `maximum`, `minLength`, `maxLength` (in characters), `oneOf`
//! (exactly one), `anyOf`, `not`. Annotations (`description`, `example`, `default`, `title`,
//! `x-*`) are ignored. `pattern` is refused, like any other keyword: a keyword this validator
//! does not know fails the validation instead of being skipped, so a schema that grows a new
//! keyword cannot silently pass (request schemas, which these tests only send, are not
//! validated with it).

use serde_json::Value;

/// Keywords that carry no constraint.
const ANNOTATIONS: &[&str] = &["description", "example", "examples", "default", "title"];

/// Checks `value` against `schema`, resolving `$ref`s in `doc`. `Err` says where and why.
pub fn validate(doc: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    check(doc, schema, value, "$")
}

/// The schema a local `$ref` (`#/a/b`) points to in `doc`.
pub fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn check(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let Some(obj) = schema.as_object() else {
        return match schema {
            Value::Bool(true) => Ok(()),
            _ => Err(format!("{at}: schema {schema} is not an object")),
        };
    };
    for (key, want) in obj {
        if ANNOTATIONS.contains(&key.as_str()) || key.starts_with("x-") {
            continue;
        }
        let fail = |why: String| Err(format!("{at}: {why}"));
        match key.as_str() {
            "$ref" => {
                let r = want.as_str().unwrap_or_default();
                let target = resolve(doc, r).ok_or_else(|| format!("{at}: unresolved {r}"))?;
                check(doc, target, v, at)?;
            }
            "type" => {
                let names: Vec<&str> = match want {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => return fail(format!("bad type {want}")),
                };
                if !names.iter().any(|n| is_type(v, n)) {
                    return fail(format!("{v} is not of type {want}"));
                }
            }
            "const" if v != want => return fail(format!("{v} is not {want}")),
            "const" => {}
            "enum" => {
                if !want.as_array().is_some_and(|a| a.contains(v)) {
                    return fail(format!("{v} is not one of {want}"));
                }
            }
            "required" => {
                for name in want.as_array().into_iter().flatten() {
                    let name = name.as_str().unwrap_or_default();
                    if v.is_object() && v.get(name).is_none() {
                        return fail(format!("missing member `{name}` in {v}"));
                    }
                }
            }
            "properties" => {
                for (name, sub) in want.as_object().into_iter().flatten() {
                    if let Some(member) = v.get(name).filter(|_| v.is_object()) {
                        check(doc, sub, member, &format!("{at}.{name}"))?;
                    }
                }
            }
            "additionalProperties" => {
                let known = obj.get("properties").and_then(Value::as_object);
                for (name, member) in v.as_object().into_iter().flatten() {
                    if known.is_some_and(|k| k.contains_key(name)) {
                        continue;
                    }
                    match want {
                        Value::Bool(false) => return fail(format!("unexpected member `{name}`")),
                        Value::Bool(true) => {}
                        sub => check(doc, sub, member, &format!("{at}.{name}"))?,
                    }
                }
            }
            "items" => {
                for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                    check(doc, want, item, &format!("{at}[{i}]"))?;
                }
            }
            "maxItems" => {
                if let (Some(a), Some(max)) = (v.as_array(), want.as_u64()) {
                    if a.len() as u64 > max {
                        return fail(format!("more than {max} items"));
                    }
                }
            }
            "minimum" | "maximum" => {
                // Compared as f64: enough for the bounds the document uses (0, 1, u64::MAX).
                if let (Some(n), Some(bound)) = (v.as_f64(), want.as_f64()) {
                    let out = if key == "minimum" {
                        n < bound
                    } else {
                        n > bound
                    };
                    if out {
                        return fail(format!("{v} is outside {key} {want}"));
                    }
                }
            }
            "minLength" | "maxLength" => {
                if let (Some(s), Some(bound)) = (v.as_str(), want.as_u64()) {
                    let n = s.chars().count() as u64;
                    if (key == "minLength" && n < bound) || (key == "maxLength" && n > bound) {
                        return fail(format!("{v} is outside {key} {want}"));
                    }
                }
            }
            "oneOf" | "anyOf" => {
                let subs = want.as_array().map(Vec::as_slice).unwrap_or_default();
                let errors: Vec<String> = subs
                    .iter()
                    .filter_map(|s| check(doc, s, v, at).err())
                    .collect();
                let matched = subs.len() - errors.len();
                if matched == 0 || (key == "oneOf" && matched > 1) {
                    return fail(format!(
                        "{v} matches {matched} of the {key} schemas: {errors:?}"
                    ));
                }
            }
            "not" => {
                if check(doc, want, v, at).is_ok() {
                    return fail(format!("{v} matches the `not` schema {want}"));
                }
            }
            other => {
                return fail(format!(
                    "keyword `{other}` is not supported by this validator"
                ));
            }
        }
    }
    Ok(())
}

fn is_type(v: &Value, name: &str) -> bool {
    match name {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_subset_accepts_and_refuses() {
        let doc = json!({"d": {"E": {"type": "object", "required": ["error"],
            "additionalProperties": false, "properties": {"error": {"type": "string"}}}}});
        let e = json!({"$ref": "#/d/E"});
        assert!(validate(&doc, &e, &json!({"error": "x"})).is_ok());
        assert!(validate(&doc, &e, &json!({"error": 1})).is_err());
        assert!(validate(&doc, &e, &json!({"error": "x", "more": 1})).is_err());
        assert!(validate(&doc, &e, &json!({})).is_err());
        let seq = json!({"type": ["integer", "null"], "minimum": 0});
        assert!(validate(&doc, &seq, &json!(null)).is_ok());
        assert!(validate(&doc, &seq, &json!(-1)).is_err());
        let one = json!({"oneOf": [{"type": "integer"}, {"type": "number"}]});
        assert!(validate(&doc, &one, &json!(1.5)).is_ok());
        assert!(validate(&doc, &one, &json!(1)).is_err(), "matches both");
        assert!(validate(&doc, &json!({"pattern": "x"}), &json!("x")).is_err());
    }
}
