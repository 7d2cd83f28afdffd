//! The fixture timeline: UTC calendar arithmetic and timestamp formatting.
//!
//! Day 0 is 2026-11-18; with the default three days of Jira history the newest day of a
//! fresh generation is day 2, 2026-11-20. All times are UTC; nothing reads the system clock.

use std::time::{Duration, SystemTime};

pub const DAY: i64 = 86_400;
pub const HOUR: i64 = 3_600;

/// Days from 1970-01-01 to the given civil date (Howard Hinnant's algorithm).
pub const fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date `(year, month, day)` of a day count since 1970-01-01.
pub const fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Unix seconds of day 0, 00:00 UTC.
pub const DAY0: i64 = days_from_civil(2026, 11, 18) * DAY;

/// Unix seconds at 00:00 UTC of timeline day `day`.
pub fn day_start(day: u32) -> i64 {
    DAY0 + day as i64 * DAY
}

/// A point in time with nanoseconds, as stored in file mtimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Stamp {
    pub fn new(secs: i64, nanos: u32) -> Self {
        Stamp { secs, nanos }
    }

    pub fn system_time(self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(self.secs as u64, self.nanos)
    }
}

/// Broken-down UTC time.
pub struct Civil {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
}

pub fn civil(secs: i64) -> Civil {
    let days = secs.div_euclid(DAY);
    let rem = secs.rem_euclid(DAY);
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: rem / HOUR,
        minute: rem % HOUR / 60,
        second: rem % 60,
    }
}

/// Appends `n` zero-padded to `width` digits.
pub fn push_num(buf: &mut Vec<u8>, n: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut i = tmp.len();
    let mut v = n;
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let digits = tmp.len() - i;
    buf.extend(std::iter::repeat_n(b'0', width.saturating_sub(digits)));
    buf.extend_from_slice(&tmp[i..]);
}

/// Appends `YYYY-MM-DD`.
pub fn push_date(buf: &mut Vec<u8>, secs: i64) {
    let c = civil(secs);
    push_num(buf, c.year as u64, 4);
    buf.push(b'-');
    push_num(buf, c.month as u64, 2);
    buf.push(b'-');
    push_num(buf, c.day as u64, 2);
}

/// Appends `YYYY-MM-DD HH:MM:SS.mmm`, the form Jira and PostgreSQL print.
pub fn push_datetime_ms(buf: &mut Vec<u8>, secs: i64, millis: u32) {
    let c = civil(secs);
    push_date(buf, secs);
    buf.push(b' ');
    push_num(buf, c.hour as u64, 2);
    buf.push(b':');
    push_num(buf, c.minute as u64, 2);
    buf.push(b':');
    push_num(buf, c.second as u64, 2);
    buf.push(b'.');
    push_num(buf, millis as u64, 3);
}

/// `YYYY-MM-DD HH:MM:SS` as a string.
pub fn datetime(secs: i64) -> String {
    let mut b = Vec::new();
    push_datetime_ms(&mut b, secs, 0);
    b.truncate(b.len() - 4);
    String::from_utf8(b).expect("ascii")
}

/// `YYYY-MM-DD` as a string.
pub fn date(secs: i64) -> String {
    let mut b = Vec::new();
    push_date(&mut b, secs);
    String::from_utf8(b).expect("ascii")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_zero_is_2026_11_18() {
        assert_eq!(date(DAY0), "2026-11-18");
        assert_eq!(date(day_start(2)), "2026-11-20");
        assert_eq!(
            datetime(day_start(44) + 14 * HOUR + 61),
            "2027-01-01 14:01:01"
        );
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}
