//! Training: every user's events of the window in time order, cut into windows of
//! `max_len + 1`; at each position the next event's item is the target, scored against
//! `negatives` items drawn uniformly from the table per batch (sampled-softmax
//! cross-entropy), AdamW, a fixed number of epochs, one seed for every draw. A previous
//! model warm-starts the new one: every parameter whose shape still fits, the rows of the
//! items and kinds both tables hold.

use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;

use super::SequenceConfig;
use super::model::{SequenceModel, fill, learnable};
use super::net::{Batch, Dims, Net};
use super::tokens::{FIRST_ITEM, Token, Vocab, vocab_of};
use crate::domain::Event;
use crate::rank::catalog::{Catalog, StrMap};

/// What a training measured (stored with the model).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SequenceReport {
    pub users: usize,
    pub windows: usize,
    /// Positions whose next item is in the table (what the loss is over).
    pub targets: usize,
    pub items: usize,
    /// Mean loss of each epoch.
    pub losses: Vec<f64>,
    /// Item rows taken from the previous model (0: a cold start).
    pub warm_items: usize,
    /// Scalars of the model, and its stored size in bytes.
    pub parameters: usize,
    pub secs: f64,
}

/// What a training run decided.
#[derive(Debug)]
pub enum SequenceOutcome {
    Trained(Box<SequenceModel>, SequenceReport),
    /// Not trained, and why (too small a log, or a loss that was not finite).
    Skip(String),
}

/// One window of a user's sequence: the inputs, the events that follow each, and the time of
/// the event before the first input.
pub(super) struct Window {
    inputs: Vec<Token>,
    next: Vec<Token>,
    prev: Option<i64>,
}

/// Trains on the events of `events` before `now` (any order; ties keep their order).
/// `previous` warm-starts the new model.
pub fn train(
    events: &[Event],
    zone: &dyn Fn(&Event) -> i32,
    cfg: &SequenceConfig,
    previous: Option<&SequenceModel>,
    now: DateTime<Utc>,
) -> SequenceOutcome {
    let started = Instant::now();
    let mut order: Vec<&Event> = events.iter().filter(|e| e.ts < now && e.item_id.is_some()).collect();
    order.sort_by_key(|e| e.ts);
    let vocab = vocab_of(&order, cfg.max_items);
    let mut by_user: StrMap<&str, Vec<&Event>> = StrMap::default();
    for e in &order {
        by_user.entry(e.user_id.as_str()).or_default().push(e);
    }
    let mut users: Vec<(&str, Vec<&Event>)> = by_user.into_iter().collect();
    users.sort_by(|a, b| a.0.cmp(b.0));
    let mut windows = Vec::new();
    // Full events name their items and kinds themselves: no catalogue is read.
    let names = Catalog::new();
    for (_, evs) in &users {
        windows.extend(windows_of(&vocab.tokens(evs, &names, zone), cfg.max_len));
    }
    let targets: usize = windows.iter().map(|w| w.next.iter().filter(|t| learnable(t)).count()).sum();
    if targets < cfg.min_targets || vocab.items.is_empty() {
        return SequenceOutcome::Skip(format!(
            "{targets} next-item targets in the table ({} users, {} items); at least {} are needed",
            users.len(),
            vocab.items.len(),
            cfg.min_targets
        ));
    }
    let dims = Dims { items: vocab.items.len() + FIRST_ITEM as usize, kinds: vocab.kinds.len() + 1, dim: cfg.dim, blocks: cfg.blocks, max_len: cfg.max_len };
    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let (net, warm_items) = match start(dims, &vocab, previous, &mut rng) {
        Ok(x) => x,
        Err(e) => return SequenceOutcome::Skip(format!("the model could not be set up: {e}")),
    };
    let report = SequenceReport { users: users.len(), windows: windows.len(), targets, items: vocab.items.len(), warm_items, parameters: net.size(), ..Default::default() };
    match fit(&net, &mut windows, cfg, &mut rng) {
        Ok(Ok(losses)) => {
            let model = SequenceModel::new(0, net, vocab);
            SequenceOutcome::Trained(Box::new(model), SequenceReport { losses, secs: started.elapsed().as_secs_f64(), ..report })
        }
        Ok(Err(why)) => SequenceOutcome::Skip(why),
        Err(e) => SequenceOutcome::Skip(format!("training failed: {e}")),
    }
}

