//! What the meal responses say over many meals (Nutri's food insights), and rises of
//! the glucose trace that look like meals nobody logged, as suggestions.
//!
//! **Food insights** ([`food_insights`]): per food name (trimmed, case-folded; a food
//! named twice in one meal counts once) and per meal type, over the meals whose response
//! is `complete`: the number of meals, the mean and sample SD (n − 1) of iauc_120 and
//! delta_g, ranked by mean iauc_120, lowest (gentlest) first, ties by name. Only groups
//! of at least `min_meals` meals (default [`DEFAULT_MIN_MEALS`]) are ranked; the others
//! are listed apart as not enough meals. Why: the same meal eaten twice by the same
//! person gives poorly reproducible responses (intra-class correlation 0.14–0.31), so
//! one meal says little about a food; a ranking needs several.
//!
//! **Unlogged meals** ([`unlogged_meals`]): a reading is a candidate start when the
//! readings in the [`STABLE_WINDOW_MIN`] minutes up to it (inclusive) number at least
//! [`STABLE_MIN_READINGS`] and span at most [`STABLE_MAX_RANGE`] mg/dL (a stable
//! baseline, their mean), and at least [`RISE_MIN_READINGS`] readings in the
//! [`RISE_WITHIN_MIN`] minutes after it are [`RISE_MIN`] mg/dL or more above that
//! baseline (two, so one noisy or compression-artefact reading does not make a meal).
//! Candidates whose spans (start to their peak) overlap are one detection: its start is
//! the candidate with the lowest reading (the latest on ties: the foot of the rise), its
//! baseline that candidate's, its peak the highest reading from the start to 60 minutes
//! after the last candidate (the first on ties). A detection with a logged meal within
//! [`LOGGED_MEAL_WITHIN_MIN`] minutes of its start (either side) is dropped.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::meal_response::{MealResponse, MealResponseStatus};
use super::Sample;

/// Fewest meals for a food or meal type to be ranked.
pub const DEFAULT_MIN_MEALS: usize = 3;
/// The stable baseline before a rise: this long…
pub const STABLE_WINDOW_MIN: i64 = 30;
/// …with at least this many readings (of 7 at 5-minute sampling)…
pub const STABLE_MIN_READINGS: usize = 5;
/// …spanning at most this many mg/dL (max − min).
pub const STABLE_MAX_RANGE: f64 = 15.0;
/// A rise: this many mg/dL above the baseline…
pub const RISE_MIN: f64 = 30.0;
/// …within this many minutes of the start…
pub const RISE_WITHIN_MIN: i64 = 60;
/// …seen in at least this many readings.
pub const RISE_MIN_READINGS: usize = 2;
/// A logged meal this close to a detection's start (min) explains it.
pub const LOGGED_MEAL_WITHIN_MIN: i64 = 30;

/// A meal as the insights need it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedMeal {
    pub at: DateTime<Utc>,
    pub meal_type: Option<String>,
    /// Food names as logged.
    pub foods: Vec<String>,
}

/// Mean and sample SD (`None` for one value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub sd: Option<f64>,
}

/// One food or meal type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    pub name: String,
    pub n: usize,
    pub iauc_120: Spread,
    pub delta_g: Spread,
}

/// Groups with enough meals, ranked (lowest mean iauc_120 first), and the rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Groups {
    pub ranked: Vec<GroupStats>,
    /// Fewer than `min_meals` meals: most meals first, then by name.
    pub not_enough_meals: Vec<GroupStats>,
}

/// The food insights of a user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoodInsights {
    pub min_meals: usize,
    /// Meals with a complete response (the others are left out).
    pub meals: usize,
    pub foods: Groups,
    pub meal_types: Groups,
}

/// A rise of the trace that looks like an unlogged meal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MealSuggestion {
    pub start: DateTime<Utc>,
    pub baseline: f64,
    pub peak: f64,
    pub peak_at: DateTime<Utc>,
    /// peak − baseline.
    pub rise: f64,
}

fn spread(v: &[f64]) -> Spread {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.len() > 1)
        .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    Spread { mean, sd }
}

