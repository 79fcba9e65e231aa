//! Flag-like JPEG pictures, generated deterministically from a name.
//!
//! The built-in site serves these instead of the real flags so that everything
//! runs offline. The same name always gives the same bytes (tests compare the
//! files on disk with [`flag_jpeg`]), different names give different pictures,
//! and the sizes are those of the real set: 96 px wide, a few KB to a few tens
//! of KB, about 16 KB on average. Real flag scans are photographs of cloth; the
//! light texture added here gives the JPEGs that realistic weight.

use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};

/// Width of every flag, as on the classic `flags96` site.
pub const WIDTH: u32 = 96;
/// Height of every flag (a 3:2 flag).
pub const HEIGHT: u32 = 64;
/// Longest side of a flag of another size (`serve --image-size`). The site
/// holds every flag in memory, and the grain makes them weigh about 1.5 MB
/// per megapixel: ~200 flags of 2048 x 2048 are already over a gigabyte.
pub const MAX_SIDE: u32 = 2048;

const PALETTE: [[u8; 3]; 9] = [
    [206, 17, 38],   // red
    [255, 255, 255], // white
    [0, 56, 147],    // blue
    [0, 122, 61],    // green
    [252, 209, 22],  // yellow
    [0, 0, 0],       // black
    [255, 130, 0],   // orange
    [117, 170, 219], // light blue
    [128, 0, 32],    // maroon
];

/// The JPEG served for `name`.
pub fn flag_jpeg(name: &str) -> Vec<u8> {
    flag_jpeg_sized(name, WIDTH, HEIGHT)
}

/// The JPEG served for `name` by a site whose flags are `width` x `height`
/// (each side 1 to [`MAX_SIDE`]). At the default size it is [`flag_jpeg`].
pub fn flag_jpeg_sized(name: &str, width: u32, height: u32) -> Vec<u8> {
    let (width, height) = (width.clamp(1, MAX_SIDE), height.clamp(1, MAX_SIDE));
    let img = flag_image(name, width, height);
    let mut out = Vec::with_capacity(24 * 1024);
    // Encoding into a Vec cannot fail for an RGB8 image within MAX_SIDE.
    if let Err(e) = JpegEncoder::new_with_quality(&mut out, 98).encode_image(&img) {
        unreachable!("encoding a {width}x{height} RGB image failed: {e}");
    }
    out
}

/// The picture of `name`. The grain consumes the random sequence pixel by
/// pixel, so the same name gives the same picture at any size, and the
/// default size gives the bytes it always gave.
fn flag_image(name: &str, width: u32, height: u32) -> RgbImage {
    let mut rng = SplitMix(fnv1a(name.as_bytes()));
    let mut colors = [[0u8; 3]; 3];
    for i in 0..colors.len() {
        // Neighbouring bands get different colours.
        loop {
            let c = PALETTE[rng.below(PALETTE.len() as u64) as usize];
            if i == 0 || c != colors[i - 1] {
                colors[i] = c;
                break;
            }
        }
    }
    let pattern = rng.below(6);
    let emblem = colors[rng.below(3) as usize];
    let texture = 12 + rng.below(100) as i32;
    let (w, h) = (width as i32, height as i32);
    // Patterns were drawn for 96 x 64; scale their fixed widths with the picture.
    let cross = (6 * h / 64).max(1);
    RgbImage::from_fn(width, height, |x, y| {
        let (x, y) = (x as i32, y as i32);
        let base = match pattern {
            0 => colors[(y * 3 / h) as usize], // horizontal bands
            1 => colors[(x * 3 / w) as usize], // vertical bands
            2 => {
                // Nordic cross
                let on_cross = (x - w * 3 / 8).abs() < cross || (y - h / 2).abs() < cross;
                if on_cross {
                    colors[1]
                } else {
                    colors[0]
                }
            }
            3 => {
                // Canton over stripes
                if x < w * 2 / 5 && y < h / 2 {
                    colors[2]
                } else {
                    colors[((y * 7 / h) % 2) as usize]
                }
            }
            4 => {
                // Disc on a field
                let (dx, dy) = (x - w / 2, y - h / 2);
                if dx * dx + dy * dy < (h / 4) * (h / 4) {
                    emblem
                } else {
                    colors[0]
                }
            }
            _ => {
                // Diagonal split
                if x * h > y * w {
                    colors[0]
                } else {
                    colors[1]
                }
            }
        };
        // Independent grain per channel, as in a scan of cloth.
        Rgb(base.map(|c| {
            let grain = rng.below((2 * texture + 1) as u64) as i32 - texture;
            (c as i32 + grain).clamp(0, 255) as u8
        }))
    })
}

/// FNV-1a: a stable hash (std's hasher may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64: a small, stable pseudo-random sequence from a seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_bytes_other_name_other_bytes() {
        let a = flag_jpeg("United_States");
        assert_eq!(a, flag_jpeg("United_States"));
        assert_ne!(a, flag_jpeg("United_Kingdom"));
        assert_eq!(&a[..3], &[0xFF, 0xD8, 0xFF], "JPEG magic");
    }

    #[test]
    fn decodes_at_the_flag_size() {
        let img = image::load_from_memory(&flag_jpeg("Brazil")).unwrap();
        assert_eq!((img.width(), img.height()), (WIDTH, HEIGHT));
        let big = flag_jpeg_sized("Brazil", 640, 426);
        assert_eq!(big, flag_jpeg_sized("Brazil", 640, 426), "deterministic");
        let img = image::load_from_memory(&big).unwrap();
        assert_eq!((img.width(), img.height()), (640, 426));
    }

    /// FNV-1a of the 10048 bytes served for Chad before sizes existed.
    const CHAD_FNV: u64 = 0x97c5_8bfa_8238_eb2b;

    #[test]
    fn default_size_is_unchanged() {
        // The files of earlier runs and every byte-exact test stay valid.
        assert_eq!(fnv1a(&flag_jpeg("Chad")), CHAD_FNV);
        assert_eq!(flag_jpeg("Chad"), flag_jpeg_sized("Chad", WIDTH, HEIGHT));
    }
}
