//! Every reward formula on hand-computed arcs, the accommodation guard on a scripted conversation, and the
//! composition and its TOML configuration. No model: trajectories are built from given intensities.
//!
//! With the default neutral mass m = 2, one category at intensity x gives valence v·x/(2 + x), where v is the
//! category's table valence (Contentment 0.7, Sadness -0.7), and well-being 50·(1 + valence):
//!
//! | feeling         | valence  | well-being |
//! |-----------------|----------|------------|
//! | Sadness 1.0     | -0.23333 | 38.3333    |
//! | Sadness 0.5     | -0.14    | 43         |
//! | nothing         | 0        | 50         |
//! | Contentment 0.5 | 0.14     | 57         |
//! | Contentment 1.0 | 0.23333  | 61.6667    |

use emoarc::reward::{AccommodationGuard, Delta, Discounted, RewardFn, Target, TermName, Terminal, Trend, WeightedReward};
use emoarc::trajectory::{AffectModel, Trajectory};
use emoarc::{Category, Intensities, RewardConfig};

fn feeling(pairs: &[(Category, f32)]) -> Intensities {
    let mut x = Intensities::default();
    for &(c, v) in pairs {
        x[c] = v;
    }
    x
}

fn sad(x: f32) -> Intensities {
    feeling(&[(Category::Sadness, x)])
}

fn content(x: f32) -> Intensities {
    feeling(&[(Category::Contentment, x)])
}

/// A conversation alternating user and assistant turns; the assistant says nothing emotional unless given.
fn conversation(turns: &[(&str, Intensities)]) -> Trajectory {
    let turns = turns.iter().map(|(r, x)| (r.to_string(), *x));
    Trajectory::from_turns("scripted", "user", turns, &AffectModel::default()).unwrap()
}

/// The user's well-being goes 38.333, 43, 50, 57 with neutral replies between.
fn improving() -> Trajectory {
    let quiet = Intensities::default();
    conversation(&[
        ("user", sad(1.0)),
        ("assistant", quiet),
        ("user", sad(0.5)),
        ("assistant", quiet),
        ("user", quiet),
        ("assistant", quiet),
        ("user", content(0.5)),
    ])
}

fn close(got: f32, want: f32) {
    assert!((got - want).abs() < 1e-4, "got {got}, want {want}");
}

#[test]
fn the_arc_has_the_hand_computed_wellbeing() {
    let t = improving();
    let w = t.arc().wellbeing();
    for (got, want) in w.iter().zip([38.3333, 43.0, 50.0, 57.0]) {
        close(*got, want);
    }
    assert_eq!(t.arc().turns(), &[0, 2, 4, 6]);
}

#[test]
fn terminal_is_final_wellbeing_over_100() {
    close(Terminal.reward(&improving()), 0.57);
}

#[test]
fn delta_is_end_minus_start() {
    close(Delta.reward(&improving()), (57.0 - 38.3333) / 100.0);
    let flat = conversation(&[("user", sad(0.5)), ("user", sad(0.5))]);
    close(Delta.reward(&flat), 0.0);
    let single = conversation(&[("user", sad(0.5))]);
    close(Delta.reward(&single), 0.0);
}

#[test]
fn discounted_sums_discounted_changes() {
    // changes 4.6667, 7, 7 points: 0.046667 + 0.9 * 0.07 + 0.81 * 0.07
    let t = improving();
    close(Discounted::new(0.9).unwrap().reward(&t), 0.046667 + 0.063 + 0.0567);
    // With gamma 1 the shaping telescopes to delta.
    close(Discounted::new(1.0).unwrap().reward(&t), Delta.reward(&t));
    let terms = Discounted::shaping_terms(t.arc());
    for (got, want) in terms.iter().zip([0.046667, 0.07, 0.07]) {
        close(*got, want);
    }
    assert!(Discounted::new(0.0).is_err() && Discounted::new(1.5).is_err());
}

#[test]
fn discounted_prefers_getting_better_sooner() {
    let quiet = Intensities::default();
    let early = conversation(&[("user", sad(1.0)), ("user", quiet), ("user", quiet)]);
    let late = conversation(&[("user", sad(1.0)), ("user", sad(1.0)), ("user", quiet)]);
    let d = Discounted::default();
    assert!(d.reward(&early) > d.reward(&late));
    close(Delta.reward(&early), Delta.reward(&late));
}

