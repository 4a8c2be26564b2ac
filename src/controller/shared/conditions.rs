//! Status conditions: the one builder of a [`Condition`], and the one place that keeps a
//! condition's lastTransitionTime while its status stays the same (so an unchanged cluster
//! yields an identical status, and no write).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::ConditionType;

/// A condition as a step decides it, stamped `now`; [`keep_transition_times`] carries the
/// previous time over when the status did not change.
pub fn condition(
    type_: ConditionType,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.as_str().to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// "True" or "False".
pub fn status_of(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// Each condition keeps the lastTransitionTime of the `previous` condition of its type when
/// their status is the same; a new or flipped condition keeps the time it was built with.
pub fn keep_transition_times<'a>(
    previous: impl IntoIterator<Item = &'a Condition> + Clone,
    conditions: impl IntoIterator<Item = Condition>,
) -> Vec<Condition> {
    conditions
        .into_iter()
        .map(|mut c| {
            if let Some(old) = previous
                .clone()
                .into_iter()
                .find(|o| o.type_ == c.type_ && o.status == c.status)
            {
                c.last_transition_time = old.last_transition_time.clone();
            }
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Time {
        Time(text.parse().unwrap())
    }

    #[test]
    fn a_condition_keeps_its_time_until_its_status_flips() {
        let then = at("2026-12-01T00:00:00Z");
        let now = at("2026-12-03T00:00:00Z");
        let previous = vec![
            condition(
                ConditionType::Ready,
                "True",
                "Ready",
                String::new(),
                Some(1),
                &then,
            ),
            condition(
                ConditionType::Degraded,
                "False",
                "Ok",
                String::new(),
                Some(1),
                &then,
            ),
        ];
        let built = vec![
            condition(
                ConditionType::Ready,
                "True",
                "Ready",
                "x".into(),
                Some(2),
                &now,
            ),
            condition(
                ConditionType::Degraded,
                "True",
                "Down",
                String::new(),
                Some(2),
                &now,
            ),
            condition(
                ConditionType::Paused,
                "False",
                "No",
                String::new(),
                Some(2),
                &now,
            ),
        ];
        let kept = keep_transition_times(&previous, built);
        let times: Vec<&Time> = kept.iter().map(|c| &c.last_transition_time).collect();
        assert_eq!(times, [&then, &now, &now]);
        assert_eq!(kept[0].message, "x", "only the time is carried over");
    }
}
