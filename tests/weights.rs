//! Model resolution and verification on the real shipped files: the manifest, tampered and missing files,
//! and the hub path through a hub cache laid out in a temporary folder (no network).

mod common;

use emoarc::weights::{Manifest, ModelSource, Resolver};
use emoarc::{DeviceChoice, Error, Estimator, InContext};
use std::path::{Path, PathBuf};

const NAME: &str = emoarc::estimator::DEFAULT_MODEL_NAME;

/// A copy of the shipped model at `<tmp>/models/NAME` with the checkout's manifest at `<tmp>/weights-manifest`.
fn checkout_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models").join(NAME);
    common::copy_dir(&common::shipped_dir(), &dir);
    std::fs::copy(common::root().join("weights-manifest"), tmp.path().join("weights-manifest")).unwrap();
    (tmp, dir)
}

fn load(dir: &Path) -> emoarc::Result<Estimator> {
    Estimator::builder()
        .model(ModelSource::Dir(dir.to_path_buf()))
        .device(DeviceChoice::Cpu)
        .build()
}

#[test]
fn every_shipped_file_is_listed_and_verified() {
    let manifest = Manifest::load(&common::root().join("weights-manifest")).unwrap();
    let entry = manifest.model(NAME).expect("the shipped model is in the manifest");
    for f in ["config.json", "tokenizer.json", "encoder.safetensors", "head-zero-shot.safetensors", "emoarc.json"] {
        assert!(entry.file(f).is_some(), "{f} is not listed");
    }
    assert_eq!(entry.licence, "Apache-2.0");
    // The manifest compiled into the binary is the checkout's.
    assert_eq!(Manifest::builtin().models, manifest.models);
    let verified = Resolver::new(ModelSource::Dir(common::shipped_dir())).resolve().unwrap();
    assert_eq!(verified.entry.name, NAME);
}

#[test]
fn a_copy_with_its_manifest_loads_and_scores_the_same() {
    let (_tmp, dir) = checkout_copy();
    let e = load(&dir).unwrap();
    let a = e.estimate(&["I miss you so much"]).unwrap();
    let b = common::estimator().estimate(&["I miss you so much"]).unwrap();
    assert!(a[0].max_abs_diff(&b[0]) < 1e-6);
}

#[test]
fn a_tampered_file_is_refused_naming_it() {
    let (_tmp, dir) = checkout_copy();
    let head = dir.join("head-zero-shot.safetensors");
    let mut bytes = std::fs::read(&head).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01; // same size, one bit flipped in a weight
    std::fs::write(&head, &bytes).unwrap();
    match load(&dir) {
        Err(Error::ChecksumMismatch { path, .. }) => assert!(path.ends_with("head-zero-shot.safetensors")),
        other => panic!("expected a checksum mismatch, got {:?}", other.err()),
    }
}

#[test]
fn a_truncated_or_missing_file_is_refused_naming_it() {
    let (_tmp, dir) = checkout_copy();
    let enc = dir.join("encoder.safetensors");
    let bytes = std::fs::read(&enc).unwrap();
    std::fs::write(&enc, &bytes[..bytes.len() / 2]).unwrap();
    match load(&dir) {
        Err(Error::SizeMismatch { path, .. }) => assert!(path.ends_with("encoder.safetensors")),
        other => panic!("expected a size mismatch, got {:?}", other.err()),
    }
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    std::fs::write(&enc, &bytes).unwrap();
    match load(&dir) {
        Err(Error::MissingFile { path }) => assert!(path.ends_with("tokenizer.json")),
        other => panic!("expected a missing file, got {:?}", other.err()),
    }
}

#[test]
fn an_unlisted_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models").join("someone-elses-model");
    common::copy_dir(&common::shipped_dir(), &dir);
    std::fs::copy(common::root().join("weights-manifest"), tmp.path().join("weights-manifest")).unwrap();
    assert!(matches!(load(&dir), Err(Error::UnlistedModel { .. })));
    assert!(matches!(load(&tmp.path().join("nowhere")), Err(Error::MissingFile { .. })));
}

#[test]
fn a_corrupt_manifest_is_a_typed_error() {
    let (tmp, dir) = checkout_copy();
    std::fs::write(tmp.path().join("weights-manifest"), "[[model]]\nname = 3\n").unwrap();
    assert!(matches!(load(&dir), Err(Error::Manifest { .. })));
}

