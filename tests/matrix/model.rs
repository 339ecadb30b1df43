//! The matrix's pristine repository and what it holds (read with the
//! library: every blob copy and where it lies, every file and directory of
//! every snapshot with the blobs and trees it needs), and the oracle that
//! says, for a damaged copy, which blobs still verify and which files a
//! restore must bring back.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeboat::backend::local::LocalBackend;
use lifeboat::backend::Backend;
use lifeboat::id::Id;
use lifeboat::repo::blob::{decode_verified, BlobCompression, BlobKind};
use lifeboat::repo::crypto::{Cipher, MasterKey};
use lifeboat::repo::repofile::{self, Magic};
use lifeboat::repo::snapshot::Snapshot;
use lifeboat::repo::tree::NodeType;
use lifeboat::repo::Repository;

use crate::common::*;

pub const PW: &str = "matrix password one";
pub const PW2: &str = "matrix password two";

/// One stored copy of a blob.
#[derive(Debug, Clone)]
pub struct BlobLoc {
    pub id: Id,
    pub pack: Id,
    pub kind: BlobKind,
    pub comp: BlobCompression,
    pub offset: u32,
    pub sealed_len: u32,
    pub raw_len: u32,
}

impl BlobLoc {
    fn new(pack: Id, e: &lifeboat::repo::pack::PackEntry) -> BlobLoc {
        BlobLoc {
            id: e.id,
            pack,
            kind: e.kind,
            comp: e.comp,
            offset: e.offset,
            sealed_len: e.sealed_len,
            raw_len: e.raw_len,
        }
    }
}

/// A regular file of a snapshot: the blobs of its content and the trees
/// from the root down to its directory.
#[derive(Debug, Clone)]
pub struct FileModel {
    /// Relative to the backed-up source folder.
    pub rel: String,
    pub blobs: Vec<Id>,
    pub chain: Vec<Id>,
}

/// A directory of a snapshot below the source folder.
#[derive(Debug, Clone)]
pub struct DirModel {
    pub rel: String,
    pub tree: Id,
    /// Trees from the root down to its parent.
    pub chain: Vec<Id>,
}

#[derive(Debug, Clone)]
pub struct SnapModel {
    pub id: Id,
    pub files: Vec<FileModel>,
    pub dirs: Vec<DirModel>,
    /// The source as it was at this snapshot.
    pub frozen: PathBuf,
}

pub struct Model {
    pub key: MasterKey,
    pub cipher: Cipher,
    /// Every blob copy of the pristine index.
    pub blobs: Vec<BlobLoc>,
    pub snaps: Vec<SnapModel>,
}

/// The pack file of a local repository.
pub fn pack_path(repo: &Path, pack: &Id) -> PathBuf {
    let hex = pack.to_hex();
    repo.join("data").join(&hex[..2]).join(hex)
}