fn fold(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Per food and per meal type (see the module docs); responses not `complete` are
/// ignored.
pub fn food_insights<'a>(
    meals: impl IntoIterator<Item = (&'a LoggedMeal, &'a MealResponse)>,
    min_meals: usize,
) -> FoodInsights {
    // name → (iauc_120 values, delta_g values)
    type Acc = BTreeMap<String, (Vec<f64>, Vec<f64>)>;
    let (mut foods, mut types): (Acc, Acc) = Default::default();
    let mut used = 0;
    for (meal, r) in meals {
        let (MealResponseStatus::Complete, Some(iauc), Some(delta)) =
            (r.status, r.iauc_120, r.delta_g)
        else {
            continue;
        };
        used += 1;
        let mut names: Vec<String> = meal
            .foods
            .iter()
            .map(|f| fold(f))
            .filter(|f| !f.is_empty())
            .collect();
        names.sort();
        names.dedup();
        let kind = meal
            .meal_type
            .as_deref()
            .map(fold)
            .filter(|k| !k.is_empty());
        let add = |acc: &mut Acc, name: String| {
            let e = acc.entry(name).or_default();
            e.0.push(iauc);
            e.1.push(delta);
        };
        for name in names {
            add(&mut foods, name);
        }
        if let Some(kind) = kind {
            add(&mut types, kind);
        }
    }
    FoodInsights {
        min_meals,
        meals: used,
        foods: groups(foods, min_meals),
        meal_types: groups(types, min_meals),
    }
}

fn groups(acc: BTreeMap<String, (Vec<f64>, Vec<f64>)>, min_meals: usize) -> Groups {
    let mut out = Groups::default();
    for (name, (iauc, delta)) in acc {
        let g = GroupStats {
            name,
            n: iauc.len(),
            iauc_120: spread(&iauc),
            delta_g: spread(&delta),
        };
        if g.n >= min_meals {
            out.ranked.push(g);
        } else {
            out.not_enough_meals.push(g);
        }
    }
    // Names are already in order (BTreeMap) and the sorts are stable.
    out.ranked
        .sort_by(|a, b| a.iauc_120.mean.total_cmp(&b.iauc_120.mean));
    out.not_enough_meals.sort_by_key(|g| std::cmp::Reverse(g.n));
    out
}

/// One candidate start: its index, baseline, and the index of its peak.
struct Candidate {
    at: usize,
    baseline: f64,
    peak: usize,
}

/// Rises of `readings` (sorted by time) that look like meals with no meal of `logged`
/// (any order) near their start, oldest first (see the module docs).
pub fn unlogged_meals(readings: &[Sample], logged: &[DateTime<Utc>]) -> Vec<MealSuggestion> {
    let r: Vec<Sample> = readings
        .iter()
        .copied()
        .filter(|s| s.mg_dl.is_finite())
        .collect();
    debug_assert!(r.windows(2).all(|w| w[0].at <= w[1].at));
    let mut candidates: Vec<Candidate> = Vec::new();
    for (i, s) in r.iter().enumerate() {
        let from = r.partition_point(|x| x.at < s.at - Duration::minutes(STABLE_WINDOW_MIN));
        let base = &r[from..=i];
        if base.len() < STABLE_MIN_READINGS {
            continue;
        }
        let (lo, hi) = base
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
                (l.min(x.mg_dl), h.max(x.mg_dl))
            });
        if hi - lo > STABLE_MAX_RANGE {
            continue;
        }
        let baseline = base.iter().map(|x| x.mg_dl).sum::<f64>() / base.len() as f64;
        let until = r.partition_point(|x| x.at <= s.at + Duration::minutes(RISE_WITHIN_MIN));
        let after = &r[i + 1..until.max(i + 1)];
        if after
            .iter()
            .filter(|x| x.mg_dl - baseline >= RISE_MIN)
            .count()
            < RISE_MIN_READINGS
        {
            continue;
        }
        candidates.push(Candidate {
            at: i,
            baseline,
            peak: i + 1 + first_max(after),
        });
    }
    let mut out = Vec::new();
    let mut k = 0;
    while k < candidates.len() {
        // The run of candidates whose spans overlap.
        let mut end = candidates[k].peak;
        let mut last = k;
        while last + 1 < candidates.len() && candidates[last + 1].at <= end {
            last += 1;
            end = end.max(candidates[last].peak);
        }
        let run = &candidates[k..=last];
        let foot = run
            .iter()
            .reduce(|best, c| {
                if r[c.at].mg_dl <= r[best.at].mg_dl {
                    c
                } else {
                    best
                }
            })
            .expect("a run is not empty");
        let until = r.partition_point(|x| {
            x.at <= r[run[run.len() - 1].at].at + Duration::minutes(RISE_WITHIN_MIN)
        });
        let peak = foot.at + 1 + first_max(&r[foot.at + 1..until]);
        let start = r[foot.at].at;
        let explained = logged
            .iter()
            .any(|m| (*m - start).abs() <= Duration::minutes(LOGGED_MEAL_WITHIN_MIN));
        if !explained {
            out.push(MealSuggestion {
                start,
                baseline: foot.baseline,
                peak: r[peak].mg_dl,
                peak_at: r[peak].at,
                rise: r[peak].mg_dl - foot.baseline,
            });
        }
        k = last + 1;
    }
    out
}

