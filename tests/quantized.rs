//! The int16 and int8 backends against the f32 reference on real text: the quality bar every faster path must
//! meet (cosine of pooled embeddings at least 0.99 for every utterance, intensities within 0.02), batch
//! invariance, and the portable kernel agreeing with the fast one. With `EMOARC_REQUIRE_FAST_KERNEL=1` (set it
//! where the CPU has AVX-512 VNNI) a CPU without the fast kernel fails instead of skipping that comparison.

mod common;

use emoarc::data::{Corpus, Split};
use emoarc::backend::int16::{Alpha, Int8Calibration, Kernel, Product, QuantizedEncoder};
use emoarc::model::EncoderConfig;
use emoarc::{Backend, DeviceChoice, Error, Estimator, ModelSource, Precision};

use common::int16 as quantized;

/// The corpus's test split plus the sample file: short and long, typos, emoji, neutral text.
fn texts() -> Vec<String> {
    let corpus = Corpus::load_dir(&common::root().join("data/corpus")).expect("data/corpus");
    let mut texts: Vec<String> = corpus.split(Split::Test).iter().map(|e| e.text.clone()).collect();
    let sample = std::fs::read_to_string(common::root().join("examples/utterances.txt")).unwrap();
    texts.extend(sample.lines().filter(|l| !l.trim().is_empty()).map(String::from));
    texts
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn int16_stays_within_the_quality_bar_of_f32_on_every_utterance() {
    let texts = texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert!(refs.len() > 400, "{} texts", refs.len());
    let (f32_path, int_path) = (common::reference(), quantized());
    let (emb_a, emb_b) = (f32_path.embed(&refs).unwrap(), int_path.embed(&refs).unwrap());
    let (int_a, int_b) = (f32_path.estimate(&refs).unwrap(), int_path.estimate(&refs).unwrap());
    for (i, text) in refs.iter().enumerate() {
        let c = cosine(&emb_a[i], &emb_b[i]);
        assert!(c >= 0.99, "cosine {c:.5} for {text:?}");
        let d = int_a[i].max_abs_diff(&int_b[i]);
        assert!(d <= 0.02, "intensities differ by {d:.4} for {text:?}");
    }
    // Not trivially equal either: the integer path really computes differently.
    assert!(emb_a.iter().zip(&emb_b).any(|(a, b)| a != b));
}

#[test]
fn int16_results_do_not_depend_on_the_batch() {
    let texts = texts();
    let refs: Vec<&str> = texts.iter().take(120).map(String::as_str).collect();
    let e = quantized();
    let (together, scores) = (e.embed(&refs).unwrap(), e.estimate(&refs).unwrap());
    let mut reversed: Vec<&str> = refs.clone();
    reversed.reverse();
    let backwards = e.embed(&reversed).unwrap();
    for (i, text) in refs.iter().enumerate().step_by(7) {
        // The encoder is emoarc's own code: bit for bit the same vector in any batch, any order.
        assert_eq!(e.embed(&[*text]).unwrap()[0], together[i], "{text:?} alone vs in a batch");
        assert_eq!(backwards[refs.len() - 1 - i], together[i], "{text:?} in reversed order");
        // The head is a candle matmul, whose blocking depends on the batch size: equal to float rounding.
        let d = e.estimate(&[*text]).unwrap()[0].max_abs_diff(&scores[i]);
        assert!(d < 1e-5, "{text:?}: {d}");
    }
}

#[test]
fn portable_kernel_matches_the_fast_one_and_f32() {
    let e = common::reference();
    let texts = texts();
    let refs: Vec<&str> = texts.iter().take(60).map(String::as_str).collect();
    let seqs: Vec<Vec<u32>> = refs.iter().map(|t| e.token_ids(t).unwrap()).collect();
    let seq_refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let dir = common::shipped_dir();
    let spec = e.spec();
    let head = &spec.heads[&spec.default_head];
    let mut weights = vec![dir.join(&spec.encoder.weights)];
    weights.extend(head.encoder_override.iter().map(|f| dir.join(f)));
    let config = EncoderConfig::read(&dir.join(&spec.encoder.config)).unwrap();
    let load = |k: Kernel| QuantizedEncoder::load(&config, &weights, Some(head.encoder_layers), Some(k)).unwrap();
    let portable = load(Kernel::portable()).embed(&seq_refs).unwrap();
    let reference = e.embed(&refs).unwrap();
    let h = portable.len() / refs.len();
    for (i, row) in portable.chunks_exact(h).enumerate() {
        let c = cosine(row, &reference[i]);
        assert!(c >= 0.99, "portable kernel: cosine {c:.5} for {:?}", refs[i]);
    }
    let fast_kernel = Kernel::detect();
    if std::env::var("EMOARC_REQUIRE_FAST_KERNEL").is_ok_and(|v| v == "1") {
        assert!(fast_kernel.is_fast(), "EMOARC_REQUIRE_FAST_KERNEL=1 but this CPU gets the {fast_kernel} kernel");
    }
    if fast_kernel.is_fast() {
        let fast = load(fast_kernel).embed(&seq_refs).unwrap();
        // Same integers; only the f32 code around them is compiled differently (vector widths).
        let worst = fast.iter().zip(&portable).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-4, "kernels differ by {worst}");
    }
}

