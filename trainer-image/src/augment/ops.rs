//! Pixel operations with explicit parameters: no randomness here, so each one can be tested for its
//! effect. `augment::apply` draws the parameters; `TrivialAugment` picks them from a magnitude.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image::{ImageFormat, Rgb, RgbImage};
use rand::RngExt;

/// Index into `0..len` for any integer position, mirroring at the edges without repeating the edge
/// pixel (`dcb|abcd|cba`): OpenCV's `BORDER_REFLECT_101`, the border albumentations uses by default.
pub(crate) fn reflect_101(position: i64, len: u32) -> u32 {
    let len = i64::from(len);
    if len == 1 {
        return 0;
    }
    let period = 2 * (len - 1);
    let folded = position.rem_euclid(period);
    (if folded < len { folded } else { period - folded }) as u32
}

fn round_to_u8(value: f32) -> u8 {
    value.round().clamp(0.0, 255.0) as u8
}

/// Mean over a `kernel`×`kernel` window (odd `kernel`), borders reflected: `cv2.blur`.
/// Written here rather than taken from imageproc because its box filter is grey-only and its
/// separable filters replicate borders and truncate each pass, darkening the image.
pub fn box_blur(image: &RgbImage, kernel: u32) -> RgbImage {
    let (width, height) = image.dimensions();
    if kernel <= 1 || width == 0 || height == 0 {
        return image.clone();
    }
    let half = i64::from(kernel / 2);
    // Exact integer window sums slide along rows, then columns; reflected indices are computed once.
    let padded = |len: u32| -> Vec<usize> {
        (-half..i64::from(len) + half).map(|p| reflect_101(p, len) as usize).collect()
    };
    let (columns, rows) = (padded(width), padded(height));
    let (width, height, kernel) = (width as usize, height as usize, kernel as usize);
    let pixels = image.as_raw();
    let mut horizontal = vec![0u32; width * height * 3];
    for y in 0..height {
        for c in 0..3 {
            let at = |x: usize| u32::from(pixels[(y * width + columns[x]) * 3 + c]);
            let mut sum: u32 = (0..kernel).map(at).sum();
            for x in 0..width {
                horizontal[(y * width + x) * 3 + c] = sum;
                if x + 1 < width {
                    sum = sum + at(x + kernel) - at(x);
                }
            }
        }
    }
    let area_scale = 1.0 / (kernel * kernel) as f32;
    let mut out = vec![0u8; width * height * 3];
    for x in 0..width {
        for c in 0..3 {
            let at = |y: usize| horizontal[(rows[y] * width + x) * 3 + c];
            let mut sum: u32 = (0..kernel).map(at).sum();
            for y in 0..height {
                out[(y * width + x) * 3 + c] = round_to_u8(sum as f32 * area_scale);
                if y + 1 < height {
                    sum = sum + at(y + kernel) - at(y);
                }
            }
        }
    }
    RgbImage::from_raw(width as u32, height as u32, out).unwrap_or_else(|| image.clone())
}

/// Shrinks by `scale` (in (0, 1]) and enlarges back, both with nearest neighbour: albumentations'
/// `Downscale`, which loses detail finer than `1 / scale` pixels.
pub fn downscale(image: &RgbImage, scale: f32) -> RgbImage {
    let (width, height) = image.dimensions();
    let small_width = ((width as f32 * scale) as u32).max(1);
    let small_height = ((height as f32 * scale) as u32).max(1);
    let small = imageops::resize(image, small_width, small_height, FilterType::Nearest);
    imageops::resize(&small, width, height, FilterType::Nearest)
}

/// Adds independent zero-mean normal noise of standard deviation `sigma` (in 0..255 units) to every
/// channel of every pixel, rounding and clipping to u8.
pub fn gauss_noise(image: &RgbImage, sigma: f32, rng: &mut impl rand::Rng) -> RgbImage {
    let sigma = sigma.max(0.0);
    let mut out = image.clone();
    let mut spare = None;
    for value in out.iter_mut() {
        let noise = match spare.take() {
            Some(noise) => noise,
            None => {
                let (first, second) = standard_normal_pair(rng);
                spare = Some(second);
                first
            }
        };
        *value = round_to_u8(f32::from(*value) + sigma * noise);
    }
    out
}

