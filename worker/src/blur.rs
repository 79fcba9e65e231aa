//! The CPU-bound stage (`--blur SIGMA`): a Gaussian blur of each saved image,
//! done by the worker that fetched it, so that every mode spreads the CPU work
//! exactly as it spreads the downloads.
//!
//! The image is decoded with the `image` crate under a memory limit derived
//! from `--max-size` (a small file can declare enormous dimensions), blurred
//! with `image`'s true Gaussian kernel, re-encoded in its own format and
//! written the way a download is: into a temporary file inside the dest, then
//! renamed into place, so the dest never holds a half-written picture.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};

use crate::digest::{Hasher, HashingWriter};
use crate::save::{check_file_name, NameError, Pending};

/// Quality of re-encoded JPEGs: visually lossless for a blurred picture,
/// without the size of the near-lossless settings.
pub const JPEG_QUALITY: u8 = 90;

/// Decoded bytes allowed per byte of `--max-size`: photographic JPEGs
/// compress about 10:1, so 16x leaves room without allowing a bomb.
const DECODE_PER_BYTE: u64 = 16;
/// Smallest decode budget, so that a small `--max-size` still admits ordinary
/// pictures (16 MiB is 5.5 megapixels of RGB).
const DECODE_MIN: u64 = 16 << 20;
/// Largest decode budget (22 megapixels of RGB). The blur itself needs about
/// eight times the decoded size again (two f32 planes), so this also bounds
/// the stage at well under a gigabyte per image.
const DECODE_MAX: u64 = 64 << 20;

/// Why an image was not blurred. The message is the reason shown for the item.
#[derive(Debug, thiserror::Error)]
pub enum BlurError {
    #[error("cannot decode image: {0}")]
    Decode(String),
    #[error("cannot encode image: {0}")]
    Encode(String),
    #[error("{0}")]
    Name(NameError),
    #[error("write failed: {0}")]
    Write(io::Error),
}

/// The blurred file: its name in the dest and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blurred {
    pub file: String,
    pub bytes: u64,
    /// Its SHA-256 as written, when asked for.
    pub sha256: Option<crate::digest::Sha256Digest>,
}

/// The name of the blurred copy kept next to the original with
/// `--keep-original`: `Chad.jpg` becomes `Chad.blur.jpg`.
pub fn blurred_name(file: &str) -> String {
    match file.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}.blur.{ext}"),
        _ => format!("{file}.blur"),
    }
}

/// Measures the stage in CPU time of the calling thread: blurring is CPU
/// work, and its wall time would also count the time the thread waited for a
/// core (with 8 threads on 2 cores, four times the work done). Where the
/// thread's CPU clock is not available, wall time is used.
pub struct CpuStopwatch {
    cpu: Option<Duration>,
    wall: Instant,
}

impl CpuStopwatch {
    pub fn start() -> CpuStopwatch {
        CpuStopwatch {
            cpu: thread_cpu_time(),
            wall: Instant::now(),
        }
    }

