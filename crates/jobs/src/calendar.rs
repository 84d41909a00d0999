//! The two schedule languages of batch jobs, and when a schedule is due.
//!
//! - [`Cron`]: five fields (minute, hour, day of month, month, day of week) and an optional
//!   sixth, the year; lists, ranges, steps, month and day names, `?`, `L`, `L-n`, `nW`, `LW`,
//!   `nL` and `n#k`, and the `@hourly`... macros. Evaluated in an IANA time zone: a local time
//!   that a daylight-saving change skips runs when the clocks have moved on (once, however many
//!   skipped minutes matched), and a local time that happens twice runs at its first occurrence
//!   only.
//! - [`Iso8601`]: Chronos' repeating intervals, `R[n]/START/PERIOD`: START plus whole periods,
//!   `n + 1` runs in all (`R0` runs once), endless without `n`; an empty START is the time the
//!   schedule was given.
//!
//! All times are Unix milliseconds.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

/// The latest year a schedule is looked at: past it, a schedule has no next run.
const LAST_YEAR: i32 = 2199;

const MINUTE_MS: i64 = 60_000;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    Cron(String),
    #[error("{0}")]
    Iso8601(String),
    #[error("unknown time zone {0:?}: use an IANA name such as Europe/Berlin or UTC")]
    TimeZone(String),
}

/// A time zone by its IANA name.
pub fn time_zone(name: &str) -> Result<Tz, ScheduleError> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::TimeZone(name.to_string()))
}

// -------------------------------------------------------------------------------------------
// Cron
// -------------------------------------------------------------------------------------------

/// A parsed cron expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    /// Days of the month, bit n for day n.
    days: u32,
    months: u16,
    /// Days of the week, bit 0 for Sunday.
    weekdays: u8,
    /// `L` (0) and `L-n` (n): that many days before the month's last.
    last_day_minus: Vec<u32>,
    /// `nW`: the weekday nearest to day n, within the month.
    nearest_weekday: Vec<u32>,
    /// `LW`: the month's last weekday.
    last_weekday: bool,
    /// `d#k`: the k-th weekday d of the month.
    nth_weekday: Vec<(u32, u32)>,
    /// `dL`: the month's last weekday d.
    last_of_weekday: Vec<u32>,
    /// None: every year.
    years: Option<Vec<(i32, i32, i32)>>,
    day_restricted: bool,
    weekday_restricted: bool,
    text: String,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn cron_err(text: &str, why: impl std::fmt::Display) -> ScheduleError {
    ScheduleError::Cron(format!("cron {text:?}: {why}"))
}

/// One number of a field: digits, or a name of `names` (case-insensitive; the first name is
/// `first`).
fn number(item: &str, names: &[&str], first: u32) -> Option<u32> {
    if let Ok(n) = item.parse::<u32>() {
        return Some(n);
    }
    let upper = item.to_ascii_uppercase();
    names.iter().position(|n| *n == upper).map(|i| i as u32 + first)
}

/// The values one plain item (`*`, `n`, `a-b`, any of them `/step`) stands for, in `min..=max`.
fn plain_item(item: &str, min: u32, max: u32, names: &[&str], first: u32) -> Result<Vec<u32>, String> {
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => {
            let step = s.parse::<u32>().map_err(|_| format!("step {s:?} is not a number"))?;
            if step == 0 {
                return Err("a step of 0 never advances".into());
            }
            (r, step)
        }
        None => (item, 1),
    };
    let (lo, hi) = if range == "*" || range == "?" {
        (min, max)
    } else if let Some((a, b)) = range.split_once('-') {
        let a = number(a, names, first).ok_or_else(|| format!("{a:?} is not a value"))?;
        let b = number(b, names, first).ok_or_else(|| format!("{b:?} is not a value"))?;
        (a, b)
    } else {
        let a = number(range, names, first).ok_or_else(|| format!("{range:?} is not a value"))?;
        // `a/step` runs from a to the end of the field.
        (a, if item.contains('/') { max } else { a })
    };
    if lo < min || hi > max {
        return Err(format!("{item:?} is outside {min}-{max}"));
    }
    if lo > hi {
        return Err(format!("range {range:?} runs backwards"));
    }
    Ok((lo..=hi).step_by(step as usize).collect())
}

