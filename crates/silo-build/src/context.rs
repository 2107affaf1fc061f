//! The build context as the client sent it: one tar file on disk and an
//! index of its entries, never unpacked. Creating thousands of small files
//! (and deleting them after the build) cost far more than the build
//! itself; COPY reads each entry's bytes straight from the tar instead.
//! Names are normalized (no `./`, no trailing `/`); directories the tar
//! only implies are listed too; `..` is refused.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// One entry of the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub size: u64,
    /// Modification time (seconds), as the client sent it.
    pub mtime: u64,
    /// Where the data starts in the tar file.
    offset: u64,
    /// A symlink's target.
    pub link: Option<String>,
}

/// The indexed context.
#[derive(Debug)]
pub struct Context {
    file: File,
    entries: BTreeMap<String, Entry>,
}

/// A context that is not a usable tar.
#[derive(Debug, thiserror::Error)]
#[error("the build context is not a tar archive (plain, gzip or zstd): {0}")]
pub struct ContextError(pub String);

/// The longest entry name accepted (as for layers).
const MAX_NAME: usize = silo_storage::MAX_PATH;
/// The deepest entry accepted.
const MAX_DEPTH: usize = 256;
/// The most the index may hold in names, in bytes.
const MAX_INDEX: usize = 256 << 20;

fn normalize(raw: &str) -> Result<String, ContextError> {
    if raw.len() > MAX_NAME {
        return Err(ContextError(format!(
            "an entry name is {} bytes long (at most {MAX_NAME})",
            raw.len()
        )));
    }
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(ContextError(format!("entry {raw:?} leaves the context"))),
            c => parts.push(c),
        }
    }
    if parts.len() > MAX_DEPTH {
        return Err(ContextError(format!(
            "an entry is {} directories deep (at most {MAX_DEPTH})",
            parts.len()
        )));
    }
    Ok(parts.join("/"))
}

