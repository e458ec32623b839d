//! [`Intensities`]: one utterance's 40 continuous emotion intensities in `[0, 1]`, indexed by [`Category`].
//! It owns the JSON form used everywhere (an object keyed by category name, in canonical order), so the CLI,
//! the server and the data files all read and write the same shape. [`Affect`] (valence, arousal, well-being)
//! is the other per-utterance measurement, kept here so the estimator and the arcs share it without one
//! depending on the other.

use crate::taxonomy::{Category, NUM_CATEGORIES};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::{Index, IndexMut};

/// 40 intensities, one per category in canonical order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Intensities([f32; NUM_CATEGORIES]);

impl Default for Intensities {
    fn default() -> Self {
        Intensities([0.0; NUM_CATEGORIES])
    }
}

impl Intensities {
    /// Wraps a vector in canonical order. Values are kept as given; the model's head guarantees `[0, 1]`.
    pub const fn new(values: [f32; NUM_CATEGORIES]) -> Self {
        Intensities(values)
    }

    /// Builds from a slice in canonical order; `None` unless it has exactly 40 values.
    pub fn from_slice(values: &[f32]) -> Option<Self> {
        <[f32; NUM_CATEGORIES]>::try_from(values).ok().map(Intensities)
    }

    /// The values in canonical order.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// The values as a fixed-size array in canonical order.
    pub fn as_array(&self) -> &[f32; NUM_CATEGORIES] {
        &self.0
    }

    /// `(category, intensity)` pairs in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (Category, f32)> + '_ {
        Category::ALL.into_iter().zip(self.0.iter().copied())
    }

    /// The `k` strongest categories, strongest first; ties keep canonical order so output is stable.
    pub fn top(&self, k: usize) -> Vec<(Category, f32)> {
        let mut pairs: Vec<(Category, f32)> = self.iter().collect();
        pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        pairs.truncate(k);
        pairs
    }

    /// The strongest category and its intensity.
    pub fn max(&self) -> (Category, f32) {
        self.top(1)[0]
    }

    /// Elementwise maximum: how chunks of one long text are combined (a feeling anywhere in it counts).
    pub fn max_with(&self, other: &Intensities) -> Intensities {
        let mut out = *self;
        for (o, v) in out.0.iter_mut().zip(other.0) {
            *o = o.max(v);
        }
        out
    }

    /// Largest absolute difference to another vector (used to state determinism and precision bounds).
    pub fn max_abs_diff(&self, other: &Intensities) -> f32 {
        self.0
            .iter()
            .zip(other.0.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }
}

impl Index<Category> for Intensities {
    type Output = f32;
    fn index(&self, c: Category) -> &f32 {
        &self.0[c.index()]
    }
}

impl IndexMut<Category> for Intensities {
    fn index_mut(&mut self, c: Category) -> &mut f32 {
        &mut self.0[c.index()]
    }
}

/// Rounds for output: four decimals is well below the model's precision and keeps files small. The one
/// rounding rule of every output (CLI records, Python records, the server's answers).
pub(crate) fn round4(v: impl Into<f64>) -> f64 {
    (v.into() * 1e4).round() / 1e4
}

impl Serialize for Intensities {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(NUM_CATEGORIES))?;
        for (c, v) in self.iter() {
            map.serialize_entry(c.name(), &round4(v))?;
        }
        map.end()
    }
}

/// Deserialises from an object keyed by category name. Missing categories are 0 (the corpus format lists only
/// the present ones); unknown names and values outside `[0, 1]` are errors.
impl<'de> Deserialize<'de> for Intensities {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Intensities;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object mapping EmoNet category names to intensities in [0, 1]")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Intensities, A::Error> {
                let mut out = Intensities::default();
                while let Some((name, value)) = m.next_entry::<String, f64>()? {
                    let c = Category::from_name(&name).ok_or_else(|| {
                        serde::de::Error::custom(format!("unknown category {name:?}"))
                    })?;
                    if !(0.0..=1.0).contains(&value) {
                        return Err(serde::de::Error::custom(format!(
                            "intensity {value} for {name:?} is outside [0, 1]"
                        )));
                    }
                    out[c] = value as f32;
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// One utterance's position in affect space.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Affect {
    /// `[-1, 1]`.
    pub valence: f32,
    /// `[0, 1]`.
    pub arousal: f32,
    /// RLVER's scale, `[0, 100]`: `50 * (1 + valence)`.
    pub wellbeing: f32,
}

impl Affect {
    /// From valence and arousal on `[0, 1]` (a head's sigmoid outputs, trained on EmoBank's 1-5 ratings
    /// rescaled by `(x - 1) / 4`): valence moves to `[-1, 1]`, arousal stays.
    pub fn from_unit(valence: f32, arousal: f32) -> Affect {
        Affect::new(2.0 * valence - 1.0, arousal)
    }

    /// From valence on `[-1, 1]` and arousal on `[0, 1]` (clamped); well-being follows from valence.
    pub fn new(valence: f32, arousal: f32) -> Affect {
        let valence = valence.clamp(-1.0, 1.0);
        Affect {
            valence,
            arousal: arousal.clamp(0.0, 1.0),
            wellbeing: 50.0 * (1.0 + valence),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_is_sorted_and_stable() {
        let mut v = Intensities::default();
        v[Category::Anger] = 0.8;
        v[Category::Fear] = 0.3;
        v[Category::Sadness] = 0.3;
        let top = v.top(3);
        assert_eq!(top[0], (Category::Anger, 0.8));
        // Fear (21) comes before Sadness (27) on a tie.
        assert_eq!(top[1].0, Category::Fear);
        assert_eq!(top[2].0, Category::Sadness);
    }

    #[test]
    fn json_round_trip_and_sparse_input() {
        let mut v = Intensities::default();
        v[Category::ThankfulnessGratitude] = 0.75;
        let json = serde_json::to_string(&v).unwrap();
        assert!(json.starts_with("{\"Amusement\":0.0"));
        let back: Intensities = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
        let sparse: Intensities = serde_json::from_str(r#"{"Anger": 0.5}"#).unwrap();
        assert_eq!(sparse[Category::Anger], 0.5);
        assert!(serde_json::from_str::<Intensities>(r#"{"Angry": 0.5}"#).is_err());
        assert!(serde_json::from_str::<Intensities>(r#"{"Anger": 1.5}"#).is_err());
    }
}
