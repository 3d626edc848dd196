//! A trained sequence model: its stored form (JSON with a format tag, the item table, the
//! event kinds and every parameter as base64 little-endian `f32`), the checks at load, and
//! inference: a user's encoded history (cacheable until their next event), the state for a
//! request, item scores, and the nearest items of the table.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use candle_core::{Device, Tensor};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::net::{Batch, Dims, Net};
use super::tokens::{FIRST_ITEM, Moment, OOV, Token, Vocab, bucket};
use crate::rank::catalog::Catalog;
use crate::rank::history::HistoryEvent;

/// The format tag this build reads and writes.
pub const FORMAT: &str = "kairos-sequence/1";

/// Why a stored model was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SequenceError {
    #[error("the parameters are not valid JSON of a sequence model: {0}")]
    Malformed(String),
    #[error("format {found:?} is not {FORMAT:?}")]
    Format { found: String },
    #[error("the model does not fit its own sizes: {0}")]
    Shape(String),
    #[error("parameter {0} holds a value that is not finite")]
    NotFinite(String),
    #[error("the item table does not match: {0}")]
    ItemTable(String),
}

/// One parameter as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredTensor {
    pub name: String,
    pub shape: Vec<usize>,
    /// Little-endian `f32`s, base64.
    pub data: String,
}

/// The stored parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceParams {
    pub format: String,
    pub dim: usize,
    pub blocks: usize,
    pub max_len: usize,
    /// The item table, in row order from row 2 (0 is padding, 1 an item outside the table).
    pub items: Vec<String>,
    /// The event kinds, in row order from row 1 (0: a kind the model does not know).
    pub kinds: Vec<String>,
    pub tensors: Vec<StoredTensor>,
}

/// A loaded model.
pub struct SequenceModel {
    /// The store's version (0 for one not stored).
    pub version: u64,
    pub(super) net: Net,
    pub(super) vocab: Vocab,
    /// The item table's rows, row-major `[items, dim]`, for scoring without the graph.
    item_vecs: Vec<f32>,
    /// The query's tables and norm, for the state without the graph.
    q: QueryTables,
}

struct QueryTables {
    gap: Vec<f32>,
    device: Vec<f32>,
    hour: Vec<f32>,
    weekday: Vec<f32>,
    g: Vec<f32>,
    b: Vec<f32>,
}

/// A user's history through the encoder: the hidden vector after their last event. It
/// depends only on the events, so it can be kept until the user's next event.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    pub hidden: Vec<f32>,
    /// Unix seconds of the last event.
    pub last_ts: i64,
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("a parameter reads as f32")
}

impl std::fmt::Debug for SequenceModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SequenceModel").field("version", &self.version).field("dims", &self.net.dims).finish_non_exhaustive()
    }
}

impl SequenceModel {
    pub(super) fn new(version: u64, net: Net, vocab: Vocab) -> SequenceModel {
        let item_vecs = flat(net.get("item"));
        let q = QueryTables {
            gap: flat(net.get("q_gap")),
            device: flat(net.get("q_device")),
            hour: flat(net.get("q_hour")),
            weekday: flat(net.get("q_weekday")),
            g: flat(net.get("lnq.g")),
            b: flat(net.get("lnq.b")),
        };
        SequenceModel { version, net, vocab, item_vecs, q }
    }

    /// Reads and checks stored parameters: format, sizes, every shape, finite values, a
    /// unique item table whose length is the item embedding's.
    pub fn from_json(version: u64, json: &str) -> Result<SequenceModel, SequenceError> {
        let p: SequenceParams = serde_json::from_str(json).map_err(|e| SequenceError::Malformed(e.to_string()))?;
        SequenceModel::from_params(version, p)
    }

