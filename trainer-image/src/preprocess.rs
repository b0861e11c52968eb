//! Image → normalised network input, as a backbone's manifest prescribes.
//!
//! The same steps as torchvision's `Resize(shorterSide)`, `CenterCrop(crop)`, `ToTensor()`,
//! `Normalize(mean, std)` on a Pillow image: an antialiased bilinear resize of 8-bit RGB, then
//! scaling to [0, 1] and normalising. The resize and the crop are one SIMD resampling of the
//! source rectangle that ends up in the crop (fast_image_resize), so no full-size intermediate
//! image is made.

use std::path::Path;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, RgbImage};
use tch::Tensor;

use crate::backbone::BackboneManifest;
use crate::{Error, Result};

/// Shorter side to `shorter_side`, centre crop to `crop`, then `(x / 255 - mean) / std` per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    pub shorter_side: u32,
    pub crop: u32,
    /// Resize the whole image to `crop` x `crop`, ignoring its aspect ratio (no crop).
    pub squash: bool,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl From<&BackboneManifest> for Preprocess {
    fn from(manifest: &BackboneManifest) -> Self {
        Self {
            shorter_side: manifest.resize.shorter_side,
            crop: manifest.resize.center_crop,
            squash: manifest.resize.squash,
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

/// Decodes an image held in memory (a download or inline bytes); `what` names it in errors.
pub fn decode_image(bytes: &[u8], what: &str) -> Result<DynamicImage> {
    image::load_from_memory(bytes).map_err(|error| {
        Error::bad_input(format!(
            "{what}: not a readable image ({error}); give a PNG, JPEG, BMP, GIF, WebP or TIFF"
        ))
    })
}

impl Preprocess {
    /// Values per image: `crop * crop * 3`.
    pub fn len(&self) -> usize {
        (self.crop * self.crop * 3) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.crop == 0
    }

    /// The crop as 8-bit RGB, before normalisation.
    pub fn resize_and_crop(&self, image: &RgbImage) -> RgbImage {
        let (width, height) = image.dimensions();
        if self.squash {
            return self.squash(image);
        }
        let scale = f64::from(self.shorter_side.max(self.crop)) / f64::from(width.min(height));
        let resized = |side: u32| ((f64::from(side) * scale + 0.5).floor()).max(f64::from(self.crop));
        let left = ((resized(width) - f64::from(self.crop)) / 2.0).floor();
        let top = ((resized(height) - f64::from(self.crop)) / 2.0).floor();
        let side = f64::from(self.crop) / scale;
        let source = ImageRef::new(width, height, image.as_raw(), PixelType::U8x3)
            .expect("an RgbImage buffer holds width * height * 3 bytes");
        let mut target = Image::new(self.crop, self.crop, PixelType::U8x3);
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).crop(
            left / scale,
            top / scale,
            side.min(f64::from(width)),
            side.min(f64::from(height)),
        );
        Resizer::new().resize(&source, &mut target, &options).expect("same pixel types, valid crop");
        RgbImage::from_raw(self.crop, self.crop, target.into_vec()).expect("crop * crop * 3 bytes")
    }

    fn squash(&self, image: &RgbImage) -> RgbImage {
        let source = ImageRef::new(image.width(), image.height(), image.as_raw(), PixelType::U8x3)
            .expect("an RgbImage buffer holds width * height * 3 bytes");
        let mut target = Image::new(self.crop, self.crop, PixelType::U8x3);
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        Resizer::new().resize(&source, &mut target, &options).expect("same pixel types");
        RgbImage::from_raw(self.crop, self.crop, target.into_vec()).expect("crop * crop * 3 bytes")
    }

    /// Writes the normalised crop into `out` (`len()` values) in height, width, channel order:
    /// a batch of these is a channels_last `[N, 3, H, W]` tensor without a copy.
    pub fn write_hwc(&self, image: &RgbImage, out: &mut [f32]) {
        self.normalize_hwc(&self.resize_and_crop(image), out);
    }

    /// Writes an image already `crop` x `crop`, normalised, into `out` (height, width, channel).
    pub fn normalize_hwc(&self, crop: &RgbImage, out: &mut [f32]) {
        debug_assert_eq!(crop.dimensions(), (self.crop, self.crop));
        let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * self.std[c]));
        let shift: [f32; 3] = std::array::from_fn(|c| self.mean[c] / self.std[c]);
        for (pixel, values) in crop.as_raw().chunks_exact(3).zip(out.chunks_exact_mut(3)) {
            for c in 0..3 {
                values[c] = f32::from(pixel[c]) * scale[c] - shift[c];
            }
        }
    }

    /// `[3, crop, crop]` float tensor of one image.
    pub fn tensor(&self, image: &DynamicImage) -> Tensor {
        let mut hwc = vec![0f32; self.len()];
        self.write_hwc(&image.to_rgb8(), &mut hwc);
        let side = i64::from(self.crop);
        Tensor::from_slice(&hwc).view([side, side, 3]).permute([2, 0, 1]).contiguous()
    }
}