fn bits(values: &[u32]) -> u64 {
    values.iter().fold(0u64, |acc, v| acc | (1u64 << v))
}

impl Cron {
    /// Parses five fields, or six with the year last.
    pub fn parse(text: &str) -> Result<Cron, ScheduleError> {
        let trimmed = text.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            _ => trimmed.to_string(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 && fields.len() != 6 {
            return Err(cron_err(
                text,
                format!(
                    "has {} fields; it needs 5 (minute hour day-of-month month day-of-week) and may add a year",
                    fields.len()
                ),
            ));
        }
        let field =
            |i: usize, name: &str, min: u32, max: u32, names: &[&str], first: u32| -> Result<Vec<u32>, ScheduleError> {
                let mut out = Vec::new();
                for item in fields[i].split(',') {
                    out.extend(
                        plain_item(item, min, max, names, first).map_err(|e| cron_err(text, format!("{name}: {e}")))?,
                    );
                }
                Ok(out)
            };
        let minutes = bits(&field(0, "minute", 0, 59, &[], 0)?);
        let hours = bits(&field(1, "hour", 0, 23, &[], 0)?) as u32;
        let months = bits(&field(3, "month", 1, 12, &MONTHS, 1)?) as u16;

        let mut cron = Cron {
            minutes,
            hours,
            days: 0,
            months,
            weekdays: 0,
            last_day_minus: vec![],
            nearest_weekday: vec![],
            last_weekday: false,
            nth_weekday: vec![],
            last_of_weekday: vec![],
            years: None,
            day_restricted: !matches!(fields[2], "*" | "?"),
            weekday_restricted: !matches!(fields[4], "*" | "?"),
            text: trimmed.to_string(),
        };

        for item in fields[2].split(',') {
            let upper = item.to_ascii_uppercase();
            let bad = |why: &str| cron_err(text, format!("day of month: {item:?} {why}"));
            if upper == "L" {
                cron.last_day_minus.push(0);
            } else if upper == "LW" {
                cron.last_weekday = true;
            } else if let Some(n) = upper.strip_prefix("L-") {
                let n = n.parse::<u32>().map_err(|_| bad("needs a number of days after L-"))?;
                if n > 30 {
                    return Err(bad("goes back more than 30 days"));
                }
                cron.last_day_minus.push(n);
            } else if let Some(n) = upper.strip_suffix('W') {
                let n = n.parse::<u32>().map_err(|_| bad("needs a day before W"))?;
                if !(1..=31).contains(&n) {
                    return Err(bad("is outside 1-31"));
                }
                cron.nearest_weekday.push(n);
            } else {
                let v = plain_item(item, 1, 31, &[], 1).map_err(|e| cron_err(text, format!("day of month: {e}")))?;
                cron.days |= bits(&v) as u32;
            }
        }
        for item in fields[4].split(',') {
            let upper = item.to_ascii_uppercase();
            let bad = |why: &str| cron_err(text, format!("day of week: {item:?} {why}"));
            let weekday = |s: &str| {
                number(s, &WEEKDAYS, 0)
                    .filter(|d| *d <= 7)
                    .map(|d| d % 7)
                    .ok_or_else(|| bad("is not a day of the week (0-7 or SUN-SAT)"))
            };
            if let Some((d, k)) = upper.split_once('#') {
                let d = weekday(d)?;
                let k = k
                    .parse::<u32>()
                    .ok()
                    .filter(|k| (1..=5).contains(k))
                    .ok_or_else(|| bad("needs #1 to #5"))?;
                cron.nth_weekday.push((d, k));
            } else if let Some(d) = upper.strip_suffix('L').filter(|d| !d.is_empty()) {
                cron.last_of_weekday.push(weekday(d)?);
            } else {
                // 7 is Sunday too: parse in 0-7, then fold.
                let v =
                    plain_item(item, 0, 7, &WEEKDAYS, 0).map_err(|e| cron_err(text, format!("day of week: {e}")))?;
                cron.weekdays |= v.iter().fold(0u8, |acc, d| acc | (1u8 << (d % 7)));
            }
        }
        if fields.len() == 6 && !matches!(fields[5], "*" | "?") {
            let mut years = Vec::new();
            for item in fields[5].split(',') {
                let (range, step) = match item.split_once('/') {
                    Some((r, s)) => (
                        r,
                        s.parse::<i32>()
                            .ok()
                            .filter(|s| *s > 0)
                            .ok_or_else(|| cron_err(text, format!("year: step {s:?} is not a number above 0")))?,
                    ),
                    None => (item, 1),
                };
                let year = |s: &str| {
                    s.parse::<i32>()
                        .ok()
                        .filter(|y| (1970..=LAST_YEAR).contains(y))
                        .ok_or_else(|| cron_err(text, format!("year: {s:?} is not a year of 1970-{LAST_YEAR}")))
                };
                let (lo, hi) = match range.split_once('-') {
                    Some((a, b)) => (year(a)?, year(b)?),
                    None if range == "*" => (1970, LAST_YEAR),
                    None => (year(range)?, if item.contains('/') { LAST_YEAR } else { year(range)? }),
                };
                if lo > hi {
                    return Err(cron_err(text, format!("year: range {range:?} runs backwards")));
                }
                years.push((lo, hi, step));
            }
            cron.years = Some(years);
        }
        Ok(cron)
    }

    /// The expression as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn year_matches(&self, y: i32) -> bool {
        match &self.years {
            None => true,
            Some(ranges) => ranges
                .iter()
                .any(|(lo, hi, step)| y >= *lo && y <= *hi && (y - lo) % step == 0),
        }
    }

