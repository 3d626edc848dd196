//! The plot of NDCG@10 against the half-life of the hand-set blend's decay.

use std::path::Path;

use plotters::prelude::*;

use super::report::sweep;
use super::{EvalReport, HANDSET_ROW};

const FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");

pub(super) fn draw(r: &EvalReport, path: &Path) -> anyhow::Result<()> {
    // Registering twice (a second run in one process) only replaces the same font.
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow::anyhow!("the bundled DejaVuSans.ttf is not a valid font"))?;
    let points = sweep(r);
    let kairos: Vec<(f64, f64)> = points.iter().filter_map(|&(h, k, _)| k.map(|v| (h.log2(), v))).collect();
    let reference: Vec<(f64, f64)> = points.iter().filter_map(|&(h, _, rf)| rf.map(|v| (h.log2(), v))).collect();
    let ymax = kairos.iter().chain(&reference).map(|p| p.1).fold(0.0f64, f64::max) * 1.15 + 1e-3;
    let (xmin, xmax) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0.log2()), b.max(p.0.log2())));
    anyhow::ensure!(xmin <= xmax, "no half-life sweep to plot");

    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("NDCG@10 against the half-life of exponential decay (hand-set blend)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((xmin - 0.3)..(xmax + 0.3), 0.0..ymax)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("half-life (hours, log scale)")
        .y_desc("NDCG@10")
        .x_labels(points.len())
        .x_label_formatter(&|x| format!("{}", x.exp2().round()))
        .y_label_formatter(&|y| format!("{y:.3}"))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (data, colour, label) in [(&kairos, BLUE, "kairos hand-set blend (decay varied)"), (&reference, RED, "reference (own items + popularity)")] {
        chart
            .draw_series(LineSeries::new(data.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart
            .draw_series(data.iter().map(|&p| Circle::new(p, 4, colour.filled())))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if let Some(d) = r.row(HANDSET_ROW).and_then(|v| v.curve.map(|(_, h)| (h.log2(), v.item.ndcg_at(10)))) {
        chart
            .draw_series(std::iter::once(Cross::new(d, 9, BLACK.stroke_width(2))))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label("configured decay")
            .legend(|(x, y)| Cross::new((x + 10, y), 6, BLACK.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
