//! Re-runs: what to do about files already in the destination.
//!
//! By default every item is downloaded afresh. `--skip-existing` decides in
//! the master, before anything is dispatched, that an item whose file is
//! already complete is `SKIPPED` ("exists"): no worker and no request is
//! involved. `--if-changed` sends those items to the workers with validators,
//! so the server can answer 304 ("not modified") instead of the body.
//!
//! The validators come from a sidecar file in the destination, [`SIDECAR`],
//! that maps file names to the URL, `ETag` and `Last-Modified` of the response
//! that wrote them. Only the master writes it, once at the end of an
//! `--if-changed` run, through a temporary file and a rename, so it is never
//! half-written; a sidecar that cannot be read is a warning and counts as
//! empty. Without a usable record the file's mtime is sent as
//! `If-Modified-Since`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flagmaster_worker::log::LogFile;
use flagmaster_worker::protocol::{Item, ItemReport, Status, Validators};
use flagmaster_worker::save::{check_file_name, TEMP_PREFIX, TEMP_SUFFIX};
use serde::{Deserialize, Serialize};

/// The sidecar's name inside the destination. It starts with a dot so that
/// listings of the downloaded files leave it out, and it is not a `.part`
/// file, so the clean-up of temporary files leaves it alone.
pub const SIDECAR: &str = ".flagmaster-validators.json";

/// Version of the sidecar's format; another version is ignored like a
/// corrupt file.
const SIDECAR_VERSION: u32 = 1;

/// JPEG start-of-image and end-of-image markers.
const JPEG_SOI: [u8; 2] = [0xFF, 0xD8];
const JPEG_EOI: [u8; 2] = [0xFF, 0xD9];

/// What a run does about files already in the destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rerun {
    /// Download every item (the default).
    #[default]
    Fresh,
    /// `--skip-existing`: complete files are not fetched.
    SkipExisting,
    /// `--if-changed`: complete files are fetched conditionally.
    IfChanged,
}

impl Rerun {
    /// From the two (mutually exclusive) flags.
    pub fn from_flags(skip_existing: bool, if_changed: bool) -> Rerun {
        match (skip_existing, if_changed) {
            (true, _) => Rerun::SkipExisting,
            (false, true) => Rerun::IfChanged,
            (false, false) => Rerun::Fresh,
        }
    }
}

/// One file's entry in the sidecar: what answered for it last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Size of the file written: a file of another size was changed since,
    /// and its record no longer speaks for it.
    pub bytes: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SidecarFile {
    version: u32,
    files: BTreeMap<String, Record>,
}

/// The items of a run after the re-run rules were applied.
pub struct Prepared {
    /// Items to hand to the workers (with validators under `--if-changed`).
    pub to_fetch: Vec<Item>,
    /// Items already finished (`--skip-existing`), as reports.
    pub skipped: Vec<ItemReport>,
    /// Items sent with validators (`--if-changed`).
    pub conditional: usize,
    /// The validators to update at the end of the run (`--if-changed`).
    pub book: Option<Book>,
    /// A sidecar that could not be used, as a warning line.
    pub warning: Option<String>,
}

/// Applies `rerun` to `items`, looking at the files in `dest`.
pub fn prepare(rerun: Rerun, mut items: Vec<Item>, dest: &Path) -> Prepared {
    if rerun != Rerun::Fresh {
        name_typed_files(&mut items, dest);
    }
    let mut prepared = Prepared {
        to_fetch: Vec::new(),
        skipped: Vec::new(),
        conditional: 0,
        book: None,
        warning: None,
    };
    match rerun {
        Rerun::Fresh => prepared.to_fetch = items,
        Rerun::SkipExisting => {
            let (to_fetch, skipped) = skip_existing(items, dest);
            prepared.to_fetch = to_fetch;
            prepared.skipped = skipped;
        }
        Rerun::IfChanged => {
            let path = dest.join(SIDECAR);
            let (records, warning) = load(&path);
            let (to_fetch, conditional) = with_validators(items, dest, &records);
            prepared.warning = warning;
            prepared.conditional = conditional;
            prepared.book = Some(Book {
                path,
                dest: dest.to_path_buf(),
                records,
                items: to_fetch
                    .iter()
                    .map(|i| (i.index, (i.file.clone(), i.url.clone())))
                    .collect(),
            });
            prepared.to_fetch = to_fetch;
        }
    }
    prepared
}