    fn date_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 || !self.year_matches(date.year()) {
            return false;
        }
        let day = date.day();
        let last = last_day_of_month(date.year(), date.month());
        let weekday = date.weekday().num_days_from_sunday();
        let by_day = self.days & (1 << day) != 0
            || self.last_day_minus.iter().any(|n| last >= *n + 1 && day == last - n)
            || (self.last_weekday && day == last_weekday_of_month(date.year(), date.month()))
            || self
                .nearest_weekday
                .iter()
                .any(|n| nearest_weekday(date.year(), date.month(), *n) == Some(day));
        let by_weekday = self.weekdays & (1 << weekday) != 0
            || self
                .nth_weekday
                .iter()
                .any(|(d, k)| *d == weekday && (day - 1) / 7 + 1 == *k)
            || self.last_of_weekday.iter().any(|d| *d == weekday && day + 7 > last);
        match (self.day_restricted, self.weekday_restricted) {
            // Both given: either matches, as in Vixie cron.
            (true, true) => by_day || by_weekday,
            (true, false) => by_day,
            (false, true) => by_weekday,
            (false, false) => true,
        }
    }

    /// The first time strictly after `after` the expression matches in `tz`; None past 2199.
    pub fn next_after(&self, after: i64, tz: Tz) -> Option<i64> {
        let start = after.div_euclid(MINUTE_MS) * MINUTE_MS + MINUTE_MS;
        let start_utc = DateTime::<Utc>::from_timestamp_millis(start)?;
        let start_local = start_utc.with_timezone(&tz).naive_local();
        let mut date = start_local.date();
        // A local time skipped by a change of clocks maps to the change itself, which can lie
        // on the next local day; a day back covers it.
        date = date.pred_opt().unwrap_or(date);
        while date.year() <= LAST_YEAR {
            if !self.year_matches(date.year()) {
                date = NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)?;
                continue;
            }
            if self.months & (1 << date.month()) == 0 {
                date = first_of_next_month(date)?;
                continue;
            }
            if self.date_matches(date) {
                if let Some(t) = self.first_on(date, tz, start, start_local) {
                    return Some(t);
                }
            }
            date = date.succ_opt()?;
        }
        None
    }

    /// The first matching minute of `date` (local) at or after `start` (`start_local` on the
    /// local clock).
    fn first_on(&self, date: NaiveDate, tz: Tz, start: i64, start_local: NaiveDateTime) -> Option<i64> {
        // No change of clocks moves a local time by a day: well before the start on the local
        // clock is before it, and needs no look at the zone.
        let surely_before = start_local - Duration::hours(26);
        for h in (0..24).filter(|h| self.hours & (1 << h) != 0) {
            for m in (0..60).filter(|m| self.minutes & (1u64 << m) != 0) {
                let local = date.and_hms_opt(h, m, 0)?;
                if local < surely_before {
                    continue;
                }
                let t = instant_of(local, tz)?;
                if t >= start {
                    return Some(t);
                }
            }
        }
        None
    }
}

