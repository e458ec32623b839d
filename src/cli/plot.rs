//! The SVG chart of one conversation's emotion arc (`emoarc arc --plot`), drawn to be put in a paper: the
//! well-being axis is scaled to the data (and says so), the other speakers' turns are marked as shaded bands,
//! the legend sits beside the charts rather than on the points, axis labels carry no needless decimals, and
//! every point and band carries its turn's text as an SVG `<title>` (shown on hover by browsers and editors).
//!
//! plotters has no element for tooltips, so the `<title>`s are hover targets appended after drawing, at the
//! pixel positions plotters itself computed for the points.

use anyhow::Result;
use emoarc::trajectory::ScoredTurn;
use emoarc::{Category, Conversation, EmotionArc, Trajectory};
use plotters::coord::types::RangedCoordf32;
use plotters::prelude::*;
use std::fmt::Write as _;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 660;
/// Width of the charts; the rest of the canvas on the right holds the legend.
const CHART_WIDTH: u32 = 760;
/// Well-being is on a 0–100 scale, but conversations move within a few tens of points: the axis shows the
/// data's range rounded out to this step, and never less than `MIN_SPAN` points so small wobbles stay small.
const WELLBEING_STEP: f32 = 5.0;
const MIN_SPAN: f32 = 20.0;
/// Longest turn text put into a tooltip, in characters.
const TITLE_CHARS: usize = 280;

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf32, RangedCoordf32>>;

/// A point drawn on a chart and the tooltip it carries, in backend pixels.
struct HoverTarget {
    at: (i32, i32),
    title: String,
}

/// The shaded column of a turn by another speaker, in backend pixels, and its tooltip.
struct Band {
    left: i32,
    right: i32,
    top: i32,
    bottom: i32,
    title: String,
}

/// The SVG document for one scored conversation: well-being on top, the `categories` most moving categories'
/// intensities below, both against the conversation's turn numbers.
pub fn arc_svg(conversation: &Conversation, trajectory: &Trajectory, categories: usize) -> Result<String> {
    let arc = trajectory.arc();
    let turns = trajectory.turns();
    let texts: Vec<&str> = conversation.turns.iter().map(|t| t.text.as_str()).collect();
    let x_end = turns.len().saturating_sub(1).max(1) as f32;
    let x_range = -0.5f32..x_end + 0.5;
    let (y_lo, y_hi) = wellbeing_axis(arc.wellbeing());
    let movers = top_movers(arc, categories);
    let colors: Vec<RGBAColor> = (0..movers.len()).map(|i| Palette99::pick(i).to_rgba()).collect();

    let mut svg = String::new();
    let mut targets = Vec::new();
    let mut bands = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let (charts, legend) = root.split_horizontally(CHART_WIDTH);
        let (upper, lower) = charts.split_vertically(HEIGHT / 2);

        let mut chart = ChartBuilder::on(&upper)
            .caption(format!("{}: well-being of {}", trajectory.id, trajectory.speaker), ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(x_range.clone(), y_lo..y_hi)
            .map_err(draw_error)?;
        let y_desc = format!("well-being (0–100, 50 neutral; axis {y_lo:.0}–{y_hi:.0})");
        shade_other_turns(&mut chart, turns, &trajectory.speaker, &texts, (y_lo, y_hi), &mut bands)?;
        configure_axes(&mut chart, x_end, &y_desc)?;
        let wellbeing: Vec<(f32, f32)> = points(arc, arc.wellbeing());
        chart
            .draw_series(LineSeries::new(wellbeing.iter().copied(), BLUE.stroke_width(2)).point_size(4))
            .map_err(draw_error)?;
        for (&(x, y), &turn) in wellbeing.iter().zip(arc.turns()) {
            let title = format!("turn {turn}, {}: well-being {y:.0}\n{}", trajectory.speaker, clip(texts.get(turn).copied().unwrap_or_default()));
            targets.push(HoverTarget { at: chart.backend_coord(&(x, y)), title });
        }

        let mut chart = ChartBuilder::on(&lower)
            .caption("most moving categories", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(x_range, 0f32..1f32)
            .map_err(draw_error)?;
        shade_other_turns(&mut chart, turns, &trajectory.speaker, &texts, (0.0, 1.0), &mut bands)?;
        configure_axes(&mut chart, x_end, "intensity (0–1)")?;
        for ((category, series), color) in movers.iter().zip(&colors) {
            let series = points(arc, series);
            chart
                .draw_series(LineSeries::new(series.iter().copied(), color.stroke_width(2)).point_size(3))
                .map_err(draw_error)?;
            for (&(x, y), &turn) in series.iter().zip(arc.turns()) {
                let title = format!("turn {turn}, {}: {} {}\n{}", trajectory.speaker, category.name(), tick(y), clip(texts.get(turn).copied().unwrap_or_default()));
                targets.push(HoverTarget { at: chart.backend_coord(&(x, y)), title });
            }
        }

        draw_legend(&legend, &trajectory.speaker, &movers, &colors)?;
        root.present().map_err(draw_error)?;
    }
    Ok(with_hover_targets(svg, &bands, &targets))
}

/// The well-being axis: the data's range rounded out to `WELLBEING_STEP`, widened about its middle to at
/// least `MIN_SPAN`, inside 0–100.
fn wellbeing_axis(values: &[f32]) -> (f32, f32) {
    let (lo, hi) = values.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 100.0);
    }
    let mut lo = (lo / WELLBEING_STEP).floor() * WELLBEING_STEP;
    let mut hi = (hi / WELLBEING_STEP).ceil() * WELLBEING_STEP;
    if hi - lo < MIN_SPAN {
        let middle = ((lo + hi) / 2.0 / WELLBEING_STEP).round() * WELLBEING_STEP;
        lo = middle - MIN_SPAN / 2.0;
        hi = middle + MIN_SPAN / 2.0;
    }
    // Shift (not clip) a window that runs past either end, so it keeps its span.
    let shift = (0.0 - lo).max(0.0) - (hi - 100.0).max(0.0);
    ((lo + shift).max(0.0), (hi + shift).min(100.0))
}

