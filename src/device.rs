//! Choosing where models run: a wgpu adapter (Vulkan, Metal, DX12) or the flex CPU backend.
//!
//! The choice is made at run time, once per process for the GPU: burn's wgpu runtime can be
//! initialised only once, so the probe's answer is kept.
//!
//! A build without the default `gpu` cargo feature has the CPU backend only: `auto` picks it
//! without a notice, and `gpu` is refused with a one-line reason.

use std::fmt;
use std::sync::OnceLock;

use burn::tensor::Device;

use crate::{Error, Result};

/// Tunes the process's C allocator for tensor work, and says whether it could.
///
/// The CPU backend allocates and frees a buffer of several megabytes for nearly every operation.
/// glibc serves such blocks with `mmap` and returns each one to the kernel on free, so every
/// operation pays for fresh page faults and TLB shootdowns (a quarter of EfficientNet-Lite0's CPU
/// time on 2 cores, measured with `perf`). This keeps blocks up to 32 MiB in the heap and the
/// freed heap for reuse (up to 1 GiB), which makes a batch-16 forward pass about a quarter faster
/// at the price of keeping the peak working set. It changes process-wide settings, so the
/// library never calls it by itself: the `glassbox` binary does, and an embedding application
/// may. Elsewhere than glibc it does nothing and returns `false`.
///
/// It also grows the heap once by 512 MiB of address space (pages are only used when touched)
/// and asks the kernel to back it with transparent huge pages where the system allows them on
/// request (`/sys/kernel/mm/transparent_hugepage/enabled` set to `madvise`, as here, or
/// `always`): layers stream tensors of tens of megabytes, and with 4 KiB pages the TLB misses
/// made CPU forward passes vary by a third from one process to the next (EfficientNet-Lite0 at
/// batch 16 on 2 cores: 58 to 77 ms, and 55-57 ms with huge pages; `benches/classify.rs`). This
/// covers the calling thread's heap, the main thread's, where the binary classifies.
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; glibc serialises it internally.
        let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) };
        // SAFETY: as above.
        let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) };
        huge_heap();
        mmap == 1 && trim == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Address space the heap grows by once, to be backed by huge pages.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HUGE_HEAP: usize = 512 << 20;

/// Grows the heap by [`HUGE_HEAP`] (glibc keeps it: the trim threshold is above it) and marks
/// the heap for transparent huge pages; once per process. Whether the kernel grants them is
/// its own business, so the answer only says whether the request was made.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn huge_heap() -> bool {
    static DONE: OnceLock<bool> = OnceLock::new();
    *DONE.get_or_init(|| {
        // SAFETY: allocator calls only: with a top pad of HUGE_HEAP, a 16 MiB block (served
        // from the heap, under the mmap threshold) makes glibc extend the heap by that much
        // more; freeing it leaves the space in the heap's top chunk.
        unsafe {
            libc::mallopt(libc::M_TOP_PAD, HUGE_HEAP as libc::c_int);
            let block = libc::malloc(16 << 20);
            libc::free(block);
            libc::mallopt(libc::M_TOP_PAD, 128 << 10);
        }
        let Some((start, end)) = heap_range() else {
            return false;
        };
        let huge = 2 << 20;
        let (start, end) = (start.next_multiple_of(huge), end / huge * huge);
        // SAFETY: the range lies inside the heap's own mapping; MADV_HUGEPAGE changes how
        // pages are backed, never their contents.
        end > start
            && unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE)
            } == 0
    })
}

/// The heap's address range, from `/proc/self/maps`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_range() -> Option<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let range = maps
        .lines()
        .find(|l| l.ends_with("[heap]"))?
        .split_whitespace()
        .next()?;
    let (start, end) = range.split_once('-')?;
    Some((
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    ))
}

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceRequest {
    /// A hardware GPU when one exists, otherwise the CPU backend. A software adapter (Mesa's
    /// lavapipe/llvmpipe) is slower than the CPU backend, so `auto` does not pick it.
    #[default]
    Auto,
    /// Any wgpu adapter, software ones included; an error when there is none.
    Gpu,
    /// The flex CPU backend.
    Cpu,
}

