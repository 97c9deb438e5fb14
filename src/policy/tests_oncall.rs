//! On-call arithmetic: fixed vectors for the cases people ask about, and properties over
//! random rotations, shifts and instants (including long before `start`).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;

use super::{Oncall, Shift};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// The `dba` rotation of the reference example.
fn dba() -> Oncall {
    Oncall {
        name: "dba".into(),
        rotation: vec!["U0DAVE".into(), "U0ERIN".into()],
        shift: Duration::from_secs(7 * 86400),
        start: at("2026-01-05T09:00:00Z"),
    }
}

fn shift<'a>(person: &'a str, started: &str, ends: &str, next_person: &'a str) -> Shift<'a> {
    Shift {
        person,
        started: at(started),
        ends: at(ends),
        next_person,
    }
}

#[test]
fn exactly_at_start_the_first_person_begins() {
    assert_eq!(
        dba().shift_at(at("2026-01-05T09:00:00Z")),
        shift(
            "U0DAVE",
            "2026-01-05T09:00:00Z",
            "2026-01-12T09:00:00Z",
            "U0ERIN"
        )
    );
}

#[test]
fn at_a_boundary_the_next_shift_has_begun() {
    assert_eq!(
        dba().shift_at(at("2026-01-12T09:00:00Z")),
        shift(
            "U0ERIN",
            "2026-01-12T09:00:00Z",
            "2026-01-19T09:00:00Z",
            "U0DAVE"
        )
    );
    assert_eq!(
        dba().shift_at(at("2026-01-12T08:59:59.999999999Z")),
        shift(
            "U0DAVE",
            "2026-01-05T09:00:00Z",
            "2026-01-12T09:00:00Z",
            "U0ERIN"
        ),
        "the last nanosecond still belongs to the first shift"
    );
}

#[test]
fn one_second_before_start_is_the_previous_shift() {
    assert_eq!(
        dba().shift_at(at("2026-01-05T08:59:59Z")),
        shift(
            "U0ERIN",
            "2025-12-29T09:00:00Z",
            "2026-01-05T09:00:00Z",
            "U0DAVE"
        )
    );
}

#[test]
fn a_thousand_shifts_later() {
    assert_eq!(
        dba().shift_at(at("2045-03-06T09:00:00Z")),
        shift(
            "U0DAVE",
            "2045-03-06T09:00:00Z",
            "2045-03-13T09:00:00Z",
            "U0ERIN"
        ),
        "1000 is even"
    );
    let three = Oncall {
        rotation: vec!["A".into(), "B".into(), "C".into()],
        ..dba()
    };
    assert_eq!(
        three.shift_at(at("2045-03-10T17:30:00Z")),
        shift("B", "2045-03-06T09:00:00Z", "2045-03-13T09:00:00Z", "C"),
        "1000 mod 3 = 1"
    );
}

#[test]
fn a_rotation_of_one_hands_over_to_the_same_person() {
    let solo = Oncall {
        rotation: vec!["U0DAVE".into()],
        ..dba()
    };
    let s = solo.shift_at(at("2020-02-29T00:00:00Z"));
    assert_eq!((s.person, s.next_person), ("U0DAVE", "U0DAVE"));
}

#[test]
fn the_ends_of_chrono_time_do_not_panic() {
    for shift in [
        Duration::from_nanos(1),
        Duration::from_secs(1),
        Duration::from_secs(7 * 86400),
        Duration::from_secs(u64::MAX),
        Duration::MAX,
    ] {
        let o = Oncall { shift, ..dba() };
        for t in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            let s = o.shift_at(t);
            // Clamped to chrono's range where the true boundary is not representable.
            assert!(s.started <= t && t <= s.ends, "{shift:?} at {t}: {s:?}");
            assert!(["U0DAVE", "U0ERIN"].contains(&s.person));
            assert_eq!(o.on_call_at(t), s.person);
        }
    }
}

/// Nanoseconds from `a` to `b`, independently of the code under test.
fn nanos_between(a: DateTime<Utc>, b: DateTime<Utc>) -> i128 {
    i128::from((b - a).num_nanoseconds().expect("within ±292 years"))
}

const YEAR_NS: i64 = 365 * 86400 * 1_000_000_000;