    pub fn from_params(version: u64, p: SequenceParams) -> Result<SequenceModel, SequenceError> {
        if p.format != FORMAT {
            return Err(SequenceError::Format { found: p.format });
        }
        if p.dim == 0 || p.blocks == 0 || p.max_len == 0 {
            return Err(SequenceError::Shape("dim, blocks and max_len must be >= 1".into()));
        }
        let vocab = Vocab::new(p.items, p.kinds);
        if !vocab.unique_items() {
            return Err(SequenceError::ItemTable("an item id appears twice".into()));
        }
        let dims = Dims { items: vocab.items.len() + FIRST_ITEM as usize, kinds: vocab.kinds.len() + 1, dim: p.dim, blocks: p.blocks, max_len: p.max_len };
        let mut tensors = Vec::with_capacity(p.tensors.len());
        for t in p.tensors {
            let bytes = STANDARD.decode(&t.data).map_err(|e| SequenceError::Malformed(format!("{}: {e}", t.name)))?;
            if bytes.len() % 4 != 0 || bytes.len() / 4 != t.shape.iter().product::<usize>() {
                return Err(SequenceError::Shape(format!("{} holds {} bytes for shape {:?}", t.name, bytes.len(), t.shape)));
            }
            let data: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            if data.iter().any(|x| !x.is_finite()) {
                return Err(SequenceError::NotFinite(t.name));
            }
            let tensor = Tensor::from_vec(data, t.shape, &Device::Cpu).map_err(|e| SequenceError::Shape(e.to_string()))?;
            tensors.push((t.name, tensor));
        }
        let net = Net::from_tensors(dims, tensors).map_err(|e| match e {
            candle_core::Error::Msg(m) => SequenceError::Shape(m),
            other => SequenceError::Shape(other.to_string()),
        })?;
        Ok(SequenceModel::new(version, net, vocab))
    }

    /// The stored form.
    pub fn params(&self) -> SequenceParams {
        let tensors = self
            .net
            .names
            .iter()
            .zip(&self.net.vars)
            .map(|(name, v)| {
                let bytes: Vec<u8> = flat(v.as_tensor()).iter().flat_map(|x| x.to_le_bytes()).collect();
                StoredTensor { name: name.clone(), shape: v.dims().to_vec(), data: STANDARD.encode(bytes) }
            })
            .collect();
        let d = self.net.dims;
        SequenceParams { format: FORMAT.into(), dim: d.dim, blocks: d.blocks, max_len: d.max_len, items: self.vocab.items.clone(), kinds: self.vocab.kinds.clone(), tensors }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.params()).expect("sequence parameters serialise")
    }

    /// Refuses a model whose item table no longer matches the catalogue: fewer than half of
    /// its items are known to `known`.
    pub fn check_catalogue(&self, known: &dyn Fn(&str) -> bool) -> Result<(), SequenceError> {
        let n = self.vocab.items.len();
        let hits = self.vocab.items.iter().filter(|id| known(id)).count();
        if n == 0 || hits * 2 < n {
            return Err(SequenceError::ItemTable(format!("{hits} of its {n} items are in the catalogue")));
        }
        Ok(())
    }

    pub fn dims(&self) -> Dims {
        self.net.dims
    }

    /// Items in the table.
    pub fn items(&self) -> &[String] {
        &self.vocab.items
    }

    /// Scalars of the model.
    pub fn size(&self) -> usize {
        self.net.size()
    }

    /// Encodes the user's last `max_len` events (`history` in time order; events without an
    /// item are skipped). `None` for a history with no event the model can read.
    pub fn encode<E: HistoryEvent>(&self, history: &[E], catalog: &Catalog, zone: &dyn Fn(&E) -> i32) -> Option<Encoded> {
        let refs: Vec<&E> = history.iter().filter(|e| e.item_id(catalog).is_some()).collect();
        let start = refs.len().saturating_sub(self.net.dims.max_len);
        let tokens = self.vocab.tokens(&refs[start..], catalog, zone);
        let prev = start.checked_sub(1).map(|i| refs[i].ts().timestamp());
        self.encode_tokens(&tokens, prev)
    }

    pub(super) fn encode_tokens(&self, tokens: &[Token], prev: Option<i64>) -> Option<Encoded> {
        let last = tokens.last()?;
        let l = tokens.len();
        let mut b = Batch::new(1, l);
        fill(&mut b, 0, tokens, prev, None);
        let h = self.net.hidden(&b).expect("the encoder runs on a well-formed batch");
        let hidden = h.narrow(1, l - 1, 1).map(|t| flat(&t)).expect("the last position");
        Some(Encoded { hidden, last_ts: last.ts })
    }

    /// The user's state for a request at `now` in `moment`.
    pub fn state(&self, enc: &Encoded, now: DateTime<Utc>, moment: Moment) -> Vec<f32> {
        let e = self.net.dims.dim;
        let q = &self.q;
        let at = |i: u32| i as usize * e;
        let (gap, dv, hr, wd) = (at(bucket(now.timestamp() - enc.last_ts)), at(moment.device), at(moment.hour), at(moment.weekday));
        let s: Vec<f32> = (0..e).map(|k| enc.hidden[k] + q.gap[gap + k] + q.device[dv + k] + q.hour[hr + k] + q.weekday[wd + k]).collect();
        layer_norm_vec(&s, &q.g, &q.b)
    }

    /// The score of an item id for a state (`None` outside the table).
    pub fn score(&self, state: &[f32], item: &str) -> Option<f32> {
        let row = self.vocab.item(item);
        (row >= FIRST_ITEM).then(|| self.score_row(state, row))
    }

    fn score_row(&self, state: &[f32], row: u32) -> f32 {
        let e = state.len();
        let v = &self.item_vecs[row as usize * e..(row as usize + 1) * e];
        state.iter().zip(v).map(|(a, b)| a * b).sum()
    }

    /// The `k` items of the table with the highest score for `state`, best first (ties by
    /// table row), exact over the table.
    pub fn nearest(&self, state: &[f32], k: usize) -> Vec<(&str, f32)> {
        let mut all: Vec<(u32, f32)> = (0..self.vocab.items.len() as u32).map(|n| (n, self.score_row(state, n + FIRST_ITEM))).collect();
        let by = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if k < all.len() {
            all.select_nth_unstable_by(k, by);
            all.truncate(k);
        }
        all.sort_unstable_by(by);
        all.into_iter().map(|(n, s)| (self.vocab.items[n as usize].as_str(), s)).collect()
    }
}

