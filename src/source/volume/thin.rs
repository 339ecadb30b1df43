//! Changed-block tracking on LVM thin volumes: the previous backup's thin
//! snapshot is kept (tag `lifeboat-cbt-base`, one per volume); the pool's
//! metadata is snapshotted (`reserve_metadata_snap`, always released) and
//! `thin_delta` lists the ranges where the new snapshot differs from the
//! kept one. `different`/`right_only` ranges are read, `left_only` ones
//! (unmapped now) are holes, `same` ones come from the parent's extents.

use std::process::Command;

use super::lvm::{self, Lv};
use super::reader::ChangeMap;
use crate::{Error, Result};

/// The device-mapper name of `VG/LV` (dashes doubled, joined by a dash).
pub fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

fn dmsetup_message(pool_dm: &str, msg: &str) -> Result<()> {
    lvm::run("dmsetup", &["message", &format!("{pool_dm}-tpool"), "0", msg]).map(drop)
}

/// A reserved pool metadata snapshot, released when dropped.
struct MetadataSnap {
    pool_dm: String,
}

impl MetadataSnap {
    fn reserve(pool_dm: &str) -> Result<MetadataSnap> {
        if dmsetup_message(pool_dm, "reserve_metadata_snap").is_err() {
            // Only one may exist: one left by a killed run is released first.
            tracing::warn!("releasing a pool metadata snapshot left by an interrupted run ({pool_dm})");
            let _ = dmsetup_message(pool_dm, "release_metadata_snap");
            dmsetup_message(pool_dm, "reserve_metadata_snap")?;
        }
        Ok(MetadataSnap {
            pool_dm: pool_dm.to_string(),
        })
    }
}

impl Drop for MetadataSnap {
    fn drop(&mut self) {
        // "Invalid argument" means none is held: already released.
        if let Err(e) = dmsetup_message(&self.pool_dm, "release_metadata_snap") {
            tracing::debug!("release_metadata_snap: {e}");
        }
    }
}

/// The changed and unmapped byte ranges of thin snapshot `new` relative to
/// thin snapshot `old` (both of the same pool).
pub fn delta(old: &Lv, new: &Lv) -> Result<ChangeMap> {
    let pool = new.get("pool_lv");
    if pool.is_empty() || old.get("pool_lv") != pool {
        return Err(Error::Refused("the snapshots are not in the same thin pool".into()));
    }
    let pool_dm = dm_name(new.vg(), pool);
    let meta = MetadataSnap::reserve(&pool_dm)?;
    let out = Command::new("thin_delta")
        .args([
            "--metadata-snap",
            "--thin1",
            old.get("thin_id"),
            "--thin2",
            new.get("thin_id"),
        ])
        .arg(format!("/dev/mapper/{pool_dm}_tmeta"))
        .output()
        .map_err(|e| Error::io("thin_delta", e))?;
    drop(meta);
    if !out.status.success() {
        return Err(Error::Refused(format!(
            "thin_delta failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse_delta(&String::from_utf8_lossy(&out.stdout)).map_err(|e| Error::format("thin_delta output", e))
}

fn attr(line: &str, name: &str) -> Option<u64> {
    let k = format!("{name}=\"");
    let at = line.find(&k)? + k.len();
    line[at..].split('"').next()?.parse().ok()
}

/// Parses thin_delta's XML into byte ranges (blocks × `data_block_size`
/// sectors × 512), merging neighbours.
pub fn parse_delta(xml: &str) -> std::result::Result<ChangeMap, String> {
    let mut block = None;
    let mut map = ChangeMap::default();
    for line in xml.lines().map(str::trim) {
        if line.starts_with("<superblock") {
            block = Some(attr(line, "data_block_size").ok_or("superblock without data_block_size")? * 512);
            continue;
        }
        let kind = line.trim_start_matches('<').split([' ', '/', '>']).next().unwrap_or("");
        let target = match kind {
            "different" | "right_only" => &mut map.ranges,
            "left_only" => &mut map.zeros,
            _ => continue,
        };
        let bs = block.ok_or("range before the superblock")?;
        let (Some(b), Some(l)) = (attr(line, "begin"), attr(line, "length")) else {
            return Err(format!("range without begin/length: {line}"));
        };
        let (off, len) = (b * bs, l * bs);
        match target.last_mut() {
            Some((o, n)) if *o + *n == off => *n += len,
            _ => target.push((off, len)),
        }
    }
    if block.is_none() {
        return Err("no superblock".into());
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_thin_delta_xml() {
        let xml = r#"<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="0">
  <diff left="1" right="2">
    <same begin="0" length="10"/>
    <different begin="10" length="2"/>
    <right_only begin="12" length="1"/>
    <same begin="13" length="7"/>
    <left_only begin="20" length="3"/>
  </diff>
</superblock>"#;
        let m = parse_delta(xml).unwrap();
        let b = 128 * 512;
        assert_eq!(m.ranges, vec![(10 * b, 3 * b)]);
        assert_eq!(m.zeros, vec![(20 * b, 3 * b)]);
        assert!(parse_delta("<diff>").is_err());
        assert_eq!(dm_name("vg-a", "pool"), "vg--a-pool");
    }
}
