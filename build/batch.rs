//! The batch rewrite (any batch instead of a graph fixed to 1) and the checks of the graph's image
//! input and class output against its descriptor.

use std::collections::HashSet;

use onnx_ir::ModelProto;

use crate::descriptor::Descriptor;
use crate::tensors::{int64_values, set_int64_values};

/// Makes dim 0 of the input and output symbolic, turns `[1, K]` reshapes of activations into
/// `[-1, K]`, drops initializers listed as graph inputs (old IR), and checks the I/O shapes.
/// Returns the number of classes.
pub(crate) fn batch_and_check(proto: &mut ModelProto, desc: &Descriptor) -> Result<usize, String> {
    let graph = proto.graph.as_mut().ok_or("no graph")?;
    let init_names: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    graph.input.retain(|i| !init_names.contains(&i.name));
    let const_outputs: HashSet<String> = graph
        .node
        .iter()
        .filter(|n| matches!(n.op_type.as_str(), "Constant" | "ConstantOfShape"))
        .flat_map(|n| n.output.iter().cloned())
        .collect();
    if graph.input.len() != 1 {
        let names: Vec<_> = graph.input.iter().map(|i| i.name.as_str()).collect();
        return Err(format!(
            "expected one image input, found {} ({names:?})",
            names.len()
        ));
    }
    if graph.output.len() != 1 {
        return Err(format!("expected one output, found {}", graph.output.len()));
    }

    // Reshapes whose target is [1, K] on an activation become [-1, K].
    let reshape_shapes: Vec<String> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Reshape" && n.input.len() == 2)
        .filter(|n| !init_names.contains(&n.input[0]) && !const_outputs.contains(&n.input[0]))
        .map(|n| n.input[1].clone())
        .collect();
    for t in graph
        .initializer
        .iter_mut()
        .filter(|t| reshape_shapes.contains(&t.name))
    {
        let v = int64_values(t);
        if v.len() == 2 && v[0] == 1 {
            set_int64_values(t, &[-1, v[1]]);
        }
    }

    let dims = |vi: &onnx_ir::ValueInfoProto| -> Vec<Option<i64>> {
        vi.type_
            .tensor_type()
            .shape
            .dim
            .iter()
            .map(|d| {
                if d.has_dim_value() {
                    Some(d.dim_value())
                } else {
                    None
                }
            })
            .collect()
    };
    let input = &mut graph.input[0];
    let in_dims = dims(input);
    let [w, h] = desc.preprocess.size;
    if in_dims.len() != 4 || in_dims[1] != Some(3) {
        return Err(format!(
            "input '{}' must be [N, 3, H, W], found {}",
            input.name,
            show_dims(&in_dims)
        ));
    }
    if in_dims[2].is_some_and(|d| d != h as i64) || in_dims[3].is_some_and(|d| d != w as i64) {
        return Err(format!(
            "input '{}' is {} but the descriptor says {w}x{h}",
            input.name,
            show_dims(&in_dims)
        ));
    }
    let tensor = input.type_.mut_or_insert_default().mut_tensor_type();
    let shape = tensor.shape.mut_or_insert_default();
    shape.dim[0].set_dim_param("N".into());
    for (i, size) in [(2, h), (3, w)] {
        shape.dim[i].set_dim_value(size as i64);
    }

    let output = &mut graph.output[0];
    let out_dims = dims(output);
    if out_dims.len() != 2 {
        return Err(format!(
            "output '{}' must be [N, classes], found {}",
            output.name,
            show_dims(&out_dims)
        ));
    }
    let classes =
        out_dims[1].ok_or_else(|| format!("output '{}' has no static class count", output.name))?;
    if classes < 2 {
        return Err(format!("output '{}' has {classes} classes", output.name));
    }
    let tensor = output.type_.mut_or_insert_default().mut_tensor_type();
    tensor.shape.mut_or_insert_default().dim[0].set_dim_param("N".into());
    graph.value_info.clear();
    Ok(classes as usize)
}

fn show_dims(dims: &[Option<i64>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}
