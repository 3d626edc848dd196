use candle_core::{Device, Tensor};
use chrono::{DateTime, TimeDelta, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::model::{SequenceModel, fill};
use super::net::{Batch, Dims, Net, layer_norm, log_softmax};
use super::tokens::{Moment, Token, Vocab, bucket};
use super::train::{fit, windows_of};
use super::*;
use super::model::SequenceParams;
use crate::domain::{Event, EventContext, EventProps};
use crate::rank::catalog::Catalog;

fn ev(user: &str, item: &str, kind: &str, ts: DateTime<Utc>) -> Event {
    Event {
        event_id: uuid::Uuid::nil(),
        user_id: user.into(),
        item_id: Some(item.into()),
        kind: kind.into(),
        ts,
        context: EventContext::default(),
        props: EventProps::default(),
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn utc(_: &Event) -> i32 {
    0
}

fn tiny() -> Dims {
    Dims { items: 8, kinds: 3, dim: 6, blocks: 2, max_len: 5 }
}

/// Two sequences, the first left-padded, with every table of the layout used somewhere.
fn tiny_batch() -> (Batch, Vec<u32>, Vec<f32>) {
    let tok = |item, kind, ts, device, hour, weekday| Token { item, kind, ts, moment: Moment { device, hour, weekday } };
    let a = [tok(2, 1, 0, 1, 0, 0), tok(3, 2, 60, 2, 1, 1), tok(4, 1, 4000, 3, 2, 2), tok(5, 2, 90_000, 0, 3, 3)];
    let b = [tok(6, 1, 0, 1, 4, 4), tok(7, 2, 10, 2, 5, 5), tok(2, 0, 500_000, 3, 1, 6), tok(3, 1, 500_100, 1, 2, 0), tok(1, 2, 900_000, 2, 3, 1)];
    let mut x = Batch::new(2, 5);
    fill(&mut x, 0, &a[..3], Some(-30), Some(&a[1..]));
    fill(&mut x, 1, &b[..4], None, Some(&b[1..]));
    let (mut targets, mut weight) = (vec![0u32; 10], vec![0f32; 10]);
    for (at, t) in [(2, 3), (3, 4), (4, 5), (6, 7), (7, 2), (8, 3)] {
        targets[at] = t;
        weight[at] = 1.0;
    }
    (x, targets, weight)
}

#[test]
fn after_one_step_every_parameter_has_a_non_zero_gradient() {
    let net = Net::init(tiny(), &mut SmallRng::seed_from_u64(1)).unwrap();
    let (x, targets, weight) = tiny_batch();
    let loss = net.loss(&x, &targets, &weight, &[2, 4, 6, 7]).unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in net.names.iter().zip(&net.vars) {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name} has no gradient"));
        let norm: f32 = g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(norm > 0.0 && norm.is_finite(), "{name}: gradient norm {norm}");
    }
}

#[test]
fn the_gradient_matches_finite_differences_on_a_tiny_model() {
    let net = Net::init(Dims { blocks: 1, ..tiny() }, &mut SmallRng::seed_from_u64(2)).unwrap();
    let (x, targets, weight) = tiny_batch();
    let negatives = [2, 4, 6, 7];
    let loss_of = |net: &Net| -> f64 { f64::from(net.loss(&x, &targets, &weight, &negatives).unwrap().to_scalar::<f32>().unwrap()) };
    let grads = net.loss(&x, &targets, &weight, &negatives).unwrap().backward().unwrap();
    let eps = 1e-3f32;
    let mut checked = 0;
    for (name, var) in net.names.iter().zip(&net.vars) {
        let grad: Vec<f32> = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let orig: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        // The entries with the largest gradient (the others may be rows no input uses).
        let mut order: Vec<usize> = (0..grad.len()).collect();
        order.sort_by(|&a, &b| grad[b].abs().total_cmp(&grad[a].abs()));
        for &k in order.iter().take(3) {
            let at = |d: f32| {
                let mut v = orig.clone();
                v[k] += d;
                var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap()).unwrap();
                loss_of(&net)
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * f64::from(eps));
            var.set(&Tensor::from_vec(orig.clone(), var.dims(), &Device::Cpu).unwrap()).unwrap();
            let analytic = f64::from(grad[k]);
            assert!((numeric - analytic).abs() <= 2e-3 + 0.05 * analytic.abs(), "{name}[{k}]: numeric {numeric}, analytic {analytic}");
            checked += 1;
        }
    }
    assert!(checked > 50);
}

#[test]
fn the_primitive_softmax_and_layer_norm_pass_gradients_upstream() {
    let x = candle_core::Var::from_vec(vec![0.3f32, -1.0, 2.0, 0.5, 0.1, -0.4], (2, 3), &Device::Cpu).unwrap();
    let g = Tensor::new(&[1.5f32, 0.5, 1.0], &Device::Cpu).unwrap();
    let b = Tensor::new(&[0.0f32, 0.1, 0.0], &Device::Cpu).unwrap();
    let w = Tensor::new(&[[1.0f32, -2.0, 0.5], [0.3, 0.2, -1.0]], &Device::Cpu).unwrap();
    let y = (log_softmax(&layer_norm(x.as_tensor(), &g, &b).unwrap()).unwrap() * &w).unwrap().sum_all().unwrap();
    let grad = y.backward().unwrap();
    let gx: Vec<f32> = grad.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert!(gx.iter().all(|v| v.is_finite()) && gx.iter().any(|v| v.abs() > 1e-3), "{gx:?}");
    // Each row's softmax sums to one.
    let p = super::net::softmax(x.as_tensor()).unwrap().sum_keepdim(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(p.iter().all(|s| (s - 1.0).abs() < 1e-5));
}

/// A log with a planted order: shoppers go A → B → C, with one noise item in between
/// sequences; noise items are many, so only the plant is learnable.
fn planted_log(users: usize, seed: u64) -> Vec<Event> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for u in 0..users {
        let user = format!("u{u}");
        let mut ts = t0() + TimeDelta::seconds(rng.random_range(0..3600));
        for _ in 0..6 {
            let noise = format!("n{}", rng.random_range(0..40));
            for item in [noise.as_str(), "A", "B", "C"] {
                out.push(ev(&user, item, if item == "C" { "cart" } else { "view" }, ts));
                ts += TimeDelta::seconds(rng.random_range(30..600));
            }
        }
    }
    out
}

fn small_cfg() -> SequenceConfig {
    SequenceConfig { dim: 16, blocks: 1, max_len: 12, negatives: 20, epochs: 30, lr: 0.01, batch: 16, min_targets: 100, ..SequenceConfig::default() }
}

fn trained(events: &[Event], cfg: &SequenceConfig, previous: Option<&SequenceModel>) -> (SequenceModel, SequenceReport) {
    match train(events, &utc, cfg, previous, t0() + TimeDelta::days(30)) {
        SequenceOutcome::Trained(m, r) => (*m, r),
        SequenceOutcome::Skip(why) => panic!("skipped: {why}"),
    }
}

fn top_after(model: &SequenceModel, history: &[&str]) -> String {
    let events: Vec<Event> = history.iter().enumerate().map(|(n, i)| ev("q", i, "view", t0() + TimeDelta::minutes(n as i64 * 5))).collect();
    let enc = model.encode(&events, &Catalog::new(), &utc).unwrap();
    let now = events.last().unwrap().ts + TimeDelta::minutes(5);
    let state = model.state(&enc, now, Moment::at(now, 0, None));
    model.nearest(&state, 1)[0].0.to_string()
}

#[test]
fn the_loss_falls_and_the_planted_next_item_ranks_first() {
    let log = planted_log(60, 3);
    let (model, report) = trained(&log, &small_cfg(), None);
    assert!(report.losses.last().unwrap() < &(0.7 * report.losses[0]), "losses {:?}", report.losses);
    assert_eq!(top_after(&model, &["n3", "A"]), "B");
    assert_eq!(top_after(&model, &["n7", "A", "B"]), "C");
}

#[test]
fn training_and_inference_are_deterministic_and_survive_the_stored_form() {
    let log = planted_log(30, 4);
    let cfg = SequenceConfig { epochs: 2, ..small_cfg() };
    let (a, _) = trained(&log, &cfg, None);
    let (b, _) = trained(&log, &cfg, None);
    assert_eq!(a.to_json(), b.to_json(), "the same log and seed give the same model");
    let loaded = SequenceModel::from_json(7, &a.to_json()).unwrap();
    assert_eq!(loaded.version, 7);
    let history: Vec<Event> = log.iter().filter(|e| e.user_id == "u1").cloned().collect();
    let now = history.last().unwrap().ts + TimeDelta::hours(1);
    let (e1, e2) = (a.encode(&history, &Catalog::new(), &utc).unwrap(), loaded.encode(&history, &Catalog::new(), &utc).unwrap());
    assert_eq!(e1, e2);
    let m = Moment::at(now, 0, None);
    assert_eq!(a.state(&e1, now, m), loaded.state(&e2, now, m));
    assert_eq!(a.nearest(&a.state(&e1, now, m), 5), loaded.nearest(&loaded.state(&e2, now, m), 5));
    assert_eq!(a.score(&a.state(&e1, now, m), "A"), a.nearest(&a.state(&e1, now, m), 100).iter().find(|x| x.0 == "A").map(|x| x.1));
    assert_eq!(a.score(&[0.0; 16], "unknown item"), None);
}

#[test]
fn the_served_state_is_the_one_training_computes() {
    let log = planted_log(20, 5);
    let (model, _) = trained(&log, &SequenceConfig { epochs: 1, ..small_cfg() }, None);
    let history: Vec<&Event> = log.iter().filter(|e| e.user_id == "u2").take(7).collect();
    let tokens = model.vocab.tokens(&history, &Catalog::new(), &utc);
    let now = t0() + TimeDelta::days(2);
    let query = Token { item: 0, kind: 0, ts: now.timestamp(), moment: Moment::at(now, 0, None) };
    let mut next = tokens[1..].to_vec();
    next.push(query);
    let mut x = Batch::new(1, tokens.len());
    fill(&mut x, 0, &tokens, None, Some(&next));
    let graph: Vec<f32> = model.net.states(&x).unwrap().narrow(1, tokens.len() - 1, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let owned: Vec<Event> = history.into_iter().cloned().collect();
    let served = model.state(&model.encode(&owned, &Catalog::new(), &utc).unwrap(), now, query.moment);
    for (a, b) in graph.iter().zip(&served) {
        assert!((a - b).abs() < 1e-4, "{graph:?} vs {served:?}");
    }
}

#[test]
fn a_log_too_small_is_skipped_with_the_reason() {
    let log = planted_log(2, 6);
    match train(&log, &utc, &small_cfg(), None, t0() + TimeDelta::days(1)) {
        SequenceOutcome::Skip(why) => assert!(why.contains("at least 100"), "{why}"),
        SequenceOutcome::Trained(..) => panic!("trained on {} events", log.len()),
    }
}

#[test]
fn a_loss_that_is_not_finite_stops_training() {
    let dims = tiny();
    let net = Net::init(dims, &mut SmallRng::seed_from_u64(1)).unwrap();
    let item = net.vars[0].as_tensor().clone();
    let mut v: Vec<f32> = item.flatten_all().unwrap().to_vec1().unwrap();
    v[2 * dims.dim] = f32::NAN;
    net.vars[0].set(&Tensor::from_vec(v, item.dims(), &Device::Cpu).unwrap()).unwrap();
    let tok = |item, ts| Token { item, kind: 1, ts, moment: Moment::default() };
    let mut windows = windows_of(&[tok(2, 0), tok(3, 10), tok(4, 20), tok(2, 30)], dims.max_len);
    let cfg = SequenceConfig { max_len: dims.max_len, negatives: 3, epochs: 1, batch: 4, ..SequenceConfig::default() };
    let out = fit(&net, &mut windows, &cfg, &mut SmallRng::seed_from_u64(1)).unwrap();
    assert!(out.as_ref().is_err_and(|why| why.contains("not finite")), "{out:?}");
}

#[test]
fn malformed_or_mismatched_stored_models_are_refused() {
    let log = planted_log(30, 7);
    let (model, _) = trained(&log, &SequenceConfig { epochs: 1, ..small_cfg() }, None);
    let p = model.params();
    let refuse = |p: SequenceParams| SequenceModel::from_params(1, p).unwrap_err();
    assert!(matches!(refuse(SequenceParams { format: "kairos-sequence/0".into(), ..p.clone() }), SequenceError::Format { .. }));
    let mut fewer = p.clone();
    fewer.items.pop();
    assert!(matches!(refuse(fewer), SequenceError::Shape(m) if m.contains("item")), "an item table shorter than the embedding");
    let mut twice = p.clone();
    twice.items[1] = twice.items[0].clone();
    assert!(matches!(refuse(twice), SequenceError::ItemTable(_)));
    let mut nan = p.clone();
    let n = nan.tensors[3].shape.iter().product::<usize>();
    let bytes: Vec<u8> = (0..n).flat_map(|_| f32::NAN.to_le_bytes()).collect();
    nan.tensors[3].data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    assert!(matches!(refuse(nan), SequenceError::NotFinite(name) if name == p.tensors[3].name));
    let mut missing = p.clone();
    missing.tensors.pop();
    assert!(matches!(refuse(missing), SequenceError::Shape(_)));
    assert!(matches!(SequenceModel::from_json(1, "{\"format\":"), Err(SequenceError::Malformed(_))));
    // The catalogue check: a table whose items the catalogue no longer holds.
    assert!(model.check_catalogue(&|_| true).is_ok());
    assert!(matches!(model.check_catalogue(&|id| id == "A"), Err(SequenceError::ItemTable(m)) if m.contains("1 of its")));
}

#[test]
fn a_retrain_warm_starts_from_the_previous_model_and_the_table_is_bounded() {
    let log = planted_log(40, 8);
    let cfg = SequenceConfig { epochs: 2, max_items: 20, ..small_cfg() };
    let (first, r1) = trained(&log, &cfg, None);
    assert_eq!(r1.warm_items, 0);
    assert_eq!(first.items().len(), 20, "at most max_items items");
    let (_, r2) = trained(&log, &cfg, Some(&first));
    assert_eq!(r2.warm_items, 20);
    // The most recently active items are kept: A, B and C are in every user's last events.
    for id in ["A", "B", "C"] {
        assert!(first.items().iter().any(|i| i == id));
    }
}

#[test]
fn buckets_grow_with_the_interval_and_stay_in_range() {
    assert_eq!(bucket(-5), 1);
    assert_eq!(bucket(0), 1);
    assert!(bucket(60) > bucket(0));
    assert!(bucket(3600) > bucket(60));
    assert_eq!(bucket(i64::MAX / 2), tokens::BUCKETS as u32 - 1);
    let v = Vocab::new(vec!["x".into()], vec!["view".into()]);
    assert_eq!((v.item("x"), v.item("y"), v.kind("view"), v.kind("cart")), (2, 1, 1, 0));
}

#[test]
fn ranking_with_the_model_adds_its_nearest_items_and_a_ranker_reads_its_score() {
    use crate::domain::Item;
    use crate::rank::context::RequestContext;
    use crate::rank::decay::Decay;
    use crate::rank::features;
    use crate::rank::profile::{InterestVector, KindWeights, ProfileParams};
    use crate::rank::ranker::{FORMAT as RANKER_FORMAT, Ranker, RankerParams};
    use crate::rank::scoring::{Request, Scorer, ScoringConfig, SeqQuery};
    use crate::rank::stats::{Stats, StatsConfig};

    let log = planted_log(60, 9);
    let (mut model, _) = trained(&log, &small_cfg(), None);
    model.version = 4;
    let catalog = Catalog::from_items(model.items().iter().map(|id| Item::new(id.clone(), vec![format!("c-{id}")])));
    let stats = Stats::new(StatsConfig::default());
    let kinds = KindWeights::new([("view", 1.0, true), ("cart", 3.0, true)]);
    let cfg = ScoringConfig::default();
    let now = t0() + TimeDelta::minutes(10);
    let history = vec![ev("q", "n5", "view", t0()), ev("q", "A", "view", t0() + TimeDelta::minutes(5))];
    let decay = Decay::default();
    let profile = InterestVector::build(&history, &catalog, &ProfileParams { decay: &decay, kind_weights: &kinds, horizon_secs: 86_400.0 * 14.0 }, now);
    let enc = model.encode(&history, &Catalog::new(), &utc).unwrap();
    let state = model.state(&enc, now, Moment::at(now, 0, None));
    let q = SeqQuery { model: &model, state: &state, pool: 5 };
    let none = std::collections::HashSet::new();
    let req = Request { n: 3, context: RequestContext::at(&now, None, None), exclude: &none };
    // No statistics: without the model, B is not even a candidate.
    let plain = Scorer { catalog: &catalog, stats: &stats, kinds: &kinds, cfg: &cfg, model: None };
    let b = catalog.idx("B").unwrap();
    assert!(!plain.candidates(&req, &profile, &history, now, false).table.items.contains(&b));
    assert!(plain.candidates_with(&req, &profile, &history, now, false, Some(&q), false).table.items.contains(&b));
    // A ranker that reads only the sequence feature puts B first.
    let names = features::names_with(&kinds, true);
    let n = names.len();
    let mut weights = vec![0.0; n];
    weights[n - 1] = 1.0;
    let params = RankerParams { format: RANKER_FORMAT.into(), features: names.clone(), mean: vec![0.0; n], scale: vec![1.0; n], weights };
    let ranker = Ranker::new(1, params, &names).unwrap();
    let scorer = Scorer { model: Some(&ranker), ..plain };
    let ranking = scorer.rank_with(&req, &profile, &history, now, Some(&q));
    assert_eq!(ranking.items[0].item_id, model.nearest(&state, 1)[0].0);
    assert_eq!(ranking.items[0].item_id, "B");
    assert_eq!((ranking.model, ranking.sequence_model), (Some(1), Some(4)));
    // Without the sequence model the column is 0 for every candidate, and ranking still answers.
    assert_eq!(scorer.rank(&req, &profile, &history, now).sequence_model, None);
}

