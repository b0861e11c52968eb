//! TrivialAugment (Müller & Hutter, 2021) in its "Wide" form, as torchvision's `TrivialAugmentWide`
//! samples it: per image, one operation chosen uniformly (identity included) and one magnitude
//! chosen uniformly from 31 bins, then that operation at that strength. No tuned policy, no search.
//! The operations are the spec's augmentations rather than torchvision's PIL operations, so the
//! policy can be restricted to whatever a user allows.

use image::RgbImage;
use image::imageops;
use ocellus_crds::experiment::Augmentation;
use rand::RngExt;

use super::{clahe, ops, warp};

/// Magnitude bins, as torchvision's `num_magnitude_bins`.
const MAGNITUDE_BINS: u32 = 31;

/// A TrivialAugment Wide policy over a set of the spec's augmentations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrivialAugment {
    operations: Vec<Augmentation>,
}

impl TrivialAugment {
    /// A policy choosing among `operations` (duplicates count once) and the identity. An empty list
    /// leaves images unchanged.
    pub fn new(operations: &[Augmentation]) -> Self {
        let mut unique = Vec::new();
        for &operation in operations {
            if !unique.contains(&operation) {
                unique.push(operation);
            }
        }
        Self { operations: unique }
    }

    /// The policy over all thirteen augmentations.
    pub fn wide() -> Self {
        Self::new(&Augmentation::ALL)
    }

    pub fn augment(&self, image: RgbImage, rng: &mut impl rand::Rng) -> RgbImage {
        // Index `len` is the identity.
        let choice = rng.random_range(0..=self.operations.len());
        let magnitude = rng.random_range(0..MAGNITUDE_BINS) as f32 / (MAGNITUDE_BINS - 1) as f32;
        match self.operations.get(choice) {
            Some(&operation) => apply_at_magnitude(operation, &image, magnitude, rng),
            None => image,
        }
    }
}

fn signed(value: f32, rng: &mut impl rand::Rng) -> f32 {
    if rng.random_bool(0.5) { -value } else { value }
}

