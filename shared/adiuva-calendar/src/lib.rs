//! UTC calendar months and dates of times in milliseconds since the epoch: the `YYYY-MM`
//! periods of the AI budgets and the developers' earnings, and the `YYYY-MM-DD` date the
//! agents' prompts name. Howard Hinnant's civil-date algorithms; no time zone, no dependency.

/// A day in milliseconds.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// `YYYY-MM` of the month (UTC) that `ms` falls in.
pub fn period_of(ms: i64) -> String {
    let (year, month, _) = civil_from_days(ms.div_euclid(DAY_MS));
    format!("{year:04}-{month:02}")
}

/// `YYYY-MM-DD` of the day (UTC) that `ms` falls in.
pub fn date_of(ms: i64) -> String {
    let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
    format!("{year:04}-{month:02}-{day:02}")
}

/// The first instant (ms, UTC) of the month after the one `ms` falls in: when that month's
/// budget starts anew.
pub fn next_period_start(ms: i64) -> i64 {
    let (year, month, _) = civil_from_days(ms.div_euclid(DAY_MS));
    month_start(year, month + 1)
}

/// `YYYY-MM` of the month `months` before the one (UTC) that `ms` falls in.
pub fn period_months_before(ms: i64, months: u32) -> String {
    let (year, month, _) = civil_from_days(ms.div_euclid(DAY_MS));
    let index = year * 12 + (month - 1) - i64::from(months);
    format!(
        "{:04}-{:02}",
        index.div_euclid(12),
        index.rem_euclid(12) + 1
    )
}

/// The `[start, end)` ms of a `YYYY-MM` period (years 1970 to 9999); `None` for anything else.
pub fn period_range(period: &str) -> Option<(i64, i64)> {
    let (year, month) = period.split_once('-')?;
    if year.len() != 4
        || month.len() != 2
        || !year
            .bytes()
            .chain(month.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let year: i64 = year.parse().ok()?;
    let month: i64 = month.parse().ok()?;
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
        return None;
    }
    Some((month_start(year, month), month_start(year, month + 1)))
}

/// The first instant (ms) of `month` of `year`, where month 13 is the next year's January.
fn month_start(year: i64, month: i64) -> i64 {
    let (year, month) = if month > 12 {
        (year + 1, month - 12)
    } else {
        (year, month)
    };
    days_from_civil(year, month, 1) * DAY_MS
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `(year, month, day)` of a day since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01T00:00:00Z and 2027-01-01T00:00:00Z.
    const DEC_2026: i64 = 1_796_083_200_000;
    const JAN_2027: i64 = 1_798_761_600_000;

    #[test]
    fn months_turn_at_midnight_utc() {
        assert_eq!(period_of(DEC_2026), "2026-12");
        assert_eq!(period_of(DEC_2026 - 1), "2026-11");
        assert_eq!(period_of(JAN_2027 - 1), "2026-12");
        assert_eq!(period_of(JAN_2027), "2027-01");
        assert_eq!(next_period_start(DEC_2026 - 1), DEC_2026);
        assert_eq!(next_period_start(DEC_2026), JAN_2027);
        assert_eq!(next_period_start(JAN_2027 - 1), JAN_2027);
        assert_eq!(period_of(0), "1970-01");
        assert_eq!(period_of(1_735_689_600_000), "2025-01");
        // February of a leap year.
        let feb_2028 = days_from_civil(2028, 2, 1) * DAY_MS;
        assert_eq!(period_of(feb_2028 + 28 * DAY_MS), "2028-02");
        assert_eq!(
            next_period_start(feb_2028),
            days_from_civil(2028, 3, 1) * DAY_MS
        );
    }

    #[test]
    fn dates_turn_at_midnight_utc() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(DEC_2026), "2026-12-01");
        assert_eq!(date_of(DEC_2026 - 1), "2026-11-30");
        assert_eq!(date_of(JAN_2027 - 1), "2026-12-31");
        assert_eq!(date_of(days_from_civil(2028, 2, 29) * DAY_MS), "2028-02-29");
        assert_eq!(
            date_of(days_from_civil(2100, 3, 1) * DAY_MS - 1),
            "2100-02-28"
        );
        assert_eq!(date_of(-1), "1969-12-31");
        assert_eq!(date_of(19_723 * DAY_MS), "2024-01-01");
        assert_eq!(date_of(20_779 * DAY_MS + DAY_MS - 1), "2026-11-22");
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        for days in days_from_civil(1970, 1, 1)..days_from_civil(2370, 1, 1) {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
    }

    #[test]
    fn months_before_cross_years() {
        assert_eq!(period_months_before(DEC_2026, 0), "2026-12");
        assert_eq!(period_months_before(DEC_2026, 11), "2026-01");
        assert_eq!(period_months_before(DEC_2026, 12), "2025-12");
        assert_eq!(period_months_before(DEC_2026, 13), "2025-11");
        assert_eq!(period_months_before(JAN_2027, 1), "2026-12");
        assert_eq!(period_months_before(JAN_2027, 25), "2024-12");
    }

    #[test]
    fn months_round_trip_through_their_ranges() {
        let (start, end) = period_range("2024-02").unwrap();
        assert_eq!(period_of(start), "2024-02");
        assert_eq!(period_of(end - 1), "2024-02");
        assert_eq!(period_of(end), "2024-03");
        assert_eq!((end - start) / DAY_MS, 29);
        let (start, end) = period_range("2026-12").unwrap();
        assert_eq!((start, end), (DEC_2026, JAN_2027));
        for bad in [
            "2026-13", "2026-00", "26-01", "2026-1", "2026/01", "", "2026-+1", "+202-01", "1969-12",
        ] {
            assert!(period_range(bad).is_none(), "{bad}");
        }
    }
}