#[test]
fn quantized_encoder_refuses_what_it_cannot_run() {
    let e = common::estimator();
    let dir = common::shipped_dir();
    let spec = e.spec();
    let weights = vec![dir.join(&spec.encoder.weights)];
    let config = EncoderConfig::read(&dir.join(&spec.encoder.config)).unwrap();
    let enc = QuantizedEncoder::load(&config, &weights, Some(2), None).unwrap();
    let too_long = vec![101u32; 600];
    let err = enc.embed(&[&too_long]).unwrap_err().to_string();
    assert!(err.contains("600 tokens"), "{err}");
    assert!(enc.embed(&[&[]]).is_err());
    let err = enc.embed(&[&[101, 999_999, 102]]).unwrap_err().to_string();
    assert!(err.contains("999999"), "{err}");
    let err = QuantizedEncoder::load(&config, &weights, Some(9), None).err().unwrap();
    assert!(err.to_string().contains("encoder layers 9"), "{err}");
}

#[test]
fn int16_on_a_gpu_is_refused_before_loading() {
    let err = Estimator::builder()
        .model(ModelSource::Dir(common::shipped_dir()))
        .device(DeviceChoice::Cuda(0))
        .precision(Precision::Int16)
        .build()
        .err()
        .unwrap();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(err.to_string().contains("--device cpu"), "{err}");
}

#[test]
fn the_estimator_reports_the_backend_that_ran() {
    assert!(quantized().backend_name().starts_with("int16 ("), "{}", quantized().backend_name());
    assert_eq!(common::reference().backend_name(), "candle f32 on cpu");
}

#[test]
fn unknown_precisions_are_refused_with_the_choices() {
    assert_eq!("int16".parse::<Precision>().unwrap(), Precision::Int16);
    let err = "int4".parse::<Precision>().unwrap_err().to_string();
    assert!(err.contains("auto, f32, f16, bf16, int16 or int8"), "{err}");
}

/// The shipped head's encoder files, config and int8 calibration.
fn shipped_int8() -> (EncoderConfig, Vec<std::path::PathBuf>, usize, Int8Calibration) {
    let dir = common::shipped_dir();
    let spec = common::reference().spec();
    let head = &spec.heads[&spec.default_head];
    let mut weights = vec![dir.join(&spec.encoder.weights)];
    weights.extend(head.encoder_override.iter().map(|f| dir.join(f)));
    let config = EncoderConfig::read(&dir.join(&spec.encoder.config)).unwrap();
    let file = head.int8.as_ref().expect("the shipped default head has an int8 calibration");
    (config, weights, head.encoder_layers, Int8Calibration::read(&dir.join(file)).unwrap())
}

