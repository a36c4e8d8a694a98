//! Any bytes as a CSV file, read to the end by the file source (header,
//! inference, quoted records over lines, the record-by-record fallback):
//! batches and dead letters, never a panic.
#![no_main]

use iotql_connectors::file::{Input, csv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut source) = csv::open_source("f", &Input::Memory(data.into()), None, 3, None) else {
        return;
    };
    while let Ok(Some(_)) = source.next_batch() {}
});