/// An item whose URL has no extension gets one from the Content-Type when it
/// is saved (`0` becomes `0.jpg`). For a re-run to find that file, such an
/// item takes the name of the one file in the dest that is its name plus a
/// known extension; with none (or several), it is fetched as usual.
fn name_typed_files(items: &mut [Item], dest: &Path) {
    let mut exts: Vec<&str> = flagmaster_worker::save::TYPE_EXTENSIONS
        .iter()
        .map(|(_, ext)| *ext)
        .collect();
    exts.dedup();
    for item in items.iter_mut().filter(|i| i.ext_from_type) {
        let mut found = exts
            .iter()
            .map(|ext| format!("{}.{ext}", item.file))
            .filter(|file| dest.join(file).is_file());
        if let (Some(file), None) = (found.next(), found.next()) {
            item.file = file;
            item.ext_from_type = false;
        }
    }
}

impl Prepared {
    /// Tells the user (the notes go where the "Site:"/"Mode:" lines go) and
    /// the master log what the re-run rules did.
    pub fn announce(&self, rerun: Rerun, json: bool, dest: &Path, log: &LogFile) {
        if let Some(warning) = &self.warning {
            eprintln!("flagmaster: {warning}");
        }
        let (mode, note) = match rerun {
            Rerun::Fresh => return,
            Rerun::SkipExisting => (
                "skip-existing",
                format!(
                    "Skipping {} files already in {}",
                    self.skipped.len(),
                    dest.display()
                ),
            ),
            Rerun::IfChanged => (
                "if-changed",
                format!(
                    "Asking whether {} files already in {} changed (304: kept)",
                    self.conditional,
                    dest.display()
                ),
            ),
        };
        let _ = if json {
            writeln!(io::stderr(), "{note}")
        } else {
            writeln!(io::stdout(), "{note}")
        };
        log.line(&[
            ("event", &"rerun"),
            ("mode", &mode),
            ("skipped", &self.skipped.len()),
            ("conditional", &self.conditional),
            ("fetch", &self.to_fetch.len()),
        ]);
    }
}

/// Splits `items` into those to fetch and those whose file is complete in
/// `dest`, reported `SKIPPED` ("exists") with nothing downloaded.
pub fn skip_existing(items: Vec<Item>, dest: &Path) -> (Vec<Item>, Vec<ItemReport>) {
    let (done, to_fetch): (Vec<Item>, Vec<Item>) = items
        .into_iter()
        .partition(|item| complete_file(dest, &item.file).is_some());
    let skipped = done
        .into_iter()
        .map(|item| ItemReport {
            // Maybe with the extension found on disk (`name_typed_files`).
            saved_as: Some(item.file.clone()),
            ..ItemReport::without_request(&item, Status::Skipped, Some("exists"))
        })
        .collect();
    (to_fetch, skipped)
}

/// Gives every item whose file is complete in `dest` the validators to send:
/// its record when the record is for the same URL and the same file size,
/// the file's mtime otherwise. Returns the items and how many got validators.
pub fn with_validators(
    mut items: Vec<Item>,
    dest: &Path,
    records: &BTreeMap<String, Record>,
) -> (Vec<Item>, usize) {
    let mut conditional = 0;
    for item in &mut items {
        let Some(meta) = complete_file(dest, &item.file) else {
            continue;
        };
        let record = records
            .get(&item.file)
            .filter(|r| r.url == item.url && r.bytes == meta.len())
            .map(|r| Validators {
                etag: r.etag.clone().filter(|v| header_safe(v)),
                last_modified: r.last_modified.clone().filter(|v| header_safe(v)),
            })
            .filter(|v| v.etag.is_some() || v.last_modified.is_some());
        let validators = record.or_else(|| {
            meta.modified().ok().map(|mtime| Validators {
                etag: None,
                last_modified: Some(httpdate::fmt_http_date(mtime)),
            })
        });
        if validators.is_some() {
            conditional += 1;
        }
        item.validators = validators;
    }
    (items, conditional)
}

/// The metadata of `dest/file` if it is complete: a safe name, a regular file
/// (not a link), not empty, and for a JPEG name, starting and ending with the
/// JPEG markers. Files only appear in the destination through the atomic
/// rename of a checked body, so this is cheap (two 2-byte reads) and catches
/// what others may have done to them since.
pub fn complete_file(dest: &Path, file: &str) -> Option<fs::Metadata> {
    check_file_name(file).ok()?;
    let path = dest.join(file);
    let meta = fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() || meta.len() == 0 {
        return None;
    }
    let lower = file.to_ascii_lowercase();
    if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
        if meta.len() < 4 {
            return None;
        }
        let (head, tail) = ends(&path).ok()?;
        if head != JPEG_SOI || tail != JPEG_EOI {
            return None;
        }
    }
    Some(meta)
}