fn rotation_strategy() -> impl Strategy<Value = Oncall> {
    (
        1usize..6,
        // 1 s .. 30 days, with an arbitrary sub-second part.
        1u64..=30 * 86400,
        0u32..1_000_000_000,
        // Starts between 1970 and about 2100.
        0i64..130 * 365 * 86400,
        0u32..1_000_000_000,
    )
        .prop_map(|(len, secs, sub, start, start_sub)| Oncall {
            name: "r".into(),
            rotation: (0..len).map(|i| format!("P{i}")).collect(),
            shift: Duration::new(secs, sub),
            start: DateTime::from_timestamp(start, start_sub).unwrap(),
        })
}

proptest! {
    #[test]
    fn shift_at_describes_the_shift_containing_t(
        o in rotation_strategy(),
        offset in -20 * YEAR_NS..20 * YEAR_NS,
        k in -3i32..=3,
    ) {
        let t = o.start + TimeDelta::nanoseconds(offset);
        let s = o.shift_at(t);
        let shift_ns = i128::try_from(o.shift.as_nanos()).unwrap();

        prop_assert!(s.started <= t && t < s.ends, "{s:?} does not contain {t}");
        prop_assert_eq!(nanos_between(s.started, s.ends), shift_ns);

        // `started` is a whole number of shifts from `start` (negative before it), and the
        // person is that number taken euclidean modulo the rotation.
        let from_start = nanos_between(o.start, s.started);
        prop_assert_eq!(from_start.rem_euclid(shift_ns), 0);
        let n = from_start / shift_ns;
        prop_assert_eq!(n < 0, t < o.start);
        let len = o.rotation.len() as i128;
        let idx = n.rem_euclid(len) as usize;
        prop_assert_eq!(s.person, o.rotation[idx].as_str());
        prop_assert_eq!(s.next_person, o.rotation[(idx + 1) % o.rotation.len()].as_str());

        // The same person from the first to the last nanosecond, then the next one.
        prop_assert_eq!(o.on_call_at(t), s.person);
        prop_assert_eq!(o.on_call_at(s.started), s.person);
        prop_assert_eq!(o.on_call_at(s.ends - TimeDelta::nanoseconds(1)), s.person);
        let after = o.shift_at(s.ends);
        prop_assert_eq!(after.person, s.next_person);
        prop_assert_eq!(after.started, s.ends);

        // The rotation repeats every `len` shifts, in both directions.
        let cycle = TimeDelta::from_std(o.shift * o.rotation.len() as u32).unwrap() * k;
        prop_assert_eq!(o.on_call_at(t + cycle), s.person);
        let shifted = o.shift_at(t + cycle);
        prop_assert_eq!(shifted.started, s.started + cycle);
    }
}

#[test]
fn explain_resolves_escalation_rotations_at_the_given_instant() {
    let p = super::Policy::parse(
        r#"
[[oncall]]
name = "dba"
rotation = ["U0DAVE", "U0ERIN"]
shift = "7d"
start = "2026-01-05T09:00:00Z"

[[rule]]
name = "prod-db"
decision = "require"
remind_every = "3m"
escalate = [
  { after = "2m", notify = ["oncall:dba"] },
  { after = "5m", notify = ["oncall:dba", "@dba-leads"], pagerduty = true },
  { after = "8m", webhook = "https://hooks.internal.example/greenlight" },
]

[[rule]]
name = "quiet"
decision = "require"
"#,
    )
    .unwrap();
    let context = serde_json::Map::new();
    let input = super::MatchInput {
        action: "db.drop",
        resource: "r",
        client: "",
        context: &context,
    };
    let text = p.explain_at(&input, at("2026-01-13T00:00:00Z")).to_string();
    let want = "\
  remind every:         3m
  escalation:
    after 2m: notify oncall:dba (now U0ERIN until 2026-01-19T09:00:00Z)
    after 5m: notify oncall:dba (now U0ERIN until 2026-01-19T09:00:00Z), @dba-leads; pagerduty
    after 8m: webhook https://hooks.internal.example/greenlight
rules checked, in order:
";
    assert!(text.contains(want), "missing\n{want}in:\n{text}");

    let mut quiet = p.clone();
    quiet.rules.remove(0);
    let text = quiet
        .explain_at(&input, at("2026-01-13T00:00:00Z"))
        .to_string();
    assert!(
        !text.contains("escalation") && !text.contains("remind every"),
        "a rule without either says nothing of them:\n{text}"
    );
}