/// The categories that moved most over the arc (largest range), strongest mover first.
fn top_movers(arc: &EmotionArc, k: usize) -> Vec<(Category, Vec<f32>)> {
    let mut movers: Vec<(Category, Vec<f32>, f32)> = Category::ALL
        .iter()
        .map(|&c| {
            let series = arc.category(c);
            let (lo, hi) = series.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            (c, series, hi - lo)
        })
        .collect();
    movers.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    movers.into_iter().take(k).map(|(c, s, _)| (c, s)).collect()
}

fn points(arc: &EmotionArc, ys: &[f32]) -> Vec<(f32, f32)> {
    arc.turns().iter().map(|&t| t as f32).zip(ys.iter().copied()).collect()
}

/// Grey bands over the turns of the other speakers, so the gaps in the arc read as "someone else spoke here";
/// each band's tooltip is that turn's text.
fn shade_other_turns(
    chart: &mut Chart<'_, '_>,
    turns: &[ScoredTurn],
    speaker: &str,
    texts: &[&str],
    (y_lo, y_hi): (f32, f32),
    bands: &mut Vec<Band>,
) -> Result<()> {
    for (i, turn) in turns.iter().enumerate().filter(|(_, t)| t.role != speaker) {
        let x = i as f32;
        let corners = [(x - 0.35, y_hi), (x + 0.35, y_lo)];
        chart.draw_series(std::iter::once(Rectangle::new(corners, other_turn_fill().filled()))).map_err(draw_error)?;
        let (left, top) = chart.backend_coord(&corners[0]);
        let (right, bottom) = chart.backend_coord(&corners[1]);
        let title = format!("turn {i}, {}\n{}", turn.role, clip(texts.get(i).copied().unwrap_or_default()));
        bands.push(Band { left, right, top, bottom, title });
    }
    Ok(())
}

fn other_turn_fill() -> RGBAColor {
    RGBColor(120, 120, 120).mix(0.15)
}

