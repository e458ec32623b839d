//! Reading a text with the message it answers (`InContext`, `TurnContext::Previous`) on the shipped model,
//! whose head was trained for it: every backend pools the text's tokens only and agrees with the f32
//! reference, results do not depend on the batch, heads without context ignore the message, and arcs read a
//! user's turn after the reply before it, the same way streamed or in bulk.

mod common;

use emoarc::data::{Corpus, Split};
use emoarc::reward::{RewardFn, Terminal};
use emoarc::trajectory::{score_conversations, TurnContext};
use emoarc::{ArcOptions, ArcTracker, Backend, Conversation, Estimator, InContext, InputProblem, ModelSource, Turn};

use common::int16;

/// Every row of the exchange sets (`data/exchanges`): a closing and the reply it answers.
fn exchanges() -> Vec<(String, String)> {
    let corpus = Corpus::load_dir(&common::root().join("data/exchanges")).expect("data/exchanges");
    assert!(corpus.problems.is_empty(), "{:?}", corpus.problems);
    let rows: Vec<(String, String)> =
        corpus.examples.iter().map(|e| (e.text.clone(), e.after.clone().expect("every exchange row has a reply"))).collect();
    assert!(rows.len() >= 600, "{} rows", rows.len());
    assert!(corpus.split(Split::Test).len() > 100);
    rows
}

fn items(rows: &[(String, String)]) -> Vec<InContext<'_>> {
    rows.iter().map(|(t, a)| InContext::new(t, Some(a))).collect()
}

#[test]
fn the_shipped_head_reads_context_and_every_backend_pools_the_text_only() {
    let rows = exchanges();
    let items = items(&rows);
    let (reference, fast, auto) = (common::reference(), int16(), common::estimator());
    assert!(reference.reads_context() && fast.reads_context());
    let a = reference.estimate_in_context(&items).unwrap();
    for other in [fast, auto] {
        let b = other.estimate_in_context(&items).unwrap();
        for ((x, y), (text, after)) in a.iter().zip(&b).zip(&rows) {
            let (x, y) = (x.as_ref().unwrap(), y.as_ref().unwrap());
            assert_eq!(x.context_tokens, y.context_tokens);
            assert!(x.context_tokens > 0, "{text:?} after {after:?}: no room for context?");
            let d = x.intensities.max_abs_diff(&y.intensities);
            assert!(d <= 0.02, "{}: intensities differ from f32 by {d:.4} for {text:?} after {after:?}", other.backend_name());
        }
    }
    // The reply changes the reading: the same words after two replies read differently somewhere.
    let alone = reference.estimate(&rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>()).unwrap();
    let moved = a.iter().zip(&alone).filter(|(x, y)| x.as_ref().unwrap().intensities.max_abs_diff(y) > 0.05).count();
    assert!(moved * 4 > rows.len(), "only {moved} of {} readings moved with their reply", rows.len());
}

#[test]
fn context_readings_do_not_depend_on_the_batch() {
    let rows = exchanges();
    let items = items(&rows[..60]);
    // int16 pools each sequence to the same bits in any batch (tests/quantized.rs checks that exactly) and the
    // head computes each row on its own (model::head), so its intensities are the same bits. candle's f32
    // encoder runs its matrix products over the whole batch, whose shape decides their rounding (measured: 4e-7).
    for (e, tolerance) in [(int16(), 0.0), (common::reference(), 1e-5)] {
        let together = e.estimate_in_context(&items).unwrap();
        let mut reversed = items.clone();
        reversed.reverse();
        let backwards = e.estimate_in_context(&reversed).unwrap();
        for (i, item) in items.iter().enumerate() {
            let want = together[i].as_ref().unwrap();
            let alone = e.estimate_in_context(&[*item]).unwrap();
            let back = &backwards[items.len() - 1 - i];
            for (got, how) in [(alone[0].as_ref().unwrap(), "alone"), (back.as_ref().unwrap(), "in another order")] {
                assert_eq!((got.tokens, got.context_tokens), (want.tokens, want.context_tokens));
                let d = got.intensities.max_abs_diff(&want.intensities);
                assert!(d <= tolerance, "{item:?} {how} vs in a batch ({}): {d}", e.backend_name());
            }
        }
    }
}

