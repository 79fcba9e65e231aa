//! Saving a body: safe file names, streaming into a file in the destination
//! that gets its name only once the body is complete and checked.
//!
//! The file being written lives in the destination directory (not in /tmp) so
//! that naming it never crosses file systems and is atomic: a reader of the
//! destination sees either no file or the whole file, never a partial one.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::digest::{self, Hasher, Sha256Digest};

/// Prefix of named temporary files in the destination; a later run removes leftovers.
pub const TEMP_PREFIX: &str = ".flagmaster-";
/// Suffix of temporary files in the destination.
pub const TEMP_SUFFIX: &str = ".part";

/// Longest file name accepted, in bytes: the common limit of Linux, macOS and
/// Windows file systems.
const MAX_NAME_BYTES: usize = 255;

/// Why a file name is refused. The message is the reason shown for the item.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("unsafe name: empty")]
    Empty,
    #[error("unsafe name: path separator")]
    Separator,
    #[error("unsafe name: dot path")]
    Dots,
    #[error("unsafe name: control character")]
    Control,
    #[error("unsafe name: longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    #[error("unsafe name: reserved on Windows")]
    Reserved,
}

/// Checks that `file` is a plain file name that stays inside the destination
/// on any operating system, also once percent-decoded (a name that decodes to
/// `../x` would escape the destination of any tool that decodes it later).
pub fn check_file_name(file: &str) -> Result<(), NameError> {
    check_plain_name(file)?;
    let decoded = percent_encoding::percent_decode_str(file).decode_utf8_lossy();
    if decoded != file {
        check_plain_name(&decoded)?;
    }
    Ok(())
}

fn check_plain_name(file: &str) -> Result<(), NameError> {
    if file.is_empty() {
        return Err(NameError::Empty);
    }
    if file.contains(['/', '\\']) || file.contains(':') {
        return Err(NameError::Separator);
    }
    if file == "." || file == ".." {
        return Err(NameError::Dots);
    }
    if file.chars().any(char::is_control) {
        return Err(NameError::Control);
    }
    if file.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    let stem = file.split('.').next().unwrap_or(file).to_ascii_uppercase();
    let reserved = ["CON", "PRN", "AUX", "NUL"].contains(&stem.as_str())
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit());
    if reserved {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// Why a body was not saved. The message is the reason shown for the item.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("body larger than {0} bytes")]
    TooLarge(u64),
    #[error("length mismatch: {got} of {expected} bytes")]
    LengthMismatch { got: u64, expected: u64 },
    #[error("read failed: {0}")]
    Read(io::Error),
    #[error("write failed: {0}")]
    Write(io::Error),
    #[error("interrupted")]
    Interrupted,
    #[error("incomplete JPEG: {0}")]
    IncompleteJpeg(&'static str),
    #[error(
        "checksum mismatch (expected {}, got {})",
        digest::short(expected),
        digest::short(got)
    )]
    ChecksumMismatch {
        expected: Sha256Digest,
        got: Sha256Digest,
    },
}

/// The reason of an item that could not be saved because the file system
/// is full, and of every item the run then does not start.
pub const DISK_FULL: &str = "disk full";

impl SaveError {
    /// The destination's file system, or the user's quota on it, is full:
    /// no other item can be saved either.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, SaveError::Write(e) if is_disk_full(e))
    }
}

/// `ENOSPC` or `EDQUOT`.
pub fn is_disk_full(e: &io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(rustix::io::Errno::DQUOT.raw_os_error()) {
        return true;
    }
    e.kind() == io::ErrorKind::StorageFull
}

/// What a body must be to be saved.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expect {
    /// Largest body accepted, in bytes.
    pub max_size: u64,
    /// The declared length, when the body must have exactly that many bytes.
    pub len: Option<u64>,
    /// The body claims to be a JPEG: it must start with the SOI marker and end
    /// with the EOI marker. A length header can lie (a body longer than
    /// declared leaves a truncated picture that matches it); the markers catch that.
    pub jpeg: bool,
    /// Hash the body as it streams, and report its SHA-256.
    pub hash: bool,
    /// The SHA-256 the body must have (`--checksums`); it is hashed then
    /// whatever `hash` says.
    pub sha256: Option<Sha256Digest>,
}

/// A body that was saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saved {
    pub bytes: u64,
    /// Its SHA-256, when it was hashed.
    pub sha256: Option<Sha256Digest>,
}

