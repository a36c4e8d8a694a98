//! Any bytes as broker messages (split at 0xFF bytes), decoded as JSON
//! (columns learnt from the messages) and as CSV (a declared schema), as
//! the Kafka and MQTT sources decode them: never a panic.
#![no_main]

use std::sync::Arc;

use iotql_connectors::message::{DecoderConfig, MessageDecoder, MessageFormat, Received};
use iotql_engine::arrow::datatypes::{DataType, Field, Schema};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let messages: Vec<Received> = data
        .split(|&b| b == 0xFF)
        .enumerate()
        .map(|(i, payload)| Received {
            payload: payload.to_vec(),
            position: i as u64,
            arrival: 1_700_000_000_000_000 + i as i64,
            topic: Some(Arc::from("t")),
            partition: Some(i as u64 % 3),
        })
        .collect();
    let csv_schema = Arc::new(Schema::new(vec![
        Field::new("device", DataType::Utf8, true),
        Field::new("temp", DataType::Float64, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("n", DataType::Int64, true),
    ]));
    for (format, schema) in [
        (MessageFormat::Json, None),
        (MessageFormat::Csv, Some(csv_schema)),
    ] {
        let config = DecoderConfig {
            input: "m",
            format,
            schema,
            columns: None,
            max_bytes: 4096,
            topic_column: Some("topic".into()),
            partitioned: true,
            describe: Arc::new(|p| format!("offset {p}")),
        };
        if let Ok(mut decoder) = MessageDecoder::new(config, &messages) {
            let _ = decoder.decode(&messages);
        }
    }
});
