//! SHA-256 of saved files (`--checksums`, `--manifest`), computed while a
//! body streams to disk, so a file is never read a second time to be checked.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Sha256Digest = [u8; 32];

/// Hashes what passes through it; `None` when no digest is wanted, which
/// costs nothing.
#[derive(Default)]
pub struct Hasher(Option<Sha256>);

impl Hasher {
    /// A hasher that hashes when `wanted`.
    pub fn new(wanted: bool) -> Hasher {
        Hasher(wanted.then(Sha256::new))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(h) = &mut self.0 {
            h.update(bytes);
        }
    }

    pub fn finish(self) -> Option<Sha256Digest> {
        self.0.map(|h| h.finalize().into())
    }
}

/// A writer that hashes what it writes to `inner` (the blur stage's output).
pub struct HashingWriter<W> {
    pub inner: W,
    pub hasher: Hasher,
}

impl<W: io::Write> io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The SHA-256 of a file already in place (a file `--skip-existing` keeps).
pub fn file_sha256(path: &Path) -> io::Result<Sha256Digest> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(hasher.finalize().into()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Lower-case hex, as `sha256sum` prints it.
pub fn to_hex(digest: &Sha256Digest) -> String {
    use std::fmt::Write;
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Parses 64 hex digits, either case.
pub fn from_hex(hex: &str) -> Option<Sha256Digest> {
    // `from_str_radix` alone would take a sign (`+f`).
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A digest as a report carries it: written as `sha256sum` prints it, in the
/// JSON report and on the wire alike. Reports hold it boxed (`Option<Box<_>>`
/// is one pointer), so a run that hashes nothing pays 8 bytes per item for it,
/// and one that does pays 32 bytes more, not a 64-character string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HexDigest(pub Sha256Digest);

impl std::fmt::Display for HexDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl serde::Serialize for HexDigest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for HexDigest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let hex = std::borrow::Cow::<str>::deserialize(deserializer)?;
        from_hex(&hex)
            .map(HexDigest)
            .ok_or_else(|| serde::de::Error::custom("not a SHA-256 in hex"))
    }
}

/// The first hex digits of a digest, for a short message (`ab12cd34…`).
pub fn short(digest: &Sha256Digest) -> String {
    let mut hex = to_hex(digest);
    hex.truncate(8);
    hex + "…"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_and_hex_round_trip() {
        let mut h = Hasher::new(true);
        h.update(b"ab");
        h.update(b"c");
        let d = h.finish().unwrap();
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(to_hex(&d), hex);
        assert_eq!(from_hex(hex), Some(d));
        assert_eq!(from_hex(&hex.to_uppercase()), Some(d));
        assert_eq!(from_hex(&hex[1..]), None);
        assert_eq!(from_hex(&format!("{}g", &hex[1..])), None);
        assert_eq!(from_hex(&format!("+{}", &hex[1..])), None);
        assert_eq!(short(&d), "ba7816bf…");
        assert_eq!(Hasher::new(false).finish(), None);
    }

    #[test]
    fn a_report_digest_is_hex_in_json_and_reads_back() {
        let d = HexDigest(from_hex(&"ab".repeat(32)).unwrap());
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<HexDigest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<HexDigest>("\"abc\"").is_err());
    }
}
