//! Synthetic weights for a weight-free skeleton: deterministic values per tensor name, scaled by
//! the role of the operator that reads them.

use std::collections::HashMap;

use onnx_ir::{ModelProto, TensorProto};

use crate::tensors::{drop_unread_initializers, int64_values};

/// Replaces every `ConstantOfShape` whose shape is an initializer by an initializer of
/// deterministic synthetic values, scaled by the consuming operator's role so that the network's
/// activations stay in a sane range (He-uniform weights, small biases, BatchNorm near identity).
pub(crate) fn synthesise_weights(model_id: &str, proto: &mut ModelProto) -> Result<(), String> {
    let graph = proto.graph.as_mut().ok_or("no graph")?;
    let shapes: HashMap<String, Vec<i64>> = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == 7) // INT64
        .map(|t| (t.name.clone(), int64_values(t)))
        .collect();
    // Who consumes each value, and at which input position.
    let mut consumers: HashMap<String, (String, usize)> = HashMap::new();
    for node in &graph.node {
        for (i, input) in node.input.iter().enumerate() {
            consumers
                .entry(input.clone())
                .or_insert((node.op_type.clone(), i));
        }
    }
    let mut new_inits = Vec::new();
    let mut kept = Vec::new();
    for node in graph.node.drain(..) {
        let shape = (node.op_type == "ConstantOfShape")
            .then(|| node.input.first().and_then(|s| shapes.get(s)))
            .flatten();
        match (shape, node.output.first()) {
            (Some(dims), Some(name)) => {
                let role = consumers.get(name).cloned().unwrap_or_default();
                new_inits.push(synthetic_tensor(model_id, name, dims, &role)?);
            }
            _ => kept.push(node),
        }
    }
    graph.node = kept;
    graph.initializer.extend(new_inits);
    drop_unread_initializers(graph);
    Ok(())
}

fn synthetic_tensor(
    model_id: &str,
    name: &str,
    dims: &[i64],
    role: &(String, usize),
) -> Result<TensorProto, String> {
    if dims.iter().any(|d| *d < 0) {
        return Err(format!("weight {name} has a negative dimension {dims:?}"));
    }
    let len: usize = dims.iter().map(|d| *d as usize).product();
    // Leading unit dims are layout (the zoo stores a Gemm weight as [1, 1, out, in]).
    let core: Vec<usize> = dims
        .iter()
        .map(|d| *d as usize)
        .skip_while(|d| *d == 1)
        .collect();
    let fan_in: usize = core.iter().skip(1).product::<usize>().max(1);
    let (lo, hi) = match (role.0.as_str(), role.1) {
        ("BatchNormalization", 1) => (0.8, 1.2),  // scale
        ("BatchNormalization", 4) => (0.8, 1.2),  // variance
        ("BatchNormalization", _) => (-0.1, 0.1), // bias, mean
        (_, _) if core.len() >= 2 => {
            let a = (6.0 / fan_in as f64).sqrt();
            (-a, a)
        }
        _ => (-0.01, 0.01),
    };
    let mut rng = SplitMix64(fnv1a(&format!("{model_id}/{name}")));
    let mut raw = Vec::with_capacity(len * 4);
    for _ in 0..len {
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        raw.extend_from_slice(&((lo + (hi - lo) * u) as f32).to_le_bytes());
    }
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.dims = dims.to_vec();
    t.data_type = 1; // FLOAT
    t.raw_data = raw.into();
    Ok(t)
}

struct SplitMix64(u64);
impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
