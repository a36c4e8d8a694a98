//! Event time: a newtype over microseconds since the Unix epoch, UTC, as
//! stored in Arrow `Timestamp(Microsecond, "UTC")` columns.

use std::fmt;

use datafusion::arrow::datatypes::{DataType, TimeUnit};

/// The name of the hidden column that carries each row's event time
/// (`System.Timestamp()`) through the dataflow. Sinks drop it.
pub const EVENT_TIME: &str = "__iotql_event_time";

/// The name of the hidden column that carries each source row's position
/// (line number) from a scan to the TIMESTAMP BY stage, for dead letters.
pub const POSITION: &str = "__iotql_position";

/// The name of the hidden column in which a source that knows when each
/// event arrived (a broker's message timestamp) hands it to TIMESTAMP BY.
pub const ARRIVAL_TIME: &str = "__iotql_arrival_time";

/// The name of the hidden column in which a partitioned source (Kafka)
/// hands each event's partition to TIMESTAMP BY, which keeps a clock per
/// partition: the input's watermark is the minimum over them, so that a
/// partition read ahead of the others does not make theirs late.
pub const PARTITION: &str = "__iotql_partition";

/// The name of the hidden column in which a source hands each event's
/// original bytes (a file's line, a broker's message) to TIMESTAMP BY, so
/// that an event it refuses is kept as it was read. TIMESTAMP BY drops it.
pub const RAW: &str = "__iotql_raw";

/// The name of the hidden column that carries each row's substream (a hash
/// of its `TIMESTAMP BY ... OVER` key) from the TIMESTAMP BY stage to the
/// windows, which keep one clock per substream.
pub const SUBSTREAM: &str = "__iotql_substream";

/// The Arrow type of event-time columns.
pub fn event_time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A point in event time, in microseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventTime(pub i64);

impl EventTime {
    /// Before every event: the watermark of a stream that has seen nothing.
    pub const MIN: EventTime = EventTime(i64::MIN);
    /// After every event: the watermark at the end of a bounded input.
    pub const MAX: EventTime = EventTime(i64::MAX);

    pub fn micros(self) -> i64 {
        self.0
    }

    /// `self - d`, saturating at the ends of time.
    pub fn minus(self, d: std::time::Duration) -> EventTime {
        EventTime(self.0.saturating_sub(micros_of(d)))
    }
}

/// A duration in whole microseconds (saturating).
pub fn micros_of(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EventTime::MIN => f.write_str("-inf"),
            EventTime::MAX => f.write_str("+inf"),
            EventTime(us) => match chrono::DateTime::from_timestamp_micros(us) {
                Some(t) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
                None => write!(f, "{us}us"),
            },
        }
    }
}

/// Parses durations as the CLI and job options write them: `500ms`, `5s`,
/// `10m`, `2h`, `1d`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (write e.g. 500ms, 5s, 10m, 2h, 1d)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{text}` (use ms, s, m, h, d)"
            ));
        }
    };
    if !(0.0..=1e12).contains(&seconds) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_parse_in_the_units_users_write() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn event_times_print_as_rfc3339_utc() {
        assert_eq!(
            EventTime(1_767_225_600_000_000).to_string(),
            "2026-01-01T00:00:00.000Z"
        );
        assert_eq!(EventTime::MAX.to_string(), "+inf");
    }
}