#[test]
fn trend_weighs_level_slope_and_volatility() {
    // level 0.57; slope over 43, 50, 57 = 7 points a turn; changes 4.6667, 7, 7 have standard deviation
    // sqrt(((−1.5556)² + 0.7778² + 0.7778²) / 3) = 1.1 points.
    let t = improving();
    close(Trend::default().reward(&t), 0.57 + 0.07 - 0.5 * 0.011);
    let level_only = Trend {
        trend: 0.0,
        volatility: 0.0,
        ..Trend::default()
    };
    close(level_only.reward(&t), 0.57);
    // Clipped to [0, 1].
    let steep = Trend {
        trend: 100.0,
        ..Trend::default()
    };
    close(steep.reward(&t), 1.0);
    let falling = conversation(&[("user", content(1.0)), ("user", sad(1.0))]);
    close(steep.reward(&falling), 0.0);
}

#[test]
fn target_moves_the_chosen_categories() {
    let start = feeling(&[(Category::Distress, 0.6), (Category::Helplessness, 0.4)]);
    let end = feeling(&[(Category::Distress, 0.2), (Category::Helplessness, 0.4), (Category::Relief, 0.5)]);
    let t = conversation(&[("user", start), ("assistant", Intensities::default()), ("user", end)]);
    // default: Distress and Helplessness down -> ((0.6 - 0.2) + (0.4 - 0.4)) / 2
    close(Target::default().reward(&t), 0.2);
    let mixed = Target::new(vec![Category::Distress], vec![Category::Relief]).unwrap();
    close(mixed.reward(&t), (0.4 + 0.5) / 2.0);
    assert!(Target::new(vec![], vec![]).is_err());
    assert!(Target::new(vec![Category::Fear], vec![Category::Fear]).is_err());
}

/// The tone-floor pattern: a sad user, a cheerful reply, a sadder user, a reply that meets them where they are.
fn scripted_rebound() -> Trajectory {
    conversation(&[
        ("assistant", content(1.0)), // an opening before the user speaks is not judged
        ("user", sad(1.0)),          // -0.23333
        ("assistant", content(1.0)), // +0.23333: runs 0.46667 above the user
        ("user", sad(0.5)),          // -0.14
        ("assistant", sad(0.5)),     // -0.14: meets the user, no excess
        ("user", Intensities::default()),
    ])
}

#[test]
fn the_guard_measures_how_far_replies_run_above_the_user() {
    let report = AccommodationGuard::default().assess(&scripted_rebound());
    assert_eq!(report.replies.len(), 2);
    assert_eq!(report.replies[0].turn, 2);
    close(report.replies[0].speaker_valence, -0.23333);
    close(report.replies[0].excess, 0.46667);
    close(report.replies[1].excess, 0.0);
    close(report.mean, 0.23333);
    close(report.max, 0.46667);
    assert_eq!(report.max_turn, Some(2));
    // A margin forgives that much brightness per reply.
    let lenient = AccommodationGuard { margin: 0.2 };
    close(lenient.assess(&scripted_rebound()).mean, 0.26667 / 2.0);
    // As a reward term it is a penalty.
    close(AccommodationGuard::default().reward(&scripted_rebound()), -0.23333);
    // A conversation without replies has nothing to penalise.
    close(AccommodationGuard::default().reward(&conversation(&[("user", sad(1.0))])), 0.0);
}

#[test]
fn weighted_reward_is_the_weighted_sum_of_its_terms() {
    let t = scripted_rebound();
    let r = WeightedReward::new().with(1.0, Terminal).with(0.5, AccommodationGuard::default());
    close(r.reward(&t), 0.5 - 0.5 * 0.23333);
    let terms = r.terms(&t);
    assert_eq!(terms[0].0, "terminal");
    close(terms[0].1, 0.5);
    assert_eq!(terms[1].0, "accommodation");
    close(terms[1].1, -0.23333);
}

