//! Hard-linking an archive again the way uv linked it last time, without uv's installer.
//!
//! Per wheel, uv's installer reads `WHEEL` and `METADATA`, lists the archive twice, links each
//! file, copies `RECORD`, writes `REQUESTED` and `INSTALLER` each through a temporary file and a
//! rename, then writes `RECORD` again (truncated first, which ext4 flushes when it is closed):
//! for 100 files, about 0.7 ms over the links themselves (measured with `benchmarks/phases.py`).
//!
//! A *plain* wheel, every path of whose RECORD lies inside the site folder (no scripts, no
//! `.data`), ends each time uv hard-links it as the same tree in whichever site folder: the
//! archive's files hard-linked at the same relative paths, plus the few files uv wrote itself
//! (`RECORD`, `INSTALLER`, `REQUESTED`, none of which names the folder; a wheel from a path
//! or URL, whose `direct_url.json` would, is never relinked: see `stages::relink`). The engine
//! learns that tree from an install uv just made ([`Relink::learn`], which checks that every
//! archive file is linked and every other file is one RECORD lists) and makes it again
//! ([`Relink::apply`]). An archive in uv's cache does not
//! change (a rebuilt wheel is unpacked into a new one), so what was learned stays true.
//!
//! Only where none of the wheel's top-level paths exists (uv would merge into them): anything
//! else, or any failure (the environment is then left as it was), goes to uv's installer.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::spare::Taken;

/// The tree uv made from one archive in one site folder, relative to both.
#[derive(Debug)]
pub struct Relink {
    /// Folders, parents first.
    folders: Vec<String>,
    /// Files hard-linked from the archive.
    linked: Vec<String>,
    /// Files uv wrote itself: path, content, and the permission bits of a copy of an archive
    /// file (`RECORD`, which uv copies with its bits); `None` for a file uv made new, whose bits
    /// are the process's umask's, as for uv.
    written: Vec<(String, Vec<u8>, Option<u32>)>,
    /// The top-level paths, none of which may exist when the tree is made again.
    tops: Vec<String>,
}

impl Relink {
    /// What uv just made from `archive`, whose `.dist-info` folder it installed at
    /// `dist_info`; `None` when the wheel is not plain, or the tree is not exactly the
    /// archive's files hard-linked plus files RECORD lists.
    pub fn learn(archive: &Path, dist_info: &Path) -> Option<Self> {
        let site = dist_info.parent()?;
        let record = std::fs::read(dist_info.join("RECORD")).ok()?;
        let paths: Vec<String> = uv_install_wheel::read_record(&mut record.as_slice())
            .ok()?
            .into_iter()
            .map(|entry| entry.path)
            .collect();
        if paths.iter().any(|p| !is_plain(p)) {
            return None;
        }
        let (folders, files) = archive_tree(archive)?;
        let mut linked = Vec::new();
        let mut written = Vec::new();
        for path in &paths {
            let here = site.join(path).symlink_metadata().ok()?;
            if !here.is_file() {
                return None;
            }
            let there = archive.join(path).symlink_metadata().ok();
            match there {
                Some(there) if (there.dev(), there.ino()) == (here.dev(), here.ino()) => {
                    linked.push(path.clone());
                }
                _ => {
                    let content = std::fs::read(site.join(path)).ok()?;
                    // uv copies `RECORD` from the archive with its bits; what else it writes is new.
                    let copied = there
                        .filter(|_| path.ends_with(".dist-info/RECORD"))
                        .map(|there| there.mode() & 0o7777);
                    written.push((path.clone(), content, copied));
                }
            }
        }
        // Every archive file is in the tree (linked, or `RECORD`, written over).
        let listed: BTreeSet<&str> = paths.iter().map(String::as_str).collect();
        if files.iter().any(|file| !listed.contains(file.as_str())) {
            return None;
        }
        let tops: BTreeSet<String> = paths.iter().map(|p| top_of(p).to_string()).collect();
        Some(Self {
            folders,
            linked,
            written,
            tops: tops.into_iter().collect(),
        })
    }

    /// How many folders, and how many files uv wrote itself, the tree has: the inodes it makes
    /// besides its links.
    pub fn made_new(&self) -> (usize, usize) {
        (self.folders.len(), self.written.len())
    }

    /// The top-level paths of the tree.
    pub fn tops(&self) -> &[String] {
        &self.tops
    }

    /// Every folder and file of the tree, relative to the site folder; `true` for a file
    /// hard-linked from the archive.
    pub fn paths(&self) -> impl Iterator<Item = (&str, bool)> {
        let folders = self.folders.iter().map(|path| (path.as_str(), false));
        let linked = self.linked.iter().map(|path| (path.as_str(), true));
        let written = self.written.iter().map(|(path, ..)| (path.as_str(), false));
        folders.chain(linked).chain(written)
    }

    /// Make the tree again in `site` from `archive`, its folders and written files from
    /// `spares` where it has them (`spare.rs`). On failure, whatever this made is removed and
    /// the site folder is as it was (the caller then runs uv's installer).
    pub fn apply(&self, archive: &Path, site: &Path, spares: &mut Taken) -> std::io::Result<()> {
        for top in &self.tops {
            if site.join(top).symlink_metadata().is_ok() {
                return Err(std::io::ErrorKind::AlreadyExists.into());
            }
        }
        let mut made: Vec<&str> = Vec::new();
        let outcome = self.make(archive, site, spares, &mut made);
        if outcome.is_err() {
            for top in made.iter().rev() {
                let path = site.join(top);
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
        outcome
    }

    /// Folders, then links, then the written files (`RECORD` among them), as uv orders them;
    /// `made` collects the top-level paths made, to undo a failure.
    fn make<'a>(
        &'a self,
        archive: &Path,
        site: &Path,
        spares: &mut Taken,
        made: &mut Vec<&'a str>,
    ) -> std::io::Result<()> {
        for folder in &self.folders {
            spares.make_folder(&site.join(folder))?;
            note_top(folder, made);
        }
        for file in &self.linked {
            std::fs::hard_link(archive.join(file), site.join(file))?;
            note_top(file, made);
        }
        for (file, content, mode) in &self.written {
            spares.write_file(&site.join(file), content, *mode)?;
            note_top(file, made);
        }
        Ok(())
    }
}

/// Keep `path` among those to undo if it is a top-level one.
fn note_top<'a>(path: &'a str, made: &mut Vec<&'a str>) {
    if !path.contains('/') {
        made.push(path);
    }
}

/// A RECORD path inside the site folder, with no bytecode (which uv compiles, not links).
fn is_plain(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path
            .split('/')
            .any(|part| part == ".." || part == "." || part.is_empty())
        && !path.contains("__pycache__")
}

fn top_of(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// The archive's folders (parents first) and files, relative to it; `None` for anything else
/// (a symbolic link) or a `.data` folder.
fn archive_tree(archive: &Path) -> Option<(Vec<String>, Vec<String>)> {
    let mut folders = Vec::new();
    let mut files = Vec::new();
    let mut pending = vec![String::new()];
    while let Some(folder) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(archive.join(&folder))
            .ok()?
            .collect::<Result<_, _>>()
            .ok()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name().into_string().ok()?;
            let path = if folder.is_empty() {
                name.clone()
            } else {
                format!("{folder}/{name}")
            };
            let kind = entry.file_type().ok()?;
            if kind.is_dir() {
                if folder.is_empty() && name.ends_with(".data") {
                    return None;
                }
                folders.push(path.clone());
                pending.push(path);
            } else if kind.is_file() {
                files.push(path);
            } else {
                return None;
            }
        }
    }
    Some((folders, files))
}