impl Context {
    /// Indexes the (uncompressed) tar file at `path`.
    pub fn open(path: &Path) -> Result<Context, ContextError> {
        let file = File::open(path).map_err(|e| ContextError(e.to_string()))?;
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        let mut hard: Vec<(String, String)> = Vec::new();
        {
            let mut a = tar::Archive::new(&file);
            for e in a.entries().map_err(|e| ContextError(e.to_string()))? {
                let e = e.map_err(|e| ContextError(e.to_string()))?;
                let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                let name = normalize(&raw)?;
                let h = e.header();
                let mode = h.mode().unwrap_or(0o644) & 0o7777;
                let mtime = h.mtime().unwrap_or(0);
                let kind = h.entry_type();
                let link = e
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned());
                let entry = if kind.is_dir() {
                    Entry {
                        kind: Kind::Dir,
                        mode,
                        size: 0,
                        mtime,
                        offset: 0,
                        link: None,
                    }
                } else if kind.is_symlink() {
                    Entry {
                        kind: Kind::Symlink,
                        mode: 0o777,
                        size: 0,
                        mtime,
                        offset: 0,
                        link,
                    }
                } else if kind.is_hard_link() {
                    if let Some(l) = link {
                        hard.push((name, normalize(&l)?));
                    }
                    continue;
                } else if kind.is_file() || kind == tar::EntryType::Continuous {
                    Entry {
                        kind: Kind::File,
                        mode,
                        size: e.size(),
                        mtime,
                        offset: e.raw_file_position(),
                        link: None,
                    }
                } else {
                    continue; // devices, fifos: nothing a build copies
                };
                if name.is_empty() {
                    continue;
                }
                entries.insert(name, entry);
            }
        }
        for (name, target) in hard {
            if let Some(t) = entries.get(&target).cloned() {
                entries.insert(name, t);
            }
        }
        // Directories only implied by their contents; each directory is
        // walked up from once.
        let mut total: usize = entries.keys().map(String::len).sum();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        let names: Vec<String> = entries.keys().cloned().collect();
        for n in names {
            let mut p = n.as_str();
            while let Some((parent, _)) = p.rsplit_once('/') {
                if seen.contains(parent) {
                    break;
                }
                total += 2 * parent.len();
                if total > MAX_INDEX {
                    return Err(ContextError(
                        "the context has too many names to index".into(),
                    ));
                }
                seen.insert(parent.to_string());
                entries.entry(parent.to_string()).or_insert(Entry {
                    kind: Kind::Dir,
                    mode: 0o755,
                    size: 0,
                    mtime: 0,
                    offset: 0,
                    link: None,
                });
                p = parent;
            }
        }
        Ok(Context { file, entries })
    }

    /// The entry at `rel` ("" is the context's root).
    pub fn get(&self, rel: &str) -> Option<Entry> {
        if rel.is_empty() {
            return Some(Entry {
                kind: Kind::Dir,
                mode: 0o755,
                size: 0,
                mtime: 0,
                offset: 0,
                link: None,
            });
        }
        self.entries.get(rel).cloned()
    }

    /// The names directly under directory `rel`, sorted.
    pub fn children(&self, rel: &str) -> Vec<String> {
        let prefix = if rel.is_empty() {
            String::new()
        } else {
            format!("{rel}/")
        };
        self.entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| {
                let rest = &k[prefix.len()..];
                (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_string())
            })
            .collect()
    }

    /// A reader of a file entry's bytes.
    pub fn open_entry(&self, e: &Entry) -> std::io::Result<impl Read> {
        let mut f = self.file.try_clone()?;
        f.seek(SeekFrom::Start(e.offset))?;
        Ok(f.take(e.size))
    }

    /// A file entry's bytes (for the Dockerfile and .dockerignore).
    pub fn read_to_string(&self, rel: &str) -> Option<String> {
        let e = self.get(rel).filter(|e| e.kind == Kind::File)?;
        let mut s = String::new();
        self.open_entry(&e).ok()?.read_to_string(&mut s).ok()?;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_with_implied_directories_links_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o640);
            h.set_cksum();
            t.append_data(&mut h, name, data).unwrap();
        };
        add("./a/b/c.txt", b"hello");
        add("top.txt", b"top");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        h.set_cksum();
        t.append_link(&mut h, "again.txt", "top.txt").unwrap();
        let path = dir.path().join("ctx.tar");
        std::fs::write(&path, t.into_inner().unwrap()).unwrap();
        let ctx = Context::open(&path).unwrap();
        assert_eq!(ctx.get("a").unwrap().kind, Kind::Dir);
        assert_eq!(ctx.children(""), ["a", "again.txt", "top.txt"]);
        assert_eq!(ctx.children("a/b"), ["c.txt"]);
        assert_eq!(ctx.read_to_string("a/b/c.txt").unwrap(), "hello");
        assert_eq!(ctx.read_to_string("again.txt").unwrap(), "top");
        assert_eq!(ctx.get("a/b/c.txt").unwrap().mode, 0o640);
        assert!(ctx.get("nope").is_none());

        let bad = dir.path().join("bad.tar");
        std::fs::write(&bad, b"not a tar at all, not even close").unwrap();
        assert!(Context::open(&bad).is_err());
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_cksum();
        // tar refuses to write "..", so the name goes in by hand.
        h.as_old_mut().name[..8].copy_from_slice(b"../x.txt");
        h.set_cksum();
        t.append(&h, &b"x"[..]).unwrap();
        // Names too long or too deep are refused before they cost memory.
        let deep = "a/".repeat(300) + "f";
        let mut t2 = tar::Builder::new(Vec::new());
        let mut h2 = tar::Header::new_gnu();
        h2.set_size(0);
        h2.set_cksum();
        t2.append_data(&mut h2, &deep, &b""[..]).unwrap();
        let deep_tar = dir.path().join("deep.tar");
        std::fs::write(&deep_tar, t2.into_inner().unwrap()).unwrap();
        assert!(Context::open(&deep_tar)
            .unwrap_err()
            .to_string()
            .contains("deep"));
        let evil = dir.path().join("evil.tar");
        std::fs::write(&evil, t.into_inner().unwrap()).unwrap();
        assert!(Context::open(&evil).is_err());
    }
}