#[test]
fn int8_stays_within_the_quality_bar_of_f32_on_every_utterance() {
    // On a CPU with AVX-512 VNNI the whole test split and sample; elsewhere the portable kernel (the same
    // integers, much slower) on the first 150 of them.
    let kernel = Kernel::detect();
    common_require_fast(kernel);
    let texts = texts();
    let take = if kernel.is_vnni() { texts.len() } else { 150 };
    let refs: Vec<&str> = texts.iter().take(take).map(String::as_str).collect();
    let reference = common::reference();
    let (config, weights, layers, calibration) = shipped_int8();
    assert!(!calibration.products().is_empty());
    let k = if kernel.is_vnni() { kernel } else { Kernel::portable() };
    let encoder = QuantizedEncoder::load_calibrated(&config, &weights, Some(layers), Some(k), Some(&calibration)).unwrap();
    assert_eq!(encoder.int8_products(), calibration.products().len());
    let seqs: Vec<Vec<u32>> = refs.iter().map(|t| reference.token_ids(t).unwrap()).collect();
    let seq_refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let pooled = encoder.embed(&seq_refs).unwrap();
    let h = encoder.hidden_size();
    let input = candle_core::Tensor::from_slice(&pooled, (refs.len(), h), &candle_core::Device::Cpu).unwrap();
    let texts: Vec<Option<&[u32]>> = seq_refs.iter().map(|s| Some(*s)).collect();
    let got: Vec<Vec<f32>> = reference.model().head().forward_all(&input, &texts).unwrap().intensities.to_vec2().unwrap();
    let (gold_pooled, gold) = (reference.embed(&refs).unwrap(), reference.estimate(&refs).unwrap());
    let mut worst = (1f64, 0f32);
    for (i, text) in refs.iter().enumerate() {
        let c = cosine(&pooled[i * h..(i + 1) * h], &gold_pooled[i]);
        assert!(c >= 0.99, "cosine {c:.5} for {text:?}");
        let d = got[i].iter().zip(gold[i].as_slice()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d <= 0.02, "intensities differ by {d:.4} for {text:?}");
        worst = (worst.0.min(c), worst.1.max(d));
    }
    eprintln!("int8 ({k}) on {} texts: worst cosine {:.5}, worst intensity difference {:.4}", refs.len(), worst.0, worst.1);
    // Batch invariance: alone, an utterance gets the same bits as in the batch.
    for (i, seq) in seq_refs.iter().enumerate().step_by(37) {
        assert_eq!(encoder.embed(&[seq]).unwrap(), pooled[i * h..(i + 1) * h].to_vec(), "{:?}", refs[i]);
    }
}

fn common_require_fast(kernel: Kernel) {
    if std::env::var("EMOARC_REQUIRE_FAST_KERNEL").is_ok_and(|v| v == "1") {
        assert!(kernel.is_vnni(), "EMOARC_REQUIRE_FAST_KERNEL=1 but this CPU gets the {kernel} kernel");
    }
}

#[test]
fn the_int8_backend_runs_where_vnni_is_and_is_refused_elsewhere() {
    let built = Estimator::builder()
        .model(ModelSource::Dir(common::shipped_dir()))
        .backend(Backend::Int8)
        .build();
    if Kernel::detect().is_vnni() {
        let e = built.expect("int8 loads on a CPU with VNNI");
        let name = e.backend_name();
        let kernel = if Kernel::detect().is_amx() { "avx512-vnni+amx" } else { "avx512-vnni" };
        assert!(name.starts_with(&format!("int8 ({kernel};")) && name.contains("products int8"), "{name}");
        // And auto picks it there.
        assert_eq!(Backend::Auto.resolve(), Backend::Int8);
        let d = e.estimate(&["I can't believe they cancelled it again."]).unwrap()[0]
            .max_abs_diff(&common::reference().estimate(&["I can't believe they cancelled it again."]).unwrap()[0]);
        assert!(d <= 0.02, "{d}");
    } else {
        let err = built.err().expect("int8 is refused without VNNI");
        assert!(matches!(err, Error::Backend { .. }) && err.to_string().contains("AVX-512 VNNI"), "{err}");
    }
}