/// When a local time happens in `tz`: its first occurrence if the clocks pass it twice, the
/// moment the clocks jump if they skip it.
fn instant_of(local: NaiveDateTime, tz: Tz) -> Option<i64> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.timestamp_millis()),
        LocalResult::Ambiguous(first, _) => Some(first.timestamp_millis()),
        LocalResult::None => {
            // The first local minute after the gap is the instant of the jump.
            (1..=24 * 60).find_map(|k| match tz.from_local_datetime(&(local + Duration::minutes(k))) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                    // Back to the exact instant of the change when it is not on a minute.
                    let t = t.timestamp_millis();
                    Some(t - t.rem_euclid(MINUTE_MS))
                }
                LocalResult::None => None,
            })
        }
    }
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    }
}

fn last_day_of_month(year: i32, month: u32) -> u32 {
    let first = NaiveDate::from_ymd_opt(year, month, 1).expect("a valid month");
    first_of_next_month(first)
        .and_then(|d| d.pred_opt())
        .map(|d| d.day())
        .unwrap_or(31)
}

fn is_weekend(year: i32, month: u32, day: u32) -> bool {
    NaiveDate::from_ymd_opt(year, month, day).is_some_and(|d| matches!(d.weekday(), Weekday::Sat | Weekday::Sun))
}

fn last_weekday_of_month(year: i32, month: u32) -> u32 {
    let mut day = last_day_of_month(year, month);
    while is_weekend(year, month, day) {
        day -= 1;
    }
    day
}

/// The weekday (Monday to Friday) nearest to day `n`, without leaving the month.
fn nearest_weekday(year: i32, month: u32, n: u32) -> Option<u32> {
    let last = last_day_of_month(year, month);
    if n > last {
        return None;
    }
    let weekday = NaiveDate::from_ymd_opt(year, month, n)?.weekday();
    Some(match weekday {
        Weekday::Sat if n == 1 => 3,
        Weekday::Sat => n - 1,
        Weekday::Sun if n == last => n - 2,
        Weekday::Sun => n + 1,
        _ => n,
    })
}

// -------------------------------------------------------------------------------------------
// ISO 8601 repeating intervals
// -------------------------------------------------------------------------------------------

/// `R[n]/START/PERIOD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iso8601 {
    /// None: repeats without end; Some(n): n repetitions after the first run.
    pub repetitions: Option<u64>,
    pub start: i64,
    /// Calendar months of the period (years are twelve).
    pub months: u32,
    /// Calendar days of the period (weeks are seven).
    pub days: u32,
    /// The period's time part (hours, minutes, seconds).
    pub fixed_ms: i64,
    /// Chronos' `scheduleTimeZone`: START's wall-clock time is read in this zone (whatever
    /// offset START carries) and months and days step in local days, so a daily run stays
    /// at its local hour across daylight-saving changes. None: UTC.
    pub tz: Option<Tz>,
}

fn iso_err(text: &str, why: impl std::fmt::Display) -> ScheduleError {
    ScheduleError::Iso8601(format!(
        "schedule {text:?}: {why}; the form is R[n]/START/PERIOD, as R/2026-01-01T00:00:00Z/PT1H"
    ))
}

/// Whether a schedule's text is an ISO 8601 repeating interval rather than a cron expression.
pub fn is_iso8601(text: &str) -> bool {
    text.trim_start().starts_with('R')
}

/// The schedule with an empty START replaced by `now`, so that every server reads the same
/// due times from it (a schedule is stored this way when it is given).
pub fn fix_iso8601_start(text: &str, now: i64) -> String {
    let parts: Vec<&str> = text.trim().split('/').collect();
    if !is_iso8601(text) || parts.len() != 3 || !parts[1].is_empty() {
        return text.to_string();
    }
    let start = DateTime::<Utc>::from_timestamp_millis(now)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default();
    format!("{}/{start}/{}", parts[0], parts[2])
}

impl Iso8601 {
    /// Parses `R[n]/START/PERIOD` in UTC; an empty START means `now`.
    pub fn parse(text: &str, now: i64) -> Result<Iso8601, ScheduleError> {
        Iso8601::parse_in(text, now, None)
    }

