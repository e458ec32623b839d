//! [`EmotionArc`] (one speaker's per-turn intensities and the valence, arousal and well-being series derived
//! from them), its [`ArcSummary`], and [`Trajectory`], a whole scored conversation: every turn's affect plus
//! the speaker's arc, which is what rewards read.

use super::affect::{Affect, AffectModel};
use super::reading::ClauseScore;
use super::conversation::require_role;
use crate::error::Result;
use crate::intensities::Intensities;
use crate::taxonomy::{Category, NUM_CATEGORIES};
use serde::Serialize;

/// One speaker's emotional trajectory: a point per turn of theirs, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EmotionArc {
    turns: Vec<usize>,
    intensities: Vec<Intensities>,
    valence: Vec<f32>,
    arousal: Vec<f32>,
    wellbeing: Vec<f32>,
}

impl EmotionArc {
    /// An arc from intensities, one per speaker turn, numbered 0, 1, 2, ...
    pub fn from_intensities(intensities: impl IntoIterator<Item = Intensities>, model: &AffectModel) -> EmotionArc {
        let mut arc = EmotionArc::default();
        for (turn, x) in intensities.into_iter().enumerate() {
            arc.push(turn, x, model);
        }
        arc
    }

    /// Appends the speaker's next turn; `turn` is its position in the conversation (turns must increase).
    pub fn push(&mut self, turn: usize, intensities: Intensities, model: &AffectModel) {
        self.push_affect(turn, intensities, model.affect(&intensities));
    }

    fn push_affect(&mut self, turn: usize, intensities: Intensities, affect: Affect) {
        debug_assert!(self.turns.last().map_or(true, |&t| t < turn), "arc turns must increase");
        self.turns.push(turn);
        self.intensities.push(intensities);
        self.valence.push(affect.valence);
        self.arousal.push(affect.arousal);
        self.wellbeing.push(affect.wellbeing);
    }

    /// How many points (speaker turns) the arc has.
    pub fn len(&self) -> usize {
        self.turns.len()
    }

    /// Whether the speaker has no turn yet; rewards and summaries need at least one point.
    pub fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// Each point's position in the conversation (0-based, counting every role's turns).
    pub fn turns(&self) -> &[usize] {
        &self.turns
    }

    /// The 40 intensities (each 0 to 1) of each point, as the turn was read.
    pub fn intensities(&self) -> &[Intensities] {
        &self.intensities
    }

    /// `[-1, 1]` per point.
    pub fn valence(&self) -> &[f32] {
        &self.valence
    }

    /// `[0, 1]` per point.
    pub fn arousal(&self) -> &[f32] {
        &self.arousal
    }

    /// `[0, 100]` per point (RLVER's scale).
    pub fn wellbeing(&self) -> &[f32] {
        &self.wellbeing
    }

    /// One category's intensity per point.
    pub fn category(&self, c: Category) -> Vec<f32> {
        self.intensities.iter().map(|x| x[c]).collect()
    }

    /// The summary, with the trend taken over the last `window` points; `None` for an empty arc.
    pub fn summary(&self, window: usize) -> Option<ArcSummary> {
        let w = &self.wellbeing;
        let (&start, &end) = (w.first()?, w.last()?);
        let lowest = argmin(w);
        let changes = category_changes(self.intensities.first()?, self.intensities.last()?);
        Some(ArcSummary {
            start,
            end,
            change: end - start,
            min: w[lowest],
            min_turn: self.turns[lowest],
            trend: slope(tail(w, window)),
            volatility: volatility(w),
            rose: changes.iter().rev().take(SUMMARY_CATEGORIES).filter(|c| c.1 > 0.0).copied().collect(),
            fell: changes.iter().take(SUMMARY_CATEGORIES).filter(|c| c.1 < 0.0).copied().collect(),
            recovery_turns: w[lowest..].iter().position(|&v| v >= start),
        })
    }
}

/// How many categories the summary lists as rising and falling.
const SUMMARY_CATEGORIES: usize = 3;

/// The trend window used when none is given: three points see a direction without reaching back to the opening.
pub const DEFAULT_TREND_WINDOW: usize = 3;