/// Lays out a hub cache the way hf-hub writes one: blobs by hash, a snapshot folder of links, a ref.
fn hub_cache(files_from: &Path, repo: &str, skip: Option<&str>) -> tempfile::TempDir {
    let cache = tempfile::tempdir().unwrap();
    let repo_dir = cache.path().join(format!("models--{}", repo.replace('/', "--")));
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo_dir.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo_dir.join("blobs")).unwrap();
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs").join("main"), commit).unwrap();
    for entry in std::fs::read_dir(files_from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if Some(name.as_str()) == skip {
            continue;
        }
        let (sha, _) = emoarc::weights::hash_file(&entry.path()).unwrap();
        let blob = repo_dir.join("blobs").join(&sha);
        std::fs::copy(entry.path(), &blob).unwrap();
        std::os::unix::fs::symlink(&blob, snapshot.join(&name)).unwrap();
    }
    cache
}

#[test]
fn hub_sources_resolve_from_the_cache_offline() {
    let repo = format!("emoarc/{NAME}");
    let cache = hub_cache(&common::shipped_dir(), &repo, None);
    let e = Estimator::builder()
        .model_str(&format!("hf:{repo}@main"))
        .unwrap()
        .hub_cache(cache.path())
        .allow_download(false)
        .device(DeviceChoice::Cpu)
        .build()
        .unwrap();
    let a = e.estimate(&["what a wonderful morning"]).unwrap();
    let b = common::estimator().estimate(&["what a wonderful morning"]).unwrap();
    assert!(a[0].max_abs_diff(&b[0]) < 1e-6);

    // A file missing from the cache, with downloads off, is an error naming it.
    let partial = hub_cache(&common::shipped_dir(), &repo, Some("head-zero-shot.safetensors"));
    let err = Estimator::builder()
        .model_str(&format!("hf:{repo}"))
        .unwrap()
        .hub_cache(partial.path())
        .allow_download(false)
        .build()
        .err()
        .expect("missing file must fail");
    assert!(matches!(&err, Error::Hub(m) if m.contains("head-zero-shot.safetensors")), "{err}");

    // Hub files are verified like local ones.
    let tampered = hub_cache(&common::shipped_dir(), &repo, None);
    let snapshot_file = std::fs::read_dir(tampered.path().join(format!("models--{}", repo.replace('/', "--"))).join("snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("emoarc.json");
    let real = std::fs::canonicalize(&snapshot_file).unwrap();
    let mut text = std::fs::read(&real).unwrap();
    text[10] = b' ';
    std::fs::write(&real, text).unwrap();
    let err = Estimator::builder()
        .model_str(&format!("hf:{repo}"))
        .unwrap()
        .hub_cache(tampered.path())
        .allow_download(false)
        .build()
        .err()
        .expect("tampered file must fail");
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");

    // An unknown repository is not in the manifest, so there is nothing to verify it against.
    assert!(matches!(
        Estimator::builder().model_str("hf:stranger/model").unwrap().hub_cache(cache.path()).allow_download(false).build(),
        Err(Error::UnlistedModel { .. })
    ));
}

/// A lexical head (format 2) on real files: the shipped head with a one-word lexicon added ("furious" pushes
/// Anger up by 3 logits) changes Anger on text with that word by exactly that and nothing else, and a pair of
/// wordpieces only where they are adjacent; a lexical head in a format-1 folder, or one whose file lacks its
/// lexicon, is refused with a typed error.
#[test]
fn a_lexical_head_adds_its_words_logits_and_a_malformed_one_is_refused() {
    use candle_core::{Device, Tensor};
    use emoarc::model::{HeadSpec, ModelSpec};
    let (tmp, dir) = checkout_copy();
    let manifest_path = tmp.path().join("weights-manifest");
    let mut spec = ModelSpec::read_unverified(&dir).unwrap().unwrap();
    let base = spec.heads[&spec.default_head].clone();
    let mut tensors = candle_core::safetensors::load(dir.join(&base.weights), &Device::Cpu).unwrap();
    tensors.retain(|name, _| !name.starts_with("lexical."));
    emoarc::zero_shot::save_tensors(&dir.join("head-plain.safetensors"), &tensors).unwrap();

    let ids = load(&dir).unwrap().token_ids("furious").unwrap();
    assert_eq!(ids.len(), 3, "'furious' is one wordpiece between [CLS] and [SEP]: {ids:?}");
    let anger = emoarc::Category::Anger.index();
    let mut quant = vec![128u8; 40];
    quant[anger] = 255; // (255 - 128) * 3/127 = +3 logits
    tensors.insert("lexical.ids".into(), Tensor::new(&[ids[1] as i32], &Device::Cpu).unwrap());
    tensors.insert("lexical.idf".into(), Tensor::new(&[1.5f32], &Device::Cpu).unwrap());
    tensors.insert("lexical.weight".into(), Tensor::from_vec(quant, (1, 40), &Device::Cpu).unwrap());
    tensors.insert("lexical.scale".into(), Tensor::from_vec(vec![3.0f32 / 127.0; 40], 40, &Device::Cpu).unwrap());
    emoarc::zero_shot::save_tensors(&dir.join("head-lex.safetensors"), &tensors).unwrap();

    // Written as given (`ModelSpec::save` would write the format the heads need).
    let install = |spec: &ModelSpec| {
        std::fs::write(dir.join("emoarc.json"), serde_json::to_string_pretty(spec).unwrap()).unwrap();
        let entry = Manifest::load(&manifest_path).unwrap().model(NAME).unwrap().clone();
        emoarc::weights::record_model(&manifest_path, &dir, &spec.files(), entry).unwrap();
    };
    let head = |file: &str, lexical: bool| HeadSpec { weights: file.into(), lexical, ..base.clone() };
    spec.format = 2;
    spec.heads.insert("plain".into(), head("head-plain.safetensors", false));
    spec.heads.insert("lex".into(), head("head-lex.safetensors", true));
    install(&spec);
    let with_head = |name: &str| {
        Estimator::builder().model(ModelSource::Dir(dir.clone())).head(name).device(DeviceChoice::Cpu).build()
    };
    let texts = ["I am furious about the delay", "What a lovely quiet morning"];
    let plain = with_head("plain").unwrap().estimate(&texts).unwrap();
    let lexical = with_head("lex").unwrap();
    let lex = lexical.estimate(&texts).unwrap();
    // Without the tokens a lexical head refuses, rather than give the network's part as the whole.
    let pooled = Tensor::zeros((1, base.inputs), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(lexical.model().head().logits(&pooled).unwrap_err().to_string().contains("lexical"));
    let logit = |p: f32| (p / (1.0 - p)).ln();
    for c in 0..40 {
        let (a, b) = (plain[0].as_slice()[c], lex[0].as_slice()[c]);
        if c == anger {
            assert!((logit(b) - logit(a) - 3.0).abs() < 1e-2, "Anger {a} -> {b}: not +3 logits");
        } else {
            assert!((a - b).abs() < 1e-6, "category {c} moved without a lexical weight: {a} -> {b}");
        }
    }
    assert!(plain[1].max_abs_diff(&lex[1]) < 1e-6, "text without the word must score as the plain head");

    // Read after the message it answers, a text is the network's alone: the lexicon reads texts alone.
    let furious = [InContext::new("I am furious about the delay", Some("Your parcel will arrive next week."))];
    let in_context = |name: &str| {
        let est = with_head(name).unwrap().estimate_in_context(&furious).unwrap().remove(0).unwrap();
        assert!(est.context_tokens > 0, "the shipped head reads context");
        est.intensities
    };
    assert!(in_context("plain").max_abs_diff(&in_context("lex")) < 1e-6, "a lexicon must not read a text in context");

    // The lexicon's own intercept (`lexical.bias`) reaches every text read alone and none read in context.
    let relief = emoarc::Category::Relief.index();
    let mut bias = vec![0f32; 40];
    bias[relief] = 2.0;
    tensors.insert("lexical.bias".into(), Tensor::from_vec(bias, 40, &Device::Cpu).unwrap());
    emoarc::zero_shot::save_tensors(&dir.join("head-lexb.safetensors"), &tensors).unwrap();
    spec.heads.insert("lexb".into(), head("head-lexb.safetensors", true));
    install(&spec);
    let lexb = with_head("lexb").unwrap().estimate(&texts).unwrap();
    for (alone, biased) in lex.iter().zip(&lexb) {
        let (a, b) = (alone.as_slice()[relief], biased.as_slice()[relief]);
        assert!((logit(b) - logit(a) - 2.0).abs() < 1e-2, "Relief {a} -> {b}: not +2 logits");
    }
    assert!(in_context("plain").max_abs_diff(&in_context("lexb")) < 1e-6, "the intercept reached a text in context");

    // Pairs of adjacent wordpieces (`lexical.pairs`): "am" then "furious" pushes Anger up, "furious" alone (its
    // row is zero) and the two apart or reversed do not. Word and pair have the same idf, so each feature is
    // 1/sqrt(2) after normalisation and the pair adds 3/sqrt(2) logits.
    let pair = load(&dir).unwrap().token_ids("am furious").unwrap();
    assert_eq!(pair.len(), 4, "'am furious' is two wordpieces: {pair:?}");
    let mut quant = vec![128u8; 80];
    quant[40 + anger] = 255;
    tensors.remove("lexical.bias");
    tensors.insert("lexical.idf".into(), Tensor::new(&[1.5f32, 1.5], &Device::Cpu).unwrap());
    tensors.insert("lexical.weight".into(), Tensor::from_vec(quant, (2, 40), &Device::Cpu).unwrap());
    let pairs = Tensor::new(&[[pair[1] as i32, pair[2] as i32]], &Device::Cpu).unwrap();
    tensors.insert("lexical.pairs".into(), pairs);
    emoarc::zero_shot::save_tensors(&dir.join("head-lexp.safetensors"), &tensors).unwrap();
    spec.heads.insert("lexp".into(), head("head-lexp.safetensors", true));
    install(&spec);
    let texts = ["I am furious about the delay", "Furious, that is what I am", "I am, frankly, furious"];
    let plain = with_head("plain").unwrap().estimate(&texts).unwrap();
    let lexp = with_head("lexp").unwrap().estimate(&texts).unwrap();
    let (a, b) = (plain[0].as_slice()[anger], lexp[0].as_slice()[anger]);
    assert!((logit(b) - logit(a) - 3.0 / 2f32.sqrt()).abs() < 1e-2, "Anger {a} -> {b}: not +3/sqrt(2) logits");
    assert!(plain[0].as_slice().iter().zip(lexp[0].as_slice()).enumerate().all(|(c, (a, b))| c == anger || a == b));
    for i in 1..3 {
        assert!(plain[i].max_abs_diff(&lexp[i]) < 1e-6, "{:?}: the pair is not adjacent there", texts[i]);
    }
    // A pairs tensor of the wrong shape is refused by name.
    tensors.insert("lexical.pairs".into(), Tensor::new(&[pair[1] as i32, pair[2] as i32], &Device::Cpu).unwrap());
    emoarc::zero_shot::save_tensors(&dir.join("head-lexp.safetensors"), &tensors).unwrap();
    install(&spec);
    let err = with_head("lexp").err().expect("pairs of shape [2] must be refused");
    assert!(err.to_string().contains("pairs"), "{err}");
    spec.heads.remove("lexp");

    // The same head in a format-1 folder: a build that read only format 1 would drop the lexicon unseen.
    spec.format = 1;
    install(&spec);
    match with_head("plain") {
        Err(Error::ModelFormat { reason, .. }) => assert!(reason.contains("needs format 2"), "{reason}"),
        other => panic!("expected a format error, got {:?}", other.err()),
    }
    // Lexical in the spec, no lexicon in the file.
    spec.format = 2;
    spec.heads.insert("lex".into(), head("head-plain.safetensors", true));
    install(&spec);
    let err = with_head("lex").err().expect("a lexical head without its lexicon must fail");
    assert!(err.to_string().contains("lexical.ids"), "{err}");

    // `save` writes the oldest format that describes the heads: 2 with a lexical head, 1 without.
    spec.format = 1;
    spec.save(&dir).unwrap();
    assert_eq!(ModelSpec::read_unverified(&dir).unwrap().unwrap().format, 2);
    spec.heads.retain(|_, h| !h.lexical);
    spec.default_head = "plain".into(); // the shipped `trained` head is lexical too
    spec.format = 2;
    spec.save(&dir).unwrap();
    assert_eq!(ModelSpec::read_unverified(&dir).unwrap().unwrap().format, 1);
}
