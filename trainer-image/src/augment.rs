//! Training-time image augmentations: the Experiment spec's list (named, parameterised and
//! defaulted as in albumentations 1.4), a TrivialAugment policy, and crop strategies.
//!
//! Everything draws from the `rand::Rng` the caller passes, so a seed reproduces the same images.
//!
//! Defaults per augmentation (albumentations 1.4; every one applies with p = 0.5 in an [`Augmenter`]):
//!
//! | Augmentation | Parameters drawn by [`apply`] |
//! |---|---|
//! | `Blur` | box blur, kernel uniform in {3, 5, 7} (`blur_limit=(3, 7)`) |
//! | `CLAHE` | clip limit uniform in [1, 4] (`clip_limit=4`), 8×8 tiles, on luma |
//! | `Downscale` | scale 0.25 (`scale_min=scale_max=0.25`), nearest down and up |
//! | `GaussNoise` | variance uniform in [10, 50] (`var_limit=(10, 50)`), mean 0, per channel |
//! | `GridDropout` | `ratio=0.5`, unit `max(2, side / 10)`, no shift, fill 0: a quarter of the pixels |
//! | `HorizontalFlip` | mirror left-right |
//! | `HueSaturationValue` | hue ±20 OpenCV units (±40°), saturation ±30, value ±20 (of 255) |
//! | `ImageCompression` | JPEG, quality uniform in {99, 100} (`quality_lower=99`) |
//! | `OpticalDistortion` | `k` uniform in [-0.05, 0.05] (`distort_limit=0.05`), no shift (see below) |
//! | `RandomBrightnessContrast` | contrast `1 + U(-0.2, 0.2)`, brightness `U(-0.2, 0.2) × 255` |
//! | `RandomRotate90` | 0, 1, 2 or 3 counter-clockwise quarter turns |
//! | `ShiftScaleRotate` | shift `U(±0.0625)` of each side, scale `1 + U(±0.1)`, angle `U(±45°)` |
//! | `VerticalFlip` | mirror top-bottom |
//!
//! `OpticalDistortion`'s `shift_limit=0.05` is rounded to whole pixels by albumentations, so it
//! never shifts the centre; this does not either.
//!
//! Geometric warps interpolate bilinearly and reflect at the borders (`BORDER_REFLECT_101`), as
//! albumentations does. Every output has the input's size, except `RandomRotate90` with an odd
//! number of turns on a non-square image, which swaps width and height (as albumentations does):
//! crop to a square first (see [`CropStrategy`]) when a batch needs one shape.

mod clahe;
mod crop;
mod ops;
mod trivial;
mod warp;

use image::RgbImage;
use image::imageops;
use ocellus_crds::experiment::Augmentation;
use rand::RngExt;

pub use crop::CropStrategy;
pub use trivial::{TrivialAugment, apply_at_magnitude};

/// Probability with which an [`Augmenter`] applies `augmentation`: albumentations' default `p`,
/// 0.5 for all thirteen.
pub fn probability(augmentation: Augmentation) -> f64 {
    match augmentation {
        Augmentation::Blur
        | Augmentation::CLAHE
        | Augmentation::Downscale
        | Augmentation::GaussNoise
        | Augmentation::GridDropout
        | Augmentation::HorizontalFlip
        | Augmentation::HueSaturationValue
        | Augmentation::ImageCompression
        | Augmentation::OpticalDistortion
        | Augmentation::RandomBrightnessContrast
        | Augmentation::RandomRotate90
        | Augmentation::ShiftScaleRotate
        | Augmentation::VerticalFlip => 0.5,
    }
}