/// The arc in a few numbers, well-being in points of the 0–100 scale.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArcSummary {
    /// Well-being at the speaker's first turn.
    pub start: f32,
    /// Well-being at the speaker's last turn.
    pub end: f32,
    /// `end - start`.
    pub change: f32,
    /// The lowest well-being and the conversation turn where it was.
    pub min: f32,
    /// The conversation turn (0-based, counting every role's turns) of the lowest well-being; the first such
    /// turn on a tie.
    pub min_turn: usize,
    /// Least-squares slope of well-being per speaker turn over the last `window` points (0 for one point).
    pub trend: f32,
    /// Standard deviation of the turn-to-turn changes in well-being (0 for fewer than two changes).
    pub volatility: f32,
    /// The categories whose intensity rose most from the first point to the last, largest first.
    pub rose: Vec<(Category, f32)>,
    /// The categories whose intensity fell most, largest fall first.
    pub fell: Vec<(Category, f32)>,
    /// Speaker turns from the lowest point until well-being is back at its starting level (0 when the lowest
    /// point is the start or the arc never went below it); `None` if it never gets back.
    pub recovery_turns: Option<usize>,
}

/// Index of the first minimum.
fn argmin(xs: &[f32]) -> usize {
    xs.iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v < xs[best] { i } else { best })
}

/// The last `window` values (all of them when there are fewer).
pub(crate) fn tail(xs: &[f32], window: usize) -> &[f32] {
    &xs[xs.len().saturating_sub(window.max(1))..]
}

/// Least-squares slope against the index; 0 for fewer than two values.
pub(crate) fn slope(ys: &[f32]) -> f32 {
    let n = ys.len() as f32;
    if ys.len() < 2 {
        return 0.0;
    }
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = ys.iter().sum::<f32>() / n;
    let (num, den) = ys.iter().enumerate().fold((0.0, 0.0), |(num, den), (i, &y)| {
        let dx = i as f32 - mean_x;
        (num + dx * (y - mean_y), den + dx * dx)
    });
    num / den
}

/// Population standard deviation of successive differences; 0 for fewer than two differences.
pub(crate) fn volatility(ys: &[f32]) -> f32 {
    if ys.len() < 3 {
        return 0.0;
    }
    let diffs: Vec<f32> = ys.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
    (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f32>() / diffs.len() as f32).sqrt()
}

/// Per-category change from `first` to `last`, sorted from largest fall to largest rise.
fn category_changes(first: &Intensities, last: &Intensities) -> Vec<(Category, f32)> {
    let mut changes: Vec<(Category, f32)> = Category::ALL.iter().map(|&c| (c, last[c] - first[c])).collect();
    changes.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    debug_assert_eq!(changes.len(), NUM_CATEGORIES);
    changes
}

/// One scored turn of any role.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredTurn {
    /// Who spoke, as the conversation names the role (`user`, `assistant`, ...).
    pub role: String,
    /// The turn's 40 intensities, each 0 to 1 (combined over its clauses when read clause by clause).
    pub intensities: Intensities,
    /// The turn's valence, arousal and well-being.
    pub affect: Affect,
}

/// A scored conversation: every turn's intensities and affect, and the speaker's [`EmotionArc`]. Rewards read
/// the arc; the accommodation guard also reads the other roles' turns.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    /// The conversation's id, as given (used in errors and output).
    pub id: String,
    /// The role whose turns form the arc.
    pub speaker: String,
    turns: Vec<ScoredTurn>,
    arc: EmotionArc,
}

impl Trajectory {
    /// An empty trajectory that turns are pushed onto (as [`ArcTracker`](super::ArcTracker) does).
    pub fn new(id: impl Into<String>, speaker: impl Into<String>) -> Trajectory {
        Trajectory {
            id: id.into(),
            speaker: speaker.into(),
            turns: Vec::new(),
            arc: EmotionArc::default(),
        }
    }

    /// A trajectory from already known intensities, one per turn: `(role, intensities)` in order. This is how
    /// tests and callers with their own scores build one without a model. Errors if the speaker has no turn.
    pub fn from_turns(
        id: impl Into<String>,
        speaker: impl Into<String>,
        turns: impl IntoIterator<Item = (String, Intensities)>,
        model: &AffectModel,
    ) -> Result<Trajectory> {
        let mut t = Trajectory::new(id, speaker);
        for (role, x) in turns {
            t.push(role, x, model);
        }
        t.check_speaker()?;
        Ok(t)
    }