/// Grid and labels: the x axis counts conversation turns, so only whole numbers are labelled; the y labels
/// drop trailing zeros ("0.2", "50", not "0.20", "50.0").
fn configure_axes(chart: &mut Chart<'_, '_>, x_end: f32, y_desc: &str) -> Result<()> {
    let whole = |x: &f32| if (x - x.round()).abs() < 1e-3 { format!("{}", x.round() as i64) } else { String::new() };
    let y_label = |y: &f32| tick(*y);
    chart
        .configure_mesh()
        .x_labels(x_end as usize + 1)
        .x_label_formatter(&whole)
        .y_label_formatter(&y_label)
        .x_desc("turn")
        .y_desc(y_desc)
        .draw()
        .map_err(draw_error)
}

/// A number with at most two decimals and no trailing zeros.
fn tick(y: f32) -> String {
    let s = format!("{y:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".to_string() } else { s.to_string() }
}

/// The legend, in its own column right of the charts: the well-being line, the other speakers' bands and
/// each category's colour.
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    speaker: &str,
    movers: &[(Category, Vec<f32>)],
    colors: &[RGBAColor],
) -> Result<()> {
    let font = ("sans-serif", 14).into_font();
    let entry = |y: i32, label: &str, color: RGBAColor, band: bool| -> Result<()> {
        if band {
            area.draw(&Rectangle::new([(8, y - 7), (30, y + 7)], other_turn_fill().filled())).map_err(draw_error)?;
        } else {
            area.draw(&PathElement::new(vec![(8, y), (30, y)], color.stroke_width(2))).map_err(draw_error)?;
            area.draw(&Circle::new((19, y), 3, color.filled())).map_err(draw_error)?;
        }
        area.draw(&Text::new(label.to_string(), (38, y - 7), font.clone())).map_err(draw_error)
    };
    // Each chart's entries start level with that chart's plotting area.
    entry(60, &format!("well-being ({speaker})"), BLUE.to_rgba(), false)?;
    entry(84, "other speaker's turn", other_turn_fill(), true)?;
    let lower = HEIGHT as i32 / 2 + 60;
    for (i, ((category, _), &color)) in movers.iter().zip(colors).enumerate() {
        entry(lower + 24 * i as i32, category.name(), color, false)?;
    }
    Ok(())
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(TITLE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Appends the hover targets: a transparent rectangle per band and a transparent circle per point, each with
/// its `<title>`, drawn last so they are on top and receive the pointer.
fn with_hover_targets(mut svg: String, bands: &[Band], targets: &[HoverTarget]) -> String {
    let end = svg.rfind("</svg>").unwrap_or(svg.len());
    let mut extra = String::from("<g class=\"turn-text\" fill=\"transparent\" pointer-events=\"all\">\n");
    for b in bands {
        let _ = writeln!(
            extra,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
            b.left.min(b.right),
            b.top.min(b.bottom),
            (b.right - b.left).abs(),
            (b.bottom - b.top).abs(),
            xml_escape(&b.title)
        );
    }
    for t in targets {
        let _ = writeln!(extra, "<circle cx=\"{}\" cy=\"{}\" r=\"7\"><title>{}</title></circle>", t.at.0, t.at.1, xml_escape(&t.title));
    }
    extra.push_str("</g>\n");
    svg.insert_str(end, &extra);
    svg
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            // Control characters other than tab and newline are not allowed in XML 1.0.
            c if c.is_control() && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn draw_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the arc: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wellbeing_axis_fits_the_data_and_keeps_a_minimum_span() {
        assert_eq!(wellbeing_axis(&[38.2, 57.9]), (35.0, 60.0));
        assert_eq!(wellbeing_axis(&[49.0, 51.0]), (40.0, 60.0));
        assert_eq!(wellbeing_axis(&[2.0, 4.0]), (0.0, 20.0));
        assert_eq!(wellbeing_axis(&[97.0, 99.0]), (80.0, 100.0));
        assert_eq!(wellbeing_axis(&[]), (0.0, 100.0));
    }

    #[test]
    fn ticks_have_no_needless_decimals() {
        assert_eq!(tick(100.0), "100");
        assert_eq!(tick(0.2), "0.2");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(-0.0001), "0");
    }

    #[test]
    fn titles_are_escaped_and_clipped() {
        assert_eq!(xml_escape("a <b> & \"c\"\u{7}"), "a &lt;b&gt; &amp; &quot;c&quot; ");
        let long = "é".repeat(TITLE_CHARS + 5);
        assert_eq!(clip(&long).chars().count(), TITLE_CHARS + 1);
    }
}
