//! The JSON records the command line writes and the Python package returns, built in one place so that
//! `emoarc score`, `emoarc arc`, `emoarc reward` and `emoarc.score_records`, `emoarc.arc`, `emoarc.reward`
//! agree field for field and number for number.

use crate::estimator::Estimate;
use crate::intensities::round4;
use crate::reward::{RewardConfig, WeightedReward};
use crate::trajectory::{EmotionArc, Trajectory, DEFAULT_TREND_WINDOW};
use serde_json::{json, Map, Value};

/// Rounds every float in a JSON value to four decimals: far below the model's precision, and readable.
pub fn rounded(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Number(n) if n.is_f64() => {
                let x = n.as_f64().unwrap_or_default();
                *v = json!(round4(x));
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            Value::Object(map) => map.values_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// An arc's JSON form: the per-point series and the summary.
pub fn arc_json(arc: &EmotionArc) -> Value {
    json!({
        "turns": arc.turns(),
        "wellbeing": arc.wellbeing(),
        "valence": arc.valence(),
        "arousal": arc.arousal(),
        "summary": arc.summary(DEFAULT_TREND_WINDOW),
    })
}

/// `emoarc arc`'s record of one conversation (unrounded): its id, whose arc it is, and the arc.
pub fn arc_record(id: &str, trajectory: &Trajectory) -> Value {
    json!({
        "id": id,
        "speaker": trajectory.speaker,
        "arc": arc_json(trajectory.arc()),
    })
}

/// `emoarc reward`'s record of one conversation (unrounded): the reward, the arc it came from, each term's
/// value and the accommodation guard's report, so a reader can see why a conversation scored as it did.
pub fn reward_record(id: &str, config: &RewardConfig, reward: &WeightedReward, trajectory: &Trajectory) -> Value {
    use crate::reward::RewardFn;
    let terms: Map<String, Value> = reward
        .terms(trajectory)
        .into_iter()
        .map(|(name, value)| (name.to_string(), json!(value)))
        .collect();
    json!({
        "id": id,
        "reward": reward.reward(trajectory),
        "arc": arc_json(trajectory.arc()),
        "terms": terms,
        "accommodation": config.accommodation.assess(trajectory),
    })
}

/// `emoarc score`'s JSONL record of one utterance: its id, the 40 intensities (four decimals), the `top`
/// strongest categories and, for heads that learned them, valence and arousal.
pub fn score_record(id: &Value, estimate: &Estimate, top: usize) -> Value {
    let mut record = json!({
        "id": id,
        "intensities": estimate.intensities,
        "top": estimate
            .intensities
            .top(top)
            .into_iter()
            .map(|(c, v)| (c.name(), round4(v)))
            .collect::<Vec<_>>(),
    });
    if let Some(a) = estimate.affect {
        record["valence"] = json!(round4(a.valence));
        record["arousal"] = json!(round4(a.arousal));
    }
    record
}
