//! How a source image of any shape becomes the square network input.

use image::RgbImage;
use image::imageops::{self, FilterType};
use rand::RngExt;

/// Share of the short side kept by the evaluation centre crop after `RandomResizedCrop` training
/// (timm's and torchvision's `crop_pct`: resize to 256, crop 224).
const EVAL_CROP_FRACTION: f32 = 0.875;
const RANDOM_RESIZED_CROP_SCALE: (f64, f64) = (0.08, 1.0);
const RANDOM_RESIZED_CROP_RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);
const RANDOM_RESIZED_CROP_ATTEMPTS: u32 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum CropStrategy {
    /// Squash the whole image to `size`×`size`, ignoring its aspect ratio. Same in training and evaluation.
    Resize,
    /// Resize the short side to `size` and cut the centre square. Same in training and evaluation.
    CenterCrop,
    /// Training: torchvision's `RandomResizedCrop` (area scale (0.08, 1), aspect ratio (3/4, 4/3),
    /// ten tries, then a centre crop clamped to that ratio). Evaluation: resize the short side to
    /// `size / 0.875` and cut the centre square.
    RandomResizedCrop,
}

impl CropStrategy {
    /// `size`×`size` RGB from `image`, resampled with a triangle (bilinear, antialiased) filter.
    /// `rng` is used only by `RandomResizedCrop` in training.
    pub fn crop(&self, image: &RgbImage, size: u32, train: bool, rng: &mut impl rand::Rng) -> RgbImage {
        let size = size.max(1);
        let (width, height) = image.dimensions();
        if width == 0 || height == 0 {
            return RgbImage::new(size, size);
        }
        match (self, train) {
            (Self::Resize, _) => imageops::resize(image, size, size, FilterType::Triangle),
            (Self::CenterCrop, _) => center_crop(image, size, 1.0),
            (Self::RandomResizedCrop, false) => center_crop(image, size, EVAL_CROP_FRACTION),
            (Self::RandomResizedCrop, true) => {
                let (x, y, w, h) = random_resized_crop_box(width, height, rng);
                let region = imageops::crop_imm(image, x, y, w, h).to_image();
                imageops::resize(&region, size, size, FilterType::Triangle)
            }
        }
    }
}

/// Cuts the centre square whose side is `fraction` of the short side, then resizes it to `size`.
/// Cutting before resizing is the same as resizing the short side to `size / fraction` and cutting
/// `size`, with less work.
fn center_crop(image: &RgbImage, size: u32, fraction: f32) -> RgbImage {
    let (width, height) = image.dimensions();
    let side = ((width.min(height) as f32 * fraction).round() as u32).clamp(1, width.min(height));
    let region = imageops::crop_imm(image, (width - side) / 2, (height - side) / 2, side, side).to_image();
    imageops::resize(&region, size, size, FilterType::Triangle)
}

