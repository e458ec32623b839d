//! emoarc reads text the way an emotion researcher would: every utterance becomes 40 continuous intensities,
//! one per category of the EmoNet taxonomy, and a conversation becomes an emotion arc that can be turned into
//! a reward for reinforcement learning.
//!
//! ```no_run
//! use emoarc::{Category, Estimator};
//!
//! let estimator = Estimator::new()?; // the shipped model, verified against weights-manifest
//! let out = estimator.estimate(&["I am absolutely furious", "Thank you so much, you saved my day"])?;
//! println!("anger: {:.2}", out[0][Category::Anger]);
//! for (category, value) in out[1].top(3) {
//!     println!("{category}: {value:.2}");
//! }
//! # Ok::<(), emoarc::Error>(())
//! ```

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod backend;
pub mod batch;
#[cfg(feature = "train")]
pub mod data;
pub mod error;
pub mod estimator;
#[cfg(feature = "train")]
pub mod eval;
pub mod intensities;
pub mod model;
pub mod records;
pub mod reward;
#[cfg(feature = "server")]
pub mod server;
pub mod stats;
pub mod taxonomy;
#[cfg(feature = "train")]
pub mod train;
pub mod trajectory;
pub mod weights;
#[cfg(feature = "train")]
pub mod zero_shot;

pub use error::{Error, InputProblem, Result};

/// The UTF-8 byte-order mark some editors and Windows clients put before a text. Every reader of inputs (the
/// conversation reader, the server's request bodies, the command line's inputs) skips it at the start, as RFC
/// 8259 allows for JSON; it is never part of a text.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
pub use backend::{Backend, FloatType, Precision};
pub use estimator::{DeviceChoice, Estimate, Estimator, EstimatorBuilder, InContext, OnLong};
pub use intensities::Intensities;
pub use reward::{AccommodationGuard, RewardConfig, RewardFn, WeightedReward};
pub use taxonomy::{Category, Family, NUM_CATEGORIES, TAXONOMY_VERSION};
pub use trajectory::{ArcOptions, ArcTracker, Conversation, EmotionArc, Trajectory, Turn};
pub use weights::ModelSource;

/// The README's Rust snippets, compiled and run as doctests so that they work as pasted.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