/// The first and the last two bytes of a file.
fn ends(path: &Path) -> io::Result<([u8; 2], [u8; 2])> {
    let mut file = fs::File::open(path)?;
    let (mut head, mut tail) = ([0u8; 2], [0u8; 2]);
    file.read_exact(&mut head)?;
    file.seek(SeekFrom::End(-2))?;
    file.read_exact(&mut tail)?;
    Ok((head, tail))
}

/// A value that can go into a request header as it is (a hand-edited sidecar
/// could hold anything).
fn header_safe(value: &str) -> bool {
    !value.is_empty() && ureq::http::HeaderValue::from_str(value).is_ok()
}

/// Reads the sidecar at `path`. A missing one is empty; one that cannot be
/// read or parsed is empty too, with a warning line saying why.
pub fn load(path: &Path) -> (BTreeMap<String, Record>, Option<String>) {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (BTreeMap::new(), None),
        Err(e) => return (BTreeMap::new(), Some(ignored(path, &e.to_string()))),
    };
    match parse(&text) {
        Ok(records) => (records, None),
        Err(why) => (BTreeMap::new(), Some(ignored(path, &why))),
    }
}

fn ignored(path: &Path, why: &str) -> String {
    format!(
        "warning: ignoring {} ({why}); files already there are checked by their mtime",
        path.display()
    )
}

/// Parses a sidecar's text.
pub fn parse(text: &str) -> Result<BTreeMap<String, Record>, String> {
    let file: SidecarFile = serde_json::from_str(text).map_err(|e| format!("not valid: {e}"))?;
    if file.version != SIDECAR_VERSION {
        return Err(format!("unknown version {}", file.version));
    }
    Ok(file.files)
}

/// The validators of an `--if-changed` run: those read at its start, and what
/// is needed to update them from its reports at the end.
pub struct Book {
    path: PathBuf,
    dest: PathBuf,
    records: BTreeMap<String, Record>,
    /// File name and URL of every item of the run, by index.
    items: HashMap<u32, (String, String)>,
}

impl Book {
    /// The records after a run with these reports:
    /// - a file written (`OK`) gets the response's validators, or loses its
    ///   record if the response had none (its mtime speaks for it then);
    /// - a file not modified (`SKIPPED`) keeps its record, updated with the
    ///   304's validators when it carried any;
    /// - a failed item leaves its file, and its record, as they were;
    /// - records of files no longer in the destination are dropped.
    pub fn updated(&self, reports: &[ItemReport]) -> BTreeMap<String, Record> {
        let mut records = self.records.clone();
        for report in reports {
            let Some((file, url)) = self.items.get(&report.index) else {
                continue;
            };
            let fresh = report.etag.is_some() || report.last_modified.is_some();
            match report.status {
                Status::Ok if fresh => {
                    records.insert(file.clone(), record(url, report, report.bytes));
                }
                Status::Ok => {
                    records.remove(file);
                }
                Status::Skipped if fresh => {
                    match fs::metadata(self.dest.join(file)) {
                        Ok(meta) => records.insert(file.clone(), record(url, report, meta.len())),
                        Err(_) => records.remove(file),
                    };
                }
                Status::Skipped | Status::NotFound | Status::Error => {}
            }
        }
        records.retain(|file, _| check_file_name(file).is_ok() && self.dest.join(file).is_file());
        records
    }

