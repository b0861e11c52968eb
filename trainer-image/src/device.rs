//! Which device the trainer computes on.

use tch::Device;

/// The first CUDA device when libtorch sees one, else the CPU.
pub fn best_device() -> Device {
    Device::cuda_if_available()
}

/// A one-line description of what libtorch can use here.
pub fn describe() -> String {
    let cuda = tch::Cuda::is_available();
    let gpus = if cuda { tch::Cuda::device_count() } else { 0 };
    format!(
        "libtorch threads={} cuda={} gpus={} cudnn={} mkldnn={}",
        tch::get_num_threads(),
        cuda,
        gpus,
        tch::Cuda::cudnn_is_available(),
        tch::utils::has_mkldnn(),
    )
}
