//! Which device the trainer computes on.

use tch::Device;

/// The first CUDA device when libtorch sees one, else the CPU.
pub fn best_device() -> Device {
    Device::cuda_if_available()
}

/// The devices embedding batches are spread over: every GPU this process sees (a pod sees the
/// GPUs it requested), starting with `primary`; on the CPU, the CPU alone.
pub fn embedding_devices(primary: Device) -> Vec<Device> {
    match primary {
        Device::Cuda(first) => {
            let count = tch::Cuda::device_count().max(1) as usize;
            std::iter::once(first).chain((0..count).filter(|&i| i != first)).map(Device::Cuda).collect()
        }
        other => vec![other],
    }
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