    /// Writes the records after a run with these reports, atomically: a
    /// temporary file in the destination (removed as a leftover if the master
    /// is killed before the rename), then a rename. Returns how many records.
    pub fn save(&self, reports: &[ItemReport]) -> io::Result<usize> {
        let records = self.updated(reports);
        let count = records.len();
        let file = SidecarFile {
            version: SIDECAR_VERSION,
            files: records,
        };
        let text = serde_json::to_string_pretty(&file).map_err(io::Error::other)?;
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(TEMP_SUFFIX)
            .tempfile_in(&self.dest)?;
        temp.write_all(text.as_bytes())?;
        temp.write_all(b"\n")?;
        temp.as_file().sync_all()?;
        temp.persist(&self.path).map_err(|e| e.error)?;
        Ok(count)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Saves the records at the end of the run; a failure is a warning (the
    /// files are fine, the next run falls back to their mtimes).
    pub fn finish(&self, reports: &[ItemReport], log: &LogFile) {
        match self.save(reports) {
            Ok(records) => log.line(&[
                ("event", &"validators"),
                ("records", &records),
                ("path", &self.path.display()),
            ]),
            Err(e) => {
                eprintln!(
                    "flagmaster: warning: cannot write {}: {e}",
                    self.path.display()
                );
                log.line(&[
                    ("event", &"validators"),
                    ("path", &self.path.display()),
                    ("error", &e),
                ]);
            }
        }
    }
}

fn record(url: &str, report: &ItemReport, bytes: u64) -> Record {
    Record {
        url: url.to_string(),
        etag: report.etag.clone(),
        last_modified: report.last_modified.clone(),
        bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mtime of a file as an HTTP date, as `--if-changed` sends it
    /// without a record.
    fn mtime_date(path: &Path) -> Option<String> {
        let modified = fs::metadata(path).ok()?.modified().ok()?;
        Some(httpdate::fmt_http_date(modified))
    }

    const JPEG: &[u8] = &[0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9];

    fn item(index: u32, name: &str, dest_url: &str) -> Item {
        Item {
            index,
            name: name.into(),
            url: format!("{dest_url}/{name}.jpg"),
            file: format!("{name}.jpg"),
            ext_from_type: false,
            validators: None,
            sha256: None,
        }
    }

    fn report(index: u32, status: Status, etag: Option<&str>, bytes: u64) -> ItemReport {
        ItemReport {
            etag: etag.map(str::to_string),
            ..ItemReport::for_test(index, status, bytes)
        }
    }

    #[test]
    fn complete_files_follow_the_skip_rules() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("good.jpg"), JPEG).unwrap();
        fs::write(d.join("empty.jpg"), b"").unwrap();
        fs::write(d.join("cut.jpg"), &JPEG[..5]).unwrap();
        fs::write(d.join("html.jpg"), b"<html></html>").unwrap();
        fs::write(d.join("tiny.jpg"), [0xFF, 0xD8, 0xD9]).unwrap();
        fs::write(d.join("data.bin"), b"x").unwrap();
        fs::create_dir(d.join("dir.jpg")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(d.join("good.jpg"), d.join("link.jpg")).unwrap();
        assert!(complete_file(d, "good.jpg").is_some());
        assert!(
            complete_file(d, "data.bin").is_some(),
            "no markers to check"
        );
        for file in [
            "empty.jpg",
            "cut.jpg",
            "html.jpg",
            "tiny.jpg",
            "dir.jpg",
            "link.jpg",
            "missing.jpg",
            "../good.jpg",
        ] {
            assert!(complete_file(d, file).is_none(), "{file}");
        }
    }

    #[test]
    fn a_file_named_by_its_content_type_is_found_again() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("0.jpg"), JPEG).unwrap();
        fs::write(dir.path().join("2.png"), b"png").unwrap();
        fs::write(dir.path().join("2.gif"), b"gif").unwrap();
        let mut items: Vec<Item> = ["0", "1", "2"]
            .iter()
            .enumerate()
            .map(|(i, f)| Item {
                ext_from_type: true,
                file: f.to_string(),
                ..item(i as u32, f, "http://h")
            })
            .collect();
        name_typed_files(&mut items, dir.path());
        assert_eq!(
            (items[0].file.as_str(), items[0].ext_from_type),
            ("0.jpg", false)
        );
        assert_eq!(
            (items[1].file.as_str(), items[1].ext_from_type),
            ("1", true),
            "none there"
        );
        assert_eq!(
            (items[2].file.as_str(), items[2].ext_from_type),
            ("2", true),
            "ambiguous"
        );
    }

