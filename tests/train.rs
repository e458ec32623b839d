//! Training and the corpus checker on real input: a tiny fixture corpus embedded by the shipped encoder, and
//! `emoarc data check` on the authored corpus and on a copy with planted faults.

mod common;

use emoarc::data::{Corpus, Split};
use emoarc::train::{self, TrainOptions};
use emoarc::Intensities;
use std::process::Command;

fn tiny() -> (Vec<Vec<f32>>, Vec<Intensities>, Vec<Vec<f32>>, Vec<Intensities>) {
    let corpus = Corpus::load_dir(&common::root().join("tests/fixtures/tiny-data/corpus")).unwrap();
    assert!(corpus.problems.is_empty());
    let e = common::estimator();
    let embed = |split| {
        let ex = corpus.split(split);
        let texts: Vec<&str> = ex.iter().map(|e| e.text.as_str()).collect();
        (e.embed(&texts).unwrap(), ex.iter().map(|e| e.labels).collect::<Vec<_>>())
    };
    let (tx, ty) = embed(Split::Train);
    let (dx, dy) = embed(Split::Dev);
    (tx, ty, dx, dy)
}

#[test]
fn training_reduces_the_loss_and_is_reproducible_by_seed() {
    let (tx, ty, dx, dy) = tiny();
    let opts = TrainOptions {
        epochs: 40,
        patience: 40,
        batch_size: 16,
        ..TrainOptions::default()
    };
    let a = train::train_head((&tx, &ty), (&dx, &dy), &opts).unwrap();
    let first = a.history.first().unwrap().train_loss;
    let last = a.history.last().unwrap().train_loss;
    assert!(last < first * 0.8, "train loss went from {first} to {last}");
    let b = train::train_head((&tx, &ty), (&dx, &dy), &opts).unwrap();
    assert_eq!(a.best_epoch, b.best_epoch);
    for (name, t) in &a.tensors {
        let (x, y) = (t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.tensors[name].flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert_eq!(x, y, "{name} differs between two runs with the same seed");
    }
    let c = train::train_head((&tx, &ty), (&dx, &dy), &TrainOptions { seed: 7, ..opts }).unwrap();
    let w = |t: &train::Trained| t.tensors["layers.0.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_ne!(w(&a), w(&c), "another seed must give other weights");
}

#[test]
fn training_refuses_empty_sets() {
    let (tx, ty, _, _) = tiny();
    assert!(train::train_head((&tx, &ty), (&[], &[]), &TrainOptions::default()).is_err());
}

fn data_check(dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_emoarc"))
        .args(["data", "check", "--data"])
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn the_authored_corpus_passes_the_check() {
    let out = data_check(&common::root().join("data"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("data check: ok"));
}

#[test]
fn the_check_catches_a_planted_duplicate_and_a_bad_label() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    std::fs::create_dir_all(data.join("corpus")).unwrap();
    for f in ["intensity-pairs.jsonl", "neutral.txt"] {
        std::fs::copy(common::root().join("data").join(f), data.join(f)).unwrap();
    }
    let mut corpus = std::fs::read_to_string(common::root().join("data/corpus/negative-high.jsonl")).unwrap();
    // A copy of an existing utterance under a new id (it lands in another split) and an unknown category.
    let first: serde_json::Value = serde_json::from_str(corpus.lines().next().unwrap()).unwrap();
    let mut planted_id = 0;
    let copy_id = loop {
        let id = format!("planted-{planted_id}");
        if Split::of(&id) != Split::of(first["id"].as_str().unwrap()) {
            break id;
        }
        planted_id += 1;
    };
    corpus.push_str(&format!("{{\"id\": \"{copy_id}\", \"text\": {}, \"labels\": {{}}}}\n", first["text"]));
    corpus.push_str("{\"id\": \"bad-label\", \"text\": \"so mad\", \"labels\": {\"Rage\": 0.5, \"Anger\": 0.6}}\n");
    std::fs::write(data.join("corpus/negative-high.jsonl"), corpus).unwrap();
    let out = data_check(data);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown category \"Rage\""), "{stderr}");
    assert!(stderr.contains("0.6 is not on the scale"), "{stderr}");
    assert!(stderr.contains(&format!("near-duplicate of")) && stderr.contains("overlap 1.00"), "{stderr}");
    // Only one file of five: the coverage requirements fail too, and say so.
    assert!(stderr.contains("examples, need at least 2400"), "{stderr}");
}

#[test]
fn the_shipped_trained_head_beats_zero_shot_on_held_out_data() {
    use emoarc::{data, eval, DeviceChoice, Estimator, ModelSource};
    let root = common::root();
    let corpus = Corpus::load_dir(&root.join("data/corpus")).unwrap();
    let test = corpus.split(Split::Test);
    let pairs = data::load_pairs(&root.join("data/intensity-pairs.jsonl")).unwrap();
    let neutral = data::load_lines(&root.join("data/neutral.txt")).unwrap();
    let texts = eval::eval_texts(&test, &pairs, &neutral);
    let trained = common::estimator();
    assert_eq!(trained.head_name(), "trained", "the shipped default head");
    let zero_shot = Estimator::builder()
        .model(ModelSource::Dir(common::shipped_dir()))
        .head("zero-shot")
        .device(DeviceChoice::Cpu)
        .build()
        .unwrap();
    // The trained head reads fine-tuned layers (and, being lexical, the tokens), the zero-shot head the plain
    // encoder: one pass each.
    let t = eval::evaluate("trained", &trained.estimate(&texts).unwrap(), &test, &pairs, &neutral);
    let z = eval::evaluate("zero-shot", &zero_shot.estimate(&texts).unwrap(), &test, &pairs, &neutral);
    // Measured when shipped (the rebuilt pairs, where length no longer decides): trained 0.267 / 70.0% / 1.1%,
    // zero-shot 0.187 / 67.5% / 6.0%.
    assert!(t.macro_spearman > z.macro_spearman + 0.05, "{} vs {}", t.macro_spearman, z.macro_spearman);
    assert!(t.pair_accuracy > z.pair_accuracy && t.pair_accuracy >= 0.65, "{} vs {}", t.pair_accuracy, z.pair_accuracy);
    assert!(t.neutral_false_positive_rate < 0.05, "{}", t.neutral_false_positive_rate);
    assert!(t.calibration[0].mean_prediction < 0.1, "labelled-0 cells average {}", t.calibration[0].mean_prediction);
    // Calibration rises with the labelled level.
    for w in t.calibration.windows(2) {
        assert!(w[1].mean_prediction > w[0].mean_prediction);
    }
}

#[test]
fn fine_tuned_top_layers_are_stored_as_an_override_and_load_back() {
    use emoarc::model::{HeadSpec, ModelSpec};
    use emoarc::train::top_layers::{self, FineTuneOptions};
    use emoarc::{weights, DeviceChoice, Estimator, ModelSource};
    let corpus = Corpus::load_dir(&common::root().join("tests/fixtures/tiny-data/corpus")).unwrap();
    let (train_ex, dev_ex) = (corpus.split(Split::Train), corpus.split(Split::Dev));
    let (tx, ty, dx, dy) = tiny();
    let opts = TrainOptions { epochs: 10, batch_size: 16, ..TrainOptions::default() };
    let head = train::train_head((&tx, &ty), (&dx, &dy), &opts).unwrap();
    // The six-layer encoder without any override (the default head reads three layers with its own override).
    let e = &Estimator::builder()
        .model(ModelSource::Dir(common::shipped_dir()))
        .head("zero-shot")
        .device(DeviceChoice::Cpu)
        .build()
        .unwrap();
    let ft_opts = FineTuneOptions { layers: 1, encoder_learning_rate: 1e-4, epochs: 2 };
    let ft = top_layers::fine_tune_estimator(e, &train_ex, &dev_ex, &head.tensors, &opts, &ft_opts).unwrap();
    assert_eq!(ft.trained.history.len(), 3, "the warm start plus two epochs");
    assert!(ft.trained.history[1..].iter().all(|h| h.train_loss.is_finite()));
    let (h1, h2) = (&ft.trained.history[1], &ft.trained.history[2]);
    assert!(h2.train_loss < h1.train_loss, "fine-tuning loss must fall: {} -> {}", h1.train_loss, h2.train_loss);
    assert!(h2.dev_loss < ft.trained.history[0].dev_loss, "dev loss must fall from the warm start");
    assert_eq!(ft.layer_tensors.len(), 16);
    assert!(ft.layer_tensors.keys().all(|k| k.starts_with("encoder.layer.5.")));
    // Too many layers is a typed error, not a panic.
    let too_many = FineTuneOptions { layers: 6, ..ft_opts.clone() };
    assert!(top_layers::fine_tune_estimator(e, &train_ex, &dev_ex, &head.tensors, &opts, &too_many).is_err());

    // Install overrides as heads of a copied model folder, record them, and load them back: the saved
    // best-epoch layers (on this tiny dev set, possibly the untouched warm start), and a deliberately altered copy.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models").join("emoarc-minilm");
    common::copy_dir(&common::shipped_dir(), &dir);
    let manifest = tmp.path().join("weights-manifest");
    std::fs::copy(common::root().join("weights-manifest"), &manifest).unwrap();
    let mut altered = ft.layer_tensors.clone();
    let key = "encoder.layer.5.output.dense.weight";
    altered.insert(key.into(), (altered[key].to_dtype(candle_core::DType::F32).unwrap() * 0.5).unwrap().to_dtype(candle_core::DType::F16).unwrap());
    let mut spec = ModelSpec::read_unverified(&dir).unwrap().unwrap();
    let base = spec.heads[&spec.default_head].clone();
    for (name, layers) in [("ft", &ft.layer_tensors), ("altered", &altered)] {
        emoarc::zero_shot::save_tensors(&dir.join(format!("encoder-{name}.safetensors")), layers).unwrap();
        emoarc::zero_shot::save_tensors(&dir.join(format!("head-{name}.safetensors")), &ft.trained.tensors).unwrap();
        spec.heads.insert(
            name.into(),
            HeadSpec {
                weights: format!("head-{name}.safetensors"),
                encoder_override: Some(format!("encoder-{name}.safetensors")),
                int8: None,
                encoder_layers: 6,
                // Heads trained by candle have no learned valence/arousal output and no lexicon.
                affect: false,
                lexical: false,
                reads_context: false,
                ..base.clone()
            },
        );
    }
    spec.save(&dir).unwrap();
    let entry = emoarc::weights::Manifest::load(&manifest).unwrap().model("emoarc-minilm").unwrap().clone();
    weights::record_model(&manifest, &dir, &spec.files(), entry).unwrap();
    let load = |head: &str| {
        Estimator::builder().model(ModelSource::Dir(dir.clone())).head(head).device(DeviceChoice::Cpu).build().unwrap()
    };
    let text = ["I can't believe they did this to me, I'm shaking with anger"];
    let base_embedding = e.embed(&text).unwrap();
    let distance = |head: &str| {
        let a = load(head).embed(&text).unwrap();
        a[0].iter().zip(&base_embedding[0]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
    };
    if ft.trained.best_epoch == 0 {
        assert!(distance("ft") < 1e-5, "an override of the unchanged layers must reproduce the encoder");
    }
    assert!(distance("altered") > 1e-3, "an altered override must change the encoder's output");
    assert!(load("ft").estimate(&text).unwrap()[0].as_slice().iter().all(|v| (0.0..=1.0).contains(v)));
    // The override is verified like every other file.
    std::fs::write(dir.join("encoder-ft.safetensors"), b"tampered").unwrap();
    assert!(Estimator::builder().model(ModelSource::Dir(dir)).head("ft").device(DeviceChoice::Cpu).build().is_err());
}