/// Applies `augmentation` at `magnitude` in [0, 1]: 0 is no change (or the mildest form), 1 the
/// strongest; each sign is drawn independently. The strongest settings go beyond albumentations'
/// default limits (about twice for most), as TrivialAugment Wide widens RandAugment's ranges:
///
/// | Augmentation | At magnitude m |
/// |---|---|
/// | `Blur` | box kernel `1 + 2 round(4m)` (up to 9) |
/// | `CLAHE` | clip limit `1 + 7m` (up to 8) |
/// | `Downscale` | scale `1 - 0.75m` (down to 0.25) |
/// | `GaussNoise` | std `15m` |
/// | `GridDropout` | ratio `0.6m` (up to 36% of pixels) |
/// | `HorizontalFlip`, `VerticalFlip` | always flip |
/// | `HueSaturationValue` | hue `±40m` OpenCV units (±80°), saturation `±60m`, value `±40m` |
/// | `ImageCompression` | JPEG quality `100 - 90m` |
/// | `OpticalDistortion` | `k = ±0.3m` |
/// | `RandomBrightnessContrast` | contrast `1 ± 0.4m`, brightness `±0.4m × 255` |
/// | `RandomRotate90` | 1, 2 or 3 quarter turns (no magnitude) |
/// | `ShiftScaleRotate` | angle `±90m°`, scale `1 ± 0.2m`, shift `±0.125m` of each side |
pub fn apply_at_magnitude(
    augmentation: Augmentation,
    image: &RgbImage,
    magnitude: f32,
    rng: &mut impl rand::Rng,
) -> RgbImage {
    let m = magnitude.clamp(0.0, 1.0);
    if image.width() == 0 || image.height() == 0 {
        return image.clone();
    }
    match augmentation {
        Augmentation::Blur => ops::box_blur(image, 1 + 2 * (4.0 * m).round() as u32),
        Augmentation::CLAHE => clahe::clahe(image, 1.0 + 7.0 * m, 8),
        Augmentation::Downscale => ops::downscale(image, 1.0 - 0.75 * m),
        Augmentation::GaussNoise => ops::gauss_noise(image, 15.0 * m, rng),
        Augmentation::GridDropout => ops::grid_dropout(image, 0.6 * m, (0, 0), 0),
        Augmentation::HorizontalFlip => imageops::flip_horizontal(image),
        Augmentation::VerticalFlip => imageops::flip_vertical(image),
        Augmentation::HueSaturationValue => {
            let hue = signed(40.0 * m, rng);
            let saturation = signed(60.0 * m, rng);
            let value = signed(40.0 * m, rng);
            ops::shift_hsv(image, hue, saturation, value)
        }
        Augmentation::ImageCompression => ops::jpeg_roundtrip(image, (100.0 - 90.0 * m).round() as u8),
        Augmentation::OpticalDistortion => warp::optical_distortion(image, signed(0.3 * m, rng)),
        Augmentation::RandomBrightnessContrast => {
            let contrast = 1.0 + signed(0.4 * m, rng);
            ops::brightness_contrast(image, contrast, signed(0.4 * m, rng))
        }
        Augmentation::RandomRotate90 => ops::rotate90(image, rng.random_range(1..4)),
        Augmentation::ShiftScaleRotate => {
            let shift = (signed(0.125 * m, rng), signed(0.125 * m, rng));
            let scale = 1.0 + signed(0.2 * m, rng);
            warp::shift_scale_rotate(image, shift, scale, signed(90.0 * m, rng))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ops::tests::{mean_abs_diff, noise_image};
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn magnitude_zero_changes_nothing_where_there_is_a_magnitude() {
        let image = noise_image(16, 16, 20);
        let mut rng = StdRng::seed_from_u64(0);
        let without_magnitude =
            [Augmentation::HorizontalFlip, Augmentation::VerticalFlip, Augmentation::RandomRotate90];
        // JPEG at quality 100 is still lossy, and CLAHE at clip 1 still equalizes a little.
        let lossy_at_zero = [Augmentation::ImageCompression, Augmentation::CLAHE];
        for augmentation in Augmentation::ALL {
            if without_magnitude.contains(&augmentation) || lossy_at_zero.contains(&augmentation) {
                continue;
            }
            assert_eq!(apply_at_magnitude(augmentation, &image, 0.0, &mut rng), image, "{augmentation:?}");
        }
    }

    #[test]
    fn change_grows_with_magnitude() {
        let image = super::super::ops::box_blur(&noise_image(64, 64, 21), 3);
        for augmentation in Augmentation::ALL {
            if matches!(
                augmentation,
                Augmentation::HorizontalFlip | Augmentation::VerticalFlip | Augmentation::RandomRotate90
            ) {
                continue;
            }
            // The same seed draws the same signs, so only the magnitude differs.
            let at = |m: f32| apply_at_magnitude(augmentation, &image, m, &mut StdRng::seed_from_u64(1));
            let (mild, strong) = (mean_abs_diff(&image, &at(0.2)), mean_abs_diff(&image, &at(1.0)));
            assert!(strong > mild, "{augmentation:?}: {mild} at 0.2, {strong} at 1.0");
        }
    }

    #[test]
    fn picks_every_operation_and_the_identity_about_equally() {
        let image = noise_image(12, 12, 22);
        let policy = TrivialAugment::new(&[Augmentation::HorizontalFlip, Augmentation::VerticalFlip]);
        let horizontal = imageops::flip_horizontal(&image);
        let vertical = imageops::flip_vertical(&image);
        let mut rng = StdRng::seed_from_u64(2);
        let mut counts = [0usize; 3];
        for _ in 0..600 {
            let out = policy.augment(image.clone(), &mut rng);
            let index = if out == horizontal {
                0
            } else if out == vertical {
                1
            } else {
                assert_eq!(out, image);
                2
            };
            counts[index] += 1;
        }
        // 200 expected each; the binomial standard deviation is 11.5 and the seed is fixed.
        assert!(counts.iter().all(|&c| (165..=235).contains(&c)), "{counts:?}");
    }

    #[test]
    fn is_seeded_and_empty_policy_is_identity() {
        let image = noise_image(16, 16, 23);
        let policy = TrivialAugment::wide();
        let first = policy.augment(image.clone(), &mut StdRng::seed_from_u64(3));
        assert_eq!(first, policy.augment(image.clone(), &mut StdRng::seed_from_u64(3)));
        let outputs: Vec<RgbImage> =
            (0..8).map(|s| policy.augment(image.clone(), &mut StdRng::seed_from_u64(s))).collect();
        assert!(outputs.iter().any(|o| o != &outputs[0]));
        assert_eq!(TrivialAugment::new(&[]).augment(image.clone(), &mut StdRng::seed_from_u64(4)), image);
    }
}
