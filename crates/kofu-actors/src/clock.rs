//! Wall-clock formatting for issue dates and audit records, kept in one place so every
//! timestamp kofu writes has the same RFC 3339 UTC shape.

use kofu_core::records::Date;
use time::OffsetDateTime;
use time::macros::format_description;

/// `2026-11-21T09:00:00Z`
pub fn now_rfc3339() -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

pub fn today() -> Date {
    let now = OffsetDateTime::now_utc();
    Date {
        year: now.year().clamp(0, i32::from(u16::MAX)) as u16,
        month: u8::from(now.month()),
        day: now.day(),
    }
}

/// Unix milliseconds: session and job start times travel in snapshots between nodes,
/// so they cannot be monotonic instants.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}
