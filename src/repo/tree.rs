//! Trees: one directory's entries, serialised as JSON and stored as a tree blob.
//!
//! A tree is `{"nodes":[node, ...]}` with nodes sorted by the raw bytes of
//! their names. Names, symlink targets and xattr names/values are bytes on
//! Linux; names and targets are JSON strings when valid UTF-8 and
//! `{"b64":"..."}` otherwise, so non-UTF-8 names survive exactly.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::Id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    File,
    Dir,
    Symlink,
    Chardev,
    Blockdev,
    Fifo,
    Socket,
}

impl NodeType {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::File => "file",
            NodeType::Dir => "dir",
            NodeType::Symlink => "symlink",
            NodeType::Chardev => "chardev",
            NodeType::Blockdev => "blockdev",
            NodeType::Fifo => "fifo",
            NodeType::Socket => "socket",
        }
    }
}

/// A run of file content: a blob, or a hole (restored as a hole).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Extent {
    Data { id: Id, len: u64 },
    Hole { hole: u64 },
}

impl Extent {
    pub fn len(&self) -> u64 {
        match self {
            Extent::Data { len, .. } => *len,
            Extent::Hole { hole } => *hole,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: Bytes64,
    pub value: Bytes64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: Bytes64,
    #[serde(rename = "type")]
    pub kind: NodeType,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Modification time. Access time is not stored: it changes on every
    /// read, would make every tree new on every backup, and restores as mtime.
    pub mtime: Timespec,
    /// Change time and inode are for change detection, never restored.
    pub ctime: Timespec,
    pub inode: u64,
    pub device_id: u64,
    pub links: u64,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Bytes64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<Extent>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Node {
    pub fn name_os(&self) -> &OsStr {
        OsStr::from_bytes(&self.name.0)
    }

    pub fn data_ids(&self) -> impl Iterator<Item = (Id, u64)> + '_ {
        self.content.iter().flatten().filter_map(|e| match e {
            Extent::Data { id, len } => Some((*id, *len)),
            Extent::Hole { .. } => None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

/// Raw bytes serialised as a string when UTF-8, else as `{"b64": ...}`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Bytes64(pub Vec<u8>);

impl std::fmt::Debug for Bytes64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl From<&OsStr> for Bytes64 {
    fn from(s: &OsStr) -> Self {
        Bytes64(s.as_bytes().to_vec())
    }
}

impl From<OsString> for Bytes64 {
    fn from(s: OsString) -> Self {
        Bytes64(s.into_vec())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BytesRepr {
    Str(String),
    B64 { b64: String },
}

impl Serialize for Bytes64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(t) => BytesRepr::Str(t.to_string()).serialize(s),
            Err(_) => BytesRepr::B64 {
                b64: base64::engine::general_purpose::STANDARD.encode(&self.0),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Bytes64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match BytesRepr::deserialize(d)? {
            BytesRepr::Str(s) => Ok(Bytes64(s.into_bytes())),
            BytesRepr::B64 { b64 } => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(Bytes64)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("tree serialises")
    }

    pub fn decode(b: &[u8]) -> std::result::Result<Tree, crate::error::Invalid> {
        let t: Tree = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        for n in &t.nodes {
            if n.name.0.is_empty()
                || n.name.0 == b"."
                || n.name.0 == b".."
                || n.name.0.contains(&b'/')
                || n.name.0.contains(&0)
            {
                // A hostile tree must not make restore escape its target.
                return Err(format!("invalid node name {:?}", n.name).into());
            }
        }
        Ok(t)
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.0.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn node_strategy() -> impl Strategy<Value = Node> {
        (
            proptest::collection::vec(1u8..=255, 1..20)
                .prop_filter("valid", |n| n != b"." && n != b".." && !n.contains(&b'/')),
            0usize..7,
            any::<u32>(),
            any::<(u32, u32, i64, u32, u64, u64)>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..30)),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 1..10),
                    proptest::collection::vec(any::<u8>(), 0..10),
                ),
                0..3,
            ),
            proptest::option::of(proptest::collection::vec(
                (any::<[u8; 32]>(), any::<u64>(), any::<bool>()),
                0..4,
            )),
        )
            .prop_map(
                |(name, k, mode, (uid, gid, sec, nsec, inode, size), target, xattrs, content)| Node {
                    name: Bytes64(name),
                    kind: [
                        NodeType::File,
                        NodeType::Dir,
                        NodeType::Symlink,
                        NodeType::Chardev,
                        NodeType::Blockdev,
                        NodeType::Fifo,
                        NodeType::Socket,
                    ][k],
                    mode: mode & 0o7777,
                    uid,
                    gid,
                    user: if uid % 2 == 0 { Some("u".into()) } else { None },
                    group: None,
                    mtime: Timespec {
                        sec,
                        nsec: nsec % 1_000_000_000,
                    },
                    ctime: Timespec { sec: -sec / 2, nsec: 5 },
                    inode,
                    device_id: 3,
                    links: 1,
                    size,
                    rdev: inode / 3,
                    target: target.map(Bytes64),
                    xattrs: xattrs
                        .into_iter()
                        .map(|(n, v)| Xattr {
                            name: Bytes64(n),
                            value: Bytes64(v),
                        })
                        .collect(),
                    content: content.map(|c| {
                        c.into_iter()
                            .map(|(id, len, hole)| {
                                if hole {
                                    Extent::Hole { hole: len }
                                } else {
                                    Extent::Data { id: Id(id), len }
                                }
                            })
                            .collect()
                    }),
                    subtree: if k == 1 { Some(Id([k as u8; 32])) } else { None },
                },
            )
    }

    proptest! {
        #[test]
        fn tree_roundtrip(nodes in proptest::collection::vec(node_strategy(), 0..8)) {
            let mut t = Tree { nodes };
            t.sort();
            let enc = t.encode();
            prop_assert_eq!(Tree::decode(&enc).unwrap(), t);
        }
    }

    /// A tree blob is one directory's flat node list: nesting goes through
    /// subtree ids, so neither encoding nor decoding recurses per level, and
    /// a hostile deeply nested blob is refused by serde_json's depth limit
    /// instead of exhausting the stack.
    #[test]
    fn deep_nesting_is_refused_not_recursed() {
        for open in ["[", "{\"nodes\":["] {
            let blob = open.repeat(100_000);
            assert!(Tree::decode(blob.as_bytes()).is_err());
        }
        let blob = format!("{{\"nodes\":[{{\"name\":{}}}]}}", "[".repeat(100_000));
        assert!(Tree::decode(blob.as_bytes()).is_err());
    }

    #[test]
    fn hostile_names_rejected() {
        for bad in [
            r#"{"nodes":[{"name":"..","type":"dir"}]}"#,
            r#"{"nodes":[{"name":"a/b"}]}"#,
        ] {
            assert!(Tree::decode(bad.as_bytes()).is_err());
        }
    }
}