    /// Milliseconds of CPU (or wall) time since `start`, on the same thread.
    pub fn elapsed_ms(&self) -> u64 {
        let spent = match (self.cpu, thread_cpu_time()) {
            (Some(start), Some(now)) => now.saturating_sub(start),
            _ => self.wall.elapsed(),
        };
        u64::try_from(spent.as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(unix)]
fn thread_cpu_time() -> Option<Duration> {
    crate::os::thread_cpu_time()
}

#[cfg(not(unix))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

/// Bytes the decoder may allocate for one image, given `--max-size`.
pub fn decode_limit(max_size: u64) -> u64 {
    max_size
        .saturating_mul(DECODE_PER_BYTE)
        .clamp(DECODE_MIN, DECODE_MAX)
}

/// Blurs `dest/file` with a Gaussian of `sigma` pixels. The result replaces
/// the file, or with `keep_original` goes next to it under
/// [`blurred_name`]. With `hash`, the result is hashed as it is written. On
/// error nothing new is left in the dest (the caller decides what happens to
/// the original).
pub fn blur_file(
    dest: &Path,
    file: &str,
    sigma: f32,
    keep_original: bool,
    max_size: u64,
    hash: bool,
) -> Result<Blurred, BlurError> {
    let target = if keep_original {
        blurred_name(file)
    } else {
        file.to_string()
    };
    check_file_name(&target).map_err(BlurError::Name)?;
    let decode = |e: &dyn std::fmt::Display| BlurError::Decode(e.to_string());
    let mut reader = ImageReader::open(dest.join(file))
        .map_err(|e| decode(&e))?
        .with_guessed_format()
        .map_err(|e| decode(&e))?;
    // The content decides the format, not the name: a PNG served as Chad.jpg
    // stays a PNG.
    let format = match reader.format() {
        Some(f @ (ImageFormat::Jpeg | ImageFormat::Png)) => f,
        Some(other) => {
            // `GIF`, not the enum's `Debug` name.
            let name = other.extensions_str().first().copied().unwrap_or("unknown");
            let name = name.to_ascii_uppercase();
            return Err(decode(&format_args!("unsupported format {name}")));
        }
        None => return Err(decode(&"unknown format")),
    };
    let mut limits = Limits::default();
    limits.max_alloc = Some(decode_limit(max_size));
    reader.limits(limits);
    let image = reader.decode().map_err(|e| decode(&e))?;
    let blurred = image.blur(sigma);
    drop(image);

    // Dropped on any error below, which removes the temporary file.
    let mut temp = Pending::new(dest).map_err(BlurError::Write)?;
    let sha256 = {
        let mut out = BufWriter::new(HashingWriter {
            inner: temp.file_mut(),
            hasher: Hasher::new(hash),
        });
        encode(&blurred, format, &mut out)?;
        out.flush().map_err(BlurError::Write)?;
        let (hashing, _) = out.into_parts();
        hashing.hasher.finish()
    };
    let bytes = temp.file().metadata().map_err(BlurError::Write)?.len();
    temp.persist(dest, &target).map_err(BlurError::Write)?;
    Ok(Blurred {
        file: target,
        bytes,
        sha256,
    })
}

fn encode<W: Write>(image: &DynamicImage, format: ImageFormat, out: W) -> Result<(), BlurError> {
    let encoded = match format {
        ImageFormat::Jpeg => {
            let encoder = JpegEncoder::new_with_quality(out, JPEG_QUALITY);
            match image {
                // JPEG holds 8-bit grey or RGB; anything else is converted.
                DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => {
                    image.write_with_encoder(encoder)
                }
                other => DynamicImage::ImageRgb8(other.to_rgb8()).write_with_encoder(encoder),
            }
        }
        _ => image.write_with_encoder(PngEncoder::new(out)),
    };
    encoded.map_err(|e| BlurError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GenericImageView, Rgb, RgbImage};
    use std::fs;

    /// A picture with sharp edges, so that a blur changes it visibly.
    fn stripes(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, _| {
            if (x / 4) % 2 == 0 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        })
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn stopwatch_counts_cpu_not_sleep() {
        let watch = CpuStopwatch::start();
        std::thread::sleep(Duration::from_millis(300));
        // Sleeping costs no CPU; only the generous bound is asserted.
        assert!(watch.elapsed_ms() < 250, "{}", watch.elapsed_ms());
    }

    #[test]
    fn blurred_names_keep_the_extension() {
        assert_eq!(blurred_name("Chad.jpg"), "Chad.blur.jpg");
        assert_eq!(blurred_name("a.b.png"), "a.b.blur.png");
        assert_eq!(blurred_name("plain"), "plain.blur");
        assert_eq!(blurred_name(".hidden"), ".hidden.blur");
    }

    #[test]
    fn decode_limit_follows_max_size_within_bounds() {
        assert_eq!(decode_limit(0), DECODE_MIN);
        assert_eq!(decode_limit(2 << 20), 32 << 20);
        assert_eq!(decode_limit(50 << 20), DECODE_MAX);
        assert_eq!(decode_limit(u64::MAX), DECODE_MAX);
    }

    #[test]
    fn jpeg_is_blurred_in_place_and_png_stays_png() {
        let dir = tempfile::tempdir().unwrap();
        let original = stripes(40, 30);
        original.save(dir.path().join("a.jpg")).unwrap();
        let before = image::open(dir.path().join("a.jpg")).unwrap().to_rgb8();
        let done = blur_file(dir.path(), "a.jpg", 3.0, false, 1 << 20, false).unwrap();
        assert_eq!(done.file, "a.jpg");
        let after = image::open(dir.path().join("a.jpg")).unwrap();
        assert_eq!(after.dimensions(), (40, 30));
        assert_ne!(after.to_rgb8(), before);
        assert_eq!(
            done.bytes,
            fs::metadata(dir.path().join("a.jpg")).unwrap().len()
        );

        // PNG content under a .jpg name: the content decides the format.
        let mut png = Vec::new();
        DynamicImage::ImageRgb8(original)
            .write_to(&mut io::Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        fs::write(dir.path().join("p.jpg"), &png).unwrap();
        blur_file(dir.path(), "p.jpg", 3.0, true, 1 << 20, false).unwrap();
        let out = fs::read(dir.path().join("p.blur.jpg")).unwrap();
        assert_eq!(image::guess_format(&out).unwrap(), ImageFormat::Png);
        assert_eq!(
            fs::read(dir.path().join("p.jpg")).unwrap(),
            png,
            "original kept"
        );
        assert_eq!(names(dir.path()), ["a.jpg", "p.blur.jpg", "p.jpg"]);
    }

    #[test]
    fn corrupt_and_oversized_images_are_errors_that_leave_nothing_new() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("bad.jpg"),
            b"\xFF\xD8 not a picture \xFF\xD9",
        )
        .unwrap();
        let err = blur_file(dir.path(), "bad.jpg", 2.0, true, 1 << 20, false).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot decode image: "),
            "{err}"
        );

        // A plain 2400 x 2400 JPEG is small on disk but decodes to 17.3 MB,
        // more than the 16 MiB a 1 MiB --max-size allows: refused from its
        // header, before the decoder allocates anything.
        let big = RgbImage::from_pixel(2400, 2400, Rgb([10, 20, 30]));
        big.save(dir.path().join("big.jpg")).unwrap();
        let on_disk = fs::metadata(dir.path().join("big.jpg")).unwrap().len();
        assert!(on_disk < 1 << 20, "{on_disk}");
        let err = blur_file(dir.path(), "big.jpg", 2.0, false, 1 << 20, false).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot decode image: "),
            "{err}"
        );
        assert_eq!(names(dir.path()), ["bad.jpg", "big.jpg"]);
    }
}
