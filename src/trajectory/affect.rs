//! From 40 intensities to the two dimensions an arc is drawn in: valence (unpleasant to pleasant, `[-1, 1]`)
//! and arousal (calm to activated, `[0, 1]`), and from valence to a well-being score on RLVER's 0–100 scale.
//! It owns the per-category table ([`AFFECT_TABLE`]), which starts from a prior per taxonomy family
//! ([`family_prior`]) and moves a category away from it only with a stated reason, so that no number that
//! shapes a reward is hidden in code.

pub use crate::intensities::Affect;
use crate::intensities::Intensities;
use crate::taxonomy::{Category, Family, NUM_CATEGORIES};

/// Where a category sits on the circumplex of affect, and why there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CategoryAffect {
    /// The category placed (rows of [`AFFECT_TABLE`] are in canonical order).
    pub category: Category,
    /// Unpleasant (-1) to pleasant (+1).
    pub valence: f32,
    /// Calm (0) to activated (1).
    pub arousal: f32,
    /// One line on why the values are what they are (relative to the family prior).
    pub rationale: &'static str,
}

/// The starting point for every category of a family: the family's names say valence and energy directly
/// (Positive/Negative, High-/Low-Energy); the three descriptive families get the typical placement of their
/// members on Russell's circumplex.
pub const fn family_prior(family: Family) -> (f32, f32) {
    match family {
        Family::PositiveHighEnergy => (0.7, 0.7),
        Family::PositiveLowEnergy => (0.6, 0.3),
        Family::NegativeHighEnergy => (-0.7, 0.8),
        Family::NegativeLowEnergy => (-0.6, 0.3),
        // Thinking is neither pleasant nor unpleasant in itself and takes moderate effort.
        Family::Cognitive => (0.0, 0.5),
        // Bodily states in the taxonomy are mostly aversive (pain, fatigue, sourness).
        Family::PhysicalExhaustive => (-0.5, 0.4),
        // Desire is mildly pleasant and activating.
        Family::LongingLust => (0.3, 0.6),
    }
}

macro_rules! affect_table {
    ($($cat:ident: $v:literal, $a:literal, $why:literal;)*) => {
        /// Valence and arousal of every category, in canonical order (a test checks the order, the ranges and
        /// that no category strays far from its family prior).
        pub const AFFECT_TABLE: [CategoryAffect; NUM_CATEGORIES] = [
            $(CategoryAffect { category: Category::$cat, valence: $v, arousal: $a, rationale: $why },)*
        ];
    };
}