/// Two independent standard normal draws (Box-Muller). Here rather than `rand_distr::Normal`
/// because rand_distr turns on num-traits' `libm` feature, which would rebuild most of the
/// trainer's dependencies (kube, image, tch) for one distribution.
fn standard_normal_pair(rng: &mut impl rand::Rng) -> (f32, f32) {
    // In (0, 1]: ln(0) would be infinite.
    let uniform = 1.0 - rng.random::<f64>();
    let radius = (-2.0 * uniform.ln()).sqrt();
    let angle = std::f64::consts::TAU * rng.random::<f64>();
    ((radius * angle.cos()) as f32, (radius * angle.sin()) as f32)
}

/// Grid of square-ish holes: albumentations' `GridDropout` with `unit_size = None`, `holes_number = None`.
/// Each grid unit is `max(2, side / 10)` pixels; its top-left `ratio` part (per axis) is set to
/// `fill`, starting at `shift` pixels. With `ratio` 0.5 a quarter of the image is dropped.
pub fn grid_dropout(image: &RgbImage, ratio: f32, shift: (u32, u32), fill: u8) -> RgbImage {
    let (width, height) = image.dimensions();
    if width == 0 || height == 0 || ratio <= 0.0 {
        return image.clone();
    }
    let unit = |side: u32| (side / 10).max(2);
    let hole = |unit: u32| ((unit as f32 * ratio) as u32).clamp(1, unit - 1);
    let (unit_x, unit_y) = (unit(width), unit(height));
    let (hole_x, hole_y) = (hole(unit_x), hole(unit_y));
    let shift_x = shift.0.min(unit_x - hole_x);
    let shift_y = shift.1.min(unit_y - hole_y);
    let mut out = image.clone();
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let in_x = x >= shift_x && (x - shift_x) % unit_x < hole_x;
        let in_y = y >= shift_y && (y - shift_y) % unit_y < hole_y;
        if in_x && in_y {
            *pixel = Rgb([fill; 3]);
        }
    }
    out
}

/// RGB (0..255) to hue in degrees [0, 360), saturation and value in 0..255, as OpenCV's HSV but
/// with a continuous hue.
pub(crate) fn rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let hue = if delta == 0.0 {
        0.0
    } else if max == r {
        60.0 * ((g - b) / delta)
    } else if max == g {
        60.0 * ((b - r) / delta) + 120.0
    } else {
        60.0 * ((r - g) / delta) + 240.0
    };
    let saturation = if max == 0.0 { 0.0 } else { 255.0 * delta / max };
    [hue.rem_euclid(360.0), saturation, max]
}

fn hsv_to_rgb([hue, saturation, value]: [f32; 3]) -> [f32; 3] {
    let chroma = value * saturation / 255.0;
    let sector = hue.rem_euclid(360.0) / 60.0;
    let second = chroma * (1.0 - (sector % 2.0 - 1.0).abs());
    let (r, g, b) = match sector as u32 {
        0 => (chroma, second, 0.0),
        1 => (second, chroma, 0.0),
        2 => (0.0, chroma, second),
        3 => (0.0, second, chroma),
        4 => (second, 0.0, chroma),
        _ => (chroma, 0.0, second),
    };
    let offset = value - chroma;
    [r + offset, g + offset, b + offset]
}

/// Shifts hue, saturation and value as albumentations does for u8 images: `hue_shift` is in OpenCV
/// units (2 degrees each, hue wraps around), `saturation_shift` and `value_shift` are added on the
/// 0..255 scale and clipped.
pub fn shift_hsv(image: &RgbImage, hue_shift: f32, saturation_shift: f32, value_shift: f32) -> RgbImage {
    let mut out = image.clone();
    for pixel in out.pixels_mut() {
        let [hue, saturation, value] = rgb_to_hsv(pixel.0.map(f32::from));
        let shifted = [
            hue + 2.0 * hue_shift,
            (saturation + saturation_shift).clamp(0.0, 255.0),
            (value + value_shift).clamp(0.0, 255.0),
        ];
        pixel.0 = hsv_to_rgb(shifted).map(round_to_u8);
    }
    out
}

