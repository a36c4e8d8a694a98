//! The ASA parser and checker on any text: an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = iotql_dsl::parse_and_check(text, &iotql_dsl::check::CheckOptions::default());
});