    #[test]
    fn skip_existing_keeps_indexes_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("B.jpg"), JPEG).unwrap();
        let items = vec![item(0, "A", "http://h"), item(1, "B", "http://h")];
        let (to_fetch, skipped) = skip_existing(items, dir.path());
        assert_eq!(to_fetch.len(), 1);
        assert_eq!(to_fetch[0].index, 0);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].index, 1);
        assert_eq!(skipped[0].status, Status::Skipped);
        assert_eq!(skipped[0].reason.as_deref(), Some("exists"));
        assert_eq!(skipped[0].bytes, 0);
    }

    #[test]
    fn validators_from_matching_records_or_the_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["A", "B", "C", "D"] {
            fs::write(d.join(format!("{name}.jpg")), JPEG).unwrap();
        }
        let rec = |url: &str, etag: &str, bytes| Record {
            url: url.into(),
            etag: Some(etag.into()),
            last_modified: None,
            bytes,
        };
        let len = JPEG.len() as u64;
        let records = BTreeMap::from([
            ("A.jpg".to_string(), rec("http://h/A.jpg", "\"a\"", len)),
            ("B.jpg".to_string(), rec("http://other/B.jpg", "\"b\"", len)),
            ("C.jpg".to_string(), rec("http://h/C.jpg", "\"c\"", len + 1)),
            (
                "D.jpg".to_string(),
                rec("http://h/D.jpg", "bad\nvalue", len),
            ),
        ]);
        let items = ["A", "B", "C", "D", "E"]
            .iter()
            .enumerate()
            .map(|(i, n)| item(i as u32, n, "http://h"))
            .collect();
        let (items, conditional) = with_validators(items, d, &records);
        assert_eq!(conditional, 4, "E has no file");
        let a = items[0].validators.as_ref().unwrap();
        assert_eq!(a.etag.as_deref(), Some("\"a\""));
        assert_eq!(a.last_modified, None);
        let mtime = mtime_date(&d.join("B.jpg"));
        assert!(mtime.is_some());
        for item in &items[1..4] {
            let v = item.validators.as_ref().unwrap();
            assert_eq!(v.etag, None, "record of {} not used", item.name);
            let want = mtime_date(&d.join(&item.file));
            assert_eq!(v.last_modified, want, "{}", item.name);
        }
        assert_eq!(items[4].validators, None);
    }

    #[test]
    fn sidecar_parsing_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SIDECAR);
        assert_eq!(load(&path), (BTreeMap::new(), None), "missing is empty");
        let good = r#"{"version":1,"files":{"A.jpg":{"url":"http://h/A.jpg","etag":"\"a\"","last_modified":null,"bytes":7}}}"#;
        let records = parse(good).unwrap();
        assert_eq!(records["A.jpg"].etag.as_deref(), Some("\"a\""));
        for bad in [
            "{\"version\":1,\"files\":{\"A.jpg\":",
            "not json at all",
            "{\"version\":2,\"files\":{}}",
            "[]",
        ] {
            fs::write(&path, bad).unwrap();
            let (records, warning) = load(&path);
            assert!(records.is_empty(), "{bad}");
            let warning = warning.expect("a warning");
            assert!(
                warning.starts_with("warning: ignoring ") && !warning.contains('\n'),
                "{warning}"
            );
        }
    }

    #[test]
    fn book_updates_records_and_writes_them_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["A", "B", "C", "D"] {
            fs::write(d.join(format!("{name}.jpg")), JPEG).unwrap();
        }
        fs::write(d.join(SIDECAR), "garbage").unwrap();
        let items = ["A", "B", "C", "D", "Gone"]
            .iter()
            .enumerate()
            .map(|(i, n)| item(i as u32, n, "http://h"))
            .collect();
        let prepared = prepare(Rerun::IfChanged, items, d);
        assert!(prepared.warning.is_some(), "corrupt sidecar is a warning");
        assert_eq!(prepared.conditional, 4);
        let book = prepared.book.expect("a book under --if-changed");
        let len = JPEG.len() as u64;
        let reports = [
            report(0, Status::Ok, Some("\"a1\""), len),
            report(1, Status::Skipped, Some("\"b\""), 0),
            report(2, Status::Ok, None, len),
            report(3, Status::Error, Some("\"d\""), 0),
            report(4, Status::Ok, Some("\"gone\""), 9),
        ];
        assert_eq!(book.save(&reports).unwrap(), 2);
        let (records, warning) = load(book.path());
        assert_eq!(warning, None);
        assert_eq!(records["A.jpg"].etag.as_deref(), Some("\"a1\""));
        assert_eq!(records["A.jpg"].url, "http://h/A.jpg");
        assert_eq!(records["B.jpg"].bytes, len, "size of the file kept");
        assert!(
            !records.contains_key("C.jpg"),
            "no validators: mtime next time"
        );
        assert!(!records.contains_key("D.jpg"), "failed: as it was (none)");
        assert!(!records.contains_key("Gone.jpg"), "no such file");
        let names: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(TEMP_SUFFIX))
            .collect();
        assert!(names.is_empty(), "no temporary file left: {names:?}");
    }

    #[test]
    fn flags_choose_the_mode() {
        assert_eq!(Rerun::from_flags(false, false), Rerun::Fresh);
        assert_eq!(Rerun::from_flags(true, false), Rerun::SkipExisting);
        assert_eq!(Rerun::from_flags(false, true), Rerun::IfChanged);
    }
}
