//! An SVG file named on the command line (`bench --plot`, `logs --timeline`):
//! created before the work, so that a bad path is an error at once rather
//! than after minutes of measurements, and filled in at the end.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Error;

pub struct SvgFile {
    /// The option that named it, for messages.
    option: &'static str,
    path: PathBuf,
    file: File,
}

impl SvgFile {
    /// Creates `path` for `option`, whose picture is `what`; `hint` follows
    /// the message when the name does not end in `.svg`.
    pub fn create(
        option: &'static str,
        what: &str,
        hint: &str,
        path: &Path,
    ) -> Result<SvgFile, Error> {
        let svg = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
        if !svg {
            return Err(Error::Usage(format!(
                "bad {option} {}: the {what} is SVG, name it FILE.svg{hint}",
                path.display()
            )));
        }
        let file = File::create(path).map_err(|source| Error::Unwritable {
            what: option,
            path: path.to_path_buf(),
            source,
        })?;
        Ok(SvgFile {
            option,
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes `svg` into the file, and returns its path.
    pub fn write(mut self, svg: &str) -> Result<PathBuf, Error> {
        self.file
            .write_all(svg.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| Error::Unwritable {
                what: self.option,
                path: self.path.clone(),
                source,
            })?;
        Ok(self.path)
    }
}