#[test]
fn calibrating_a_head_chooses_products_by_measured_quality() {
    let texts = texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let options = emoarc::train::int8::CalibrationOptions::default();
    // Few texts: without VNNI every candidate runs on the portable kernel.
    let report = emoarc::train::int8::calibrate_int8(common::reference(), &refs[..40], &refs[40..80], &options, None).unwrap();
    assert_eq!(report.total_products, 12);
    assert_eq!(report.alone.len(), 12);
    assert!(report.int16.worst_cosine > 0.999, "{:?}", report.int16);
    // What was chosen meets the margin it was chosen for, measured on the check text.
    assert!(report.chosen.worst_cosine >= options.min_cosine, "{:?}", report.chosen);
    assert!(report.chosen.worst_difference <= options.max_difference, "{:?}", report.chosen);
    // Every product judged alone beyond the margin stayed int16.
    let chosen = report.calibration.products();
    for (p, q) in &report.alone {
        if q.worst_difference > options.max_difference {
            assert!(!chosen.contains(p), "{p:?} chosen although alone it gave {q:?}");
        }
    }
    // The file round-trips.
    let bytes = report.calibration.to_bytes().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("int8.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    let back = Int8Calibration::read(&path).unwrap();
    assert_eq!(back.products(), chosen);
    assert_eq!((back.alpha, back.outliers), (options.alpha, options.outliers));
    assert!(back.notes().contains_key("check_worst_cosine"));
}

#[test]
fn bad_int8_calibration_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("int8.safetensors");
    std::fs::write(&path, b"layer,product\n0,qkv\n").unwrap();
    let err = Int8Calibration::read(&path).unwrap_err().to_string();
    assert!(err.contains("int8 calibration") && err.contains("int8.safetensors"), "{err}");
    // A stored alpha outside [0, 1] (same length, so the header stays well formed).
    let (_, _, _, mut calibration) = shipped_int8();
    calibration.alpha = Alpha::uniform(0.5).unwrap();
    let bytes = calibration.to_bytes().unwrap();
    let (from, to) = (b"\"alpha\":\"0.5\"", b"\"alpha\":\"1.5\"");
    let at = bytes.windows(from.len()).position(|w| w == from).expect("alpha in the header");
    let mut bad = bytes.clone();
    bad[at..at + to.len()].copy_from_slice(to);
    std::fs::write(&path, &bad).unwrap();
    let err = Int8Calibration::read(&path).unwrap_err().to_string();
    assert!(err.contains("alpha 1.5"), "{err}");
}

/// A copy of the shipped model folder with its own manifest, and a small corpus beside it (the id hash puts
/// about 65% of it in train and 15% in dev: the first 150 tweets), for `emoarc calibrate` to rewrite.
fn calibration_folder() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models").join("emoarc-minilm");
    common::copy_dir(&common::shipped_dir(), &dir);
    let manifest = tmp.path().join("weights-manifest");
    std::fs::copy(common::root().join("weights-manifest"), &manifest).unwrap();
    let corpus = tmp.path().join("data").join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    let tweets = std::fs::read_to_string(common::root().join("data/corpus/real-tweets.jsonl")).unwrap();
    let sample: String = tweets.lines().take(150).map(|l| format!("{l}\n")).collect();
    std::fs::write(corpus.join("sample.jsonl"), sample).unwrap();
    (tmp, dir, manifest)
}

#[test]
fn emoarc_calibrate_writes_the_file_names_it_and_records_its_hash() {
    let (tmp, dir, manifest) = calibration_folder();
    let file = dir.join("int8-trained.safetensors");
    let (before, _) = emoarc::weights::hash_file(&file).unwrap();
    let (d, m) = (dir.to_str().unwrap(), manifest.to_str().unwrap());
    let args = ["calibrate", "--data", "data", "--model", d, "--manifest", m, "--record-in", m, "--device", "cpu"];
    let out = common::run_emoarc(tmp.path(), &args, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("chosen: ") && stderr.contains("of 12 products in int8"), "{stderr}");
    // Written, named in emoarc.json, and its hash recorded: the folder verifies and loads.
    // Rewritten from other text (other ranges), so its hash changed, and the manifest has the new one.
    let (sha, _) = emoarc::weights::hash_file(&file).unwrap();
    assert_ne!(sha, before);
    let recorded = std::fs::read_to_string(&manifest).unwrap();
    assert!(recorded.contains(&sha) && !recorded.contains(&before));
    assert!(std::fs::read_to_string(dir.join("emoarc.json")).unwrap().contains("\"int8\": \"int8-trained.safetensors\""));
    assert!(!Int8Calibration::read(&file).unwrap().notes().is_empty());
    let loaded = Estimator::builder()
        .model(ModelSource::Dir(dir.clone()))
        .manifest(&manifest)
        .device(DeviceChoice::Cpu)
        .build()
        .expect("the calibrated folder verifies");
    assert!(loaded.estimate(&["what a day"]).is_ok());
}

