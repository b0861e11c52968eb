//! Image → normalised tensor, as a backbone's manifest prescribes.

use std::path::Path;

use image::imageops::{self, FilterType};
use image::{DynamicImage, Rgb32FImage};
use tch::Tensor;

use crate::backbone::BackboneManifest;
use crate::{Error, Result};

/// Shorter side to `shorter_side` (bilinear, antialiased, on float RGB), centre crop to
/// `crop`, then `(x - mean) / std` per channel, channels first.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    pub shorter_side: u32,
    pub crop: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl From<&BackboneManifest> for Preprocess {
    fn from(manifest: &BackboneManifest) -> Self {
        Self {
            shorter_side: manifest.resize.shorter_side,
            crop: manifest.resize.center_crop,
            mean: manifest.mean,
            std: manifest.std,
        }
    }
}

/// Decodes an image file of any supported format.
pub fn open_image(path: &Path) -> Result<DynamicImage> {
    let reader = image::ImageReader::open(path).map_err(Error::io(path))?;
    let reader = reader.with_guessed_format().map_err(Error::io(path))?;
    reader.decode().map_err(|source| ocellus_dataset::Error::Image { path: path.into(), source }.into())
}

impl Preprocess {
    /// `[3, crop, crop]` float tensor.
    pub fn tensor(&self, image: &DynamicImage) -> Tensor {
        let resized = self.resize(&image.to_rgb32f());
        let (width, height) = resized.dimensions();
        let left = (width - self.crop) / 2;
        let top = (height - self.crop) / 2;
        let side = self.crop as usize;
        let mut chw = vec![0f32; 3 * side * side];
        for y in 0..side {
            for x in 0..side {
                let pixel = resized.get_pixel(left + x as u32, top + y as u32);
                for channel in 0..3 {
                    chw[channel * side * side + y * side + x] =
                        (pixel.0[channel] - self.mean[channel]) / self.std[channel];
                }
            }
        }
        Tensor::from_slice(&chw).view([3, side as i64, side as i64])
    }

    fn resize(&self, image: &Rgb32FImage) -> Rgb32FImage {
        let (width, height) = image.dimensions();
        let scale = f64::from(self.shorter_side.max(self.crop)) / f64::from(width.min(height));
        let scaled = |side: u32| ((f64::from(side) * scale + 0.5).floor() as u32).max(self.crop);
        imageops::resize(image, scaled(width), scaled(height), FilterType::Triangle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preprocess() -> Preprocess {
        Preprocess { shorter_side: 8, crop: 6, mean: [0.5; 3], std: [0.25; 3] }
    }

    #[test]
    fn output_is_channels_first_and_square() {
        let image = DynamicImage::new_rgb8(20, 10);
        assert_eq!(preprocess().tensor(&image).size(), [3, 6, 6]);
        let tall = DynamicImage::new_rgb8(3, 40);
        assert_eq!(preprocess().tensor(&tall).size(), [3, 6, 6]);
    }

    #[test]
    fn normalisation_uses_mean_and_std_per_channel() {
        let mut image = image::RgbImage::new(8, 8);
        for pixel in image.pixels_mut() {
            *pixel = image::Rgb([255, 0, 128]);
        }
        let tensor = preprocess().tensor(&DynamicImage::ImageRgb8(image));
        let at = |c: i64| tensor.double_value(&[c, 3, 3]);
        assert!((at(0) - 2.0).abs() < 1e-5, "white: (1 - 0.5) / 0.25");
        assert!((at(1) + 2.0).abs() < 1e-5, "black: (0 - 0.5) / 0.25");
        assert!((at(2) - (128.0 / 255.0 - 0.5) / 0.25).abs() < 1e-5);
    }

    #[test]
    fn the_crop_is_centred() {
        let mut image = image::RgbImage::new(8, 8);
        image.put_pixel(0, 0, image::Rgb([255, 255, 255]));
        let tensor = preprocess().tensor(&DynamicImage::ImageRgb8(image));
        assert!((tensor.max().double_value(&[]) + 2.0).abs() < 1e-5, "the corner is cropped away");
    }
}
