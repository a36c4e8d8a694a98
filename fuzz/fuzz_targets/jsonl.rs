//! Any bytes as a JSON-lines file, read to the end by the file source
//! (schema inference, chunked decoding, the record-by-record fallback, the
//! checks of bad events): batches and dead letters, never a panic.
#![no_main]

use iotql_connectors::file::{Input, jsonl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small batches, so that short inputs still span several chunks.
    let Ok(mut source) = jsonl::open_source("f", &Input::Memory(data.into()), None, 3, None) else {
        return;
    };
    while let Ok(Some(_)) = source.next_batch() {}
});