/// A product's weight as `Int8Calibration::put_on_grid` takes it, from a safetensors file, and its inputs.
fn product_weight(file: &std::path::Path, layer: usize, product: Product) -> (Vec<f32>, usize) {
    let tensors = candle_core::safetensors::load(file, &candle_core::Device::Cpu).unwrap();
    let parts: Vec<&candle_core::Tensor> = product.linear_layers(layer).iter().map(|l| &tensors[&format!("{l}.weight")]).collect();
    let stacked = candle_core::Tensor::cat(&parts, 0).unwrap().to_dtype(candle_core::DType::F32).unwrap();
    let inputs = stacked.dims2().unwrap().1;
    (stacked.flatten_all().unwrap().to_vec1().unwrap(), inputs)
}

/// The largest move of a weight when `calibration` puts it on its grid, relative to its row's largest weight.
fn grid_move(calibration: &Int8Calibration, weight: &[f32], inputs: usize, at: (usize, Product)) -> f32 {
    let mut moved = weight.to_vec();
    assert!(calibration.clone().put_on_grid(at.0, at.1, &mut moved, inputs).unwrap());
    weight.chunks_exact(inputs).zip(moved.chunks_exact(inputs)).fold(0f32, |m, (a, b)| {
        let top = a.iter().fold(0f32, |t, w| t.max(w.abs()));
        a.iter().zip(b).fold(m, |m, (x, y)| m.max((x - y).abs() / top))
    })
}

#[test]
fn emoarc_calibrate_grid_puts_the_fine_tuned_layers_on_the_int8_grid() {
    let (tmp, dir, manifest) = calibration_folder();
    let layers = dir.join("encoder-trained.safetensors");
    let (before, _) = emoarc::weights::hash_file(&layers).unwrap();
    let (d, m) = (dir.to_str().unwrap(), manifest.to_str().unwrap());
    let base = ["calibrate", "--data", "data", "--model", d, "--manifest", m, "--record-in", m, "--device", "cpu", "--grid"];
    // A dry run measures on a copy and leaves the folder as it was.
    let dry: Vec<&str> = base.iter().copied().chain(["--dry-run", "--alpha", "0.7,output=0.5"]).collect();
    let out = common::run_emoarc(tmp.path(), &dry, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("put 12 products on the int8 grid") && stderr.contains("the model's f32 outputs moved"), "{stderr}");
    assert_eq!(emoarc::weights::hash_file(&layers).unwrap().0, before, "a dry run rewrote the layers");
    // For real: the layers' file is rewritten and recorded, and the calibration fixes every chosen product's
    // smoothing factors, on whose grid the stored weights already lie (to f16's rounding).
    let out = common::run_emoarc(tmp.path(), &base, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (after, _) = emoarc::weights::hash_file(&layers).unwrap();
    assert_ne!(after, before);
    assert!(std::fs::read_to_string(&manifest).unwrap().contains(&after));
    let calibration = Int8Calibration::read(&dir.join("int8-trained.safetensors")).unwrap();
    assert!(calibration.notes().contains_key("grid"));
    let chosen = calibration.products();
    assert!(!chosen.is_empty(), "{stderr}");
    let original = common::shipped_dir().join("encoder-trained.safetensors");
    for &(layer, product) in &chosen {
        assert!(calibration.fixes_smoothing(layer, product));
        let (weight, inputs) = product_weight(&layers, layer, product);
        let moved = grid_move(&calibration, &weight, inputs, (layer, product));
        assert!(moved < 1e-3, "layer {layer} {product:?}: the stored weights move by {moved} onto the grid");
        let (weight, inputs) = product_weight(&original, layer, product);
        let moved = grid_move(&calibration, &weight, inputs, (layer, product));
        assert!(moved > 2e-3, "layer {layer} {product:?}: the weights before moved only {moved}");
    }
    let loaded = Estimator::builder()
        .model(ModelSource::Dir(dir.clone()))
        .manifest(&manifest)
        .precision(Precision::F32)
        .device(DeviceChoice::Cpu)
        .build()
        .expect("the rewritten folder verifies");
    assert!(loaded.estimate(&["what a day"]).is_ok());
    // The shared encoder's head has no layers of its own to move.
    let zero_shot: Vec<&str> = base.iter().copied().chain(["--head", "zero-shot", "--dry-run"]).collect();
    let out = common::run_emoarc(tmp.path(), &zero_shot, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("reads the shared encoder's weights"), "{stderr}");
}

#[test]
fn int8_on_a_head_without_a_calibration_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "so glad this worked out\n").unwrap();
    let out_file = tmp.path().join("out.jsonl");
    let args = ["score", input.to_str().unwrap(), "--precision", "int8", "--head", "zero-shot", "-o", out_file.to_str().unwrap()];
    let out = common::emoarc_cpu(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if Kernel::detect().is_vnni() {
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("head \"zero-shot\" has no int8 calibration") && stderr.contains("[int16 ("), "{stderr}");
    } else {
        assert!(!out.status.success() && stderr.contains("AVX-512 VNNI"), "{stderr}");
    }
}