#[test]
fn config_from_toml_and_from_a_list() {
    let cfg = RewardConfig::from_toml(
        "[terms]\ndelta = 2.0\naccommodation = 0.5\n[discounted]\ngamma = 0.5\n[target]\ndown = [\"Fear\"]\n",
    )
    .unwrap();
    assert_eq!(cfg.discounted.gamma, 0.5);
    assert_eq!(cfg.target.down, vec![Category::Fear]);
    assert_eq!(cfg.trend, Trend::default());
    let t = improving();
    // The neutral replies run 0.23333, 0.14 and 0 above the user: a mean excess of 0.12444.
    close(cfg.build().unwrap().reward(&t), 2.0 * Delta.reward(&t) - 0.5 * 0.124444);

    let mut cfg = RewardConfig::default();
    cfg.set_terms("terminal=1, accommodation=0.25").unwrap();
    assert_eq!(cfg.terms[&TermName::Accommodation], 0.25);
    cfg.set_terms("discounted").unwrap();
    assert_eq!(cfg.terms.len(), 1);
    // No terms: terminal alone.
    close(RewardConfig::default().build().unwrap().reward(&t), 0.57);

    let typo = RewardConfig::from_toml("[discounted]\ngama = 0.5\n").unwrap_err().to_string();
    assert!(typo.contains("gama"), "{typo}");
    let unknown = RewardConfig::default().set_terms("terminl").unwrap_err().to_string();
    assert!(unknown.contains("terminal, delta, discounted, trend, target, accommodation"), "{unknown}");
    assert!(RewardConfig::default().set_terms("delta=x").is_err());
    let bad_gamma = RewardConfig::from_toml("[discounted]\ngamma = 2.0\n").unwrap();
    assert!(bad_gamma.build().is_err());
}

#[test]
fn every_reward_of_an_empty_arc_is_zero() {
    let empty = Trajectory::new("empty", "user");
    let rewards: Vec<Box<dyn RewardFn>> = TermName::ALL.into_iter().map(|n| RewardConfig::default().term(n)).collect();
    for r in rewards {
        assert_eq!(r.reward(&empty), 0.0, "{}", r.name());
    }
}

#[test]
fn pairs_are_found_and_scored() {
    use emoarc::reward::{evaluate_pairs, find_pairs};
    use emoarc::Conversation;
    let line = |id: &str, pair: &str, outcome: &str| {
        format!(r#"{{"id": "{id}", "pair": {pair}, "outcome": "{outcome}", "failure": "ignored", "turns": [{{"role": "user", "text": "x"}}]}}"#)
    };
    let lines = [line("a+", "\"a\"", "better"), line("solo", "null", "mixed"), line("a-", "\"a\"", "worse")];
    let conversations: Vec<Conversation> =
        lines.iter().enumerate().map(|(i, l)| Conversation::from_json_line(l, i + 1).unwrap()).collect();
    let pairs = find_pairs(&conversations).unwrap();
    assert_eq!(pairs.len(), 1);
    assert_eq!((pairs[0].better, pairs[0].worse, pairs[0].failure.as_deref()), (0, 2, Some("ignored")));
    // The better one ends content after a cheerful reply; the worse one sad after the same cheerful reply.
    let trajectories = vec![
        conversation(&[("user", sad(1.0)), ("assistant", content(1.0)), ("user", content(0.5))]),
        conversation(&[("user", sad(1.0))]),
        conversation(&[("user", sad(1.0)), ("assistant", content(1.0)), ("user", sad(1.0))]),
    ];
    let report = evaluate_pairs(&pairs, &trajectories, &[&Terminal, &Delta], &AccommodationGuard::default());
    assert_eq!(report.pairs, 1);
    assert_eq!(report.rewards[0].all.better_higher, 1);
    assert_eq!(report.rewards[1].half_a.share, 1.0);
    assert_eq!(report.rewards[1].half_b.pairs, 0);
    close(report.guard.all.worse, 0.46667);
    assert_eq!(report.guard.by_failure["ignored"].pairs, 1);
    // Every pair's rewards are kept, under the trajectories' ids (the conversations' when scored from them), so a
    // miss can be looked up.
    let scores = &report.per_pair[0];
    assert_eq!((scores.pair.as_str(), scores.failure.as_deref()), ("a", Some("ignored")));
    assert_eq!((&scores.better, &scores.worse), (&trajectories[0].id, &trajectories[2].id));
    let [better, worse] = scores.rewards["terminal"];
    assert_eq!([better, worse], [Terminal.reward(&trajectories[0]), Terminal.reward(&trajectories[2])]);
    assert_eq!((scores.ranked_right("terminal"), scores.ranked_right("trend")), (Some(true), None));

    let unpaired = [line("b+", "\"b\"", "better"), line("b+again", "\"b\"", "better")];
    let conversations: Vec<Conversation> =
        unpaired.iter().map(|l| Conversation::from_json_line(l, 1).unwrap()).collect();
    let e = find_pairs(&conversations).unwrap_err().to_string();
    assert!(e.contains("b+again") && e.contains("second better"), "{e}");
    let e = find_pairs(&conversations[..1]).unwrap_err().to_string();
    assert!(e.contains("only one conversation"), "{e}");
}
