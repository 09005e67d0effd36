//! Results do not depend on how a batch is chunked.

use glassbox::{Classifier, Compute, ModelInfo};

use crate::parity::parity_inputs;

#[test]
fn a_batch_of_37_split_any_way_equals_the_unsplit_result() {
    let info = ModelInfo::default_model();
    let mut classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    // 37 distinct inputs: the two parity patterns, shifted by a per-row offset.
    let base = parity_inputs(&info, 2);
    let per = base.len() / 2;
    let inputs: Vec<f32> = (0..37)
        .flat_map(|r| {
            base[(r % 2) * per..(r % 2 + 1) * per]
                .iter()
                .map(move |v| v + r as f32 * 0.01)
        })
        .collect();

    classifier.set_chunk_size(37);
    let whole = classifier.classify(&inputs).expect("whole");
    assert_eq!(whole.rows(), 37);
    for chunk in [1, 5, 16, 36] {
        classifier.set_chunk_size(chunk);
        let split = classifier.classify(&inputs).expect("split");
        for row in 0..37 {
            let worst = whole
                .row(row)
                .iter()
                .zip(split.row(row))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst <= 1e-6,
                "chunk {chunk}, row {row}: differs by {worst}"
            );
        }
    }
    // The rows really are different inputs.
    assert_ne!(whole.row(0), whole.row(2));
}

#[test]
fn chunk_size_comes_from_device_limits() {
    let info = ModelInfo::find("googlenet").expect("googlenet");
    // lavapipe refuses buffers over 128 MiB: GoogLeNet at 64 failed there, 16 worked.
    let lavapipe = Compute::cpu().with_buffer_limit(128 << 20);
    let chunk = lavapipe.chunk_for(info.max_elems_per_sample());
    assert!(
        (1..64).contains(&chunk),
        "a 128 MiB device gets GoogLeNet chunks of {chunk}"
    );
    assert!(chunk as u64 * info.max_elems_per_sample() * 4 <= 128 << 20);
    // A device with 8x the limit gets larger chunks, a tiny one still gets 1.
    let big = Compute::cpu()
        .with_buffer_limit(1 << 30)
        .chunk_for(info.max_elems_per_sample());
    assert!(big > chunk, "1 GiB: {big}, 128 MiB: {chunk}");
    assert_eq!(
        Compute::cpu()
            .with_buffer_limit(1024)
            .chunk_for(info.max_elems_per_sample()),
        1
    );
}