#[test]
fn word_embeddings_read_alike_stored_as_f16_or_as_int8_rows() {
    // The shipped encoder keeps its word embeddings as int8 rows; a file with them in f16 (as before, and as
    // other BERT files have them) takes the int16 backend's other table. Both must give the same vectors
    // within the int8 rows' rounding.
    use emoarc::weights::store::{save_with_int8_rows, TensorStore};
    const WORD: &str = "embeddings.word_embeddings.weight";
    let dir = common::shipped_dir();
    let shipped = dir.join("encoder.safetensors");
    let store = TensorStore::open(&[shipped.clone()]).unwrap();
    assert!(store.is_int8_rows(WORD));
    let bytes = std::fs::read(&shipped).unwrap();
    let names: Vec<String> = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .filter(|n| !n.ends_with(".q8") && !n.ends_with(".scale"))
        .map(String::from)
        .collect();
    let mut tensors: std::collections::BTreeMap<String, candle_core::Tensor> =
        names.iter().map(|n| (n.clone(), store.load(n, &candle_core::Device::Cpu).unwrap())).collect();
    let word = store.load(WORD, &candle_core::Device::Cpu).unwrap().to_dtype(candle_core::DType::F16).unwrap();
    tensors.insert(WORD.to_string(), word);
    let tmp = tempfile::tempdir().unwrap();
    let f16_file = tmp.path().join("encoder.safetensors");
    save_with_int8_rows(&f16_file, &tensors, &Default::default()).unwrap();
    assert!(!TensorStore::open(&[f16_file.clone()]).unwrap().is_int8_rows(WORD));

    let config = EncoderConfig::read(&dir.join("config.json")).unwrap();
    let kernel = Kernel::detect();
    let load = |file: &std::path::Path| {
        QuantizedEncoder::load_calibrated(&config, &[file.to_path_buf()], Some(3), Some(kernel), None).unwrap()
    };
    let (a, b) = (load(&shipped), load(&f16_file));
    let reference = common::reference();
    let texts = ["I miss you so much", "the parcel is late AGAIN 😡", "What's the boiling point of water?"];
    let seqs: Vec<Vec<u32>> = texts.iter().map(|t| reference.token_ids(t).unwrap()).collect();
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let (ea, eb) = (a.embed(&refs).unwrap(), b.embed(&refs).unwrap());
    let h = a.hidden_size();
    for (i, text) in texts.iter().enumerate() {
        let c = cosine(&ea[i * h..(i + 1) * h], &eb[i * h..(i + 1) * h]);
        assert!(c > 0.9999, "cosine {c:.6} for {text:?}");
    }
}
