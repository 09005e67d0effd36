//! What glassbox's CubeCL kernels share: burn tensors in and out through burn's fusion stream,
//! and the first-launch check that hands a kernel variant the adapter cannot run to burn.

use std::sync::Mutex;

use burn::tensor::{DType, Tensor};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{Cube, CubeBackend};
use burn_fusion::NoOp;
use burn_fusion::stream::StreamId;
use burn_ir::{BackendIr, InitOperationIr, OperationIr};
use cubecl::ir::{ElemType, FloatKind};
use cubecl::prelude::*;

/// A 4-D tensor's strides, one kernel argument: along the batch (`n`), the channels (`c`), the
/// rows (`h`) and the columns (`w`).
#[derive(CubeLaunch, CubeType)]
pub(crate) struct Strides {
    pub n: u32,
    pub c: u32,
    pub h: u32,
    pub w: u32,
}

/// `t`'s strides as a kernel argument.
pub(crate) fn strides(t: &CubeTensor) -> StridesLaunch {
    let s = t.meta.strides();
    let u = |k: usize| s.get(k).map_or(0, |&v| v as u32);
    StridesLaunch::new(u(0), u(1), u(2), u(3))
}

/// Kernel variants (each kernel's comptime parameters and dtype, as text) that compiled and
/// launched on this process's adapter, and those that did not, which burn's kernels run instead.
static VARIANTS: Mutex<(Vec<String>, Vec<String>)> = Mutex::new((Vec::new(), Vec::new()));

/// One-line notices of kernel variants that failed, for the application to show once each.
static NOTICES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The notices of kernel variants that failed to compile or launch since the last call: each
/// names the kernel, the adapter and the layer, and says burn's kernel ran it instead (nothing
/// is lost). The `glassbox` tool prints them as they come.
pub fn take_notices() -> Vec<String> {
    std::mem::take(&mut *NOTICES.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs `launch` (which allocates the output, launches the kernel writing it and returns it)
/// for kernel `variant`, or `None` where burn's kernel should run instead.
///
/// A variant's first launch compiles it, and a compile or launch failure shows at once (the
/// device need not finish), so the first launch is checked; later launches of a variant that
/// worked are not. Inputs that already carry a failure are not the kernel's fault: `None`
/// without blaming it, so that burn's kernel meets and reports that failure. A failed check is
/// tried once more before the variant is blamed (a failure of some other work on the device
/// can show in a check), then remembered, so the variant is not tried again, and leaves one
/// notice naming `what` failed on the adapter for `layer`.
pub(crate) fn launch_checked(
    variant: String,
    client: &Client,
    inputs: &[&CubeTensor],
    launch: impl Fn() -> CubeTensor,
    what: &str,
    layer: impl FnOnce() -> String,
) -> Option<CubeTensor> {
    {
        let variants = VARIANTS.lock().unwrap_or_else(|e| e.into_inner());
        if variants.1.contains(&variant) {
            return None;
        }
        if variants.0.contains(&variant) {
            drop(variants);
            return Some(launch());
        }
    }
    if client.check(inputs.iter().map(|t| &t.handle)).is_err() {
        return None;
    }
    let mut failure = None;
    for _ in 0..2 {
        let out = launch();
        match client.check([&out.handle]) {
            Ok(()) => {
                let mut variants = VARIANTS.lock().unwrap_or_else(|e| e.into_inner());
                variants.0.push(variant);
                return Some(out);
            }
            Err(e) => failure = Some(e),
        }
    }
    VARIANTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .1
        .push(variant);
    let adapter = crate::device::gpu_adapter().unwrap_or_else(|| "the GPU".into());
    // The innermost cause, on one line, without the report's backtrace lines.
    let report = failure.map_or_else(String::new, |e| e.to_string());
    let report = report.split_whitespace().collect::<Vec<_>>().join(" ");
    let cause = report.rsplit("Caused by: ").next().unwrap_or(&report);
    let why = cause.split(" Backtrace").next().unwrap_or(cause).trim();
    NOTICES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!(
            "{what} failed on {adapter} for {} ({why}); burn's kernel runs it instead",
            layer()
        ));
    None
}

/// A float tensor's CubeCL tensor (waiting for the fusion stream that produces it), or `None`
/// off a CubeCL device.
pub(crate) fn cube_tensor<const D: usize>(x: &Tensor<D>) -> Option<CubeTensor> {
    let fused = x.clone().try_into_primitive::<Cube>().ok()?;
    let client = fused.client.clone();
    Some(client.resolve_tensor_float::<CubeBackend>(fused))
}

/// The kernels' element type for a burn float type they handle (f32 and f16).
pub(crate) fn elem_type(dtype: DType) -> Option<ElemType> {
    match dtype {
        DType::F32 => Some(ElemType::Float(FloatKind::F32)),
        DType::F16 => Some(ElemType::Float(FloatKind::F16)),
        _ => None,
    }
}

/// A kernel's output as a burn tensor on `like`'s fusion stream.
pub(crate) fn into_tensor(out: CubeTensor, like: &Tensor<4>) -> Option<Tensor<4>> {
    let fusion_client = like
        .clone()
        .try_into_primitive::<Cube>()
        .ok()?
        .client
        .clone();
    let (shape, dtype) = (out.meta.shape().clone(), out.dtype);
    let handle = <CubeBackend as BackendIr>::float_tensor_handle(out);
    let desc = InitOperationIr::create(shape, dtype, || {
        fusion_client.register_tensor_handle(handle)
    });
    let fused = fusion_client
        .register(
            StreamId::current(),
            OperationIr::Init(desc),
            NoOp::<CubeBackend>::new(),
        )
        .into_iter()
        .next()?;
    Some(Tensor::from_primitive::<Cube>(fused))
}
