//! Arcs from the shipped model: the incremental tracker never re-encodes an earlier turn and serves repeated
//! text from its cache (proved by counting encoder sequences), and it agrees with the batch path. One test
//! function, because the encoder counters are shared by everything that uses the estimator in this binary.

mod common;

use emoarc::reward::Terminal;
use emoarc::trajectory::{score_conversations, ArcOptions, ArcTracker, Conversation, ConversationProblem, Turn, TurnReading};
use emoarc::Error;
use std::collections::HashSet;

const TURNS: [(&str, &str); 6] = [
    ("user", "i lost my job today. i feel sick about it"),
    ("assistant", "I'm sorry, that's a shock. What happened?"),
    ("user", "budget cuts. i feel sick about it, but i have some savings"),
    ("assistant", "I'm sorry, that's a shock. What happened?"),
    ("user", "i lost my job today. i feel sick about it"),
    ("user", "ok. thanks for listening"),
];

#[test]
fn tracker_encodes_each_new_clause_once_and_matches_the_batch_path() {
    let estimator = common::estimator();
    // Clause by clause (not the default), so that a turn's clauses are shared with other turns' and cached.
    let mut options = ArcOptions::default();
    options.reading = TurnReading::Clauses;
    let mut tracker = ArcTracker::new(estimator, options.clone(), "job");
    assert_eq!(tracker.reward(&Terminal), None, "no reward before the speaker has a turn");
    let mut seen: HashSet<&str> = HashSet::new();
    let mut scored = Vec::new();
    for (t, (role, text)) in TURNS.iter().enumerate() {
        let new_clauses: HashSet<&str> = TurnReading::Clauses
            .clauses(text)
            .into_iter()
            .map(|c| c.text)
            .filter(|c| !seen.contains(c))
            .collect();
        let before = estimator.stats().sequences;
        let turn = tracker.push(role, text).unwrap().clone();
        let encoded = estimator.stats().sequences - before;
        assert_eq!(encoded as usize, new_clauses.len(), "turn {t} encoded {encoded} sequences");
        seen.extend(new_clauses);
        scored.push(turn);
        // Earlier turns keep exactly the scores they were given.
        assert_eq!(&tracker.trajectory().turns()[..=t], &scored[..]);
    }
    // Turns 3 and 4 repeat earlier texts: served from the cache, nothing encoded.
    assert_eq!(scored[3], scored[1]);
    assert_eq!(scored[4].intensities, scored[0].intensities);
    assert_eq!(tracker.arc().turns(), &[0, 2, 4, 5]);
    let reward = tracker.reward(&Terminal).unwrap();
    assert!((reward - tracker.arc().wellbeing()[3] / 100.0).abs() < 1e-6);

    // A blank turn is refused, named, and leaves the trajectory as it was.
    let err = tracker.push("user", "   ").unwrap_err();
    assert!(matches!(&err, Error::Conversation { at, problem: ConversationProblem::EmptyText } if at.turn == Some(6)));
    assert_eq!(tracker.trajectory().turns().len(), 6);

    // The batch path gives the same scores and also encodes each distinct clause once.
    let conversation = Conversation::new("job", TURNS.iter().map(|(r, t)| Turn::new(*r, *t)).collect()).unwrap();
    let before = estimator.stats().sequences;
    let batch = score_conversations(estimator, std::slice::from_ref(&conversation), &options).unwrap();
    assert_eq!((estimator.stats().sequences - before) as usize, seen.len());
    let batch = batch.into_iter().next().unwrap().unwrap();
    for (a, b) in batch.turns().iter().zip(tracker.trajectory().turns()) {
        assert!(a.intensities.max_abs_diff(&b.intensities) < 1e-5);
    }

    // After a reset the cache still holds the opening: a new rollout with it encodes nothing for that turn.
    tracker.reset("job-2");
    let before = estimator.stats().sequences;
    tracker.push("user", TURNS[0].1).unwrap();
    assert_eq!(estimator.stats().sequences, before);
    assert_eq!(tracker.trajectory().turns().len(), 1);

    // A conversation without the speaker fails on its own; the others are still scored.
    let lone = Conversation::new("bot-only", vec![Turn::new("assistant", "hello")]).unwrap();
    let out = score_conversations(estimator, &[lone, conversation], &ArcOptions::default()).unwrap();
    assert!(out[0].as_ref().unwrap_err().to_string().contains("no turn by speaker \"user\""));
    assert!(out[1].is_ok());
}