    /// Appends the next turn; it joins the arc when its role is the speaker's. Affect comes from the table.
    pub fn push(&mut self, role: impl Into<String>, intensities: Intensities, model: &AffectModel) -> &ScoredTurn {
        self.push_scored(role, ClauseScore { intensities, affect: None }, model)
    }

    /// Appends the next turn as the model read it: the head's learned affect is used when it has one (see
    /// [`AffectModel::resolve`]).
    pub fn push_scored(&mut self, role: impl Into<String>, score: ClauseScore, model: &AffectModel) -> &ScoredTurn {
        let role = role.into();
        let intensities = score.intensities;
        let affect = model.resolve(&intensities, score.affect);
        if role == self.speaker {
            self.arc.push_affect(self.turns.len(), intensities, affect);
        }
        self.turns.push(ScoredTurn {
            role,
            intensities,
            affect,
        });
        self.turns.last().expect("just pushed")
    }

    pub(crate) fn check_speaker(&self) -> Result<()> {
        require_role(&self.id, &self.speaker, self.turns.iter().map(|t| t.role.as_str()))
    }

    /// Every turn, all roles, in order.
    pub fn turns(&self) -> &[ScoredTurn] {
        &self.turns
    }

    /// The speaker's arc.
    pub fn arc(&self) -> &EmotionArc {
        &self.arc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arcs whose well-being is exactly the given values: a single Contentment or Sadness intensity `x` gives
    /// valence `±0.7x/(2+x)`, so pick `x` for each target (the table and the default neutral mass).
    fn arc(wellbeing: &[f32]) -> EmotionArc {
        let points = wellbeing.iter().map(|&w| {
            let v = w / 50.0 - 1.0;
            let (c, s) = if v >= 0.0 { (Category::Contentment, 0.7) } else { (Category::Sadness, -0.7) };
            // v = s x / (2 + x)  =>  x = 2v / (s - v)
            let mut x = Intensities::default();
            x[c] = 2.0 * v / (s - v);
            x
        });
        EmotionArc::from_intensities(points, &AffectModel::default())
    }

    #[test]
    fn summary_of_a_dip_and_recovery() {
        let a = arc(&[40.0, 30.0, 35.0, 45.0, 55.0]);
        for (got, want) in a.wellbeing().iter().zip([40.0, 30.0, 35.0, 45.0, 55.0]) {
            assert!((got - want).abs() < 1e-3);
        }
        let s = a.summary(3).unwrap();
        assert!((s.change - 15.0).abs() < 1e-3);
        assert!((s.min - 30.0).abs() < 1e-3);
        assert_eq!(s.min_turn, 1);
        // last three: 35, 45, 55 -> slope 10
        assert!((s.trend - 10.0).abs() < 1e-3);
        // changes -10, 5, 10, 10: mean 3.75, squared deviations 189.0625, 1.5625, 39.0625, 39.0625
        assert!((s.volatility - (268.75f32 / 4.0).sqrt()).abs() < 1e-3);
        // back to 40 at index 3: two turns after the lowest point.
        assert_eq!(s.recovery_turns, Some(2));
        assert_eq!(s.rose[0].0, Category::Contentment);
        assert_eq!(s.fell[0].0, Category::Sadness);
        assert_eq!(arc(&[40.0, 30.0]).summary(3).unwrap().recovery_turns, None);
        assert_eq!(arc(&[40.0, 60.0]).summary(3).unwrap().recovery_turns, Some(0));
        assert!(EmotionArc::default().summary(3).is_none());
    }

    #[test]
    fn trajectory_keeps_every_role_and_arcs_the_speaker() {
        let model = AffectModel::default();
        let mut sad = Intensities::default();
        sad[Category::Sadness] = 0.5;
        let turns = vec![
            ("user".to_string(), sad),
            ("assistant".to_string(), Intensities::default()),
            ("user".to_string(), Intensities::default()),
        ];
        let t = Trajectory::from_turns("x", "user", turns, &model).unwrap();
        assert_eq!(t.turns().len(), 3);
        assert_eq!(t.arc().turns(), &[0, 2]);
        let none = Trajectory::from_turns("y", "client", vec![("user".to_string(), sad)], &model);
        assert!(none.unwrap_err().to_string().contains("no turn by speaker \"client\""));
    }
}