impl std::str::FromStr for DeviceRequest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "gpu" => Ok(Self::Gpu),
            "cpu" => Ok(Self::Cpu),
            other => Err(Error::InvalidArgument(format!(
                "unknown device '{other}' (auto, gpu, cpu)"
            ))),
        }
    }
}

/// The kind of compute device in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// burn's flex CPU backend.
    Cpu,
    /// A wgpu adapter.
    Gpu {
        /// The adapter's name as the driver reports it.
        adapter: String,
        /// The graphics API (Vulkan, Metal, Dx12, ...).
        api: String,
        /// True for CPU-emulated adapters such as lavapipe.
        software: bool,
        /// Whether its shaders can compute in 16-bit floats (wgpu's `SHADER_F16`), which
        /// [`Precision::F16`](crate::model::Precision::F16) needs.
        f16: bool,
    },
}

/// A device ready to run models, with the limits that size batches for it.
#[derive(Debug, Clone)]
pub struct Compute {
    device: Device,
    backend: Backend,
    max_buffer_bytes: u64,
}

/// Memory a CPU chunk may use for its largest buffer: glibc's largest `mmap` threshold (32 MiB
/// on 64-bit, what [`tune_allocator`] sets). Chunks whose buffers stay below it reuse freed heap
/// memory instead of faulting in fresh pages for every layer: measured with
/// `glassbox profile` on 2 cores, per image, EfficientNet-Lite0 runs 6.8 ms in chunks of 2 to
/// 6 and 8.7 ms in chunks of 16; GoogLeNet (torchvision) 11.3 ms in chunks of 6 to 10 and
/// 13.3 ms in chunks of 16.
const CPU_BUFFER_BUDGET: u64 = 32 << 20;

impl Compute {
    /// The CPU backend.
    pub fn cpu() -> Self {
        Self {
            device: Device::flex(),
            backend: Backend::Cpu,
            max_buffer_bytes: CPU_BUFFER_BUDGET,
        }
    }

    /// Picks a device for `request`. The second value is a one-line notice for the user when
    /// `auto` fell back to the CPU (why), or `None`.
    pub fn select(request: DeviceRequest) -> Result<(Self, Option<String>)> {
        match request {
            DeviceRequest::Cpu => Ok((Self::cpu(), None)),
            DeviceRequest::Gpu => match gpu() {
                Ok(g) if cfg!(feature = "spirv") && g.is_software() => Err(Error::NoGpu(format!(
                    "{} is a software adapter, and this build compiles kernels to SPIR-V (cargo feature `spirv`), which crashes it; use a build without the feature",
                    g.adapter_name()
                ))),
                Ok(g) => Ok((g, None)),
                Err(why) => Err(Error::NoGpu(why)),
            },
            DeviceRequest::Auto => match gpu() {
                Ok(g) if !g.is_software() => Ok((g, None)),
                Ok(g) => Ok((
                    Self::cpu(),
                    Some(format!(
                        "only a software GPU adapter ({}) was found; using the CPU backend, which is faster (--device gpu forces the adapter)",
                        g.adapter_name()
                    )),
                )),
                // A CPU-only build runs on the CPU as it was built to, without a notice.
                Err(_) if !cfg!(feature = "gpu") => Ok((Self::cpu(), None)),
                Err(why) => Ok((
                    Self::cpu(),
                    Some(format!("no GPU adapter ({why}); using the CPU backend")),
                )),
            },
        }
    }

    /// The burn device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// CPU or which GPU.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Whether this is a wgpu adapter.
    pub fn is_gpu(&self) -> bool {
        matches!(self.backend, Backend::Gpu { .. })
    }

    /// Whether models can run here in 16-bit floats: a GPU whose shaders support them.
    pub fn supports_f16(&self) -> bool {
        matches!(self.backend, Backend::Gpu { f16: true, .. })
    }

    fn is_software(&self) -> bool {
        matches!(self.backend, Backend::Gpu { software: true, .. })
    }

    fn adapter_name(&self) -> &str {
        match &self.backend {
            Backend::Gpu { adapter, .. } => adapter,
            Backend::Cpu => "cpu",
        }
    }

    /// The largest single buffer this device accepts (the adapter's storage-binding limit on a
    /// GPU, a fixed budget on the CPU).
    pub fn max_buffer_bytes(&self) -> u64 {
        self.max_buffer_bytes
    }

