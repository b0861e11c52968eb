//! Contrast Limited Adaptive Histogram Equalization on luminance, following OpenCV's `CLAHE` (which
//! albumentations calls): one clipped-histogram equalization table per tile, blended bilinearly
//! between the four nearest tile centres. Neither `image` nor imageproc has CLAHE.

use image::{Rgb, RgbImage};

const BINS: usize = 256;

/// Equalizes the luminance (BT.601 luma) of `image` over a `tiles`×`tiles` grid with `clip_limit`
/// (a multiple of the mean bin count, as OpenCV's `clipLimit`). Only the luma changes: every channel
/// moves by the same amount, so chroma is kept. Albumentations works on LAB's L instead; luma avoids
/// a colour-space round trip and behaves the same for contrast.
pub fn clahe(image: &RgbImage, clip_limit: f32, tiles: u32) -> RgbImage {
    let (width, height) = image.dimensions();
    if width == 0 || height == 0 {
        return image.clone();
    }
    let luma: Vec<f32> = image
        .pixels()
        .map(|Rgb([r, g, b])| 0.299 * f32::from(*r) + 0.587 * f32::from(*g) + 0.114 * f32::from(*b))
        .collect();
    let level = |i: usize| luma[i].round().clamp(0.0, 255.0) as usize;
    let (tiles_x, tiles_y) = (tiles.clamp(1, width), tiles.clamp(1, height));
    // Tile i covers [i * side / tiles, (i + 1) * side / tiles): sides need not divide evenly.
    let bound = |i: u32, side: u32, count: u32| (u64::from(i) * u64::from(side) / u64::from(count)) as u32;

    let mut tables = Vec::with_capacity((tiles_x * tiles_y) as usize);
    for ty in 0..tiles_y {
        for tx in 0..tiles_x {
            let mut histogram = [0u32; BINS];
            let (x0, x1) = (bound(tx, width, tiles_x), bound(tx + 1, width, tiles_x));
            let (y0, y1) = (bound(ty, height, tiles_y), bound(ty + 1, height, tiles_y));
            for y in y0..y1 {
                for x in x0..x1 {
                    histogram[level((y * width + x) as usize)] += 1;
                }
            }
            tables.push(equalization_table(histogram, (x1 - x0) * (y1 - y0), clip_limit));
        }
    }

    let mut out = image.clone();
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        // Position in tile units, relative to tile centres.
        let fx = (x as f32 + 0.5) * tiles_x as f32 / width as f32 - 0.5;
        let fy = (y as f32 + 0.5) * tiles_y as f32 / height as f32 - 0.5;
        let (tx0, ty0) = (fx.floor(), fy.floor());
        let (wx, wy) = (fx - tx0, fy - ty0);
        let clamp_x = |t: f32| t.clamp(0.0, (tiles_x - 1) as f32) as u32;
        let clamp_y = |t: f32| t.clamp(0.0, (tiles_y - 1) as f32) as u32;
        let (tx0, tx1, ty0, ty1) = (clamp_x(tx0), clamp_x(tx0 + 1.0), clamp_y(ty0), clamp_y(ty0 + 1.0));
        let i = (y * width + x) as usize;
        let at = |tx: u32, ty: u32| tables[(ty * tiles_x + tx) as usize][level(i)];
        let top = at(tx0, ty0) * (1.0 - wx) + at(tx1, ty0) * wx;
        let bottom = at(tx0, ty1) * (1.0 - wx) + at(tx1, ty1) * wx;
        let shift = (top * (1.0 - wy) + bottom * wy).round() - luma[i];
        pixel.0 = pixel.0.map(|v| (f32::from(v) + shift).round().clamp(0.0, 255.0) as u8);
    }
    out
}

/// OpenCV's per-tile table: clip the histogram at `clip_limit` × mean bin count, spread the excess
/// evenly over all bins, and map each level to its scaled cumulative count.
fn equalization_table(mut histogram: [u32; BINS], area: u32, clip_limit: f32) -> [f32; BINS] {
    let clip = ((clip_limit * area as f32 / BINS as f32) as u32).max(1);
    let mut excess = 0;
    for count in histogram.iter_mut() {
        if *count > clip {
            excess += *count - clip;
            *count = clip;
        }
    }
    let batch = excess / BINS as u32;
    let mut residual = excess - batch * BINS as u32;
    for count in histogram.iter_mut() {
        *count += batch;
    }
    if residual > 0 {
        let step = (BINS / residual as usize).max(1);
        for count in histogram.iter_mut().step_by(step) {
            if residual == 0 {
                break;
            }
            *count += 1;
            residual -= 1;
        }
    }
    let scale = 255.0 / area.max(1) as f32;
    let mut table = [0f32; BINS];
    let mut cumulative = 0;
    for (level, count) in histogram.iter().enumerate() {
        cumulative += count;
        table[level] = (cumulative as f32 * scale).round().min(255.0);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::super::ops::tests::{mean_abs_diff, mean_std, noise_image};
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn clahe_raises_the_contrast_of_a_dull_image() {
        let mut rng = StdRng::seed_from_u64(7);
        let dull = RgbImage::from_fn(128, 128, |_, _| Rgb([rng.random_range(100..120u8); 3]));
        let (_, before) = mean_std(&dull);
        let (_, after) = mean_std(&clahe(&dull, 4.0, 8));
        assert!(after > 3.0 * before, "std {before} -> {after}");
        // A lower clip limit equalizes less.
        let (_, gentle) = mean_std(&clahe(&dull, 1.0, 8));
        assert!(gentle < after, "clip 1 std {gentle} vs clip 4 {after}");
    }

    #[test]
    fn clahe_leaves_an_already_equalized_image_almost_unchanged() {
        let image = noise_image(128, 128, 8);
        let grey = RgbImage::from_fn(128, 128, |x, y| Rgb([image.get_pixel(x, y)[0]; 3]));
        assert!(mean_abs_diff(&grey, &clahe(&grey, 4.0, 8)) < 6.0);
    }

    #[test]
    fn clahe_keeps_colour_differences_and_handles_tiny_images() {
        let image = RgbImage::from_fn(64, 64, |x, _| Rgb([100 + (x % 8) as u8, 60, 40]));
        let out = clahe(&image, 4.0, 8);
        for (before, after) in image.pixels().zip(out.pixels()) {
            let shift = i32::from(after[0]) - i32::from(before[0]);
            assert!((i32::from(after[1]) - i32::from(before[1]) - shift).abs() <= 1);
        }
        let tiny = noise_image(3, 2, 9);
        assert_eq!(clahe(&tiny, 4.0, 8).dimensions(), (3, 2));
    }
}
