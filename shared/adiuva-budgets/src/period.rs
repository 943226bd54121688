//! Budget periods: calendar months in UTC, named `YYYY-MM`, from times in ms since the epoch.

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// `YYYY-MM` of the month (UTC) that `ms` falls in.
pub fn period_of(ms: i64) -> String {
    let (year, month) = civil_month(ms.div_euclid(DAY_MS));
    format!("{year:04}-{month:02}")
}

/// The first instant (ms, UTC) of the month after the one `ms` falls in: when that month's
/// budget starts anew.
pub fn next_period_start(ms: i64) -> i64 {
    let (year, month) = civil_month(ms.div_euclid(DAY_MS));
    let (year, month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    days_from_civil(year, month, 1) * DAY_MS
}

/// `YYYY-MM` of the month `months` before the one (UTC) that `ms` falls in.
pub fn period_months_before(ms: i64, months: u32) -> String {
    let (year, month) = civil_month(ms.div_euclid(DAY_MS));
    let index = year * 12 + (month - 1) - i64::from(months);
    format!(
        "{:04}-{:02}",
        index.div_euclid(12),
        index.rem_euclid(12) + 1
    )
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `(year, month)` of a day since 1970-01-01.
fn civil_month(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month)
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
        // February of a leap year.
        let feb_2028 = days_from_civil(2028, 2, 1) * DAY_MS;
        assert_eq!(period_of(feb_2028 + 28 * DAY_MS), "2028-02");
        assert_eq!(
            next_period_start(feb_2028),
            days_from_civil(2028, 3, 1) * DAY_MS
        );
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
}
