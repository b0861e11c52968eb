//! Real files for tests: encoded images and archives built in memory.

use std::io::{Cursor, Write};

/// A small solid image, encoded in `format`.
pub fn image_bytes(color: [u8; 3], width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(width, height, image::Rgb(color))
        .write_to(&mut Cursor::new(&mut bytes), format)
        .expect("encode a test image");
    bytes
}

pub fn png(color: [u8; 3]) -> Vec<u8> {
    image_bytes(color, 6, 4, image::ImageFormat::Png)
}

pub fn jpeg(color: [u8; 3]) -> Vec<u8> {
    image_bytes(color, 8, 8, image::ImageFormat::Jpeg)
}

/// A tar.gz of `(name, bytes)` entries.
pub fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), Default::default()));
    for (name, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, *bytes).expect("append a tar entry");
    }
    tar.into_inner().and_then(|gz| gz.finish()).expect("finish a tar.gz")
}

/// A zip of `(name, bytes)` entries.
pub fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default()).expect("start a zip entry");
        zip.write_all(bytes).expect("write a zip entry");
    }
    zip.finish().expect("finish a zip").into_inner()
}
