//! CONFIG REWRITE: saves the parameters CONFIG SET changed into the TOML
//! file keel started from, keeping the file's comments and layout.
//!
//! A parameter the file already sets at its top level is updated in place
//! (as an integer if it was one). Any other goes into the file's `[redis]`
//! table, which keel applies at start as one CONFIG SET of every pair, after
//! the rest of the configuration: the table holds Redis's parameter names
//! and values as CONFIG GET prints them, so every parameter CONFIG SET takes
//! can be saved, keel's own or not. The new file replaces the old one
//! atomically (written beside it, synced, renamed), as Redis replaces its
//! redis.conf.

use std::io::Write;
use std::path::Path;

use toml_edit::{value, DocumentMut, Item, Table, Value};

/// The table CONFIG REWRITE writes Redis parameters into.
pub const TABLE: &str = "redis";

/// Writes `values` (canonical parameter names and CONFIG GET values) into
/// the file at `path`.
pub fn rewrite(path: &Path, values: &[(&str, String)]) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    for (name, v) in values {
        update(&mut doc, name, v);
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or_else(|| Path::new("."));
    let tmp = dir.join(format!(
        ".{}.rewrite-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("keel"),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(doc.to_string().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", path.display())
    })
}

fn update(doc: &mut DocumentMut, name: &str, v: &str) {
    if let Some(old) = doc.get_mut(name).and_then(Item::as_value_mut) {
        let mut new = match v.parse::<i64>() {
            Ok(n) if old.is_integer() => Value::from(n),
            _ => Value::from(v),
        };
        // The line's spacing and comment stay.
        *new.decor_mut() = old.decor().clone();
        *old = new;
        return;
    }
    if !doc.contains_table(TABLE) {
        let mut t = Table::new();
        t.decor_mut()
            .set_prefix("\n# Saved by CONFIG REWRITE: applied at start as CONFIG SET would.\n");
        doc.insert(TABLE, Item::Table(t));
    }
    if let Some(t) = doc.get_mut(TABLE).and_then(Item::as_table_mut) {
        t.insert(name, value(v));
    }
}

/// The `[redis]` table of a configuration file, as (name, value) pairs.
pub fn saved(table: &toml::Table) -> Result<Vec<(String, String)>, String> {
    table
        .iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => Ok((k.clone(), s.clone())),
            toml::Value::Integer(n) => Ok((k.clone(), n.to_string())),
            toml::Value::Boolean(b) => Ok((k.clone(), if *b { "yes" } else { "no" }.into())),
            other => Err(format!("[{TABLE}] {k}: expected a string, found {other}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_in_place_and_adds_the_rest_to_the_redis_table() {
        let dir = std::env::temp_dir().join(format!("keel-rewrite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keel.toml");
        std::fs::write(
            &path,
            "# my node\nport = 7000   # clients\nmaxclients = 100\nmaxmemory = \"0\"\n",
        )
        .unwrap();
        let values = [
            ("maxclients", "200".to_string()),
            ("maxmemory", "1048576".to_string()),
            ("notify-keyspace-events", "KEA".to_string()),
        ];
        rewrite(&path, &values).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# my node\nport = 7000   # clients\n"),
            "{text}"
        );
        assert!(text.contains("maxclients = 200\n"), "{text}");
        assert!(text.contains("maxmemory = \"1048576\"\n"), "{text}");
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let redis = parsed[TABLE].as_table().unwrap();
        assert_eq!(
            saved(redis).unwrap(),
            vec![("notify-keyspace-events".to_string(), "KEA".to_string())]
        );
        // A second rewrite updates the table's entry rather than adding one.
        rewrite(&path, &[("notify-keyspace-events", "Ex".to_string())]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("notify-keyspace-events").count(), 1, "{text}");
        assert!(text.contains("\"Ex\""));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
