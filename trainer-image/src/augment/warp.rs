//! Geometric warps that resample the image: affine (`ShiftScaleRotate`) and radial lens distortion
//! (`OpticalDistortion`). Both sample bilinearly and reflect at the borders (OpenCV's
//! `BORDER_REFLECT_101`, albumentations' default), so no black corners appear; imageproc's warps
//! only offer constant, replicate or wrap borders, hence this small resampler.

use image::{Rgb, RgbImage};

use super::ops::reflect_101;

/// Builds the output image by sampling `image` at `source(x, y)` for every output pixel.
fn remap(image: &RgbImage, source: impl Fn(f32, f32) -> (f32, f32)) -> RgbImage {
    let (width, height) = image.dimensions();
    if width == 0 || height == 0 {
        return image.clone();
    }
    RgbImage::from_fn(width, height, |x, y| {
        let (sx, sy) = source(x as f32, y as f32);
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let (xa, xb) = (reflect_101(x0, width), reflect_101(x0 + 1, width));
        let (ya, yb) = (reflect_101(y0, height), reflect_101(y0 + 1, height));
        let (p00, p10) = (image.get_pixel(xa, ya), image.get_pixel(xb, ya));
        let (p01, p11) = (image.get_pixel(xa, yb), image.get_pixel(xb, yb));
        Rgb(std::array::from_fn(|c| {
            let top = f32::from(p00[c]) * (1.0 - fx) + f32::from(p10[c]) * fx;
            let bottom = f32::from(p01[c]) * (1.0 - fx) + f32::from(p11[c]) * fx;
            (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8
        }))
    })
}

/// Rotates by `angle_degrees` (counter-clockwise on screen) and scales by `scale` about the image
/// centre, then shifts by `shift` (fractions of width and height): `cv2.getRotationMatrix2D` plus a
/// translation and `cv2.warpAffine`, as albumentations' `ShiftScaleRotate`.
pub fn shift_scale_rotate(image: &RgbImage, shift: (f32, f32), scale: f32, angle_degrees: f32) -> RgbImage {
    let (width, height) = image.dimensions();
    let (cx, cy) = ((width as f32 - 1.0) / 2.0, (height as f32 - 1.0) / 2.0);
    let (sin, cos) = angle_degrees.to_radians().sin_cos();
    let (a, b) = (scale * cos, scale * sin);
    // Forward map source -> output: [a b tx; -b a ty].
    let tx = (1.0 - a) * cx - b * cy + shift.0 * width as f32;
    let ty = b * cx + (1.0 - a) * cy + shift.1 * height as f32;
    let determinant = a * a + b * b;
    if determinant <= f32::EPSILON {
        return image.clone();
    }
    remap(image, |x, y| {
        let (u, v) = (x - tx, y - ty);
        ((a * u - b * v) / determinant, (b * u + a * v) / determinant)
    })
}

/// Barrel (`k` < 0) or pincushion (`k` > 0) distortion about the centre: OpenCV's
/// `initUndistortRectifyMap` with focal lengths equal to the image sides and distortion
/// coefficients `k1 = k2 = k`, as albumentations' `OpticalDistortion`. The centre stays in place and
/// displacement grows towards the corners.
pub fn optical_distortion(image: &RgbImage, k: f32) -> RgbImage {
    let (width, height) = image.dimensions();
    let (focal_x, focal_y) = (width as f32, height as f32);
    let (cx, cy) = ((width as f32 - 1.0) / 2.0, (height as f32 - 1.0) / 2.0);
    remap(image, |x, y| {
        let (nx, ny) = ((x - cx) / focal_x, (y - cy) / focal_y);
        let r2 = nx * nx + ny * ny;
        let radial = 1.0 + k * r2 + k * r2 * r2;
        (focal_x * nx * radial + cx, focal_y * ny * radial + cy)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brightest(image: &RgbImage) -> (u32, u32) {
        let (x, y, _) = image.enumerate_pixels().max_by_key(|(_, _, p)| p[0]).expect("non-empty image");
        (x, y)
    }

    fn marked(width: u32, height: u32, at: (u32, u32)) -> RgbImage {
        let mut image = RgbImage::new(width, height);
        for dy in 0..3 {
            for dx in 0..3 {
                let value = if (dx, dy) == (1, 1) { 255 } else { 128 };
                image.put_pixel(at.0 + dx - 1, at.1 + dy - 1, Rgb([value; 3]));
            }
        }
        image
    }

    #[test]
    fn identity_warp_changes_nothing() {
        let image = super::super::ops::tests::noise_image(17, 11, 6);
        assert_eq!(shift_scale_rotate(&image, (0.0, 0.0), 1.0, 0.0), image);
        assert_eq!(optical_distortion(&image, 0.0), image);
    }

    #[test]
    fn rotation_by_90_degrees_moves_a_marked_pixel_counter_clockwise() {
        let image = marked(41, 41, (30, 20));
        // Right of the centre (20, 20) goes to above it.
        assert_eq!(brightest(&shift_scale_rotate(&image, (0.0, 0.0), 1.0, 90.0)), (20, 10));
        assert_eq!(brightest(&shift_scale_rotate(&image, (0.0, 0.0), 1.0, -90.0)), (20, 30));
    }

    #[test]
    fn scale_and_shift_move_a_marked_pixel_as_the_matrix_says() {
        let image = marked(41, 41, (30, 20));
        // Scale 1.5 about the centre: 10 pixels right of it become 15.
        assert_eq!(brightest(&shift_scale_rotate(&image, (0.0, 0.0), 1.5, 0.0)), (35, 20));
        // Shift by 10% of 41 pixels = 4.1 to the left and down.
        assert_eq!(brightest(&shift_scale_rotate(&image, (-0.1, 0.1), 1.0, 0.0)), (26, 24));
    }

    #[test]
    fn rotation_fills_corners_by_reflection_not_black() {
        let image = RgbImage::from_pixel(20, 20, Rgb([90; 3]));
        let rotated = shift_scale_rotate(&image, (0.0, 0.0), 1.0, 45.0);
        assert!(rotated.pixels().all(|p| p.0 == [90; 3]));
    }

    #[test]
    fn optical_distortion_moves_border_pixels_more_than_the_centre() {
        // A horizontal ramp: a pixel's value tells where along x it was sampled from.
        let image = RgbImage::from_fn(65, 65, |x, _| Rgb([(x * 3) as u8; 3]));
        let distorted = optical_distortion(&image, 0.5);
        let change =
            |x: u32, y: u32| i32::from(distorted.get_pixel(x, y)[0]) - i32::from(image.get_pixel(x, y)[0]);
        assert_eq!(change(32, 32), 0);
        assert!(change(33, 32).abs() <= 1);
        // Pincushion: near the right edge the sample comes from further right (about 3 pixels at
        // mid-height), and more so towards the corner.
        assert!(change(60, 32) >= 6, "{}", change(60, 32));
        assert!(change(56, 8) > change(56, 32) + 3, "{} vs {}", change(56, 8), change(56, 32));
        assert!(change(4, 32) <= -6, "{}", change(4, 32));
        let barrel = optical_distortion(&image, -0.5);
        assert!(i32::from(barrel.get_pixel(60, 32)[0]) < i32::from(image.get_pixel(60, 32)[0]));
    }
}
