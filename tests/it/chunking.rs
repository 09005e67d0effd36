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
            // Equal to float rounding: burn's CPU matmul blocks the batch dimension, so the
            // classifier head rounds a row differently in batches of other sizes (measured up
            // to 1.3e-6 on a 1280 -> 1000 linear layer, batch 37 against batch 1).
            assert!(
                worst <= 1e-5,
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

/// The CPU's own chunks keep each model's largest buffer within glibc's 32 MiB `mmap`
/// threshold, so that freed buffers are reused instead of faulted in again for every layer.
#[test]
fn cpu_chunks_fit_the_allocators_heap() {
    for info in ModelInfo::all() {
        let chunk = Compute::cpu().chunk_for(info.max_elems_per_sample());
        let bytes = chunk as u64 * info.max_elems_per_sample() * 4;
        assert!(
            chunk >= 1 && (bytes <= 32 << 20 || chunk == 1),
            "{}: chunks of {chunk} need {} MiB buffers",
            info.id(),
            bytes >> 20
        );
    }
    // Lite0's widest layer (96 x 112 x 112 floats) still gets several images per chunk.
    let lite0 = ModelInfo::find("efficientnet-lite0").expect("lite0");
    assert!(Compute::cpu().chunk_for(lite0.max_elems_per_sample()) >= 4);
}

/// A chunk the device refuses (here: the tensor for more than 4 rows cannot be built, as an
/// allocation failure panics inside burn) is retried in halves; the result equals an unsplit run.
/// A device that refuses even one row ends in a clear error, after trying 13, 7, 4, 2 and 1.
#[test]
fn a_refused_chunk_is_retried_in_halves_down_to_one() {
    use burn::tensor::{Tensor, TensorData};
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let compute = Compute::cpu();
    let mut classifier = Classifier::load(info, &compute).expect("load");
    let per = 3 * 224 * 224;
    let inputs: Vec<f32> = (0..13 * per).map(|i| ((i / per) as f32) * 0.01).collect();
    let expected = classifier.classify(&inputs).expect("reference");

    classifier.set_chunk_size(16);
    let mut attempts = Vec::new();
    let make = |range: std::ops::Range<usize>, limit: usize, attempts: &mut Vec<usize>| {
        attempts.push(range.len());
        assert!(range.len() <= limit, "out of device memory (simulated)");
        let data = inputs[range.start * per..range.end * per].to_vec();
        Tensor::<4>::from_data(
            TensorData::new(data, [range.len(), 3, 224, 224]),
            compute.device(),
        )
    };
    let halved = classifier
        .classify_with(13, |r| make(r, 4, &mut attempts))
        .expect("halved");
    assert_eq!(halved.rows(), 13);
    for r in 0..13 {
        for (a, b) in halved.row(r).iter().zip(expected.row(r)) {
            assert!((a - b).abs() <= 1e-6, "row {r}: {a} vs {b}");
        }
    }
    assert_eq!(
        attempts,
        [13, 7, 4, 4, 4, 1],
        "13 refused, 7 refused, 4 fits"
    );
    assert_eq!(classifier.refused_chunks(), 2);
    assert_eq!(
        classifier.chunk_size(),
        4,
        "later batches start from what fitted"
    );

    attempts.clear();
    classifier.set_chunk_size(16);
    let err = classifier
        .classify_with(13, |r| make(r, 0, &mut attempts))
        .expect_err("nothing fits");
    assert_eq!(attempts, [13, 7, 4, 2, 1]);
    let message = err.to_string();
    assert!(
        message.contains("device failure") && message.contains("out of device memory"),
        "{message}"
    );
}

/// The progress callback sees every batch start (0 rows done) and every chunk: the rows done
/// grow by the chunk size and end at the batch's size; a second batch starts again from 0.
#[test]
fn progress_is_reported_after_every_chunk() {
    use std::sync::{Arc, Mutex};
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let mut classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    classifier.set_chunk_size(4);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    classifier.set_progress(move |done, total| log.lock().expect("log").push((done, total)));
    let pre = info.preprocess();
    let one = glassbox::view::to_input(&crate::common::pattern(1, pre.width, pre.height), pre);
    let inputs: Vec<f32> = (0..10).flat_map(|_| one.iter().copied()).collect();
    classifier.classify(&inputs).expect("classify");
    classifier
        .classify(&inputs[..3 * one.len()])
        .expect("classify");
    assert_eq!(
        *seen.lock().expect("log"),
        [(0, 10), (4, 10), (8, 10), (10, 10), (0, 3), (3, 3)]
    );
}
