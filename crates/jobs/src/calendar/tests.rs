use chrono::{DateTime, TimeZone, Timelike, Utc};
use proptest::prelude::*;

use super::*;

fn utc(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

fn show(t: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(t).unwrap().to_rfc3339()
}

/// The next run of `expr` in `tz` after `after` is `want` (all RFC 3339).
fn check(expr: &str, tz: &str, after: &str, want: &str) {
    assert_eq!(next(expr, tz, after), want, "{expr} in {tz} after {after}");
}

fn next(expr: &str, tz: &str, after: &str) -> String {
    let c = Cron::parse(expr).unwrap();
    show(c.next_after(utc(after), time_zone(tz).unwrap()).unwrap())
}

#[test]
fn fields_lists_ranges_steps_and_names() {
    check(
        "*/15 * * * *",
        "UTC",
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:15:00+00:00",
    );
    check(
        "*/15 * * * *",
        "UTC",
        "2026-01-01T00:14:59Z",
        "2026-01-01T00:15:00+00:00",
    );
    check(
        "5,35 9-17/4 * * *",
        "UTC",
        "2026-01-01T09:40:00Z",
        "2026-01-01T13:05:00+00:00",
    );
    check(
        "0 12 * JAN-MAR MON-FRI",
        "UTC",
        "2026-01-02T12:00:00Z",
        "2026-01-05T12:00:00+00:00",
    );
    check("0 0 * * 7", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00+00:00");
    check("@hourly", "UTC", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00+00:00");
    check("@yearly", "UTC", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00+00:00");
    check("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00+00:00");
    // Day of month and day of week both given: either, as in Vixie cron.
    check(
        "0 0 13 * FRI",
        "UTC",
        "2026-02-01T00:00:00Z",
        "2026-02-06T00:00:00+00:00",
    );
    check("0 0 13 * ?", "UTC", "2026-02-01T00:00:00Z", "2026-02-13T00:00:00+00:00");
    // The year, sixth.
    check(
        "0 0 1 1 * 2030",
        "UTC",
        "2026-01-01T00:00:00Z",
        "2030-01-01T00:00:00+00:00",
    );
    assert_eq!(
        Cron::parse("0 0 1 1 * 2020")
            .unwrap()
            .next_after(utc("2026-01-01T00:00:00Z"), Tz::UTC),
        None
    );
}

#[test]
fn quartz_extensions() {
    // February 2026: 28 days, the 28th a Saturday.
    check("0 0 L * *", "UTC", "2026-02-01T00:00:00Z", "2026-02-28T00:00:00+00:00");
    check(
        "0 0 L-2 * *",
        "UTC",
        "2026-02-01T00:00:00Z",
        "2026-02-26T00:00:00+00:00",
    );
    check("0 0 LW * *", "UTC", "2026-02-01T00:00:00Z", "2026-02-27T00:00:00+00:00");
    // The 15th of March 2026 is a Sunday: Monday the 16th. The 1st of August 2026 is a
    // Saturday: Monday the 3rd (not July).
    check(
        "0 0 15W * *",
        "UTC",
        "2026-03-01T00:00:00Z",
        "2026-03-16T00:00:00+00:00",
    );
    check("0 0 1W * *", "UTC", "2026-07-02T00:00:00Z", "2026-08-03T00:00:00+00:00");
    // The second Tuesday, the last Friday.
    check(
        "0 0 * * 2#2",
        "UTC",
        "2026-03-01T00:00:00Z",
        "2026-03-10T00:00:00+00:00",
    );
    check("0 0 * * 5L", "UTC", "2026-03-01T00:00:00Z", "2026-03-27T00:00:00+00:00");
}

#[test]
fn bad_expressions_say_what_is_wrong() {
    let err = |e: &str| Cron::parse(e).unwrap_err().to_string();
    assert!(err("* * * *").contains("has 4 fields"), "{}", err("* * * *"));
    assert!(
        err("60 * * * *").contains("minute: \"60\" is outside 0-59"),
        "{}",
        err("60 * * * *")
    );
    assert!(err("* * * FOO *").contains("month"));
    assert!(err("*/0 * * * *").contains("step of 0"));
    assert!(err("5-1 * * * *").contains("runs backwards"));
    assert!(err("* * * * 1#6").contains("#1 to #5"));
    assert!(err("* * 32W * *").contains("1-31"));
    assert!(err("* * * * * 1900").contains("year"));
    assert!(time_zone("Mars/Olympus").is_err());
    assert_eq!(time_zone("").unwrap(), Tz::UTC);
}

#[test]
fn a_skipped_local_time_runs_once_when_the_clocks_jump() {
    // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
    check(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-28T12:00:00Z",
        "2026-03-29T01:00:00+00:00",
    );
    check(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-29T01:00:00Z",
        "2026-03-30T00:30:00+00:00",
    );
    // Four matching minutes in the gap: one run.
    check(
        "*/15 2 * * *",
        "Europe/Berlin",
        "2026-03-28T23:00:00Z",
        "2026-03-29T01:00:00+00:00",
    );
    check(
        "*/15 2 * * *",
        "Europe/Berlin",
        "2026-03-29T01:00:00Z",
        "2026-03-30T00:00:00+00:00",
    );
    // New York, 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC).
    check(
        "30 2 * * *",
        "America/New_York",
        "2026-03-08T00:00:00Z",
        "2026-03-08T07:00:00+00:00",
    );
}

#[test]
fn a_repeated_local_time_runs_at_its_first_occurrence_only() {
    // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens at 00:30 and 01:30 UTC.
    check(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-10-24T12:00:00Z",
        "2026-10-25T00:30:00+00:00",
    );
    check(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-10-25T00:30:00Z",
        "2026-10-26T01:30:00+00:00",
    );
    check(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-10-25T01:00:00Z",
        "2026-10-26T01:30:00+00:00",
    );
}

#[test]
fn iso8601_intervals() {
    let now = utc("2026-05-01T10:00:00Z");
    let s = Iso8601::parse("R/2026-01-01T00:00:00Z/PT1H", now).unwrap();
    assert_eq!(show(s.next_after(now).unwrap()), "2026-05-01T11:00:00+00:00");
    assert_eq!(
        show(s.next_after(utc("2025-12-01T00:00:00Z")).unwrap()),
        "2026-01-01T00:00:00+00:00"
    );
    // Chronos' own form, with milliseconds.
    let c = Iso8601::parse("R10/2014-03-08T20:00:00.000Z/PT2H", now).unwrap();
    assert_eq!(c.repetitions, Some(10));
    assert_eq!(c.next_after(now), None, "ten repetitions are long over");
    // R0 runs once; R2 three times.
    let once = Iso8601::parse("R0/2026-06-01T00:00:00Z/P1D", now).unwrap();
    assert_eq!(show(once.next_after(now).unwrap()), "2026-06-01T00:00:00+00:00");
    assert_eq!(once.next_after(utc("2026-06-01T00:00:00Z")), None);
    let three = Iso8601::parse("R2/2026-06-01T00:00:00Z/P1D", now).unwrap();
    assert_eq!(
        three.next_after(utc("2026-06-02T00:00:00Z")),
        Some(utc("2026-06-03T00:00:00Z"))
    );
    assert_eq!(three.next_after(utc("2026-06-03T00:00:00Z")), None);
    // An empty start is now.
    let fresh = Iso8601::parse("R//PT30M", now).unwrap();
    assert_eq!(fresh.start, now);
    // Months are calendar months from the start, not 30 days.
    let monthly = Iso8601::parse("R/2026-01-31T00:00:00Z/P1M", now).unwrap();
    assert_eq!(
        show(monthly.next_after(utc("2026-01-31T00:00:00Z")).unwrap()),
        "2026-02-28T00:00:00+00:00"
    );
    assert_eq!(
        show(monthly.next_after(utc("2026-02-28T00:00:00Z")).unwrap()),
        "2026-03-31T00:00:00+00:00"
    );
    let mixed = Iso8601::parse("R/2026-01-01T00:00:00Z/P1Y2M3DT4H5M6.5S", now).unwrap();
    assert_eq!(
        (mixed.months, mixed.days, mixed.fixed_ms),
        (14, 3, 4 * 3_600_000 + 5 * 60_000 + 6_500)
    );
    for bad in [
        "R/2026-01-01T00:00:00Z",
        "X/2026/PT1H",
        "R/yesterday/PT1H",
        "R/2026-01-01T00:00:00Z/PT0S",
        "R/2026-01-01T00:00:00Z/1H",
        "Rx//PT1H",
    ] {
        assert!(Iso8601::parse(bad, now).is_err(), "{bad}");
    }
}

#[test]
fn every_due_time_within_the_deadline_runs_once_and_older_ones_are_passed_over() {
    let every_minute = Schedule::Cron {
        cron: Cron::parse("* * * * *").unwrap(),
        tz: Tz::UTC,
    };
    let handled = utc("2026-01-01T00:00:00Z");
    // On time.
    let d = every_minute.due(handled, utc("2026-01-01T00:01:00Z"), Some(60_000));
    assert_eq!(
        (d.run, d.handled),
        (Some(utc("2026-01-01T00:01:00Z")), utc("2026-01-01T00:01:00Z"))
    );
    assert_eq!(d.next, Some(utc("2026-01-01T00:02:00Z")));
    // No leader for ten minutes, a deadline of three: the due times of the last three
    // minutes run, oldest first, each once; the seven before are passed over.
    let now = utc("2026-01-01T00:10:30Z");
    let mut h = handled;
    let mut ran = vec![];
    loop {
        let d = every_minute.due(h, now, Some(3 * 60_000));
        assert!(d.handled >= h, "accounted-for time never goes back");
        if d.handled == h {
            break;
        }
        ran.extend(d.run);
        h = d.handled;
    }
    let want: Vec<i64> = ["00:08", "00:09", "00:10"]
        .iter()
        .map(|m| utc(&format!("2026-01-01T{m}:00Z")))
        .collect();
    assert_eq!(ran, want);
    // FORBID and REPLACE want the newest only.
    let d = every_minute.newest_due(handled, now, Some(3 * 60_000));
    assert_eq!(
        (d.run, d.handled),
        (Some(utc("2026-01-01T00:10:00Z")), utc("2026-01-01T00:10:00Z"))
    );
    // Past the deadline: nothing runs now, and the missed time is accounted for.
    let hourly = Schedule::Cron {
        cron: Cron::parse("0 * * * *").unwrap(),
        tz: Tz::UTC,
    };
    let d = hourly.due(handled, utc("2026-01-01T01:10:00Z"), Some(5 * 60_000));
    assert_eq!((d.run, d.handled), (None, utc("2026-01-01T01:10:00Z")));
    assert_eq!(d.next, Some(utc("2026-01-01T02:00:00Z")));
    // Nothing due yet: nothing to record.
    let d = hourly.due(handled, utc("2026-01-01T00:59:59Z"), None);
    assert_eq!((d.run, d.handled), (None, handled));
    // An ISO 8601 schedule every two seconds, three seconds late with a deadline of 60 s:
    // both missed due times run.
    let iso = Schedule::parse("R/2026-01-01T00:00:00Z/PT2S", "", 0).unwrap();
    let d1 = iso.due(handled, handled + 4_500, Some(60_000));
    assert_eq!((d1.run, d1.next), (Some(handled + 2_000), Some(handled + 4_000)));
    let d2 = iso.due(d1.handled, handled + 4_500, Some(60_000));
    assert_eq!((d2.run, d2.next), (Some(handled + 4_000), Some(handled + 6_000)));
}

#[test]
fn schedules_in_either_language() {
    let now = utc("2026-05-01T10:00:00Z");
    assert!(matches!(
        Schedule::parse("*/5 * * * *", "Europe/Berlin", now),
        Ok(Schedule::Cron { .. })
    ));
    assert!(matches!(Schedule::parse("R5//P1D", "", now), Ok(Schedule::Iso8601(_))));
    assert!(matches!(
        Schedule::parse("* * * * *", "Mars/Olympus", now),
        Err(ScheduleError::TimeZone(_))
    ));
    assert_eq!(fix_iso8601_start("R//PT2S", now), "R/2026-05-01T10:00:00.000Z/PT2S");
    assert_eq!(
        fix_iso8601_start("R0/2026-01-01T00:00:00Z/PT2S", now),
        "R0/2026-01-01T00:00:00Z/PT2S"
    );
    assert_eq!(fix_iso8601_start("0 * * * *", now), "0 * * * *");
    // In a zone, a daily run keeps its local hour across the change to summer time.
    let daily = Schedule::parse("R/2026-03-27T09:00:00Z/P1D", "Europe/Berlin", now).unwrap();
    let fri = daily.next_after(utc("2026-03-27T00:00:00Z")).unwrap();
    assert_eq!(show(fri), "2026-03-27T08:00:00+00:00", "09:00 CET");
    let mon = daily.next_after(utc("2026-03-30T00:00:00Z")).unwrap();
    assert_eq!(show(mon), "2026-03-30T07:00:00+00:00", "09:00 CEST");
}

proptest! {
    /// Every local day of a year, in zones with daylight saving, a daily job runs exactly once.
    #[test]
    fn a_daily_job_runs_once_per_local_day(hour in 0u32..24, minute in 0u32..60, zone in 0usize..4) {
        let tz = [chrono_tz::Europe::Berlin, chrono_tz::America::New_York, chrono_tz::Australia::Sydney, chrono_tz::America::Santiago][zone];
        let cron = Cron::parse(&format!("{minute} {hour} * * *")).unwrap();
        let mut t = utc("2026-01-01T00:00:00Z");
        let end = utc("2027-01-01T00:00:00Z");
        let mut days = std::collections::BTreeSet::new();
        let mut runs = 0;
        while let Some(n) = cron.next_after(t, tz) {
            if n >= end {
                break;
            }
            prop_assert!(n > t);
            let local = tz.timestamp_millis_opt(n).unwrap();
            // On time, or moved forward by a skipped hour, never by more.
            let wanted = i64::from(hour * 60 + minute);
            let got = i64::from(local.hour() * 60 + local.minute());
            prop_assert!(got == wanted || (got > wanted && got - wanted <= 60), "{local} for {hour}:{minute}");
            days.insert(local.date_naive());
            runs += 1;
            t = n;
        }
        prop_assert_eq!(runs, days.len(), "a day ran twice");
        // Every local day of the year ran (the first and last day may fall outside in UTC).
        prop_assert!(days.len() >= 364, "{} days", days.len());
    }

    /// Without daylight saving, the next run is the first matching minute: nothing matches in
    /// between.
    #[test]
    fn the_next_run_is_the_first_match(minute in 0u32..60, hour_step in 1u32..12, start in 0i64..(366 * 24 * 60)) {
        let cron = Cron::parse(&format!("{minute} */{hour_step} * * *")).unwrap();
        let t = utc("2026-01-01T00:00:00Z") + start * 60_000 + 17;
        let n = cron.next_after(t, Tz::UTC).unwrap();
        prop_assert!(n > t);
        let at = DateTime::<Utc>::from_timestamp_millis(n).unwrap();
        prop_assert_eq!(at.minute(), minute);
        prop_assert_eq!(at.hour() % hour_step, 0);
        let mut u = (t / 60_000 + 1) * 60_000;
        while u < n {
            let d = DateTime::<Utc>::from_timestamp_millis(u).unwrap();
            prop_assert!(!(d.minute() == minute && d.hour() % hour_step == 0), "{d} matches before {at}");
            u += 60_000;
        }
    }
}
