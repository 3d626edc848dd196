//! The encoder as a candle graph: parameters by name, softmax and layer norm written from
//! primitives (candle's fused `softmax_last_dim`, `LayerNorm` and `RmsNorm` run backward
//! without passing gradients upstream, candle issues #2168 and #2977), causal self-attention
//! blocks, and the sampled-softmax loss.
//!
//! Per position `j` of a sequence the input is
//! `item[j] + kind[j] + gap[bucket(ts_j − ts_{j−1})] + device[j] + hour[band_j] + weekday[j]`;
//! then `blocks` pre-norm blocks (single-head causal attention with a learned bias per
//! relative position `i − j`, a ReLU feed-forward of twice the width, both residual), a final
//! norm, and the query: at position `i`, asking for what
//! comes next at time `t` in context `c`, the state is
//! `norm(h_i + q_gap[bucket(t − ts_i)] + q_device[c] + q_hour[c] + q_weekday[c])`. An item's
//! score is the dot product of the state with its (tied) item embedding.
//!
//! Positions are relative (how many events back from the position asking), not absolute: an
//! absolute position embedding of left-padded windows learns what the last slot of a training
//! window tends to hold (a user's last event of the log), which serving, that always reads the
//! last slot, would then predict for everyone (`tests::the_loss_falls_and_the_planted_next_item_ranks_first`
//! caught it on a periodic log).

use std::collections::HashMap;

use candle_core::{D, DType, Device, Result, Tensor, Var};
use rand::Rng;
use rand::rngs::SmallRng;

use super::tokens::{BUCKETS, DEVICES, HOUR_BANDS, WEEKDAYS};

/// Added to attention scores a position must not see, and to the logits of negatives that
/// are the target itself.
const MASKED: f64 = -1e9;
/// Layer norm's epsilon.
const EPS: f64 = 1e-5;

/// The sizes that fix the parameters' shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Rows of the item table, padding (0) and out-of-table (1) included.
    pub items: usize,
    /// Rows of the kind table (0: a kind the model does not know).
    pub kinds: usize,
    pub dim: usize,
    pub blocks: usize,
    pub max_len: usize,
}

/// How a parameter starts.
#[derive(Clone, Copy)]
enum Init {
    Normal(f32),
    Zero,
    One,
}

/// Every parameter's name, shape and initialisation, in a fixed order.
fn layout(d: &Dims) -> Vec<(String, Vec<usize>, Init)> {
    let e = d.dim;
    let emb = Init::Normal(0.05);
    let lin = Init::Normal((1.0 / e as f32).sqrt());
    let mut out = vec![
        ("item".to_string(), vec![d.items, e], emb),
        ("kind".into(), vec![d.kinds, e], emb),
        ("gap".into(), vec![BUCKETS, e], emb),
        ("device".into(), vec![DEVICES, e], emb),
        ("hour".into(), vec![HOUR_BANDS, e], emb),
        ("weekday".into(), vec![WEEKDAYS, e], emb),
    ];
    for b in 0..d.blocks {
        let p = |n: &str| format!("block{b}.{n}");
        out.extend([
            (p("rel"), vec![d.max_len], Init::Zero),
            (p("ln1.g"), vec![e], Init::One),
            (p("ln1.b"), vec![e], Init::Zero),
            (p("wq"), vec![e, e], lin),
            (p("wk"), vec![e, e], lin),
            (p("wv"), vec![e, e], lin),
            (p("wo"), vec![e, e], lin),
            (p("ln2.g"), vec![e], Init::One),
            (p("ln2.b"), vec![e], Init::Zero),
            (p("w1"), vec![e, 2 * e], lin),
            (p("b1"), vec![2 * e], Init::Zero),
            (p("w2"), vec![2 * e, e], Init::Normal((1.0 / (2 * e) as f32).sqrt())),
            (p("b2"), vec![e], Init::Zero),
        ]);
    }
    out.extend([
        ("lnf.g".to_string(), vec![e], Init::One),
        ("lnf.b".into(), vec![e], Init::Zero),
        ("q_gap".into(), vec![BUCKETS, e], emb),
        ("q_device".into(), vec![DEVICES, e], emb),
        ("q_hour".into(), vec![HOUR_BANDS, e], emb),
        ("q_weekday".into(), vec![WEEKDAYS, e], emb),
        ("lnq.g".into(), vec![e], Init::One),
        ("lnq.b".into(), vec![e], Init::Zero),
    ]);
    out
}

/// The parameters, by name.
pub struct Net {
    pub dims: Dims,
    pub names: Vec<String>,
    pub vars: Vec<Var>,
    index: HashMap<String, usize>,
}

