//! `--manifest FILE`: the SHA-256 of every file the run saved or kept, in
//! `sha256sum`'s format, sorted by name, written once at the end of the run
//! through a temporary file and a rename.
//!
//! Saved files come with the digest their worker computed while the body
//! streamed (with `--blur`, of the file as written). Files a re-run kept
//! (`--skip-existing`, a 304 under `--if-changed`) were not fetched: the
//! master hashes them here, at the end of the run.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flagmaster_worker::blur::blurred_name;
use flagmaster_worker::digest::{file_sha256, to_hex};
use flagmaster_worker::protocol::{Item, ItemReport, Status};

/// Where the manifest goes and the file name of each item.
pub struct Manifest {
    path: PathBuf,
    dest: PathBuf,
    files: HashMap<u32, String>,
}

impl Manifest {
    pub fn new<'a>(
        path: PathBuf,
        dest: &Path,
        items: impl IntoIterator<Item = &'a Item>,
    ) -> Manifest {
        Manifest {
            path,
            dest: dest.to_path_buf(),
            files: items
                .into_iter()
                .map(|i| (i.index, i.file.clone()))
                .collect(),
        }
    }

    /// The lines, by file name: `HEX  NAME`.
    pub fn entries(&self, reports: &[ItemReport]) -> BTreeMap<String, String> {
        let mut entries = BTreeMap::new();
        for r in reports {
            let Some(file) = r.saved_as.as_ref().or_else(|| self.files.get(&r.index)) else {
                continue;
            };
            match r.status {
                Status::Ok => {
                    if let Some(hex) = &r.sha256 {
                        entries.insert(file.clone(), hex.clone());
                    }
                    if let Some(hex) = &r.blurred_sha256 {
                        entries.insert(blurred_name(file), hex.clone());
                    }
                }
                Status::Skipped => {
                    if let Ok(digest) = file_sha256(&self.dest.join(file)) {
                        entries.insert(file.clone(), to_hex(&digest));
                    }
                }
                Status::NotFound | Status::Error => {}
            }
        }
        entries
    }

    /// Writes the manifest; returns how many files it lists.
    pub fn write(&self, reports: &[ItemReport]) -> io::Result<usize> {
        let entries = self.entries(reports);
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut temp = tempfile::Builder::new()
            .prefix(".flagmaster-manifest")
            .tempfile_in(dir)?;
        {
            let mut out = io::BufWriter::new(temp.as_file_mut());
            for (name, hex) in &entries {
                writeln!(out, "{hex}  {name}")?;
            }
            out.flush()?;
        }
        temp.persist(&self.path).map_err(|e| e.error)?;
        Ok(entries.len())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_by_name_with_kept_files_hashed_and_failures_left_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kept.jpg"), b"abc").unwrap();
        let item = Item::for_test;
        let items = [
            item(0, "b.jpg"),
            item(1, "a.jpg"),
            item(2, "kept.jpg"),
            item(3, "x.jpg"),
        ];
        let path = dir.path().join("SHA256SUMS");
        let manifest = Manifest::new(path.clone(), dir.path(), &items);
        let reports = vec![
            ItemReport {
                sha256: Some("11".repeat(32)),
                ..ItemReport::for_test(0, Status::Ok, 3)
            },
            ItemReport {
                sha256: Some("22".repeat(32)),
                blurred_sha256: Some("33".repeat(32)),
                ..ItemReport::for_test(1, Status::Ok, 3)
            },
            ItemReport::for_test(2, Status::Skipped, 0),
            ItemReport::for_test(3, Status::Error, 0),
        ];
        assert_eq!(manifest.write(&reports).unwrap(), 4);
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let want = format!(
            "{}  a.blur.jpg\n{}  a.jpg\n{}  b.jpg\n{abc}  kept.jpg\n",
            "33".repeat(32),
            "22".repeat(32),
            "11".repeat(32)
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), want);
    }
}