affect_table! {
    Amusement: 0.7, 0.6, "family prior; laughter is pleasant and lively but less intense than elation";
    Elation: 0.9, 0.8, "the most pleasant, most energised states of the family";
    PleasureEcstasy: 0.9, 0.8, "intense enjoyment: as elation";
    Contentment: 0.7, 0.2, "pleasant and settled: the calm end of the positive quadrant";
    ThankfulnessGratitude: 0.7, 0.3, "warmly pleasant, quiet; in conversations it marks having been helped";
    Affection: 0.7, 0.4, "warm and pleasant with some engagement toward another person";
    Infatuation: 0.5, 0.7, "pleasant but restless and preoccupying, above the family's desire prior";
    HopeEnthusiasmOptimism: 0.7, 0.6, "family prior: looking forward with energy";
    Triumph: 0.8, 0.8, "strongly pleasant and activated by success";
    Pride: 0.6, 0.5, "pleasant self-regard; more activated than contentment";
    Interest: 0.4, 0.5, "engaged but only mildly pleasant: curiosity is not joy";
    Awe: 0.5, 0.6, "pleasant overall but mixed with being overwhelmed";
    AstonishmentSurprise: 0.2, 0.8, "surprise is high arousal with little valence of its own; the family puts it slightly positive";
    Concentration: 0.1, 0.5, "focused effort, barely pleasant (flow)";
    Contemplation: 0.1, 0.2, "quiet reflection: nearly neutral and calm, far below the family's pleasantness";
    Relief: 0.6, 0.2, "pleasant release of tension: low arousal by definition";
    Longing: -0.2, 0.4, "the ache of something absent: mildly unpleasant despite its family";
    Teasing: 0.3, 0.6, "playful but double-edged: only mildly positive";
    ImpatienceIrritability: -0.5, 0.7, "unpleasant and agitated, milder than anger";
    SexualLust: 0.4, 0.8, "pleasant and strongly activating";
    Doubt: -0.3, 0.4, "uncertainty: mildly unpleasant, some unrest";
    Fear: -0.8, 0.9, "strongly unpleasant threat response, the most activated";
    Distress: -0.8, 0.8, "acute suffering and overwhelm: strongly unpleasant and agitated";
    Confusion: -0.3, 0.5, "not understanding is mildly unpleasant and effortful";
    Embarrassment: -0.5, 0.6, "social discomfort with a flush of arousal, milder than shame";
    Shame: -0.7, 0.4, "a painful judgement of oneself: more unpleasant than the family prior";
    Disappointment: -0.6, 0.3, "family prior: expectations let down, deflated";
    Sadness: -0.7, 0.2, "clearly unpleasant and low in energy";
    Bitterness: -0.6, 0.4, "lingering resentment: family prior with a little more agitation";
    Contempt: -0.5, 0.5, "cold disapproval of others: unpleasant, moderately activated";
    Disgust: -0.7, 0.6, "strong aversion, somewhat less activated than anger or fear";
    Anger: -0.7, 0.9, "unpleasant and among the most activated states";
    MalevolenceMalice: -0.8, 0.7, "wishing harm: strongly negative";
    Sourness: -0.4, 0.4, "a sour, sullen mood: mildly unpleasant";
    Pain: -0.8, 0.6, "physical or emotional pain is among the most unpleasant states";
    Helplessness: -0.8, 0.2, "no control and no way out: very unpleasant and deactivated";
    FatigueExhaustion: -0.5, 0.1, "depleted: unpleasant and the least activated state";
    EmotionalNumbness: -0.5, 0.1, "flatness and shutdown: unpleasant, deactivated";
    Intoxication: 0.0, 0.5, "altered states can be pleasant or not: neutral valence, moderate arousal";
    JealousyEnvy: -0.6, 0.6, "resentful wanting: family valence, more agitated than the family prior";
}

/// How intensities become [`Affect`]: an intensity-weighted mean of the table's values, shrunk toward neutral
/// by a fixed "neutral mass" so that faint, scattered activations (the head gives every category a little on
/// plain text) do not read as a strong feeling:
///
/// `valence = Σ x_c v_c / (m + Σ x_c)`, `arousal = Σ x_c a_c / (m + Σ x_c)`, `wellbeing = 50 (1 + valence)`.
///
/// With `m = 0` a single faint category would swing valence to that category's extreme; with large `m` the
/// amount of feeling expressed counts as much as its direction.
///
/// Heads trained on human valence/arousal ratings give their own affect; with `learned` set that is used and the
/// table is the fallback for heads without it. The default is the table: on the conversation pairs of
/// `emoarc eval-arcs` it ranked 32 of 48 pairs right with `terminal` against 28 for the learned affect, although
/// the learned valence is the better reading of EmoBank's single sentences (README, "Training and evaluation").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffectModel {
    /// `m` above; must be finite and non-negative.
    pub neutral_mass: f32,
    /// Use the head's learned valence and arousal when it has them (else always the table).
    pub learned: bool,
}

/// `m = 2`: a bit more than the total activation the shipped head gives a typical chat line (about 1.5 over
/// the 40 categories), so one clear feeling moves valence a good way and faint noise barely does.
pub const DEFAULT_NEUTRAL_MASS: f32 = 2.0;

impl Default for AffectModel {
    fn default() -> Self {
        AffectModel {
            neutral_mass: DEFAULT_NEUTRAL_MASS,
            learned: false,
        }
    }
}

