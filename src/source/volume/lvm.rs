//! LVM through its tools' JSON reports (`lvs`/`vgs --reportformat json`),
//! never their human-readable output; sizes in bytes (`--units b --nosuffix`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use crate::{Error, Result};

/// One row of `lvs`: the requested fields, as LVM reports them (strings).
#[derive(Debug, Clone, Default)]
pub struct Lv {
    pub fields: HashMap<String, String>,
}

impl Lv {
    pub fn get(&self, k: &str) -> &str {
        self.fields.get(k).map(String::as_str).unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.get("lv_name")
    }
    pub fn vg(&self) -> &str {
        self.get("vg_name")
    }
    /// `VG/LV`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.vg(), self.name())
    }
    pub fn size(&self) -> u64 {
        self.get("lv_size").parse().unwrap_or(0)
    }
    /// `lv_attr` character `i` (0: volume type, 4: state `a` = active, ...).
    pub fn attr(&self, i: usize) -> char {
        self.get("lv_attr").chars().nth(i).unwrap_or('-')
    }
    pub fn is_thin(&self) -> bool {
        self.attr(0) == 'V'
    }
    pub fn is_active(&self) -> bool {
        self.attr(4) == 'a'
    }
    pub fn tags(&self) -> Vec<&str> {
        self.get("lv_tags").split(',').filter(|t| !t.is_empty()).collect()
    }
    /// The device node (`/dev/mapper/VG-LV`).
    pub fn dm_path(&self) -> PathBuf {
        let p = self.get("lv_dm_path");
        if p.is_empty() {
            PathBuf::from(format!("/dev/{}/{}", self.vg(), self.name()))
        } else {
            PathBuf::from(p)
        }
    }
}

/// Fields every `lvs` call asks for.
pub const LV_FIELDS: &str =
    "lv_name,vg_name,lv_attr,lv_size,lv_tags,lv_dm_path,origin,pool_lv,thin_id,snap_percent,data_percent,chunk_size,lv_uuid,lv_kernel_major,lv_kernel_minor";

/// Runs an LVM reporting tool and returns the rows of `section` (`lv`, `vg`).
fn report(tool: &str, section: &str, args: &[&str]) -> Result<Vec<HashMap<String, String>>> {
    let out = run(
        tool,
        &[&["--reportformat", "json", "--units", "b", "--nosuffix"], args].concat(),
    )?;
    parse_report(&out, section).map_err(|e| Error::format(format!("{tool} JSON report"), e))
}

/// Parses `{"report":[{"lv":[{...}]}]}`.
pub fn parse_report(json: &str, section: &str) -> std::result::Result<Vec<HashMap<String, String>>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for r in v["report"].as_array().ok_or("no \"report\" array")? {
        for row in r[section].as_array().into_iter().flatten() {
            let obj = row.as_object().ok_or("a row is not an object")?;
            rows.push(
                obj.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// Runs an LVM command and returns its standard output; a failure carries its
/// standard error.
pub fn run(tool: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(tool)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .map_err(|e| Error::io(tool, e))?;
    if !out.status.success() {
        return Err(Error::Refused(format!(
            "{tool} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Logical volumes, all or those `select`ed (`VG`, or `VG/LV`).
pub fn lvs(select: Option<&str>) -> Result<Vec<Lv>> {
    let mut args = vec!["-a", "-o", LV_FIELDS];
    if let Some(s) = select {
        args.push(s);
    }
    Ok(report("lvs", "lv", &args)?
        .into_iter()
        .map(|fields| Lv { fields })
        .collect())
}

/// One logical volume by `VG/LV`.
pub fn lv(name: &str) -> Result<Lv> {
    let (vg, lv) = split_name(name)?;
    lvs(Some(vg))?
        .into_iter()
        .find(|l| l.name() == lv)
        .ok_or_else(|| Error::InvalidArgument(format!("logical volume {name} not found")))
}

/// Splits `VG/LV` (also accepts `/dev/VG/LV`).
pub fn split_name(name: &str) -> Result<(&str, &str)> {
    let n = name.strip_prefix("/dev/").unwrap_or(name);
    match n.split_once('/') {
        Some((vg, lv)) if !vg.is_empty() && !lv.is_empty() && !lv.contains('/') => Ok((vg, lv)),
        _ => Err(Error::InvalidArgument(format!("{name:?} is not VG/LV"))),
    }
}

/// Free bytes in a volume group.
pub fn vg_free(vg: &str) -> Result<u64> {
    let rows = report("vgs", "vg", &["-o", "vg_name,vg_free", vg])?;
    rows.first()
        .and_then(|r| r.get("vg_free"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::InvalidArgument(format!("volume group {vg} not found")))
}

/// Whether a volume group of this name exists (false when LVM is absent).
pub fn vg_exists(vg: &str) -> bool {
    report("vgs", "vg", &["-o", "vg_name", vg]).is_ok_and(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lvs_json() {
        let j = r#"{"report":[{"lv":[{"lv_name":"lv0","vg_name":"vg0","lv_attr":"owi-a-s---","lv_size":"67108864","lv_tags":"a,b","lv_dm_path":"/dev/mapper/vg0-lv0"},
            {"lv_name":"t","vg_name":"vg0","lv_attr":"Vwi-a-tz-k","lv_size":"1","lv_tags":"","lv_dm_path":""}]}]}"#;
        let rows: Vec<Lv> = parse_report(j, "lv")
            .unwrap()
            .into_iter()
            .map(|fields| Lv { fields })
            .collect();
        assert_eq!(rows[0].full_name(), "vg0/lv0");
        assert_eq!(rows[0].size(), 64 << 20);
        assert!(rows[0].is_active() && !rows[0].is_thin());
        assert_eq!(rows[0].tags(), vec!["a", "b"]);
        assert!(rows[1].is_thin());
        assert_eq!(rows[1].dm_path(), PathBuf::from("/dev/vg0/t"));
        assert!(parse_report("{}", "lv").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(split_name("vg/lv").unwrap(), ("vg", "lv"));
        assert_eq!(split_name("/dev/vg/lv").unwrap(), ("vg", "lv"));
        assert!(split_name("vg").is_err() && split_name("a/b/c").is_err() && split_name("/x").is_err());
    }
}
