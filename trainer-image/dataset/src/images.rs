//! Every image is checked once at import: size on disk, dimensions from the header (before
//! any pixel is decoded, so a decompression bomb costs nothing), then a full decode.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ImageFormat, ImageReader, Limits};
use ocellus_crds::dataset::ImportLimits;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// A readable image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoodImage {
    pub width: u32,
    pub height: u32,
    pub format: ImageFormat,
    pub bytes: u64,
    /// sha256 of the file, lower-case hex: the image's name in the normalized copy.
    pub sha256: String,
}

/// Checks one image file against the limits and decodes it fully. The error is a reason a
/// person can read ("file is missing", "cannot decode: …", "30000x30000 pixels, over …").
pub fn check_image(path: &Path, limits: &ImportLimits) -> Result<GoodImage, String> {
    read_and_check(path, limits).map(|(image, _)| image)
}

/// [`check_image`], also returning the file's bytes, so a caller can store them without
/// reading the file again.
fn read_and_check(path: &Path, limits: &ImportLimits) -> Result<(GoodImage, Vec<u8>), String> {
    let bytes = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => meta.len(),
        Ok(_) => return Err("not a file".into()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err("file is missing".into()),
        Err(error) => return Err(format!("cannot read: {error}")),
    };
    if bytes > limits.max_image_bytes as u64 {
        return Err(format!(
            "file is {bytes} bytes, over limits.maxImageBytes ({}); shrink it or raise the limit",
            limits.max_image_bytes
        ));
    }
    // One read: the bytes are hashed and decoded from memory (at most maxImageBytes).
    let data = std::fs::read(path).map_err(|error| format!("cannot read: {error}"))?;
    let (width, height, format) = header(&data)?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_image_pixels as u64 {
        return Err(format!(
            "{width}x{height} = {pixels} pixels, over limits.maxImagePixels ({}); \
             a decompression bomb or a huge scan: downscale it or raise the limit",
            limits.max_image_pixels
        ));
    }
    decode(&data, format, pixels)?;
    let sha256 = hex::encode(Sha256::digest(&data));
    Ok((GoodImage { width, height, format, bytes, sha256 }, data))
}

fn reader(data: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, String> {
    ImageReader::new(Cursor::new(data)).with_guessed_format().map_err(|error| format!("cannot read: {error}"))
}

fn header(data: &[u8]) -> Result<(u32, u32, ImageFormat), String> {
    let reader = reader(data)?;
    let Some(format) = reader.format() else {
        return Err("not an image in a supported format (jpeg, png, bmp, gif, webp, tiff)".into());
    };
    let (width, height) = reader.into_dimensions().map_err(|error| format!("cannot decode: {error}"))?;
    Ok((width, height, format))
}

fn decode(data: &[u8], format: ImageFormat, pixels: u64) -> Result<(), String> {
    let mut reader = reader(data)?;
    reader.set_format(format);
    // Room for the pixels at up to 16 bytes each (RGBA f32) plus decoder working memory;
    // anything beyond means the header lied about the size.
    let mut limits = Limits::default();
    limits.max_alloc = Some(pixels.saturating_mul(16).saturating_add(64 << 20));
    reader.limits(limits);
    reader.decode().map(drop).map_err(|error| format!("cannot decode: {error}"))
}

/// Checks many images on all cores; one result per path, in order. Each good image is handed
/// to `store` with its bytes while they are still in memory (the import writes its copy
/// there, instead of reading every file a second time); an error from `store` stops the run.
pub fn check_images<E: Send>(
    paths: &[PathBuf],
    limits: &ImportLimits,
    store: impl Fn(&Path, &GoodImage, &[u8]) -> Result<(), E> + Sync,
) -> Result<Vec<Result<GoodImage, String>>, E> {
    paths
        .par_iter()
        .map(|path| match read_and_check(path, limits) {
            Ok((image, data)) => store(path, &image, &data).map(|()| Ok(image)),
            Err(reason) => Ok(Err(reason)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ImportLimits {
        ImportLimits::default()
    }

    fn write_png(dir: &Path, name: &str, width: u32, height: u32) -> PathBuf {
        let path = dir.join(name);
        image::RgbImage::from_pixel(width, height, image::Rgb([10, 200, 30])).save(&path).unwrap();
        path
    }

    #[test]
    fn a_real_png_passes_with_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_png(dir.path(), "a.png", 7, 5);
        let good = check_image(&path, &limits()).unwrap();
        assert_eq!((good.width, good.height, good.format), (7, 5, ImageFormat::Png));
        assert_eq!(good.sha256, crate::digest::sha256_file(&path).unwrap());
    }

    #[test]
    fn every_supported_format_decodes() {
        let dir = tempfile::tempdir().unwrap();
        let source = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(9, 4, image::Rgb([1, 2, 3])));
        for (extension, format) in [
            ("jpg", ImageFormat::Jpeg),
            ("png", ImageFormat::Png),
            ("bmp", ImageFormat::Bmp),
            ("gif", ImageFormat::Gif),
            ("webp", ImageFormat::WebP),
            ("tiff", ImageFormat::Tiff),
        ] {
            let path = dir.path().join(format!("x.{extension}"));
            source.save_with_format(&path, format).unwrap();
            let good = check_image(&path, &limits()).unwrap_or_else(|e| panic!("{extension}: {e}"));
            assert_eq!((good.width, good.format), (9, format), "{extension}");
        }
    }

    #[test]
    fn missing_corrupt_and_oversized_files_have_reasons() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_image(&dir.path().join("nope.png"), &limits()), Err("file is missing".into()));

        let png = write_png(dir.path(), "cut.png", 64, 64);
        let bytes = std::fs::read(&png).unwrap();
        std::fs::write(&png, &bytes[..bytes.len() / 2]).unwrap();
        assert!(check_image(&png, &limits()).unwrap_err().starts_with("cannot decode"));

        let text = dir.path().join("notes.dat");
        std::fs::write(&text, "hello").unwrap();
        assert!(check_image(&text, &limits()).unwrap_err().contains("not an image"));
        let fake_jpeg = dir.path().join("fake.jpg");
        std::fs::write(&fake_jpeg, "hello").unwrap();
        assert!(
            check_image(&fake_jpeg, &limits()).unwrap_err().contains("not an image"),
            "the name does not count"
        );

        let small = ImportLimits { max_image_bytes: 10, ..limits() };
        let reason = check_image(&write_png(dir.path(), "b.png", 8, 8), &small).unwrap_err();
        assert!(reason.contains("maxImageBytes"), "{reason}");
    }

    /// A 30000x30000 PNG is about 900 kB compressed but 2.7 GB decoded: it must be refused
    /// from its header, without allocating the pixels.
    #[test]
    fn a_decompression_bomb_is_refused_from_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.png");
        write_blank_png(&path, 30_000, 30_000);
        assert!(std::fs::metadata(&path).unwrap().len() < 10 << 20);
        let reason = check_image(&path, &limits()).unwrap_err();
        assert!(reason.contains("30000x30000") && reason.contains("maxImagePixels"), "{reason}");
    }

    /// Streams an all-black grayscale PNG row by row, so the test itself stays small.
    pub(crate) fn write_blank_png(path: &Path, width: u32, height: u32) {
        let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        let mut encoder = png::Encoder::new(file, width, height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header().unwrap();
        let mut stream = writer.stream_writer().unwrap();
        let row = vec![0u8; width as usize];
        for _ in 0..height {
            std::io::Write::write_all(&mut stream, &row).unwrap();
        }
        stream.finish().unwrap();
    }
}