impl AffectModel {
    /// The affect of one reading: the head's learned affect when it has one and `learned` is set, else the
    /// table's reading of the intensities.
    pub fn resolve(&self, intensities: &Intensities, learned: Option<Affect>) -> Affect {
        match learned {
            Some(a) if self.learned => a,
            _ => self.affect(intensities),
        }
    }

    /// The affect of one utterance's intensities.
    pub fn affect(&self, x: &Intensities) -> Affect {
        let (mut mass, mut v, mut a) = (self.neutral_mass, 0.0f32, 0.0f32);
        for (row, &xi) in AFFECT_TABLE.iter().zip(x.as_slice()) {
            let xi = xi.max(0.0);
            mass += xi;
            v += xi * row.valence;
            a += xi * row.arousal;
        }
        if mass <= 0.0 {
            return Affect {
                wellbeing: 50.0,
                ..Affect::default()
            };
        }
        let valence = (v / mass).clamp(-1.0, 1.0);
        Affect {
            valence,
            arousal: (a / mass).clamp(0.0, 1.0),
            wellbeing: 50.0 * (1.0 + valence),
        }
    }
}

/// The table's row for a category.
pub fn category_affect(c: Category) -> &'static CategoryAffect {
    &AFFECT_TABLE[c.index()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_canonical_in_range_and_near_its_family() {
        for (i, row) in AFFECT_TABLE.iter().enumerate() {
            assert_eq!(row.category.index(), i, "row {i} out of canonical order");
            assert!((-1.0..=1.0).contains(&row.valence) && (0.0..=1.0).contains(&row.arousal));
            let (pv, pa) = family_prior(row.category.family());
            // A category may leave its family's prior, but not jump to the other side of the circumplex.
            assert!((row.valence - pv).abs() <= 0.65, "{}: valence far from its family", row.category);
            assert!((row.arousal - pa).abs() <= 0.45, "{}: arousal far from its family", row.category);
            assert!(!row.rationale.is_empty());
        }
        for family in [Family::PositiveHighEnergy, Family::PositiveLowEnergy] {
            assert!(family.categories().all(|c| category_affect(c).valence > 0.0));
        }
        for family in [Family::NegativeHighEnergy, Family::NegativeLowEnergy] {
            assert!(family.categories().all(|c| category_affect(c).valence < 0.0));
        }
    }

    #[test]
    fn learned_affect_wins_unless_the_table_is_asked_for() {
        let mut x = Intensities::default();
        x[Category::Sadness] = 1.0;
        let learned = Affect::from_unit(0.75, 0.2);
        assert_eq!((learned.valence, learned.arousal, learned.wellbeing), (0.5, 0.2, 75.0));
        let model = AffectModel { learned: true, ..AffectModel::default() };
        assert_eq!(model.resolve(&x, Some(learned)), learned);
        // No learned affect (a head without it): the table.
        assert_eq!(model.resolve(&x, None), model.affect(&x));
        let table = AffectModel::default();
        assert_eq!(table.resolve(&x, Some(learned)), model.affect(&x));
        assert!(table.resolve(&x, Some(learned)).valence < 0.0);
    }

    #[test]
    fn affect_is_the_shrunk_weighted_mean() {
        let model = AffectModel::default();
        assert_eq!(model.affect(&Intensities::default()).wellbeing, 50.0);
        let mut x = Intensities::default();
        x[Category::Sadness] = 1.0;
        x[Category::Relief] = 1.0;
        // (-0.7 + 0.6) / (2 + 2) = -0.025; arousal (0.2 + 0.2) / 4 = 0.1
        let a = model.affect(&x);
        assert!((a.valence + 0.025).abs() < 1e-6);
        assert!((a.arousal - 0.1).abs() < 1e-6);
        assert!((a.wellbeing - 48.75).abs() < 1e-4);
        let unshrunk = AffectModel { neutral_mass: 0.0, learned: false }.affect(&x);
        assert!((unshrunk.valence + 0.05).abs() < 1e-6);
    }
}
