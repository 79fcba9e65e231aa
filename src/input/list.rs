//! Reading name lists, and the percent-encoding of names in URLs.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::Error;

/// The list compiled into the binary: the top-level `flags.txt`.
pub const BUILTIN: &str = include_str!("../../flags.txt");

/// Everything but RFC 3986's unreserved characters is encoded in a path
/// segment, so `/`, `?`, `#`, `%` and spaces in a name can never change the
/// shape of the URL.
pub const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A parsed list: names in order, first occurrence kept.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NameList {
    pub names: Vec<String>,
    /// Entries that repeated an earlier one and were dropped.
    pub duplicates: Vec<String>,
}

/// Parses a list: one name per line; a UTF-8 BOM, CRLF line endings, blank
/// lines, surrounding white space and `#` comment lines are ignored.
pub fn parse(text: &str) -> NameList {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut list = NameList::default();
    let mut seen = std::collections::HashSet::new();
    for line in text.lines() {
        let name = line.trim();
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        if seen.insert(name) {
            list.names.push(name.to_string());
        } else {
            list.duplicates.push(name.to_string());
        }
    }
    list
}

/// The URL of `name` under `base`: `{base}/{name}.jpg`, the name percent-encoded.
pub fn item_url(base: &str, name: &str) -> String {
    format!(
        "{}/{}.jpg",
        base.trim_end_matches('/'),
        utf8_percent_encode(name, SEGMENT)
    )
}

/// Reads a list file as UTF-8 text.
pub fn read_list(path: &Path) -> Result<String, Error> {
    let bytes = fs::read(path).map_err(|source| Error::ReadList {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| Error::ReadList {
        path: path.to_path_buf(),
        source: std::io::Error::new(ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blanks_bom_crlf_and_duplicates() {
        let text = "\u{feff}# countries\r\nFrance\r\n\r\n  Chad  \n#Atlantis\nFrance\nPeru";
        let list = parse(text);
        assert_eq!(list.names, ["France", "Chad", "Peru"]);
        assert_eq!(list.duplicates, ["France"]);
    }

    #[test]
    fn builtin_list_is_the_worlds_countries() {
        let list = parse(BUILTIN);
        assert!(
            (190..=200).contains(&list.names.len()),
            "{}",
            list.names.len()
        );
        assert!(list.duplicates.is_empty());
        for name in ["United_States", "United_Kingdom", "Bosnia_and_Herzegovina"] {
            assert!(list.names.iter().any(|n| n == name), "{name}");
        }
    }

    #[test]
    fn urls_are_percent_encoded() {
        let base = "http://127.0.0.1:8000/images/pictures/flags96/";
        assert_eq!(
            item_url(base, "United_States"),
            "http://127.0.0.1:8000/images/pictures/flags96/United_States.jpg"
        );
        assert_eq!(
            item_url("http://h/x", "Côte_d'Ivoire"),
            "http://h/x/C%C3%B4te_d%27Ivoire.jpg"
        );
        assert_eq!(
            item_url("http://h/x", "../a b?c#d%"),
            "http://h/x/..%2Fa%20b%3Fc%23d%25.jpg"
        );
    }
}
