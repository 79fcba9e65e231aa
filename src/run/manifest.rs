//! `--manifest FILE`: the SHA-256 of every file the run saved or kept, in
//! `sha256sum`'s format, sorted by name, written once at the end of the run
//! through a temporary file and a rename.
//!
//! Saved files come with the digest their worker computed while the body
//! streamed (with `--blur`, of the file as written). Files a re-run kept
//! (`--skip-existing`, a 304 under `--if-changed`) were not fetched: the
//! master hashes them here, at the end of the run.

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flagmaster_worker::blur::blurred_name;
use flagmaster_worker::digest::{file_sha256, HexDigest};
use flagmaster_worker::protocol::{ItemReport, Status};

/// Where the manifest goes. The file names come with the reports
/// (`saved_as`), so nothing is held for it while the run goes on.
pub struct Manifest {
    path: PathBuf,
    dest: PathBuf,
}

impl Manifest {
    pub fn new(path: PathBuf, dest: &Path) -> Manifest {
        Manifest {
            path,
            dest: dest.to_path_buf(),
        }
    }

    /// The lines, by file name: `(NAME, HEX)`. Borrowed from the reports,
    /// since at the end of a large run a copy of every name and digest would
    /// be the run's peak memory.
    pub fn entries<'a>(&'a self, reports: &'a [ItemReport]) -> Vec<(Cow<'a, str>, HexDigest)> {
        let mut entries = Vec::with_capacity(reports.len());
        for r in reports {
            let Some(file) = &r.saved_as else {
                continue;
            };
            match r.status {
                Status::Ok => {
                    if let Some(digest) = &r.sha256 {
                        entries.push((Cow::from(file), **digest));
                    }
                    if let Some(digest) = &r.blurred_sha256 {
                        entries.push((Cow::from(blurred_name(file)), **digest));
                    }
                }
                Status::Skipped => {
                    if let Ok(digest) = file_sha256(&self.dest.join(file)) {
                        entries.push((Cow::from(file), HexDigest(digest)));
                    }
                }
                Status::NotFound | Status::Error => {}
            }
        }
        // A stable sort, so that of two reports naming one file the first wins.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
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
        let digest = |byte: u8| Some(Box::new(HexDigest([byte; 32])));
        let report = |index, status, file: &str| ItemReport {
            saved_as: Some(file.to_string()),
            ..ItemReport::for_test(index, status, 3)
        };
        let path = dir.path().join("SHA256SUMS");
        let manifest = Manifest::new(path.clone(), dir.path());
        let reports = vec![
            ItemReport {
                sha256: digest(0x11),
                ..report(0, Status::Ok, "b.jpg")
            },
            ItemReport {
                sha256: digest(0x22),
                blurred_sha256: digest(0x33),
                ..report(1, Status::Ok, "a.jpg")
            },
            report(2, Status::Skipped, "kept.jpg"),
            report(3, Status::Error, "x.jpg"),
            // Hashed, but no name: not listed rather than listed wrongly.
            ItemReport {
                sha256: digest(0x44),
                ..ItemReport::for_test(4, Status::Ok, 3)
            },
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