/// Encodes as JPEG at `quality` (1..=100) and decodes again, keeping JPEG's block artefacts.
/// Images JPEG cannot hold (a side over 65,535 pixels) come back unchanged.
pub fn jpeg_roundtrip(image: &RgbImage, quality: u8) -> RgbImage {
    let mut bytes = Vec::new();
    let encoded = JpegEncoder::new_with_quality(&mut bytes, quality.clamp(1, 100)).encode_image(image);
    if encoded.is_err() {
        return image.clone();
    }
    match image::load(Cursor::new(bytes), ImageFormat::Jpeg) {
        Ok(decoded) => decoded.to_rgb8(),
        Err(_) => image.clone(),
    }
}

/// `alpha * x + beta * 255`, clipped: albumentations' brightness/contrast with `brightness_by_max`.
pub fn brightness_contrast(image: &RgbImage, alpha: f32, beta: f32) -> RgbImage {
    let lut: Vec<u8> = (0..=255u8).map(|x| round_to_u8(alpha * f32::from(x) + beta * 255.0)).collect();
    let mut out = image.clone();
    for value in out.iter_mut() {
        *value = lut[usize::from(*value)];
    }
    out
}

/// Rotates by `quarter_turns` × 90 degrees counter-clockwise, as `np.rot90`; odd turns swap the sides.
pub fn rotate90(image: &RgbImage, quarter_turns: u32) -> RgbImage {
    match quarter_turns % 4 {
        0 => image.clone(),
        1 => imageops::rotate270(image),
        2 => imageops::rotate180(image),
        _ => imageops::rotate90(image),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// Per-image mean and standard deviation over all channels.
    pub(crate) fn mean_std(image: &RgbImage) -> (f64, f64) {
        let n = image.as_raw().len() as f64;
        let mean = image.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = image.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    pub(crate) fn noise_image(width: u32, height: u32, seed: u64) -> RgbImage {
        use rand::RngExt;
        let mut rng = StdRng::seed_from_u64(seed);
        RgbImage::from_fn(width, height, |_, _| Rgb([rng.random(), rng.random(), rng.random()]))
    }

    pub(crate) fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
        assert_eq!(a.dimensions(), b.dimensions());
        let total: f64 = a.iter().zip(b.iter()).map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs()).sum();
        total / a.as_raw().len() as f64
    }

    #[test]
    fn reflect_101_mirrors_without_repeating_the_edge() {
        let mapped: Vec<u32> = (-3..8).map(|p| reflect_101(p, 5)).collect();
        assert_eq!(mapped, [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
        assert_eq!(reflect_101(-7, 1), 0);
    }

    #[test]
    fn box_blur_lowers_variance_and_keeps_the_mean() {
        let image = noise_image(32, 32, 1);
        let (mean, std) = mean_std(&image);
        for kernel in [3, 5, 7] {
            let (blurred_mean, blurred_std) = mean_std(&box_blur(&image, kernel));
            assert!((blurred_mean - mean).abs() < 1.0, "mean {mean} -> {blurred_mean}");
            // Averaging k² independent pixels divides the std by about k.
            let expected = std / f64::from(kernel);
            assert!((blurred_std - expected).abs() < 0.35 * expected, "k={kernel}: std {blurred_std}");
        }
    }

    #[test]
    fn box_blur_of_a_single_bright_pixel_spreads_it_evenly() {
        let mut image = RgbImage::new(9, 9);
        image.put_pixel(4, 4, Rgb([90, 90, 90]));
        let blurred = box_blur(&image, 3);
        assert_eq!(blurred.get_pixel(3, 3).0, [10; 3]);
        assert_eq!(blurred.get_pixel(5, 4).0, [10; 3]);
        assert_eq!(blurred.get_pixel(6, 4).0, [0; 3]);
    }

    #[test]
    fn downscale_loses_high_frequency_detail() {
        // A one-pixel checkerboard has the highest frequency there is.
        let image =
            RgbImage::from_fn(
                16,
                16,
                |x, y| if (x + y).is_multiple_of(2) { Rgb([255; 3]) } else { Rgb([0; 3]) },
            );
        let down = downscale(&image, 0.25);
        assert_eq!(down.dimensions(), image.dimensions());
        // Nearest neighbour at 1/4 keeps one sample per 4x4 block: the output is constant in blocks.
        for y in 0..16 {
            for x in 0..16 {
                assert_eq!(down.get_pixel(x, y), down.get_pixel(x / 4 * 4, y / 4 * 4), "({x},{y})");
            }
        }
        assert!(mean_abs_diff(&image, &down) > 100.0);
    }

    #[test]
    fn gauss_noise_adds_about_sigma_of_noise_with_zero_mean() {
        let image = RgbImage::from_pixel(64, 64, Rgb([128; 3]));
        let mut rng = StdRng::seed_from_u64(3);
        let (mean, std) = mean_std(&gauss_noise(&image, 7.0, &mut rng));
        assert!((mean - 128.0).abs() < 0.5, "mean {mean}");
        assert!((std - 7.0).abs() < 0.3, "std {std}");
    }

    #[test]
    fn grid_dropout_zeroes_a_quarter_in_a_grid() {
        let image = RgbImage::from_pixel(100, 60, Rgb([200; 3]));
        let dropped = grid_dropout(&image, 0.5, (0, 0), 0);
        let zero = dropped.pixels().filter(|p| p.0 == [0; 3]).count();
        assert_eq!(zero, 100 * 60 / 4);
        // Units are 10x6 pixels; the hole is the top-left 5x3 of each.
        assert_eq!(dropped.get_pixel(0, 0).0, [0; 3]);
        assert_eq!(dropped.get_pixel(14, 2).0, [0; 3]);
        assert_eq!(dropped.get_pixel(5, 0).0, [200; 3]);
        assert_eq!(dropped.get_pixel(0, 3).0, [200; 3]);
        assert_eq!(dropped.get_pixel(95, 57).0, [200; 3]);
    }

    #[test]
    fn hsv_round_trip_is_exact_enough() {
        let image = noise_image(16, 16, 4);
        assert!(mean_abs_diff(&image, &shift_hsv(&image, 0.0, 0.0, 0.0)) < 0.01);
    }

    #[test]
    fn hue_shift_turns_red_towards_yellow_and_blue() {
        let red = RgbImage::from_pixel(4, 4, Rgb([255, 0, 0]));
        // +30 OpenCV units = +60 degrees: red becomes yellow; -60 units = -120 degrees: blue.
        assert_eq!(shift_hsv(&red, 30.0, 0.0, 0.0).get_pixel(0, 0).0, [255, 255, 0]);
        assert_eq!(shift_hsv(&red, -60.0, 0.0, 0.0).get_pixel(0, 0).0, [0, 0, 255]);
        let pale = shift_hsv(&red, 0.0, -255.0, -55.0);
        assert_eq!(pale.get_pixel(0, 0).0, [200, 200, 200]);
    }

    #[test]
    fn jpeg_adds_small_block_errors_that_grow_as_quality_drops() {
        let image = box_blur(&noise_image(32, 32, 5), 3);
        let high = mean_abs_diff(&image, &jpeg_roundtrip(&image, 99));
        let low = mean_abs_diff(&image, &jpeg_roundtrip(&image, 10));
        assert!(high > 0.0 && high < 3.0, "quality 99 error {high}");
        assert!(low > 3.0 * high, "quality 10 error {low} vs 99 {high}");
    }

    #[test]
    fn brightness_contrast_is_linear_and_clipped() {
        let image = RgbImage::from_fn(4, 1, |x, _| Rgb([[0, 100, 200, 250][x as usize]; 3]));
        let out = brightness_contrast(&image, 1.2, -0.1);
        let values: Vec<u8> = out.pixels().map(|p| p[0]).collect();
        assert_eq!(values, [0, 95, 215, 255]);
    }

    #[test]
    fn rotate90_moves_the_marked_corner_counter_clockwise() {
        let mut image = RgbImage::new(4, 2);
        image.put_pixel(3, 0, Rgb([255, 0, 0])); // top right
        let once = rotate90(&image, 1);
        assert_eq!(once.dimensions(), (2, 4));
        assert_eq!(once.get_pixel(0, 0).0, [255, 0, 0]); // top right -> top left
        assert_eq!(rotate90(&image, 2).get_pixel(0, 1).0, [255, 0, 0]); // -> bottom left
        assert_eq!(rotate90(&image, 3).get_pixel(1, 3).0, [255, 0, 0]); // -> bottom right
        assert_eq!(rotate90(&image, 4), image);
    }
}