/// Writes `tokens` (at most `b.len`, left-padded) into row `s` of `b`. `prev` is the time of
/// the event before the first token, if known. With `next`, the query of position `i` is token
/// `i + 1` (training); without, every query is left at 0 (only the hidden state is read).
pub(super) fn fill(b: &mut Batch, s: usize, tokens: &[Token], prev: Option<i64>, next: Option<&[Token]>) {
    let l = b.len;
    let off = l - tokens.len();
    for (i, t) in tokens.iter().enumerate() {
        let at = s * l + off + i;
        let before = if i == 0 { prev } else { Some(tokens[i - 1].ts) };
        b.item[at] = t.item;
        b.kind[at] = t.kind;
        b.gap[at] = before.map_or(0, |p| bucket(t.ts - p));
        b.device[at] = t.moment.device;
        b.hour[at] = t.moment.hour;
        b.weekday[at] = t.moment.weekday;
        b.real[at] = 1.0;
        if let Some(q) = next.and_then(|n| n.get(i)) {
            b.q_gap[at] = bucket(q.ts - t.ts);
            b.q_device[at] = q.moment.device;
            b.q_hour[at] = q.moment.hour;
            b.q_weekday[at] = q.moment.weekday;
        }
    }
}

/// Layer norm of one vector, as [`super::net::layer_norm`] computes it.
pub(super) fn layer_norm_vec(x: &[f32], g: &[f32], b: &[f32]) -> Vec<f32> {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + 1e-5).sqrt();
    x.iter().zip(g).zip(b).map(|((v, g), b)| (v - mean) * inv * g + b).collect()
}

/// Whether a token's item is one the model can learn to predict.
pub(super) fn learnable(t: &Token) -> bool {
    t.item != OOV && t.item >= FIRST_ITEM
}