/// Views `n` images written by [`Preprocess::write_hwc`] as a channels_last `[n, 3, side, side]` tensor.
pub fn batch_tensor(hwc: &[f32], n: usize, side: u32) -> Tensor {
    let side = i64::from(side);
    Tensor::from_slice(hwc).view([n as i64, side, side, 3]).permute([0, 3, 1, 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preprocess() -> Preprocess {
        Preprocess { shorter_side: 8, crop: 6, squash: false, mean: [0.5; 3], std: [0.25; 3] }
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

    #[test]
    fn the_crop_keeps_the_middle_of_a_wide_image() {
        // 40x10 → shorter side 8 → 32x8 (scale 0.8) → centre 6x6 is resized columns 13..19,
        // source columns 16.25..23.75. A bright band at source 18..22 fills the crop's middle
        // columns and misses its edges.
        let mut image = image::RgbImage::new(40, 10);
        for y in 0..10 {
            for x in 0..40 {
                let v = if (18..22).contains(&x) { 255 } else { 0 };
                image.put_pixel(x, y, image::Rgb([v, v, v]));
            }
        }
        let crop = preprocess().resize_and_crop(&image);
        assert_eq!(crop.get_pixel(2, 3).0, [255, 255, 255]);
        assert_eq!(crop.get_pixel(3, 3).0, [255, 255, 255]);
        assert!(crop.get_pixel(0, 3).0[0] < 128, "the crop's left edge is left of the band");
        assert!(crop.get_pixel(5, 3).0[0] < 128, "the crop's right edge is right of the band");
    }

    #[test]
    fn squashing_keeps_the_whole_image() {
        // A wide image whose left and right quarters are bright: a centre crop would lose them.
        let image = RgbImage::from_fn(40, 10, |x, _| {
            let v = if !(10..30).contains(&x) { 255 } else { 0 };
            image::Rgb([v, v, v])
        });
        let squash = Preprocess { squash: true, ..preprocess() };
        let out = squash.resize_and_crop(&image);
        assert_eq!(out.dimensions(), (6, 6));
        assert!(out.get_pixel(0, 3).0[0] > 200 && out.get_pixel(5, 3).0[0] > 200);
        assert!(out.get_pixel(3, 3).0[0] < 50);
    }

    #[test]
    fn a_batch_of_hwc_images_is_the_same_as_stacked_chw_tensors() {
        let p = preprocess();
        let images: Vec<RgbImage> = (0..2u8)
            .map(|i| RgbImage::from_fn(9, 7, |x, y| image::Rgb([x as u8 * 20, y as u8 * 30, i * 90])))
            .collect();
        let mut hwc = vec![0f32; 2 * p.len()];
        for (image, out) in images.iter().zip(hwc.chunks_exact_mut(p.len())) {
            p.write_hwc(image, out);
        }
        let batch = batch_tensor(&hwc, 2, p.crop);
        let stacked = Tensor::stack(
            &images.iter().map(|i| p.tensor(&DynamicImage::ImageRgb8(i.clone()))).collect::<Vec<_>>(),
            0,
        );
        assert_eq!(batch.size(), [2, 3, 6, 6]);
        assert!(batch.allclose(&stacked, 0.0, 0.0, false));
    }
}