    /// The same device with a different buffer limit (for embedders that know their budget
    /// better, and for tests of chunk sizing).
    pub fn with_buffer_limit(mut self, bytes: u64) -> Self {
        self.max_buffer_bytes = bytes.max(1);
        self
    }

    /// How many samples of a model whose largest per-sample buffer has `elems_per_sample` f32
    /// values fit in one chunk on this device.
    pub fn chunk_for(&self, elems_per_sample: u64) -> usize {
        self.chunk_for_values(elems_per_sample, 4)
    }

    /// As [`Compute::chunk_for`], for values of `bytes_per_value` bytes (2 for f16).
    pub fn chunk_for_values(&self, elems_per_sample: u64, bytes_per_value: u64) -> usize {
        let per_sample = elems_per_sample.max(1) * bytes_per_value.max(1);
        // Leave a quarter of the limit for the allocator's own rounding and padding.
        let fit = (self.max_buffer_bytes / 4 * 3 / per_sample).max(1);
        // On the CPU the budget decides (see CPU_BUFFER_BUDGET); GPUs want large chunks.
        let cap = if self.is_gpu() { 256 } else { 16 };
        fit.min(cap) as usize
    }

    /// Waits for queued work (for timing).
    pub fn sync(&self) -> Result<()> {
        self.device.sync().map_err(|e| Error::Device {
            device: self.to_string(),
            reason: format!("{e:?}"),
        })
    }
}

impl fmt::Display for Compute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Backend::Cpu => write!(f, "cpu (flex)"),
            Backend::Gpu {
                adapter,
                api,
                software,
                ..
            } => {
                write!(
                    f,
                    "gpu: {adapter} ({api}{})",
                    if *software { ", software" } else { "" }
                )
            }
        }
    }
}

/// The name of the process's GPU adapter, once it has been started.
#[cfg(feature = "gpu")]
pub(crate) fn gpu_adapter() -> Option<String> {
    Some(GPU.get()?.as_ref().ok()?.adapter_name().to_string())
}

/// The process-wide wgpu device, or why there is none, once [`gpu`] has asked for it.
static GPU: OnceLock<std::result::Result<Compute, String>> = OnceLock::new();

/// The largest buffer of the process's GPU, once it has been started (by [`Compute::select`]).
pub(crate) fn gpu_buffer_limit() -> Option<u64> {
    Some(GPU.get()?.as_ref().ok()?.max_buffer_bytes)
}

/// Why a build without the `gpu` cargo feature has no GPU.
#[cfg(not(feature = "gpu"))]
const NO_GPU_BUILD: &str = "this glassbox was built without GPU support (cargo feature `gpu`); rebuild with default features";

/// A build without the `gpu` cargo feature has no GPU.
#[cfg(not(feature = "gpu"))]
fn gpu() -> std::result::Result<Compute, String> {
    Err(NO_GPU_BUILD.to_string())
}

/// The process-wide wgpu device, initialised on first use.
#[cfg(feature = "gpu")]
fn gpu() -> std::result::Result<Compute, String> {
    GPU.get_or_init(|| {
        use std::panic::{AssertUnwindSafe, catch_unwind};
        // A broken driver may panic inside wgpu rather than return an error; treat both alike.
        let init = catch_unwind(AssertUnwindSafe(|| {
            Device::wgpu_options().init_with_setup()
        }));
        match init {
            Ok(Ok((device, setup))) => {
                let info = setup.adapter.get_info();
                let limits = setup.device.limits();
                let max = limits
                    .max_storage_buffer_binding_size
                    .min(limits.max_buffer_size);
                use burn::tensor::wgpu::wgpu::{DeviceType, Features};
                let software = info.device_type == DeviceType::Cpu;
                let f16 = setup.device.features().contains(Features::SHADER_F16);
                Ok(Compute {
                    device,
                    backend: Backend::Gpu {
                        adapter: info.name,
                        api: format!("{:?}", info.backend),
                        software,
                        f16,
                    },
                    max_buffer_bytes: max,
                })
            }
            Ok(Err(e)) => Err(one_line(&e.to_string())),
            Err(_) => Err("the wgpu runtime panicked while initialising".to_string()),
        }
    })
    .clone()
}

#[cfg(feature = "gpu")]
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