/// Streams `body` into `dest/file`, atomically, hashing it on the way when
/// asked. Returns the bytes saved and the digest.
///
/// The body is never held whole in memory, nor read back. Nothing is left
/// behind on error (a wrong checksum included): the file being written is
/// dropped unnamed (or, named, removed).
pub fn save_stream(
    dest: &Path,
    file: &str,
    body: &mut dyn Read,
    expect: Expect,
) -> Result<Saved, SaveError> {
    let mut pending = Pending::new(dest).map_err(SaveError::Write)?;
    let mut hasher = Hasher::new(expect.hash || expect.sha256.is_some());
    let (got, head, tail) = copy_capped(body, pending.file_mut(), expect.max_size, &mut hasher)?;
    if let Some(expected) = expect.len {
        if got != expected {
            return Err(SaveError::LengthMismatch { got, expected });
        }
    }
    if expect.jpeg {
        if head != [0xFF, 0xD8] {
            return Err(SaveError::IncompleteJpeg("no start marker"));
        }
        if tail != [0xFF, 0xD9] {
            return Err(SaveError::IncompleteJpeg("no end marker"));
        }
    }
    let sha256 = hasher.finish();
    if let (Some(expected), Some(got)) = (expect.sha256, sha256) {
        if expected != got {
            return Err(SaveError::ChecksumMismatch { expected, got });
        }
    }
    pending.persist(dest, file).map_err(SaveError::Write)?;
    Ok(Saved { bytes: got, sha256 })
}

/// A file being written in the destination, which gets its name only once it
/// is complete.
///
/// On Linux it is an unnamed file (`O_TMPFILE`) linked in at the end: one
/// directory update per file instead of two (create, then rename). Dozens of
/// threads writing into one directory queue on its lock for each update, so
/// this saves several µs per file; and a killed process leaves nothing behind.
/// Elsewhere, or where the file system or a missing /proc does not allow it,
/// it is a named temporary file renamed into place.
pub(crate) enum Pending {
    #[cfg(target_os = "linux")]
    Unnamed(fs::File),
    /// Named so that [`remove_leftovers`] finds it if the process is killed
    /// before it is persisted or dropped.
    Named(tempfile::NamedTempFile),
}

impl Pending {
    pub(crate) fn new(dest: &Path) -> io::Result<Pending> {
        #[cfg(target_os = "linux")]
        if unnamed::usable() {
            match unnamed::create(dest) {
                Ok(file) => return Ok(Pending::Unnamed(file)),
                Err(e) if unnamed::unsupported(&e) => {}
                Err(e) => return Err(e),
            }
        }
        temp_builder().tempfile_in(dest).map(Pending::Named)
    }

    pub(crate) fn file(&self) -> &fs::File {
        match self {
            #[cfg(target_os = "linux")]
            Pending::Unnamed(file) => file,
            Pending::Named(temp) => temp.as_file(),
        }
    }

    pub(crate) fn file_mut(&mut self) -> &mut fs::File {
        match self {
            #[cfg(target_os = "linux")]
            Pending::Unnamed(file) => file,
            Pending::Named(temp) => temp.as_file_mut(),
        }
    }

    /// Makes the complete file `dest/file`, readable like any file the user
    /// creates, replacing a file of that name in one step.
    pub(crate) fn persist(self, dest: &Path, file: &str) -> io::Result<()> {
        let target = dest.join(file);
        match self {
            #[cfg(target_os = "linux")]
            Pending::Unnamed(file) => match unnamed::link(&file, &target) {
                // A link never replaces: link it under a temporary name and
                // rename that over the old file.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => temp_builder()
                    .make_in(dest, |temp| unnamed::link(&file, temp))?
                    .persist(&target)
                    .map(drop)
                    .map_err(|e| e.error),
                linked => linked,
            },
            Pending::Named(temp) => temp.persist(&target).map(drop).map_err(|e| e.error),
        }
    }
}

fn temp_builder() -> tempfile::Builder<'static, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX).suffix(TEMP_SUFFIX);
    // tempfile's default is 0600; a downloaded image should be readable like
    // any file the user creates. Set at creation (the umask applies, as for an
    // unnamed file), which spares a chmod per file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(FILE_MODE));
    }
    builder
}

/// The mode saved files are created with, before the umask.
#[cfg(unix)]
const FILE_MODE: u32 = 0o644;

#[cfg(target_os = "linux")]
mod unnamed {
    use std::fs;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::OnceLock;

    use crate::os::{self, Errno};

