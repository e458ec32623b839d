//! `emoarc reward`: conversations in, one reward per conversation out (JSONL), with the arc it came from, each
//! term's value and the accommodation guard's report, so a reader can see why a conversation scored as it did.

use super::arc::{write_line, ConversationArgs};
use super::output::AtomicOutput;
use anyhow::Result;
use clap::Args;
use emoarc::RewardConfig;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct RewardArgs {
    #[command(flatten)]
    conversations: ConversationArgs,
    /// The reward: terminal, delta, discounted, trend, target or accommodation, or a weighted sum such as
    /// terminal=1,accommodation=0.5 (default: the config's [terms], else terminal).
    #[arg(long)]
    reward: Option<String>,
    /// TOML file with the terms and the rewards' parameters (see examples/reward.toml).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Reads the reward configuration from `--config` (or the defaults) with `--reward` overriding its terms.
pub fn load_config(config: Option<&std::path::Path>, reward: Option<&str>) -> Result<RewardConfig> {
    let mut cfg = match config {
        Some(path) => RewardConfig::load(path)?,
        None => RewardConfig::default(),
    };
    if let Some(spec) = reward {
        cfg.set_terms(spec)?;
    }
    Ok(cfg)
}

pub fn run(args: RewardArgs) -> Result<ExitCode> {
    let config = load_config(args.config.as_deref(), args.reward.as_deref())?;
    let reward = config.build()?;
    let estimator = args.conversations.model.load()?;
    let mut out = AtomicOutput::create(args.conversations.output.as_deref())?;
    let code = args.conversations.for_each_trajectory(&estimator, |conversation, trajectory| {
        write_line(&mut out, emoarc::records::reward_record(&conversation.id, &config, &reward, &trajectory))
    })?;
    out.commit()?;
    Ok(code)
}
