//! `--checksums FILE`: the SHA-256 each file must have, in `sha256sum`'s
//! format (`<64 hex>  <name>`, or `<64 hex> *<name>` for binary mode), blank
//! lines and `#` comments ignored. Names are file names in the destination.
//! The digests travel to the workers with the items ([`Item::sha256`]); a
//! body that does not match is not saved.

use std::collections::HashMap;
use std::path::Path;

use flagmaster_worker::digest::{from_hex, Sha256Digest};
use flagmaster_worker::protocol::Item;

use crate::error::Error;

/// The expected digests, by file name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checksums {
    /// The file as given, for messages.
    pub label: String,
    pub digests: HashMap<String, Sha256Digest>,
}

impl Checksums {
    /// Reads and parses `path`; unreadable or malformed is a set-up error.
    pub fn read(path: &Path) -> Result<Checksums, Error> {
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Setup(format!("cannot read checksums file {label}: {e}")))?;
        let digests = parse(&text)
            .map_err(|why| Error::Setup(format!("bad checksums file {label}: {why}")))?;
        Ok(Checksums { label, digests })
    }

    /// Gives each item the digest of its file; returns how many have none.
    pub fn apply(&self, items: &mut [Item]) -> usize {
        let mut unchecked = 0;
        for item in items {
            item.sha256 = self.digests.get(&item.file).copied();
            unchecked += usize::from(item.sha256.is_none());
        }
        unchecked
    }
}

/// Parses a `sha256sum` file into digests by name. The error names the
/// first bad line.
pub fn parse(text: &str) -> Result<HashMap<String, Sha256Digest>, String> {
    let mut digests = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let bad = |why: &str| format!("line {}: {why}", n + 1);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (hex, rest) = line
            .split_at_checked(64)
            .ok_or_else(|| bad("expected '<64 hex digits>  <name>'"))?;
        let digest = from_hex(hex).ok_or_else(|| bad("expected 64 hex digits first"))?;
        let name = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .ok_or_else(|| bad("expected two spaces (or ' *') after the digest"))?;
        if name.is_empty() {
            return Err(bad("no file name"));
        }
        match digests.insert(name.to_string(), digest) {
            Some(earlier) if earlier != digest => {
                return Err(bad(&format!(
                    "{name:?} listed twice with different digests"
                )))
            }
            _ => {}
        }
    }
    Ok(digests)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const B: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn text_binary_comments_and_blank_lines() {
        let text = format!(
            "# made by sha256sum\n\n{A}  Chad.jpg\r\n{}  Côte d'Ivoire.jpg\n  \n{B} *Peru.jpg\n",
            A.to_uppercase()
        );
        let digests = parse(&text).unwrap();
        assert_eq!(digests.len(), 3);
        assert_eq!(digests["Chad.jpg"], from_hex(A).unwrap());
        assert_eq!(digests["Côte d'Ivoire.jpg"], from_hex(A).unwrap());
        assert_eq!(digests["Peru.jpg"], from_hex(B).unwrap());
        assert!(parse("").unwrap().is_empty());
        // The same line twice is harmless.
        assert_eq!(parse(&format!("{A}  x\n{A}  x\n")).unwrap().len(), 1);
    }

    #[test]
    fn malformed_lines_are_named() {
        let cases = [
            (
                format!("{A}  a\nnonsense\n"),
                "line 2: expected '<64 hex digits>  <name>'",
            ),
            (
                format!("{}  a", &A[1..]),
                "line 1: expected 64 hex digits first",
            ),
            (
                format!("{}g  a", &A[1..]),
                "line 1: expected 64 hex digits first",
            ),
            (
                format!("{A} a"),
                "line 1: expected two spaces (or ' *') after the digest",
            ),
            (
                format!("{A}\ta"),
                "line 1: expected two spaces (or ' *') after the digest",
            ),
            (format!("{A}  "), "line 1: no file name"),
            (
                format!("{A}  a\n{B}  a"),
                "line 2: \"a\" listed twice with different digests",
            ),
            (
                format!("a{}", "é".repeat(40)),
                "line 1: expected '<64 hex digits>  <name>'",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(&text).unwrap_err(), want, "{text:?}");
        }
    }

    #[test]
    fn items_get_their_digest_and_the_rest_are_counted() {
        let sums = Checksums {
            label: "sums".into(),
            digests: parse(&format!("{A}  Chad.jpg\n")).unwrap(),
        };
        let item = |file: &str| Item::for_test(0, file);
        let mut items = vec![item("Chad.jpg"), item("Peru.jpg")];
        assert_eq!(sums.apply(&mut items), 1);
        assert_eq!(items[0].sha256, from_hex(A));
        assert_eq!(items[1].sha256, None);
    }
}
