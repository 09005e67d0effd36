//! Reading and writing the values of ONNX tensors (f32 and i64), and dropping initializers no node
//! reads: the helpers every graph rewrite shares.

use std::collections::HashSet;

use onnx_ir::TensorProto;

/// The values of an f32 tensor.
pub(crate) fn float_values(t: &TensorProto) -> Vec<f32> {
    if !t.float_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

/// Replaces an f32 tensor's values with `values`, stored as raw little-endian bytes.
pub(crate) fn set_float_values(t: &mut TensorProto, values: &[f32]) {
    t.float_data.clear();
    t.raw_data = values
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<u8>>()
        .into();
}

/// An f32 tensor named `name` of shape `dims` holding `values`.
pub(crate) fn float_tensor(name: String, dims: Vec<i64>, values: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name;
    t.dims = dims;
    t.data_type = 1;
    set_float_values(&mut t, values);
    t
}

/// The f32 values of initializer `name`, if it is one.
pub(crate) fn float_initializer(graph: &onnx_ir::GraphProto, name: &str) -> Option<Vec<f32>> {
    graph
        .initializer
        .iter()
        .find(|t| t.name == name && t.data_type == 1)
        .map(float_values)
}

pub(crate) fn int64_values(t: &TensorProto) -> Vec<i64> {
    if !t.int64_data.is_empty() {
        t.int64_data.clone()
    } else {
        t.raw_data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect()
    }
}

pub(crate) fn set_int64_values(t: &mut TensorProto, values: &[i64]) {
    if !t.int64_data.is_empty() {
        t.int64_data = values.to_vec();
    } else {
        t.raw_data = values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
            .into();
    }
}

/// Removes the initializers no node reads, and their entries among the graph inputs (old-IR
/// graphs list every initializer as an input too).
pub(crate) fn drop_unread_initializers(graph: &mut onnx_ir::GraphProto) {
    let read: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .collect();
    let dropped: HashSet<String> = graph
        .initializer
        .iter()
        .filter(|t| !read.contains(&t.name))
        .map(|t| t.name.clone())
        .collect();
    graph.initializer.retain(|t| !dropped.contains(&t.name));
    graph.input.retain(|i| !dropped.contains(&i.name));
}