#[test]
fn no_message_blank_message_and_bad_text_behave() {
    let e = int16();
    let texts = ["ok. thanks", "Right, I'll call them on Monday."];
    let plain = e.estimate_each(&texts).unwrap();
    let none: Vec<InContext> = texts.iter().map(|t| InContext::new(t, None)).collect();
    let blank: Vec<InContext> = texts.iter().map(|t| InContext::new(t, Some("  \n"))).collect();
    for read in [e.estimate_in_context(&none).unwrap(), e.estimate_in_context(&blank).unwrap()] {
        for (x, y) in read.iter().zip(&plain) {
            assert_eq!(x.as_ref().unwrap(), y.as_ref().unwrap());
            assert_eq!(x.as_ref().unwrap().context_tokens, 0);
        }
    }
    // A refused text fails its own slot only, whatever its message; a good text beside it is scored in context.
    let reply = "Have you tried turning it off and on again?";
    let mixed = [InContext::new("   ", Some(reply)), InContext::new("ok. thanks", Some(reply))];
    let out = e.estimate_in_context(&mixed).unwrap();
    assert_eq!(out[0], Err(InputProblem::Empty));
    assert!(out[1].as_ref().unwrap().context_tokens > 5);
    // A message longer than the window keeps its end, as much as fits beside the text.
    let long = format!("{} so which of these will you try first?", "Here is some background on it. ".repeat(200));
    let got = e.estimate_in_context(&[InContext::new("ok. thanks", Some(&long))]).unwrap();
    let got = got[0].as_ref().unwrap();
    assert_eq!(got.tokens + got.context_tokens + 1, e.max_length(), "{got:?}");
    // A text that fills the window is read alone.
    let full = "word ".repeat(400);
    let got = e.estimate_in_context(&[InContext::new(&full, Some(reply))]).unwrap();
    assert_eq!(got[0].as_ref().unwrap().context_tokens, 0);
    assert!(got[0].as_ref().unwrap().truncated);
}

#[test]
fn a_head_without_context_reads_the_text_alone() {
    let e = Estimator::builder()
        .model(ModelSource::Dir(common::shipped_dir()))
        .head("zero-shot")
        .backend(Backend::Int16)
        .build()
        .unwrap();
    assert!(!e.reads_context());
    let items = [InContext::new("ok. thanks", Some("You should have backed it up. Lesson learned."))];
    let with = e.estimate_in_context(&items).unwrap();
    assert_eq!(with[0].as_ref().unwrap(), &e.estimate_detailed(&["ok. thanks"]).unwrap()[0]);
}

fn conversation(reply: &str) -> Conversation {
    Conversation::new(
        "c",
        vec![
            Turn::new("user", "my landlord says i have to be out by friday and i have nowhere to go"),
            Turn::new("assistant", reply),
            Turn::new("user", "ok. thank you."),
        ],
    )
    .unwrap()
}

#[test]
fn arcs_read_the_users_turn_after_the_reply_streamed_or_in_bulk() {
    let e = int16();
    let replies = [
        "That notice is very likely not legal: in most places a landlord needs a court order to evict. Call your \
         local tenants' advice line today and do not leave; I can help you write to the landlord.",
        "Moving is stressful but everything happens for a reason! I'm sure you'll find something even better 😊",
    ];
    let conversations: Vec<Conversation> = replies.iter().map(|r| conversation(r)).collect();
    let previous = ArcOptions::default();
    assert_eq!(previous.context, TurnContext::Previous);
    let alone = ArcOptions { context: TurnContext::Alone, ..ArcOptions::default() };
    let read = |o: &ArcOptions| -> Vec<emoarc::Trajectory> {
        score_conversations(e, &conversations, o).unwrap().into_iter().map(Result::unwrap).collect()
    };
    let (with, without) = (read(&previous), read(&alone));
    // Alone, the last turn is the same words in both conversations; after the reply it is not.
    assert_eq!(without[0].arc().intensities()[1], without[1].arc().intensities()[1]);
    assert!(with[0].arc().intensities()[1].max_abs_diff(&with[1].arc().intensities()[1]) > 0.01);
    // Only the speaker's turns after another role's turn change: the opening and the assistant read alone.
    for (w, a) in with.iter().zip(&without) {
        for t in 0..2 {
            assert_eq!(w.turns()[t].intensities, a.turns()[t].intensities, "turn {t}");
        }
    }
    // The tracker reads the same way, turn by turn.
    for (c, bulk) in conversations.iter().zip(&with) {
        let mut tracker = ArcTracker::new(e, ArcOptions::default(), "c");
        for t in &c.turns {
            tracker.push(&t.role, &t.text).unwrap();
        }
        for (streamed, together) in tracker.trajectory().turns().iter().zip(bulk.turns()) {
            assert_eq!(streamed.role, together.role);
            assert_eq!(streamed.intensities, together.intensities, "{streamed:?} vs {together:?}");
        }
        assert_eq!(Terminal.reward(tracker.trajectory()), Terminal.reward(bulk));
        tracker.reset("again");
        tracker.push("user", "ok. thank you.").unwrap();
        let first = &tracker.trajectory().turns()[0];
        assert_eq!(first.intensities, without[0].turns()[2].intensities, "a reset forgets the last reply");
    }
}