/// Cuts one user's tokens into windows of at most `max_len` inputs, from the end backwards
/// (so the newest events are always in a full window), each input followed by its next event.
pub(super) fn windows_of(tokens: &[Token], max_len: usize) -> Vec<Window> {
    let mut out = Vec::new();
    let mut end = tokens.len();
    while end >= 2 {
        let start = end.saturating_sub(max_len + 1);
        let w = &tokens[start..end];
        out.push(Window { inputs: w[..w.len() - 1].to_vec(), next: w[1..].to_vec(), prev: start.checked_sub(1).map(|i| tokens[i].ts) });
        if start == 0 {
            break;
        }
        end = start + 1;
    }
    out
}

/// Fresh parameters, overwritten from `previous` where its shapes and tables allow.
fn start(dims: Dims, vocab: &Vocab, previous: Option<&SequenceModel>, rng: &mut SmallRng) -> candle_core::Result<(Net, usize)> {
    let net = Net::init(dims, rng)?;
    let Some(prev) = previous.filter(|p| p.dims().dim == dims.dim) else { return Ok((net, 0)) };
    let mut warm = 0;
    for (name, var) in net.names.iter().zip(&net.vars) {
        let old = prev.net.get(name);
        match name.as_str() {
            "item" | "kind" => {
                let (ids, old_ids): (&[String], &[String]) =
                    if name == "item" { (&vocab.items, &prev.vocab.items) } else { (&vocab.kinds, &prev.vocab.kinds) };
                let first = if name == "item" { FIRST_ITEM as usize } else { 1 };
                let mut rows = var.as_tensor().to_vec2::<f32>()?;
                let old_rows = old.to_vec2::<f32>()?;
                let old_row: StrMap<&str, usize> = old_ids.iter().enumerate().map(|(n, id)| (id.as_str(), n + first)).collect();
                for r in 0..first.min(old_rows.len()) {
                    rows[r].clone_from(&old_rows[r]);
                }
                for (n, id) in ids.iter().enumerate() {
                    if let Some(&o) = old_row.get(id.as_str()) {
                        rows[n + first].clone_from(&old_rows[o]);
                        if name == "item" {
                            warm += 1;
                        }
                    }
                }
                let flat: Vec<f32> = rows.into_iter().flatten().collect();
                var.set(&Tensor::from_vec(flat, var.dims(), &Device::Cpu)?)?;
            }
            _ if old.dims() == var.dims() => var.set(old)?,
            _ => {}
        }
    }
    Ok((net, warm))
}

/// The epochs: mean loss of each, or why training stopped.
pub(super) fn fit(net: &Net, windows: &mut [Window], cfg: &SequenceConfig, rng: &mut SmallRng) -> candle_core::Result<Result<Vec<f64>, String>> {
    let params = ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..ParamsAdamW::default() };
    let mut opt = AdamW::new(net.vars.clone(), params)?;
    let items = (net.dims.items - FIRST_ITEM as usize) as u32;
    let mut losses = Vec::with_capacity(cfg.epochs);
    for epoch in 1..=cfg.epochs {
        windows.shuffle(rng);
        let (mut sum, mut batches) = (0.0, 0usize);
        for chunk in windows.chunks(cfg.batch) {
            let (x, targets, weight) = batch_of(chunk, cfg.max_len);
            if weight.iter().all(|&w| w == 0.0) {
                continue;
            }
            let negatives: Vec<u32> = (0..cfg.negatives).map(|_| FIRST_ITEM + rng.random_range(0..items)).collect();
            let loss = net.loss(&x, &targets, &weight, &negatives)?;
            let value = f64::from(loss.to_scalar::<f32>()?);
            if !value.is_finite() {
                return Ok(Err(format!("the loss is not finite (epoch {epoch}, batch {}): training diverged", batches + 1)));
            }
            opt.backward_step(&loss)?;
            sum += value;
            batches += 1;
        }
        losses.push(sum / batches.max(1) as f64);
    }
    Ok(Ok(losses))
}

/// A batch of windows, left-padded to `max_len`, with each position's target and weight.
fn batch_of(windows: &[Window], max_len: usize) -> (Batch, Vec<u32>, Vec<f32>) {
    let mut b = Batch::new(windows.len(), max_len);
    let mut targets = vec![0u32; windows.len() * max_len];
    let mut weight = vec![0f32; windows.len() * max_len];
    for (s, w) in windows.iter().enumerate() {
        fill(&mut b, s, &w.inputs, w.prev, Some(&w.next));
        let off = max_len - w.inputs.len();
        for (i, t) in w.next.iter().enumerate() {
            if learnable(t) {
                targets[s * max_len + off + i] = t.item;
                weight[s * max_len + off + i] = 1.0;
            }
        }
    }
    (b, targets, weight)
}