impl Net {
    /// Fresh parameters drawn from `rng`.
    pub fn init(dims: Dims, rng: &mut SmallRng) -> Result<Net> {
        let dev = Device::Cpu;
        let mut tensors = Vec::new();
        for (name, shape, init) in layout(&dims) {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = match init {
                Init::Zero => vec![0.0; n],
                Init::One => vec![1.0; n],
                Init::Normal(sd) => (0..n).map(|_| sd * normal(rng)).collect(),
            };
            tensors.push((name, Tensor::from_vec(data, shape, &dev)?));
        }
        Net::from_tensors(dims, tensors)
    }

    /// Parameters from named tensors; every name of the layout must be there with its shape.
    pub fn from_tensors(dims: Dims, tensors: Vec<(String, Tensor)>) -> Result<Net> {
        let mut given: HashMap<String, Tensor> = tensors.into_iter().collect();
        let mut net = Net { dims, names: Vec::new(), vars: Vec::new(), index: HashMap::new() };
        for (name, shape, _) in layout(&dims) {
            let t = given.remove(&name).ok_or_else(|| candle_core::Error::Msg(format!("parameter {name} is missing")))?;
            if t.dims() != shape.as_slice() {
                return Err(candle_core::Error::Msg(format!("parameter {name} has shape {:?}, not {shape:?}", t.dims())));
            }
            net.index.insert(name.clone(), net.vars.len());
            net.names.push(name);
            net.vars.push(Var::from_tensor(&t.to_dtype(DType::F32)?)?);
        }
        if let Some(extra) = given.keys().next() {
            return Err(candle_core::Error::Msg(format!("parameter {extra} is not one of this model's")));
        }
        Ok(net)
    }

    /// The parameter `name` (a name of the layout).
    pub fn get(&self, name: &str) -> &Tensor {
        self.vars[self.index[name]].as_tensor()
    }

    /// Number of scalars.
    pub fn size(&self) -> usize {
        self.vars.iter().map(|v| v.elem_count()).sum()
    }
}

/// A standard normal draw (Box–Muller), so the same seed gives the same start everywhere.
fn normal(rng: &mut SmallRng) -> f32 {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let v: f64 = rng.random();
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

/// `log softmax` over the last dimension, from primitives: `x − max − ln Σ exp(x − max)`.
/// The max is detached: the result does not depend on it, only its numerical range does.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// Softmax over the last dimension, from primitives.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Layer norm over the last dimension, from primitives: `(x − μ) / √(σ² + ε) · g + b`.
pub fn layer_norm(x: &Tensor, g: &Tensor, b: &Tensor) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + EPS)?.sqrt()?)?;
    normed.broadcast_mul(g)?.broadcast_add(b)
}

/// A batch of left-padded sequences, `[batch, len]` each, as token ids.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub batch: usize,
    pub len: usize,
    pub item: Vec<u32>,
    pub kind: Vec<u32>,
    pub gap: Vec<u32>,
    pub device: Vec<u32>,
    pub hour: Vec<u32>,
    pub weekday: Vec<u32>,
    /// 1 for a real event, 0 for padding.
    pub real: Vec<f32>,
    /// The query at each position: what is asked for next, when and in which context.
    pub q_gap: Vec<u32>,
    pub q_device: Vec<u32>,
    pub q_hour: Vec<u32>,
    pub q_weekday: Vec<u32>,
}

impl Batch {
    pub fn new(batch: usize, len: usize) -> Batch {
        let z = vec![0u32; batch * len];
        Batch {
            batch,
            len,
            item: z.clone(),
            kind: z.clone(),
            gap: z.clone(),
            device: z.clone(),
            hour: z.clone(),
            weekday: z.clone(),
            real: vec![0.0; batch * len],
            q_gap: z.clone(),
            q_device: z.clone(),
            q_hour: z.clone(),
            q_weekday: z,
        }
    }
}

impl Net {
    fn embed(&self, table: &str, ids: &[u32], b: usize, l: usize) -> Result<Tensor> {
        let idx = Tensor::from_slice(ids, ids.len(), &Device::Cpu)?;
        self.get(table).index_select(&idx, 0)?.reshape((b, l, self.dims.dim))
    }