    /// Parses `R[n]/START/PERIOD`, START's wall clock read in `tz` when one is given.
    pub fn parse_in(text: &str, now: i64, tz: Option<Tz>) -> Result<Iso8601, ScheduleError> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        if parts.len() != 3 {
            return Err(iso_err(text, "it has three parts separated by /"));
        }
        let reps = parts[0]
            .strip_prefix('R')
            .ok_or_else(|| iso_err(text, "it starts with R"))?;
        let repetitions = if reps.is_empty() {
            None
        } else {
            Some(
                reps.parse::<u64>()
                    .map_err(|_| iso_err(text, format!("R{reps} is not R and a number")))?,
            )
        };
        let start = if parts[1].is_empty() {
            now
        } else {
            let wall = tz.and_then(|tz| parse_wall_clock(parts[1]).map(|w| (tz, w)));
            match wall {
                Some((tz, w)) => resolve_local(tz, w),
                None => parse_instant(parts[1]),
            }
            .ok_or_else(|| iso_err(text, format!("{:?} is not a date and time", parts[1])))?
        };
        let (months, days, fixed_ms) = parse_period(parts[2])
            .ok_or_else(|| iso_err(text, format!("{:?} is not a period such as PT1H or P1D", parts[2])))?;
        if months == 0 && days == 0 && fixed_ms <= 0 {
            return Err(iso_err(text, "the period is empty"));
        }
        Ok(Iso8601 {
            repetitions,
            start,
            months,
            days,
            fixed_ms,
            tz,
        })
    }

    /// The k-th run (0 is the start).
    fn occurrence(&self, k: u64) -> Option<i64> {
        let months = chrono::Months::new(u32::try_from(k.checked_mul(u64::from(self.months))?).ok()?);
        let days = chrono::Days::new(k.checked_mul(u64::from(self.days))?);
        let fixed = i64::try_from(k).ok()?.checked_mul(self.fixed_ms)?;
        let start = DateTime::<Utc>::from_timestamp_millis(self.start)?;
        let stepped = match self.tz {
            Some(tz) => {
                let local = start.with_timezone(&tz).naive_local();
                resolve_local(tz, local.checked_add_months(months)?.checked_add_days(days)?)?
            }
            None => start
                .checked_add_months(months)?
                .checked_add_days(days)?
                .timestamp_millis(),
        };
        stepped.checked_add(fixed)
    }

    /// The first run strictly after `after`, if any is left.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let mut k = if self.start > after {
            0
        } else {
            // A lower bound from the longest a period can be (a local day may have 25
            // hours), then forward.
            let longest =
                i64::from(self.months) * 31 * 25 * 3_600_000 + i64::from(self.days) * 25 * 3_600_000 + self.fixed_ms;
            ((after - self.start) / longest.max(1)) as u64
        };
        loop {
            if self.repetitions.is_some_and(|n| k > n) {
                return None;
            }
            let t = self.occurrence(k)?;
            if t > after {
                return DateTime::<Utc>::from_timestamp_millis(t)
                    .filter(|d| d.year() <= LAST_YEAR)
                    .map(|_| t);
            }
            k += 1;
        }
    }
}

/// A local wall-clock time in `tz`: the first of two that a change back repeats, and for
/// one a change forward skips, the instant the clocks moved on to.
fn resolve_local(tz: Tz, local: NaiveDateTime) -> Option<i64> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.timestamp_millis()),
        // The first local time after the gap: the moment the clocks moved on.
        LocalResult::None => (1..=180).find_map(|m| match tz.from_local_datetime(&(local + Duration::minutes(m))) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.timestamp_millis()),
            LocalResult::None => None,
        }),
    }
}