/// Applies `augmentation` unconditionally, with parameters drawn from its default ranges (see the
/// module documentation).
pub fn apply(augmentation: Augmentation, image: &RgbImage, rng: &mut impl rand::Rng) -> RgbImage {
    if image.width() == 0 || image.height() == 0 {
        return image.clone();
    }
    match augmentation {
        Augmentation::Blur => ops::box_blur(image, [3, 5, 7][rng.random_range(0..3)]),
        Augmentation::CLAHE => clahe::clahe(image, rng.random_range(1.0..=4.0), 8),
        Augmentation::Downscale => ops::downscale(image, 0.25),
        Augmentation::GaussNoise => ops::gauss_noise(image, rng.random_range(10.0f32..=50.0).sqrt(), rng),
        Augmentation::GridDropout => ops::grid_dropout(image, 0.5, (0, 0), 0),
        Augmentation::HorizontalFlip => imageops::flip_horizontal(image),
        Augmentation::HueSaturationValue => {
            let hue = rng.random_range(-20.0..=20.0);
            let saturation = rng.random_range(-30.0..=30.0);
            let value = rng.random_range(-20.0..=20.0);
            ops::shift_hsv(image, hue, saturation, value)
        }
        Augmentation::ImageCompression => ops::jpeg_roundtrip(image, rng.random_range(99..=100)),
        Augmentation::OpticalDistortion => warp::optical_distortion(image, rng.random_range(-0.05..=0.05)),
        Augmentation::RandomBrightnessContrast => {
            let contrast = 1.0 + rng.random_range(-0.2..=0.2);
            let brightness = rng.random_range(-0.2..=0.2);
            ops::brightness_contrast(image, contrast, brightness)
        }
        Augmentation::RandomRotate90 => ops::rotate90(image, rng.random_range(0..4)),
        Augmentation::ShiftScaleRotate => {
            let shift = (rng.random_range(-0.0625..=0.0625), rng.random_range(-0.0625..=0.0625));
            let scale = 1.0 + rng.random_range(-0.1..=0.1);
            warp::shift_scale_rotate(image, shift, scale, rng.random_range(-45.0..=45.0))
        }
        Augmentation::VerticalFlip => imageops::flip_vertical(image),
    }
}

/// The order an [`Augmenter`] applies augmentations in, whatever order the spec lists them:
/// geometry first, then resolution and blur, colour, noise and compression, and occlusion last so
/// its holes stay sharp and black.
const PIPELINE_ORDER: [Augmentation; 13] = [
    Augmentation::HorizontalFlip,
    Augmentation::VerticalFlip,
    Augmentation::RandomRotate90,
    Augmentation::ShiftScaleRotate,
    Augmentation::OpticalDistortion,
    Augmentation::Downscale,
    Augmentation::Blur,
    Augmentation::CLAHE,
    Augmentation::HueSaturationValue,
    Augmentation::RandomBrightnessContrast,
    Augmentation::GaussNoise,
    Augmentation::ImageCompression,
    Augmentation::GridDropout,
];

/// The spec's augmentation list as a training transform: each listed augmentation (duplicates
/// count once) is applied with its [`probability`], in [`PIPELINE_ORDER`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Augmenter {
    steps: Vec<Augmentation>,
}

impl Augmenter {
    pub fn new(list: &[Augmentation]) -> Self {
        Self { steps: PIPELINE_ORDER.into_iter().filter(|a| list.contains(a)).collect() }
    }

    /// The augmentations this applies, in order.
    pub fn steps(&self) -> &[Augmentation] {
        &self.steps
    }

