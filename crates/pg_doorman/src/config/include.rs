//! `include.files`: extra config files merged into the main one in order, as PgDoorman does
//! (its `serde-toml-merge` rules): tables merge key by key, a later scalar replaces an earlier
//! one, arrays are appended (so an included file can add `users` to a pool), and a key whose
//! kinds differ (a table here, a number there) is an error naming the file and the key. YAML
//! and TOML files may be mixed; YAML nulls are dropped, as TOML has none. Only the main file's
//! `include` is followed.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// Reads one file into a value tree by its extension. Errors name the file.
pub fn read_tree(path: &Path) -> Result<Value, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {shown}: {e}"))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut v: Value = match ext.as_str() {
        "yaml" | "yml" => {
            serde_saphyr::from_str(&text).map_err(|e| format!("config file {shown}: {e}"))?
        }
        "toml" => toml::from_str(&text).map_err(|e| format!("config file {shown}: {e}"))?,
        _ => {
            return Err(format!(
                "config file {shown} must end in .yaml, .yml or .toml"
            ));
        }
    };
    drop_nulls(&mut v);
    Ok(v)
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// The file names in `tree`'s `include.files`; an include path that is relative is taken from
/// the main file's directory, else (PgDoorman's way) from the working directory.
pub fn files(tree: &Value, main: &Path) -> Result<Vec<PathBuf>, String> {
    let Some(inc) = tree.get("include") else {
        return Ok(Vec::new());
    };
    let list = match inc.get("files") {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("include.files: must be a list of file names".into()),
    };
    let base = main.parent().unwrap_or(Path::new("."));
    list.iter()
        .enumerate()
        .map(|(i, f)| {
            let Value::String(name) = f else {
                return Err(format!("include.files[{i}]: must be a file name"));
            };
            let p = Path::new(name);
            if p.is_absolute() || !base.join(p).exists() {
                Ok(p.to_path_buf())
            } else {
                Ok(base.join(p))
            }
        })
        .collect()
}

/// Merges `over` into `base` (PgDoorman's rules, module doc); `path` is where in the tree
/// (for errors).
pub fn merge(base: &mut Value, over: Value, path: &str) -> Result<(), String> {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v, &here)?,
                    None => {
                        b.insert(k, v);
                    }
                }
            }
            Ok(())
        }
        (Value::Array(b), Value::Array(o)) => {
            b.extend(o);
            Ok(())
        }
        (b, o) if kind(b) == kind(&o) || (is_number(b) && is_number(&o)) => {
            *b = o;
            Ok(())
        }
        (b, o) => Err(format!(
            "{path}: is {} in one file and {} in another",
            kind(b),
            kind(&o)
        )),
    }
}

fn is_number(v: &Value) -> bool {
    matches!(v, Value::Number(_))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// The main file's tree with every file of its `include.files` merged in, and warnings (an
/// included file's own `include`, which is not followed, as in PgDoorman).
pub fn merged(main: &Path) -> Result<(Value, Vec<String>), String> {
    let mut tree = read_tree(main)?;
    let mut warnings = Vec::new();
    for f in files(&tree, main)? {
        let mut extra = read_tree(&f).map_err(|e| format!("include.files: {e}"))?;
        if let Value::Object(m) = &mut extra
            && m.remove("include").is_some_and(|v| !v.is_null())
        {
            warnings.push(format!(
                "include file {}: its include section is not followed (only the main config file's is, as in PgDoorman)",
                f.display()
            ));
        }
        merge(&mut tree, extra, "").map_err(|e| format!("include file {}: {e}", f.display()))?;
    }
    Ok((tree, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_merge_scalars_replace_lists_append() {
        let mut a = json!({"general": {"port": 1, "host": "a"}, "pools": {"p": {"users": [{"username": "u"}]}}});
        let b = json!({"general": {"port": 2}, "pools": {"p": {"users": [{"username": "v"}]}, "q": {}}});
        merge(&mut a, b, "").unwrap();
        assert_eq!(
            a,
            json!({"general": {"port": 2, "host": "a"}, "pools": {"p": {"users": [{"username": "u"}, {"username": "v"}]}, "q": {}}})
        );
        let mut t = Value::Object(serde_json::Map::new());
        merge(&mut t, json!({"x": 1}), "").unwrap();
        assert_eq!(t, json!({"x": 1}));
        let e = merge(&mut a, json!({"general": {"port": {"x": 1}}}), "").unwrap_err();
        assert_eq!(
            e,
            "general.port: is a number in one file and a table in another"
        );
    }
}