/// The date and time digits of an ISO 8601 instant, its offset (if any) dropped.
fn parse_wall_clock(s: &str) -> Option<NaiveDateTime> {
    let digits = s.trim_end_matches('Z');
    let digits = match digits.rfind(['+', '-']) {
        Some(i) if i > 10 => &digits[..i],
        _ => digits,
    };
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(digits, f) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(digits, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

fn parse_instant(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    // Without a zone: UTC.
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

/// `P[nY][nM][nW][nD][T[nH][nM][n[.f]S]]` as (months, days, milliseconds).
fn parse_period(s: &str) -> Option<(u32, u32, i64)> {
    let body = s.strip_prefix('P')?;
    if body.is_empty() {
        return None;
    }
    let (date, time) = match body.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (body, None),
    };
    let mut months: u64 = 0;
    let mut days: u64 = 0;
    let mut ms: i64 = 0;
    let mut number = String::new();
    for c in date.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = std::mem::take(&mut number).parse().ok()?;
        match c {
            'Y' => months = months.checked_add(n.checked_mul(12)?)?,
            'M' => months = months.checked_add(n)?,
            'W' => days = days.checked_add(n.checked_mul(7)?)?,
            'D' => days = days.checked_add(n)?,
            _ => return None,
        }
    }
    if !number.is_empty() {
        return None;
    }
    if let Some(time) = time {
        for c in time.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let text = std::mem::take(&mut number);
            let unit: f64 = match c {
                'H' => 3_600_000.0,
                'M' => 60_000.0,
                'S' => 1_000.0,
                _ => return None,
            };
            if c != 'S' && text.contains('.') {
                return None;
            }
            let n: f64 = text.parse().ok()?;
            let add = (n * unit).round();
            if !add.is_finite() || add > 1e15 {
                return None;
            }
            ms = ms.checked_add(add as i64)?;
        }
        if !number.is_empty() {
            return None;
        }
    }
    Some((u32::try_from(months).ok()?, u32::try_from(days).ok()?, ms))
}

// -------------------------------------------------------------------------------------------
// Either
// -------------------------------------------------------------------------------------------

/// A job's schedule in either language.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    Cron { cron: Cron, tz: Tz },
    Iso8601(Iso8601),
}

impl Schedule {
    /// A schedule's text in either language: an ISO 8601 repeating interval (it starts with
    /// `R`) or a cron expression, in the IANA zone `tz` (empty: UTC; for an interval, empty
    /// leaves START's own offset in force). An interval's empty START is `now`.
    pub fn parse(text: &str, tz: &str, now: i64) -> Result<Schedule, ScheduleError> {
        let zone = time_zone(tz)?;
        if is_iso8601(text) {
            let wall_clock_zone = (!tz.trim().is_empty()).then_some(zone);
            Iso8601::parse_in(text, now, wall_clock_zone).map(Schedule::Iso8601)
        } else {
            Cron::parse(text).map(|cron| Schedule::Cron { cron, tz: zone })
        }
    }

    pub fn next_after(&self, after: i64) -> Option<i64> {
        match self {
            Schedule::Cron { cron, tz } => cron.next_after(after, *tz),
            Schedule::Iso8601(i) => i.next_after(after),
        }
    }

    /// The next due time to account for at `now`, of a schedule whose due times up to
    /// `handled` are accounted for: the oldest due time in `(handled, now]` that is at most
    /// `starting_deadline` old, to be run. Due times older than that (missed while no leader
    /// was up) are passed over, and none is run twice: the caller records the returned
    /// `handled` with the run, and asks again while `next` is not after `now`.
    pub fn due(&self, handled: i64, now: i64, starting_deadline: Option<i64>) -> Due {
        let first = self.next_after(handled);
        let Some(first) = first.filter(|f| *f <= now) else {
            return Due {
                run: None,
                handled,
                next: first,
            };
        };
        let floor = starting_deadline.map_or(i64::MIN, |d| now.saturating_sub(d));
        let run = if first >= floor {
            Some(first)
        } else {
            self.next_after(handled.max(floor.saturating_sub(1)))
                .filter(|t| *t <= now)
        };
        match run {
            Some(t) => Due {
                run: Some(t),
                handled: t,
                next: self.next_after(t),
            },
            // Every due time so far is past its deadline.
            None => Due {
                run: None,
                handled: now,
                next: self.next_after(now),
            },
        }
    }

    /// Like [`Schedule::due`], but the newest due time within the deadline stands for all the
    /// others (for FORBID and REPLACE, where only one run can be wanted).
    pub fn newest_due(&self, handled: i64, now: i64, starting_deadline: Option<i64>) -> Due {
        let mut d = self.due(handled, now, starting_deadline);
        while d.run.is_some() && d.next.is_some_and(|n| n <= now) {
            let later = self.due(d.handled, now, starting_deadline);
            if later.run.is_none() {
                break;
            }
            d = later;
        }
        d
    }
}

/// What [`Schedule::due`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    /// The due time of the run to start now, if one is due.
    pub run: Option<i64>,
    /// Due times up to here are accounted for once this is recorded.
    pub handled: i64,
    /// The next due time after `handled` (it may be due already).
    pub next: Option<i64>,
}

#[cfg(test)]
mod tests;