impl Model {
    /// Reads the pristine repository with the library.
    pub fn read(repo: &Path, src: &Path, frozen: &[(String, PathBuf)]) -> Model {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(repo));
            let mut r = Repository::open(backend, PW.as_bytes()).await.expect("open pristine");
            let files = r.read_index_files().await.expect("index files");
            let mut blobs = Vec::new();
            for (_, f) in files.files {
                let f = f.expect("pristine index file");
                for p in &f.packs {
                    blobs.extend(p.entries.iter().map(|e| BlobLoc::new(p.id, e)));
                }
            }
            r.load_index().await.expect("load index");
            let mut snaps = Vec::new();
            for (sid, frozen) in frozen {
                let id: Id = sid.parse().expect("snapshot id");
                let s = Snapshot::load(&r, &id).await.expect("pristine snapshot");
                let mut m = SnapModel {
                    id,
                    files: Vec::new(),
                    dirs: Vec::new(),
                    frozen: frozen.clone(),
                };
                // (tree, its absolute path, trees from the root down to it)
                let mut stack = vec![(s.tree, PathBuf::from("/"), vec![s.tree])];
                while let Some((tid, path, chain)) = stack.pop() {
                    let tree = r.read_tree(&tid).await.expect("pristine tree");
                    for n in &tree.nodes {
                        let p = path.join(n.name_os());
                        let rel = p.strip_prefix(src).ok().map(|r| r.display().to_string());
                        match n.kind {
                            NodeType::Dir => {
                                let sub = n.subtree.expect("directory without subtree");
                                if let Some(rel) = rel.filter(|r| !r.is_empty()) {
                                    m.dirs.push(DirModel {
                                        rel,
                                        tree: sub,
                                        chain: chain.clone(),
                                    });
                                }
                                let mut c = chain.clone();
                                c.push(sub);
                                stack.push((sub, p, c));
                            }
                            NodeType::File => m.files.push(FileModel {
                                rel: rel.expect("a file outside the source"),
                                blobs: n.data_ids().map(|(id, _)| id).collect(),
                                chain: chain.clone(),
                            }),
                            _ => {}
                        }
                    }
                }
                m.files.sort_by(|a, b| a.rel.cmp(&b.rel));
                m.dirs.sort_by(|a, b| a.rel.cmp(&b.rel));
                snaps.push(m);
            }
            Model {
                key: r.key().clone(),
                cipher: r.cipher().clone(),
                blobs,
                snaps,
            }
        })
    }

    pub fn blob(&self, id: &Id) -> &BlobLoc {
        self.blobs.iter().find(|b| b.id == *id).expect("blob in the model")
    }

    /// The blob of the file `rel` (a one-blob file).
    pub fn file_blob(&self, rel: &str) -> &BlobLoc {
        let f = self.snaps[0]
            .files
            .iter()
            .find(|f| f.rel == rel)
            .expect("file in the model");
        assert_eq!(f.blobs.len(), 1, "{rel} is not a one-blob file");
        self.blob(&f.blobs[0])
    }

    /// The tree of the directory `rel`.
    pub fn dir_tree(&self, rel: &str) -> &BlobLoc {
        let d = self.snaps[0]
            .dirs
            .iter()
            .find(|d| d.rel == rel)
            .expect("dir in the model");
        self.blob(&d.tree)
    }

    fn verifies(&self, b: &BlobLoc, bytes: &[u8]) -> bool {
        decode_verified(&self.key, &self.cipher, b.kind, b.comp, &b.id, b.raw_len, bytes).is_ok()
    }

    fn read_at(path: &Path, offset: u64, len: u64) -> Option<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let f = fs::File::open(path).ok()?;
        if f.metadata().ok()?.len() < offset + len {
            return None;
        }
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset).ok()?;
        Some(buf)
    }

    /// Blobs with a copy that verifies where the pristine index put it.
    pub fn stored_intact(&self, repo: &Path) -> HashSet<Id> {
        self.blobs
            .iter()
            .filter(|b| {
                Self::read_at(&pack_path(repo, &b.pack), b.offset as u64, b.sealed_len as u64)
                    .is_some_and(|bytes| self.verifies(b, &bytes))
            })
            .map(|b| b.id)
            .collect()
    }

    /// Blobs listed in an index file of `repo` that decodes, with a copy
    /// that verifies where that index puts it: what a reader can reach.
    pub fn indexed_intact(&self, repo: &Path) -> HashSet<Id> {
        let mut out = HashSet::new();
        for f in fs::read_dir(repo.join("index")).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let Ok(id) = name.parse::<Id>() else { continue };
            if f.metadata().map(|m| m.len()).unwrap_or(u64::MAX)
                > repofile::max_file_size(lifeboat::backend::FileKind::Index)
            {
                continue;
            }
            let Ok(data) = fs::read(f.path()) else { continue };
            let Ok(file) = lifeboat::repo::decode_index_file(&self.key, &self.cipher, &id, &data) else {
                continue;
            };
            for p in &file.packs {
                for e in &p.entries {
                    let b = BlobLoc::new(p.id, e);
                    if !out.contains(&e.id)
                        && Self::read_at(&pack_path(repo, &p.id), e.offset as u64, e.sealed_len as u64)
                            .is_some_and(|bytes| self.verifies(&b, &bytes))
                    {
                        out.insert(e.id);
                    }
                }
            }
        }
        out
    }

    /// Whether the snapshot file `id` of `repo` opens and decodes.
    pub fn snapshot_readable(&self, repo: &Path, id: &Id) -> bool {
        let Ok(data) = fs::read(repo.join("snapshots").join(id.to_hex())) else {
            return false;
        };
        if data.len() as u64 > repofile::max_file_size(lifeboat::backend::FileKind::Snapshot) {
            return false;
        }
        match repofile::open(&self.cipher, Magic::Snapshot, id, &data, "snapshot") {
            Ok(plain) => self.key.file_id(&plain) == *id && serde_json::from_slice::<Snapshot>(&plain).is_ok(),
            Err(_) => false,
        }
    }
}

/// What a restore of one snapshot must bring back, given the blobs a
/// reader can reach: files whose trees and data all verify.
pub struct Expectation {
    pub restorable: Vec<String>,
    pub lost: Vec<String>,
    /// Directories whose own tree is lost while their parent's is not.
    pub lost_dirs: Vec<String>,
}

pub fn expect_restore(snap: &SnapModel, reachable: &HashSet<Id>, snapshot_readable: bool) -> Expectation {
    let ok = |ids: &[Id]| snapshot_readable && ids.iter().all(|i| reachable.contains(i));
    let (restorable, lost): (Vec<&FileModel>, Vec<&FileModel>) =
        snap.files.iter().partition(|f| ok(&f.chain) && ok(&f.blobs));
    let lost_dirs = snap
        .dirs
        .iter()
        .filter(|d| ok(&d.chain) && !reachable.contains(&d.tree))
        .map(|d| d.rel.clone())
        .collect();
    Expectation {
        restorable: restorable.into_iter().map(|f| f.rel.clone()).collect(),
        lost: lost.into_iter().map(|f| f.rel.clone()).collect(),
        lost_dirs,
    }
}

/// Compares a restore with the snapshot's source: every restorable file is
/// there byte for byte; a lost file may be there in part (what could be
/// read) only if the restore's `output` names it. Returns the files
/// restored whole.
pub fn compare_restore(
    snap: &SnapModel,
    src: &Path,
    target: &Path,
    exp: &Expectation,
    output: &str,
) -> Result<usize, String> {
    let root = restored_path(target, src);
    let mut restored = 0;
    let mut problems = Vec::new();
    for f in &snap.files {
        let got = root.join(&f.rel);
        let want = snap.frozen.join(&f.rel);
        match fs::read(&got) {
            Ok(bytes) => {
                let expected = fs::read(&want).expect("frozen source");
                let named = output.contains(&src.join(&f.rel).display().to_string());
                if exp.lost.contains(&f.rel) {
                    if !named {
                        problems.push(format!("{} is lost but restored (in part?) without being named", f.rel));
                    }
                } else if bytes != expected {
                    problems.push(format!("{} restored with other bytes", f.rel));
                } else {
                    restored += 1;
                }
            }
            Err(_) if exp.restorable.contains(&f.rel) => problems.push(format!("{} not restored", f.rel)),
            Err(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(restored)
    } else {
        Err(problems.join("; "))
    }
}