    /// An unnamed file is given a name through its /proc/self/fd link (the
    /// other way, `AT_EMPTY_PATH`, needs a capability).
    pub fn usable() -> bool {
        static PROC: OnceLock<bool> = OnceLock::new();
        *PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir())
    }

    pub fn create(dir: &Path) -> io::Result<fs::File> {
        fs::OpenOptions::new()
            .write(true)
            .custom_flags(os::O_TMPFILE)
            .mode(super::FILE_MODE)
            .open(dir)
    }

    /// What `open` answers where `O_TMPFILE` is not supported.
    pub fn unsupported(e: &io::Error) -> bool {
        matches!(
            Errno::from_io_error(e),
            Some(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL)
        )
    }

    /// Gives `file` the name `to`. With `CAP_DAC_READ_SEARCH` (or a kernel
    /// that allows it to the file's opener) `AT_EMPTY_PATH` names the file
    /// itself; otherwise its /proc/self/fd link does, at the cost of a path
    /// lookup through /proc. Which one works is learnt on the first file.
    pub fn link(file: &fs::File, to: &Path) -> io::Result<()> {
        static EMPTY_PATH_REFUSED: AtomicBool = AtomicBool::new(false);
        if !EMPTY_PATH_REFUSED.load(Ordering::Relaxed) {
            match os::link_file(file, to) {
                Err(e) if matches!(Errno::from_io_error(&e), Some(Errno::PERM | Errno::NOENT)) => {
                    EMPTY_PATH_REFUSED.store(true, Ordering::Relaxed);
                }
                done => return done,
            }
        }
        let from = format!("/proc/self/fd/{}", file.as_raw_fd());
        os::link_following(Path::new(&from), to)
    }
}

/// Copies at most `max` bytes, through `hasher`; one byte more is
/// `TooLarge`. Returns the count and the first and last two bytes.
fn copy_capped(
    body: &mut dyn Read,
    out: &mut fs::File,
    max: u64,
    hasher: &mut Hasher,
) -> Result<(u64, [u8; 2], [u8; 2]), SaveError> {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0u64;
    let (mut head, mut tail) = ([0u8; 2], [0u8; 2]);
    loop {
        if crate::stopping() {
            return Err(SaveError::Interrupted);
        }
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok((total, head, tail)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SaveError::Read(e)),
        };
        let chunk = &buf[..n];
        if total < 2 {
            for (i, &b) in chunk.iter().take(2 - total as usize).enumerate() {
                head[total as usize + i] = b;
            }
        }
        tail = match chunk {
            [.., a, b] => [*a, *b],
            [b] => [tail[1], *b],
            [] => tail,
        };
        total += n as u64;
        if total > max {
            return Err(SaveError::TooLarge(max));
        }
        hasher.update(chunk);
        out.write_all(chunk).map_err(SaveError::Write)?;
    }
}

