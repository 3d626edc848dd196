//! The Open Bandit logs: one CSV per (logging policy, campaign), read and checked.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use chrono::DateTime;

/// Prefix of the per-item affinity columns; there is one per item, so they count the items.
const AFFINITY_PREFIX: &str = "user-item_affinity_";

/// One logged recommendation: the item the logging policy showed at a position.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impression {
    /// Microseconds since the Unix epoch, UTC.
    pub ts_us: i64,
    /// The item shown (0-based, as the log numbers them).
    pub item: usize,
    /// The slot, 1 (left), 2 (centre) or 3 (right) in the sample.
    pub position: usize,
    pub click: bool,
    /// The probability that the logging policy showed this item at this position.
    pub propensity: f64,
}

/// One log file.
#[derive(Clone, Debug)]
pub struct CampaignLog {
    pub file: PathBuf,
    /// Items of the campaign (the affinity columns of the file).
    pub items: usize,
    /// Positions of the widget (the highest position in the file).
    pub positions: usize,
    /// In time order (ties in file order).
    pub impressions: Vec<Impression>,
}

impl CampaignLog {
    pub fn first_ts(&self) -> i64 {
        self.impressions.first().map_or(0, |i| i.ts_us)
    }

    pub fn last_ts(&self) -> i64 {
        self.impressions.last().map_or(0, |i| i.ts_us)
    }

    pub fn clicks(&self) -> usize {
        self.impressions.iter().filter(|i| i.click).count()
    }

    /// The impressions before `from`, and those at or after it.
    pub fn split(&self, from: i64) -> (Vec<Impression>, Vec<Impression>) {
        self.impressions.iter().partition(|i| i.ts_us < from)
    }
}

/// Reads `{dir}/{policy}/{campaign}/{campaign}.csv.gz` (or `.csv`).
pub fn read_campaign(dir: &Path, policy: &str, campaign: &str) -> anyhow::Result<CampaignLog> {
    let folder = dir.join(policy).join(campaign);
    let gz = folder.join(format!("{campaign}.csv.gz"));
    let file = if gz.exists() { gz } else { folder.join(format!("{campaign}.csv")) };
    let text = crate::tools::read_text(&file)?;
    let (items, positions, impressions) = parse_campaign(&text).with_context(|| format!("in {}", file.display()))?;
    Ok(CampaignLog { file, items, positions, impressions })
}

/// The campaigns of a dataset folder: the sub-folders of `{dir}/{policy}`, sorted.
pub fn campaigns(dir: &Path, policy: &str) -> anyhow::Result<Vec<String>> {
    let folder = dir.join(policy);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&folder).with_context(|| format!("cannot list {}", folder.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Parses a campaign CSV with its header; columns are found by name. Returns the number of
/// items, of positions, and the impressions in time order.
pub fn parse_campaign(text: &str) -> anyhow::Result<(usize, usize, Vec<Impression>)> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let header = reader.headers().context("reading the header")?.clone();
    let column = |name: &str| header.iter().position(|h| h == name).with_context(|| format!("no column {name:?}"));
    let (ts, item, position, click, propensity) =
        (column("timestamp")?, column("item_id")?, column("position")?, column("click")?, column("propensity_score")?);
    let items = header.iter().filter(|h| h.starts_with(AFFINITY_PREFIX)).count();
    ensure!(items > 0, "no {AFFINITY_PREFIX}* columns: the number of items is unknown");
    let mut out = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let row = n + 1;
        let r = record.with_context(|| format!("row {row}"))?;
        let field = |i: usize| r.get(i).with_context(|| format!("row {row}: missing column {:?}", &header[i]));
        let int = |i: usize| -> anyhow::Result<usize> {
            let s = field(i)?;
            s.parse().with_context(|| format!("row {row}: bad {} {s:?}", &header[i]))
        };
        let when = field(ts)?;
        let ts_us = DateTime::parse_from_str(when, "%Y-%m-%d %H:%M:%S%.f%:z")
            .with_context(|| format!("row {row}: bad timestamp {when:?}"))?
            .timestamp_micros();
        let (item, position) = (int(item)?, int(position)?);
        ensure!(item < items, "row {row}: item_id {item} but only {items} items");
        ensure!(position >= 1, "row {row}: position {position} (positions start at 1)");
        let click = match field(click)? {
            "0" => false,
            "1" => true,
            other => bail!("row {row}: click {other:?} is neither 0 nor 1"),
        };
        let p = field(propensity)?;
        let propensity: f64 = p.parse().with_context(|| format!("row {row}: bad propensity_score {p:?}"))?;
        out.push(Impression { ts_us, item, position, click, propensity });
    }
    ensure!(!out.is_empty(), "no rows");
    out.sort_by_key(|i| i.ts_us);
    let positions = out.iter().map(|i| i.position).max().unwrap_or(1);
    Ok((items, positions, out))
}
