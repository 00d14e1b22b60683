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