/// Removes temporary files a killed run may have left in `dest`. Returns how
/// many were removed.
pub fn remove_leftovers(dest: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dest)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Media types and the file extension each gets when the URL has none.
pub const TYPE_EXTENSIONS: [(&str, &str); 11] = [
    ("image/jpeg", "jpg"),
    ("image/jpg", "jpg"),
    ("image/pjpeg", "jpg"),
    ("image/png", "png"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
    ("image/avif", "avif"),
    ("image/bmp", "bmp"),
    ("image/tiff", "tiff"),
    ("image/svg+xml", "svg"),
    ("video/mp4", "mp4"),
];

/// The usual file extension of a media type (`image/jpeg` → `jpg`), for
/// files whose URL has none.
pub fn extension_for_type(content_type: &str) -> Option<&'static str> {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    TYPE_EXTENSIONS
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(mime))
        .map(|(_, ext)| *ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass() {
        for name in [
            "United_States.jpg",
            "Côte_d'Ivoire.jpg",
            "a.b.c",
            "日本.jpg",
        ] {
            assert_eq!(check_file_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn unsafe_names_are_refused() {
        let cases = [
            ("", NameError::Empty),
            ("../x.jpg", NameError::Separator),
            ("a/b.jpg", NameError::Separator),
            ("a\\b.jpg", NameError::Separator),
            ("C:x.jpg", NameError::Separator),
            ("..", NameError::Dots),
            (".", NameError::Dots),
            ("a\0b.jpg", NameError::Control),
            ("a\nb.jpg", NameError::Control),
            ("con.jpg", NameError::Reserved),
            ("LPT1.jpg", NameError::Reserved),
            ("..%2Fetc%2Fpasswd", NameError::Separator),
            ("%2E%2E", NameError::Dots),
            ("a%00b.jpg", NameError::Control),
        ];
        for (name, want) in cases {
            assert_eq!(check_file_name(name), Err(want), "{name:?}");
        }
        assert_eq!(check_file_name(&"x".repeat(256)), Err(NameError::TooLong));
        assert_eq!(check_file_name(&"x".repeat(255)), Ok(()));
    }

    #[test]
    fn save_is_atomic_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let expect = |max_size, len| Expect {
            max_size,
            len,
            ..Expect::default()
        };
        let n = save_stream(dir.path(), "a.jpg", &mut &b"hello"[..], expect(10, Some(5))).unwrap();
        assert_eq!(n.bytes, 5);
        assert_eq!(fs::read(dir.path().join("a.jpg")).unwrap(), b"hello");

        let err =
            save_stream(dir.path(), "b.jpg", &mut &b"hello"[..], expect(4, None)).unwrap_err();
        assert!(matches!(err, SaveError::TooLarge(4)));
        let err =
            save_stream(dir.path(), "c.jpg", &mut &b"hel"[..], expect(10, Some(5))).unwrap_err();
        assert_eq!(err.to_string(), "length mismatch: 3 of 5 bytes");

        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["a.jpg"], "no partial or temporary file remains");
    }

    #[test]
    fn jpeg_markers_are_checked_across_reads() {
        let dir = tempfile::tempdir().unwrap();
        let jpeg = Expect {
            max_size: 100,
            jpeg: true,
            ..Expect::default()
        };
        // A reader that hands out one byte at a time splits the markers.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((first, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = *first;
                self.0 = rest;
                Ok(1)
            }
        }
        let whole = [0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9];
        assert_eq!(
            save_stream(dir.path(), "a.jpg", &mut Trickle(&whole), jpeg)
                .unwrap()
                .bytes,
            7
        );
        assert_eq!(
            save_stream(dir.path(), "b.jpg", &mut &whole[..], jpeg)
                .unwrap()
                .bytes,
            7
        );
        let cut = save_stream(dir.path(), "c.jpg", &mut &whole[..5], jpeg).unwrap_err();
        assert_eq!(cut.to_string(), "incomplete JPEG: no end marker");
        let html = save_stream(dir.path(), "d.jpg", &mut &b"<html>"[..], jpeg).unwrap_err();
        assert_eq!(html.to_string(), "incomplete JPEG: no start marker");
        assert!(!dir.path().join("c.jpg").exists() && !dir.path().join("d.jpg").exists());
    }

    #[test]
    fn a_saved_file_replaces_the_old_one_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let expect = Expect {
            max_size: 10,
            ..Expect::default()
        };
        save_stream(dir.path(), "a.jpg", &mut &b"old"[..], expect).unwrap();
        save_stream(dir.path(), "a.jpg", &mut &b"newer"[..], expect).unwrap();
        assert_eq!(fs::read(dir.path().join("a.jpg")).unwrap(), b"newer");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.jpg"]);
    }

    #[test]
    fn bodies_are_hashed_as_they_stream_and_a_wrong_digest_saves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // sha256("hello")
        let hello =
            digest::from_hex("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
                .unwrap();
        let hashed = Expect {
            max_size: 10,
            hash: true,
            ..Expect::default()
        };
        let saved = save_stream(dir.path(), "a.jpg", &mut &b"hello"[..], hashed).unwrap();
        assert_eq!(saved.sha256, Some(hello));
        let plain = Expect {
            max_size: 10,
            ..Expect::default()
        };
        let saved = save_stream(dir.path(), "b.jpg", &mut &b"hello"[..], plain).unwrap();
        assert_eq!(saved.sha256, None, "not hashed unless asked");
        let checked = Expect {
            sha256: Some(hello),
            ..plain
        };
        let saved = save_stream(dir.path(), "c.jpg", &mut &b"hello"[..], checked).unwrap();
        assert_eq!(saved.sha256, Some(hello));
        let err = save_stream(dir.path(), "d.jpg", &mut &b"hellO"[..], checked).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("checksum mismatch (expected 2cf24dba…, got "),
            "{msg}"
        );
        assert!(!dir.path().join("d.jpg").exists());
        // A wrong body never replaces a good file.
        save_stream(dir.path(), "a.jpg", &mut &b"bad"[..], checked).unwrap_err();
        assert_eq!(fs::read(dir.path().join("a.jpg")).unwrap(), b"hello");
    }

    #[cfg(unix)]
    #[test]
    fn saved_files_are_not_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let expect = Expect {
            max_size: 10,
            ..Expect::default()
        };
        save_stream(dir.path(), "a.jpg", &mut &b"x"[..], expect).unwrap();
        let mode = fs::metadata(dir.path().join("a.jpg"))
            .unwrap()
            .permissions()
            .mode();
        // Read without setting it: setting the umask would race other tests.
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let umask = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
            .unwrap();
        assert_eq!(mode & 0o777, 0o644 & !umask);
    }
}
