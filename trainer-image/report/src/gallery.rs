//! Thumbnails embedded in the page as data URLs, so the report is one file.

use std::io::Cursor;
use std::path::Path;

use base64::Engine;
use image::ImageFormat;

pub const THUMBNAIL_SIDE: u32 = 128;

/// A PNG thumbnail of the image at `path` (longest side `THUMBNAIL_SIDE`), as a data URL; `None`
/// when the file cannot be read or decoded (the report says so instead of failing).
pub fn thumbnail_data_url(path: &Path) -> Option<String> {
    let image = image::open(path).ok()?;
    let thumbnail = image.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).to_rgb8();
    let mut png = Vec::new();
    thumbnail.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).ok()?;
    Some(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thumbnail_keeps_the_aspect_and_fits_the_side() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.png");
        image::RgbImage::from_pixel(400, 100, image::Rgb([200, 10, 10])).save(&path).unwrap();
        let url = thumbnail_data_url(&path).unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(url.strip_prefix("data:image/png;base64,").unwrap())
            .unwrap();
        let decoded = image::load_from_memory(&png).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (128, 32));
        assert_eq!(decoded.to_rgb8().get_pixel(5, 5).0, [200, 10, 10]);
    }

    #[test]
    fn an_unreadable_image_has_no_thumbnail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.png");
        std::fs::write(&path, b"not an image").unwrap();
        assert_eq!(thumbnail_data_url(&path), None);
        assert_eq!(thumbnail_data_url(&dir.path().join("absent.png")), None);
    }
}