    pub fn augment(&self, image: RgbImage, rng: &mut impl rand::Rng) -> RgbImage {
        self.steps.iter().fold(image, |image, &step| {
            if rng.random_bool(probability(step)) { apply(step, &image, rng) } else { image }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ops::tests::{mean_abs_diff, mean_std, noise_image};
    use super::*;
    use image::Rgb;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn flips_mirror_known_pixels() {
        let mut image = RgbImage::new(5, 3);
        image.put_pixel(0, 0, Rgb([255, 0, 0]));
        let mut rng = StdRng::seed_from_u64(0);
        let horizontal = apply(Augmentation::HorizontalFlip, &image, &mut rng);
        assert_eq!(horizontal.get_pixel(4, 0).0, [255, 0, 0]);
        assert_eq!(horizontal.get_pixel(0, 0).0, [0, 0, 0]);
        let vertical = apply(Augmentation::VerticalFlip, &image, &mut rng);
        assert_eq!(vertical.get_pixel(0, 2).0, [255, 0, 0]);
        assert_eq!(apply(Augmentation::HorizontalFlip, &horizontal, &mut rng), image);
    }

    #[test]
    fn random_rotate90_uses_all_four_turns() {
        let mut image = RgbImage::new(6, 6);
        image.put_pixel(5, 0, Rgb([255; 3]));
        let mut rng = StdRng::seed_from_u64(1);
        let mut corners = std::collections::HashSet::new();
        for _ in 0..40 {
            let rotated = apply(Augmentation::RandomRotate90, &image, &mut rng);
            let (x, y, _) =
                rotated.enumerate_pixels().find(|(_, _, p)| p[0] == 255).expect("marked pixel kept");
            corners.insert((x, y));
        }
        assert_eq!(corners, [(5, 0), (0, 0), (0, 5), (5, 5)].into_iter().collect());
    }

    #[test]
    fn default_blur_lowers_variance_by_a_kernel_of_3_to_7() {
        let image = noise_image(24, 24, 10);
        let (mean, std) = mean_std(&image);
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..10 {
            let (blurred_mean, blurred_std) = mean_std(&apply(Augmentation::Blur, &image, &mut rng));
            assert!((blurred_mean - mean).abs() < 1.0);
            assert!(blurred_std < std / 2.5 && blurred_std > std / 9.0, "{std} -> {blurred_std}");
        }
    }

    #[test]
    fn default_gauss_noise_std_is_between_root_10_and_root_50() {
        let image = RgbImage::from_pixel(48, 48, Rgb([128; 3]));
        let mut rng = StdRng::seed_from_u64(3);
        let stds: Vec<f64> =
            (0..20).map(|_| mean_std(&apply(Augmentation::GaussNoise, &image, &mut rng)).1).collect();
        assert!(stds.iter().all(|s| (10f64.sqrt() * 0.93..50f64.sqrt() * 1.07).contains(s)), "{stds:?}");
        let spread =
            stds.iter().cloned().fold(f64::MIN, f64::max) - stds.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > 1.5, "variance is drawn, not fixed: {stds:?}");
    }

    #[test]
    fn default_brightness_contrast_stays_within_limits() {
        // Values 100..=156 never clip under the default limits.
        let image = RgbImage::from_fn(19, 3, |x, y| Rgb([100 + (x + 19 * y) as u8; 3]));
        let (mean, std) = mean_std(&image);
        let mut rng = StdRng::seed_from_u64(4);
        let (mut ratios, mut offsets) = (Vec::new(), Vec::new());
        for _ in 0..50 {
            let (new_mean, new_std) =
                mean_std(&apply(Augmentation::RandomBrightnessContrast, &image, &mut rng));
            let contrast = new_std / std;
            assert!((0.79..=1.21).contains(&contrast), "contrast {contrast}");
            let brightness = (new_mean - contrast * mean) / 255.0;
            assert!((-0.21..=0.21).contains(&brightness), "brightness {brightness}");
            ratios.push(contrast);
            offsets.push(brightness);
        }
        assert!(ratios.iter().any(|&r| r < 0.9) && ratios.iter().any(|&r| r > 1.1));
        assert!(offsets.iter().any(|&b| b < -0.1) && offsets.iter().any(|&b| b > 0.1));
    }

    #[test]
    fn default_hue_saturation_value_shifts_a_pure_colour_by_at_most_40_degrees() {
        let green = RgbImage::from_pixel(2, 2, Rgb([0, 200, 0]));
        let mut rng = StdRng::seed_from_u64(5);
        let mut hues = Vec::new();
        for _ in 0..30 {
            let out = apply(Augmentation::HueSaturationValue, &green, &mut rng);
            let [hue, _, _] = super::ops::rgb_to_hsv(out.get_pixel(0, 0).0.map(f32::from));
            // ±20 OpenCV units are ±40 degrees around green's 120; a degree more for rounding to u8.
            assert!((79.0..=161.0).contains(&hue), "hue {hue}");
            hues.push(hue);
        }
        assert!(hues.iter().any(|&h| h < 105.0) && hues.iter().any(|&h| h > 135.0), "{hues:?}");
    }

    #[test]
    fn default_image_compression_stays_close() {
        let image = super::ops::box_blur(&noise_image(32, 32, 11), 3);
        let mut rng = StdRng::seed_from_u64(6);
        let out = apply(Augmentation::ImageCompression, &image, &mut rng);
        let error = mean_abs_diff(&image, &out);
        assert!(error > 0.0 && error < 3.0, "error {error}");
    }

    #[test]
    fn default_shift_scale_rotate_shifts_the_centre_by_at_most_a_sixteenth() {
        // Rotation and scale keep the centre in place, so where the centre pixel lands shows the
        // shift alone: at most 0.0625 × 33 = 2.1 pixels per axis, plus a pixel of rounding.
        let mut image = RgbImage::new(33, 33);
        image.put_pixel(16, 16, Rgb([255; 3]));
        let noise = noise_image(33, 33, 16);
        let mut rng = StdRng::seed_from_u64(7);
        let mut landed = std::collections::HashSet::new();
        for _ in 0..20 {
            let out = apply(Augmentation::ShiftScaleRotate, &image, &mut rng);
            let (x, y, _) = out.enumerate_pixels().max_by_key(|(_, _, p)| p[0]).expect("non-empty");
            assert!(x.abs_diff(16) <= 3 && y.abs_diff(16) <= 3, "centre moved to ({x}, {y})");
            landed.insert((x, y));
            assert!(mean_abs_diff(&noise, &apply(Augmentation::ShiftScaleRotate, &noise, &mut rng)) > 10.0);
        }
        assert!(landed.len() >= 5, "the shift is drawn, not fixed: {landed:?}");
    }

    #[test]
    fn default_optical_distortion_is_mild_and_keeps_the_centre() {
        let image = RgbImage::from_fn(65, 65, |x, _| Rgb([(x * 3) as u8; 3]));
        let mut rng = StdRng::seed_from_u64(8);
        for _ in 0..10 {
            let out = apply(Augmentation::OpticalDistortion, &image, &mut rng);
            assert_eq!(out.get_pixel(32, 32), image.get_pixel(32, 32));
            assert!(mean_abs_diff(&image, &out) < 2.0);
        }
    }

    #[test]
    fn default_clahe_downscale_and_grid_dropout_have_their_effect() {
        let mut rng = StdRng::seed_from_u64(9);
        let dull = RgbImage::from_fn(64, 64, |x, y| Rgb([100 + ((x * 7 + y * 13) % 16) as u8; 3]));
        assert!(mean_std(&apply(Augmentation::CLAHE, &dull, &mut rng)).1 > 1.5 * mean_std(&dull).1);
        let checker =
            RgbImage::from_fn(16, 16, |x, y| Rgb([if (x + y).is_multiple_of(2) { 255 } else { 0 }; 3]));
        let down = apply(Augmentation::Downscale, &checker, &mut rng);
        assert_eq!(down.get_pixel(1, 2), down.get_pixel(0, 0));
        let white = RgbImage::from_pixel(40, 40, Rgb([255; 3]));
        let dropped = apply(Augmentation::GridDropout, &white, &mut rng);
        assert_eq!(dropped.pixels().filter(|p| p.0 == [0; 3]).count(), 40 * 40 / 4);
    }

    #[test]
    fn every_augmentation_keeps_the_size_and_survives_tiny_images() {
        let mut rng = StdRng::seed_from_u64(10);
        for augmentation in Augmentation::ALL {
            for (w, h) in [(1, 1), (2, 3), (17, 9), (0, 0)] {
                let out = apply(augmentation, &noise_image(w, h, 12), &mut rng);
                let swapped = augmentation == Augmentation::RandomRotate90 && out.dimensions() == (h, w);
                assert!(out.dimensions() == (w, h) || swapped, "{augmentation:?} on {w}x{h}");
            }
        }
    }

    #[test]
    fn the_same_seed_reproduces_every_augmentation() {
        let image = noise_image(20, 20, 13);
        let augmenter = Augmenter::new(&Augmentation::ALL);
        for augmentation in Augmentation::ALL {
            let first = apply(augmentation, &image, &mut StdRng::seed_from_u64(99));
            assert_eq!(
                first,
                apply(augmentation, &image, &mut StdRng::seed_from_u64(99)),
                "{augmentation:?}"
            );
        }
        let first = augmenter.augment(image.clone(), &mut StdRng::seed_from_u64(5));
        assert_eq!(first, augmenter.augment(image.clone(), &mut StdRng::seed_from_u64(5)));
        let other = augmenter.augment(image.clone(), &mut StdRng::seed_from_u64(6));
        assert_ne!(first, other);
    }

    #[test]
    fn each_augmentation_fires_about_half_the_time() {
        let image = noise_image(12, 12, 14);
        let mut rng = StdRng::seed_from_u64(11);
        const DRAWS: usize = 400;
        for augmentation in Augmentation::ALL {
            let augmenter = Augmenter::new(&[augmentation]);
            let changed = (0..DRAWS).filter(|_| augmenter.augment(image.clone(), &mut rng) != image).count();
            // RandomRotate90 draws zero turns a quarter of the times it fires.
            let expected = if augmentation == Augmentation::RandomRotate90 { 0.375 } else { 0.5 };
            let fraction = changed as f64 / DRAWS as f64;
            // Three binomial standard deviations (0.025); the seed is fixed, so this cannot flake.
            assert!((fraction - expected).abs() < 0.075, "{augmentation:?} changed {fraction}");
        }
    }

    #[test]
    fn augmenter_uses_a_fixed_order_and_ignores_duplicates() {
        let augmenter = Augmenter::new(&[
            Augmentation::GridDropout,
            Augmentation::HorizontalFlip,
            Augmentation::Blur,
            Augmentation::HorizontalFlip,
        ]);
        let expected = [Augmentation::HorizontalFlip, Augmentation::Blur, Augmentation::GridDropout];
        assert_eq!(augmenter.steps(), expected);
        let image = noise_image(8, 8, 15);
        assert_eq!(Augmenter::new(&[]).augment(image.clone(), &mut StdRng::seed_from_u64(0)), image);
    }
}
