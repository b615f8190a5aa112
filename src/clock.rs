//! Wall-clock time as the API shows it.

use std::time::{SystemTime, UNIX_EPOCH};

use time::{OffsetDateTime, UtcOffset, macros::format_description};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

/// The zone API times are shown in (`YYYY-MM-DD HH:MM:SS`); Tencent's API uses UTC+08:00.
#[derive(Clone, Copy, Debug)]
pub struct Zone(UtcOffset);

impl Zone {
    pub const DEFAULT_HOURS: i8 = 8;

    pub fn from_hours(hours: i8) -> Option<Zone> {
        UtcOffset::from_hms(hours, 0, 0).ok().map(Zone)
    }

    /// Formats Unix milliseconds as `YYYY-MM-DD HH:MM:SS` in this zone.
    pub fn format(self, ms: i64) -> String {
        let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .to_offset(self.0)
            .format(&format)
            .unwrap_or_default()
    }
}

impl Default for Zone {
    fn default() -> Self {
        Zone::from_hours(Zone::DEFAULT_HOURS).expect("UTC+08:00 is a valid offset")
    }
}

/// The UTC date (`YYYY-MM-DD`) of a Unix timestamp in seconds, as TC3 credential scopes use it.
pub fn utc_date(unix_seconds: i64) -> String {
    let format = format_description!("[year]-[month]-[day]");
    OffsetDateTime::from_unix_timestamp(unix_seconds)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(&format)
        .unwrap_or_default()
}