/// `(x, y, width, height)` of a crop, as torchvision's `RandomResizedCrop.get_params`.
fn random_resized_crop_box(width: u32, height: u32, rng: &mut impl rand::Rng) -> (u32, u32, u32, u32) {
    let area = f64::from(width) * f64::from(height);
    let (log_low, log_high) = (RANDOM_RESIZED_CROP_RATIO.0.ln(), RANDOM_RESIZED_CROP_RATIO.1.ln());
    for _ in 0..RANDOM_RESIZED_CROP_ATTEMPTS {
        let target = area * rng.random_range(RANDOM_RESIZED_CROP_SCALE.0..=RANDOM_RESIZED_CROP_SCALE.1);
        let ratio = rng.random_range(log_low..=log_high).exp();
        let w = (target * ratio).sqrt().round() as u32;
        let h = (target / ratio).sqrt().round() as u32;
        if 0 < w && w <= width && 0 < h && h <= height {
            return (rng.random_range(0..=width - w), rng.random_range(0..=height - h), w, h);
        }
    }
    let aspect = f64::from(width) / f64::from(height);
    let (w, h) = if aspect < RANDOM_RESIZED_CROP_RATIO.0 {
        (width, ((f64::from(width) / RANDOM_RESIZED_CROP_RATIO.0).round() as u32).clamp(1, height))
    } else if aspect > RANDOM_RESIZED_CROP_RATIO.1 {
        (((f64::from(height) * RANDOM_RESIZED_CROP_RATIO.1).round() as u32).clamp(1, width), height)
    } else {
        (width, height)
    };
    ((width - w) / 2, (height - h) / 2, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// Left half red, right half blue, with a green 10-pixel band at the top.
    fn landscape() -> RgbImage {
        RgbImage::from_fn(200, 100, |x, y| {
            if y < 10 {
                Rgb([0, 255, 0])
            } else if x < 100 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        })
    }

    #[test]
    fn every_strategy_returns_the_requested_square() {
        let mut rng = StdRng::seed_from_u64(1);
        for strategy in [CropStrategy::Resize, CropStrategy::CenterCrop, CropStrategy::RandomResizedCrop] {
            for train in [false, true] {
                assert_eq!(strategy.crop(&landscape(), 32, train, &mut rng).dimensions(), (32, 32));
                assert_eq!(strategy.crop(&RgbImage::new(3, 1), 8, train, &mut rng).dimensions(), (8, 8));
            }
        }
    }

    #[test]
    fn resize_keeps_everything_and_center_crop_cuts_the_sides() {
        let mut rng = StdRng::seed_from_u64(2);
        let resized = CropStrategy::Resize.crop(&landscape(), 20, false, &mut rng);
        let close = |image: &RgbImage, x: u32, y: u32, expected: [u8; 3]| {
            let pixel = image.get_pixel(x, y).0;
            assert!(pixel.iter().zip(expected).all(|(&a, b)| a.abs_diff(b) <= 2), "({x},{y}): {pixel:?}");
        };
        close(&resized, 0, 0, [0, 255, 0]);
        close(&resized, 2, 10, [255, 0, 0]);
        close(&resized, 17, 10, [0, 0, 255]);
        // The centre square spans x 50..150: the outer quarters are gone, each half keeps 50 px.
        let cropped = CropStrategy::CenterCrop.crop(&landscape(), 20, false, &mut rng);
        close(&cropped, 3, 10, [255, 0, 0]);
        close(&cropped, 16, 10, [0, 0, 255]);
        close(&cropped, 10, 0, [0, 255, 0]);
        close(&cropped, 3, 4, [255, 0, 0]);
    }

    #[test]
    fn random_resized_crop_boxes_follow_torchvision_bounds() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut areas = Vec::new();
        for _ in 0..500 {
            let (x, y, w, h) = random_resized_crop_box(200, 100, &mut rng);
            assert!(x + w <= 200 && y + h <= 100);
            let fraction = f64::from(w * h) / 20_000.0;
            assert!((0.07..=1.0).contains(&fraction), "area fraction {fraction}");
            let ratio = f64::from(w) / f64::from(h);
            assert!((0.7..=1.4).contains(&ratio), "aspect ratio {ratio}");
            areas.push(fraction);
        }
        let mean = areas.iter().sum::<f64>() / areas.len() as f64;
        // Uniform area in (0.08, 1) averages 0.54; large boxes fail more often in a 2:1 image.
        assert!((0.3..0.6).contains(&mean), "mean area fraction {mean}");
        let (smallest, largest) = areas.iter().fold((1.0f64, 0.0f64), |(a, b), &f| (a.min(f), b.max(f)));
        assert!(smallest < 0.15 && largest > 0.45, "{smallest}..{largest}");
    }

    #[test]
    fn random_resized_crop_is_seeded_and_evaluation_is_deterministic() {
        let image = landscape();
        let strategy = CropStrategy::RandomResizedCrop;
        let first = strategy.crop(&image, 16, true, &mut StdRng::seed_from_u64(4));
        assert_eq!(first, strategy.crop(&image, 16, true, &mut StdRng::seed_from_u64(4)));
        let crops: Vec<RgbImage> =
            (0..5).map(|s| strategy.crop(&image, 16, true, &mut StdRng::seed_from_u64(s))).collect();
        assert!(crops.iter().any(|c| c != &crops[0]));
        let evaluated = strategy.crop(&image, 16, false, &mut StdRng::seed_from_u64(5));
        assert_eq!(evaluated, strategy.crop(&image, 16, false, &mut StdRng::seed_from_u64(6)));
    }

    #[test]
    fn fallback_crop_is_central_with_a_clamped_ratio() {
        // In a 1000x1 strip no box of at least 8% area and ratio <= 4/3 fits, so all ten tries fail
        // and the fallback keeps the full height with the widest allowed ratio, in the middle.
        let (x, y, w, h) = random_resized_crop_box(1000, 1, &mut StdRng::seed_from_u64(7));
        assert_eq!((x, y, w, h), (499, 0, 1, 1));
    }
}
