//! state, list, features.

use anyhow::{bail, Result};
use libkeel::{Container, ContainerState};
use std::path::Path;

pub fn state(root: &Path, id: &str) -> Result<i32> {
    let s = Container::load(root, id)?.state();
    crate::emit(&format!("{}\n", serde_json::to_string_pretty(&s)?));
    Ok(0)
}

pub fn list(root: &Path, format: &str, quiet: bool) -> Result<i32> {
    let all = Container::list(root)?;
    if quiet {
        for c in &all {
            crate::emit(&format!("{}\n", c.id));
        }
        return Ok(0);
    }
    match format {
        "json" => crate::emit(&format!("{}\n", serde_json::to_string(&all)?)),
        "table" => crate::emit(&table(&all)),
        other => bail!("invalid format option {other:?}"),
    }
    Ok(0)
}

/// The table as runc's tabwriter lays it out (min width 12, padding 3).
fn table(all: &[ContainerState]) -> String {
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
        .map(String::from)
        .to_vec()];
    for c in all {
        rows.push(vec![
            c.id.clone(),
            c.pid.to_string(),
            c.status.to_string(),
            c.bundle.display().to_string(),
            c.created.clone(),
            if c.owner.is_empty() {
                "root".into()
            } else {
                c.owner.clone()
            },
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len() + 3)
                .max()
                .unwrap_or(0)
                .max(12)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i < 5 {
                out.push_str(&format!("{cell:<w$}", w = widths[i]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

/// The runtime-spec features document: what this keel really honours.
pub fn features() -> Result<i32> {
    crate::emit(&format!(
        "{}\n",
        serde_json::to_string_pretty(&libkeel::features())?
    ));
    Ok(0)
}