/// Index of the first highest reading of a non-empty slice.
fn first_max(s: &[Sample]) -> usize {
    let mut best = 0;
    for (i, x) in s.iter().enumerate() {
        if x.mg_dl > s[best].mg_dl {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 4, 6, 0, 0).unwrap()
    }

    fn at(min: i64) -> DateTime<Utc> {
        t0() + Duration::minutes(min)
    }

    fn response(iauc_120: f64, delta_g: f64) -> MealResponse {
        MealResponse {
            status: MealResponseStatus::Complete,
            baseline: Some(100.0),
            peak: Some(100.0 + delta_g),
            time_to_peak: Some(45.0),
            delta_g: Some(delta_g),
            iauc_120: Some(iauc_120),
            iauc_180: Some(iauc_120),
            return_to_baseline: Some(120.0),
            coverage: 1.0,
            overlap: false,
            score: Some(50.0),
        }
    }

    fn meal(kind: Option<&str>, foods: &[&str]) -> LoggedMeal {
        LoggedMeal {
            at: t0(),
            meal_type: kind.map(str::to_owned),
            foods: foods.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn foods_are_grouped_folded_and_ranked_with_a_minimum() {
        let mut pending = response(9999.0, 99.0);
        pending.status = MealResponseStatus::Pending;
        let rows = [
            (
                meal(Some("breakfast"), &["Oatmeal", "banana", " oatmeal"]),
                response(1000.0, 20.0),
            ),
            (
                meal(Some("Breakfast "), &[" OATMEAL "]),
                response(2000.0, 40.0),
            ),
            (
                meal(Some("breakfast"), &["oatmeal"]),
                response(3000.0, 60.0),
            ),
            (meal(Some("dinner"), &["Rice"]), response(4000.0, 50.0)),
            (
                meal(Some("lunch"), &["rice", "Banana"]),
                response(4000.0, 50.0),
            ),
            (meal(None, &["rice", "  "]), response(4000.0, 50.0)),
            (meal(Some("dinner"), &["rice", "cake"]), pending),
        ];
        let ins = food_insights(rows.iter().map(|(m, r)| (m, r)), DEFAULT_MIN_MEALS);
        assert_eq!(ins.meals, 6);
        assert_eq!(ins.min_meals, 3);
        let names = |g: &[GroupStats]| g.iter().map(|x| x.name.clone()).collect::<Vec<_>>();
        // oatmeal: 3 meals (named twice in the first: once), mean 2000; rice: 3, 4000.
        assert_eq!(names(&ins.foods.ranked), ["oatmeal", "rice"]);
        let oat = &ins.foods.ranked[0];
        assert_eq!(oat.n, 3);
        // iauc 1000, 2000, 3000: mean 2000, SD √((1e6 + 0 + 1e6)/2) = 1000.
        assert_eq!(
            oat.iauc_120,
            Spread {
                mean: 2000.0,
                sd: Some(1000.0)
            }
        );
        // delta 20, 40, 60: mean 40, SD 20.
        assert_eq!(
            oat.delta_g,
            Spread {
                mean: 40.0,
                sd: Some(20.0)
            }
        );
        assert_eq!(
            ins.foods.ranked[1].iauc_120,
            Spread {
                mean: 4000.0,
                sd: Some(0.0)
            }
        );
        // banana: 2 meals (1000, 4000): listed apart. "cake" only in a pending one: absent.
        assert_eq!(names(&ins.foods.not_enough_meals), ["banana"]);
        let banana = &ins.foods.not_enough_meals[0];
        assert_eq!(banana.iauc_120.mean, 2500.0);
        // SD of 1000, 4000: √((1500² + 1500²)/1) = 1500·√2.
        assert!((banana.iauc_120.sd.unwrap() - 1500.0 * 2f64.sqrt()).abs() < 1e-9);
        // Meal types: breakfast 3 (ranked); dinner 1 and lunch 1 apart, by name.
        assert_eq!(names(&ins.meal_types.ranked), ["breakfast"]);
        assert_eq!(names(&ins.meal_types.not_enough_meals), ["dinner", "lunch"]);
        assert_eq!(ins.meal_types.not_enough_meals[0].iauc_120.sd, None);
        // With a minimum of 1, everything is ranked, lowest mean first.
        let all = food_insights(rows.iter().map(|(m, r)| (m, r)), 1);
        assert_eq!(names(&all.foods.ranked), ["oatmeal", "banana", "rice"]);
        assert!(all.foods.not_enough_meals.is_empty());
        // More meals listed first among those below the minimum.
        let few = food_insights(rows.iter().map(|(m, r)| (m, r)), 10);
        assert_eq!(
            names(&few.foods.not_enough_meals),
            ["oatmeal", "rice", "banana"]
        );
    }

    /// Readings every 5 minutes from `from` to `to` (min), glucose `f(t)`.
    fn trace(from: i64, to: i64, mut f: impl FnMut(i64) -> f64) -> Vec<Sample> {
        (from / 5..=to / 5)
            .map(|i| Sample {
                at: at(i * 5),
                mg_dl: f(i * 5),
            })
            .collect()
    }

    /// 100 until 0, up 2 mg/dL per min to 160 at 30, down 1 per min to 100 at 90.
    fn bump(t: i64) -> f64 {
        match t {
            t if t <= 0 => 100.0,
            t if t <= 30 => 100.0 + 2.0 * t as f64,
            t if t <= 90 => 190.0 - t as f64,
            _ => 100.0,
        }
    }

    #[test]
    fn a_rise_from_a_stable_baseline_is_one_suggestion() {
        let s = unlogged_meals(&trace(-120, 300, bump), &[]);
        // Candidates from −40 (≥ 2 readings ≥ 130 by 20) to 5 (window 100…110); they
        // overlap; the lowest reading (100), latest: 0.
        assert_eq!(
            s,
            [MealSuggestion {
                start: at(0),
                baseline: 100.0,
                peak: 160.0,
                peak_at: at(30),
                rise: 60.0,
            }]
        );
    }

    #[test]
    fn a_logged_meal_near_the_start_suppresses_it() {
        let r = trace(-120, 300, bump);
        assert!(unlogged_meals(&r, &[at(20)]).is_empty());
        assert!(unlogged_meals(&r, &[at(-30)]).is_empty());
        // 31 minutes away either side: not this meal.
        assert_eq!(unlogged_meals(&r, &[at(31)]).len(), 1);
        assert_eq!(unlogged_meals(&r, &[at(-31), at(400)]).len(), 1);
    }

    #[test]
    fn sensor_noise_and_single_spikes_do_not_trigger() {
        // 24 h of 110 ± up to 10 (deterministic), plus one reading 45 above at noon.
        let mut x = 7u64;
        let r = trace(0, 1440, |t| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = ((x >> 33) % 21) as f64 - 10.0;
            if t == 720 {
                155.0
            } else {
                110.0 + noise
            }
        });
        assert!(unlogged_meals(&r, &[]).is_empty());
        // The same spike held for two readings is a rise.
        let mut r2 = trace(0, 1440, |_| 110.0);
        r2[144].mg_dl = 150.0;
        r2[145].mg_dl = 150.0;
        assert_eq!(unlogged_meals(&r2, &[]).len(), 1);
    }

    #[test]
    fn a_rise_from_an_unstable_baseline_or_a_slow_drift_does_not_trigger() {
        // Zig-zag 90/110 (range 20 > 15) before the same bump.
        let r = trace(-120, 300, |t| {
            if t <= 0 {
                if (t / 5) % 2 == 0 {
                    90.0
                } else {
                    110.0
                }
            } else {
                bump(t)
            }
        });
        assert!(unlogged_meals(&r, &[]).is_empty());
        // A drift of 0.3 mg/dL per min: the baseline (the mean of the 30 min up to a
        // start) is 4.5 below the start, which is 18 below the reading 60 min later:
        // 22.5 < 30.
        let r = trace(0, 600, |t| 100.0 + 0.3 * t as f64);
        assert!(unlogged_meals(&r, &[]).is_empty());
    }

    #[test]
    fn two_rises_far_apart_are_two_suggestions() {
        let r = trace(-120, 720, |t| bump(t).max(bump(t - 360)));
        let s = unlogged_meals(&r, &[]);
        assert_eq!(
            s.iter().map(|x| (x.start, x.peak_at)).collect::<Vec<_>>(),
            [(at(0), at(30)), (at(360), at(390))]
        );
        // The second logged: only the first remains.
        let s = unlogged_meals(&r, &[at(365)]);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].start, at(0));
    }

    #[test]
    fn too_few_baseline_readings_do_not_trigger() {
        // Only readings every 10 min before the rise: 4 in the 30 min up to 0.
        let r: Vec<_> = trace(-120, 300, bump)
            .into_iter()
            .filter(|s| s.at > at(0) || (s.at - t0()).num_minutes() % 10 == 0)
            .collect();
        // Candidate starts at 5 and later lack 5 readings in their baseline too
        // (−20, −10, 0, 5 … only 4 up to 5; 5 readings by 10 but 100…120 spans 20).
        assert!(unlogged_meals(&r, &[]).is_empty());
    }
}