    /// The encoder's output before the query, `[batch, len, dim]`.
    pub fn hidden(&self, x: &Batch) -> Result<Tensor> {
        let (b, l, e) = (x.batch, x.len, self.dims.dim);
        let dev = Device::Cpu;
        let mut h = self.embed("item", &x.item, b, l)?;
        for (table, ids) in [("kind", &x.kind), ("gap", &x.gap), ("device", &x.device), ("hour", &x.hour), ("weekday", &x.weekday)] {
            h = (h + self.embed(table, ids, b, l)?)?;
        }
        let real = Tensor::from_slice(&x.real, (b, l, 1), &dev)?;
        h = h.broadcast_mul(&real)?;
        // Relative position of key j from query i (masked where j > i).
        let rel: Vec<u32> = (0..l).flat_map(|i| (0..l).map(move |j| i.saturating_sub(j) as u32)).collect();
        let rel = Tensor::from_vec(rel, l * l, &dev)?;
        // Causal mask, and no attention to padding.
        let mut bias = vec![0f32; b * l * l];
        for s in 0..b {
            for i in 0..l {
                for j in 0..l {
                    if j > i || x.real[s * l + j] == 0.0 {
                        bias[(s * l + i) * l + j] = MASKED as f32;
                    }
                }
            }
        }
        let bias = Tensor::from_vec(bias, (b, l, l), &dev)?;
        let scale = 1.0 / (e as f64).sqrt();
        for n in 0..self.dims.blocks {
            let p = |s: &str| format!("block{n}.{s}");
            let a = layer_norm(&h, self.get(&p("ln1.g")), self.get(&p("ln1.b")))?;
            let q = a.broadcast_matmul(self.get(&p("wq")))?;
            let k = a.broadcast_matmul(self.get(&p("wk")))?;
            let v = a.broadcast_matmul(self.get(&p("wv")))?;
            let scores = (q.matmul(&k.transpose(1, 2)?.contiguous()?)? * scale)?;
            let rel_bias = self.get(&p("rel")).index_select(&rel, 0)?.reshape((l, l))?;
            let att = softmax(&(scores + &bias)?.broadcast_add(&rel_bias)?)?;
            h = (h + att.matmul(&v)?.broadcast_matmul(self.get(&p("wo")))?)?;
            let f = layer_norm(&h, self.get(&p("ln2.g")), self.get(&p("ln2.b")))?;
            let f = f.broadcast_matmul(self.get(&p("w1")))?.broadcast_add(self.get(&p("b1")))?.relu()?;
            h = (h + f.broadcast_matmul(self.get(&p("w2")))?.broadcast_add(self.get(&p("b2")))?)?;
        }
        layer_norm(&h, self.get("lnf.g"), self.get("lnf.b"))
    }

    /// The query state at every position, `[batch, len, dim]`.
    pub fn states(&self, x: &Batch) -> Result<Tensor> {
        let (b, l) = (x.batch, x.len);
        let mut s = self.hidden(x)?;
        for (table, ids) in [("q_gap", &x.q_gap), ("q_device", &x.q_device), ("q_hour", &x.q_hour), ("q_weekday", &x.q_weekday)] {
            s = (s + self.embed(table, ids, b, l)?)?;
        }
        layer_norm(&s, self.get("lnq.g"), self.get("lnq.b"))
    }

    /// Mean sampled-softmax cross-entropy `−ln(e^{s⁺} / (e^{s⁺} + Σ_n e^{s_n}))` over the
    /// positions with `weight` 1: `targets` is each position's next item, `negatives` the
    /// items drawn for the batch (a negative that is the target itself is masked out).
    pub fn loss(&self, x: &Batch, targets: &[u32], weight: &[f32], negatives: &[u32]) -> Result<Tensor> {
        let (b, l, e) = (x.batch, x.len, self.dims.dim);
        let dev = Device::Cpu;
        let states = self.states(x)?.reshape((b * l, e))?;
        let items = self.get("item");
        let pos = items.index_select(&Tensor::from_slice(targets, targets.len(), &dev)?, 0)?;
        let s_pos = (&states * pos)?.sum_keepdim(1)?;
        let neg = items.index_select(&Tensor::from_slice(negatives, negatives.len(), &dev)?, 0)?;
        let s_neg = states.matmul(&neg.t()?.contiguous()?)?;
        let mut same = vec![0f32; b * l * negatives.len()];
        for (r, &t) in targets.iter().enumerate() {
            for (c, &n) in negatives.iter().enumerate() {
                if n == t {
                    same[r * negatives.len() + c] = MASKED as f32;
                }
            }
        }
        let s_neg = (s_neg + Tensor::from_vec(same, (b * l, negatives.len()), &dev)?)?;
        let logits = Tensor::cat(&[s_pos, s_neg], 1)?;
        let logp = log_softmax(&logits)?.narrow(1, 0, 1)?.squeeze(1)?;
        let w = Tensor::from_slice(weight, weight.len(), &dev)?;
        let total: f32 = weight.iter().sum();
        (logp * w)?.sum_all()?.affine(-1.0 / f64::from(total.max(1.0)), 0.0)
    }
}
