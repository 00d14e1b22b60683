//! The backends models run on, chosen at run time from the node's device.

use burn::backend::Autodiff;
use burn::backend::Flex;

/// The CPU backend.
pub type Cpu = Flex;
/// The CPU backend with autodiff, for training.
pub type CpuTrain = Autodiff<Flex>;

/// The CUDA backend.
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda;
/// The CUDA backend with autodiff.
#[cfg(feature = "cuda")]
pub type GpuTrain = Autodiff<burn::backend::Cuda>;

/// The CUDA device with this index.
#[cfg(feature = "cuda")]
pub fn cuda_device(index: usize) -> burn::backend::cuda::CudaDevice {
    burn::backend::cuda::CudaDevice::new(index)
}

/// Evaluates `$body` with type `$B` bound to the backend of the node's `$device` — `$cpu` on the
/// CPU, `$gpu` on CUDA — and `$dev` to its Burn device. Without the `cuda` feature a CUDA device
/// returns an error from the enclosing function.
macro_rules! on_device {
    ($device:expr, $cpu:ty, $gpu:ty, |$B:ident, $dev:ident| $body:expr) => {
        match $device {
            dagrun_engine::Device::Cpu => {
                type $B = $cpu;
                let $dev: burn::tensor::Device<$B> = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            dagrun_engine::Device::Cuda(i) => {
                type $B = $gpu;
                let $dev: burn::tensor::Device<$B> = $crate::models::backend::cuda_device(i);
                $body
            }
            #[cfg(not(feature = "cuda"))]
            dagrun_engine::Device::Cuda(_) => return Err("this dagrun was built without CUDA (rebuild with `--features cuda`)".into()),
        }
    };
}
pub(crate) use on_device;
