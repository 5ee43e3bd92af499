//! Budgets: their definition (carried in the snapshot), the calendar periods they reset on, and
//! the worst-case cost a request may reserve before it is forwarded. Pure; the clock is an input.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

/// What a budget is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    Key,
    Team,
    User,
    Environment,
}

/// How long a budget's amount lasts before a fresh period starts (calendar-aligned, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Day,
    /// ISO weeks: Monday 00:00 UTC.
    Week,
    Month,
    /// Never resets.
    Total,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// Reject before forwarding once the reservation would cross the amount.
    Hard,
    /// Alert only.
    Soft,
}

/// What a data plane does when its allocation is spent and the control plane cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnreachable {
    FailClosed,
    /// Keep admitting up to this many micro-USD beyond the last grant.
    FailOpen {
        allowance_micros: i64,
    },
}

/// What a budget's amount is: a spend limit, or a team's prepaid balance (its amount is what
/// was credited, its spend the usage deducted; a hard one refuses with `insufficient_balance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetKind {
    Spend,
    Balance,
}

/// A budget definition as the snapshot carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub id: String,
    pub scope: ScopeKind,
    pub scope_id: String,
    pub amount_micros: i64,
    pub period: Period,
    pub enforcement: Enforcement,
    pub when_unreachable: WhenUnreachable,
    pub kind: BudgetKind,
}

impl Budget {
    /// Whether this budget applies to requests made with `key` (its key, team, owner user or
    /// environment is the budget's scope).
    pub fn applies_to<K: crate::key_view::KeyView + ?Sized>(&self, key: &K) -> bool {
        let id = match self.scope {
            ScopeKind::Key => key.id(),
            ScopeKind::Team => key.team_id(),
            ScopeKind::User => key.owner_user_id(),
            ScopeKind::Environment => key.environment().as_str(),
        };
        !id.is_empty() && id == self.scope_id
    }
}

names!(ScopeKind { Key => "key", Team => "team", User => "user", Environment => "environment" });
names!(Period { Day => "day", Week => "week", Month => "month", Total => "total" });
names!(Enforcement { Hard => "hard", Soft => "soft" });
names!(BudgetKind { Spend => "spend", Balance => "balance" });

/// The start (unix seconds, UTC) of the period that contains `now`. `Total` has one period
/// starting at 0. Rollover is by a new period row keyed by this value, never by resetting one.
pub fn period_start(now: DateTime<Utc>, period: Period) -> i64 {
    let day = now.date_naive();
    let start: NaiveDate = match period {
        Period::Total => return 0,
        Period::Day => day,
        Period::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
        Period::Month => day.with_day(1).unwrap_or(day),
    };
    Utc.from_utc_datetime(&start.and_time(chrono::NaiveTime::MIN))
        .timestamp()
}

/// Whether some hard budget applies to requests made with `key` (only then is a request's
/// worst case needed, and reserved).
pub fn any_hard<K: crate::key_view::KeyView + ?Sized>(budgets: &[Budget], key: &K) -> bool {
    budgets
        .iter()
        .any(|b| b.enforcement == Enforcement::Hard && b.applies_to(key))
}

/// The worst case a request can cost, in micro-USD: every prompt byte counted as a token (a
/// byte-level BPE never makes more tokens than bytes) plus `max_output_tokens` output tokens,
/// plus the audio seconds and characters the request carries. `None` when the output cannot be bounded (no `max_tokens` and no catalog limit).
pub fn worst_case_cost(price: &crate::pricing::Price, w: WorstCase) -> Option<i64> {
    let output = w.max_output_tokens?;
    let tokens = crate::pricing::Tokens {
        input: w.prompt_bytes,
        output,
        media_ms: w.media_ms,
        characters: w.characters,
        ..Default::default()
    };
    Some(crate::pricing::cost_micros(tokens, price))
}

/// What bounds a request's cost before it is sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorstCase {
    /// Every byte of the prompt counts as an input token.
    pub prompt_bytes: u64,
    /// `None`: unbounded.
    pub max_output_tokens: Option<u64>,
    pub media_ms: u64,
    pub characters: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn periods_are_calendar_aligned_in_utc() {
        let now = at("2026-11-25T13:45:00Z"); // a Wednesday
        let check = |p, want: &str| assert_eq!(period_start(now, p), at(want).timestamp(), "{p}");
        check(Period::Day, "2026-11-25T00:00:00Z");
        check(Period::Week, "2026-11-23T00:00:00Z");
        check(Period::Month, "2026-11-01T00:00:00Z");
        assert_eq!(period_start(now, Period::Total), 0);
    }

    #[test]
    fn one_second_across_midnight_is_a_new_day_period() {
        let before = period_start(at("2026-11-30T23:59:59Z"), Period::Day);
        let after = period_start(at("2026-12-01T00:00:00Z"), Period::Day);
        assert_eq!(after - before, 86_400);
        assert_ne!(
            period_start(at("2026-11-30T23:59:59Z"), Period::Month),
            period_start(at("2026-12-01T00:00:00Z"), Period::Month)
        );
    }

    #[test]
    fn names_round_trip() {
        for p in [Period::Day, Period::Week, Period::Month, Period::Total] {
            assert_eq!(p.as_str().parse::<Period>().unwrap(), p);
        }
        assert!("year".parse::<Period>().is_err());
    }
}
