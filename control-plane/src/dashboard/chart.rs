//! Charts as inline SVG, drawn on the server: a line chart (one or more series over days) and a
//! bar chart. Colours come from classes in the stylesheet and geometry from SVG attributes, so
//! the Content-Security-Policy needs no inline style. Each chart is an `img` with a title and
//! a description, its legend is HTML, and its figures are also in a table under a disclosure,
//! for screen readers and for reading exact values.

use maud::{html, Markup};

const W: f64 = 640.0;
const H: f64 = 200.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 26.0;

/// One series: its legend label, its colour class (`s1`…`s4`), a value per x label.
pub struct Series<'a> {
    pub label: &'a str,
    pub class: &'static str,
    pub values: Vec<f64>,
}

/// A round upper bound for the y axis (1, 2 or 5 times a power of ten).
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn x_at(i: usize, n: usize) -> f64 {
    let plot = W - LEFT - RIGHT;
    if n <= 1 {
        LEFT + plot / 2.0
    } else {
        LEFT + plot * i as f64 / (n - 1) as f64
    }
}

fn y_at(v: f64, max: f64) -> f64 {
    let plot = H - TOP - BOTTOM;
    TOP + plot * (1.0 - (v / max).clamp(0.0, 1.0))
}

/// Axes, grid lines at 0, half and max, and the first, middle and last x labels.
fn frame(labels: &[String], max: f64, fmt: &dyn Fn(f64) -> String) -> Markup {
    let n = labels.len();
    let picks: Vec<usize> = match n {
        0 => vec![],
        1 => vec![0],
        2 => vec![0, 1],
        _ => vec![0, n / 2, n - 1],
    };
    html! {
        @for frac in [0.0, 0.5, 1.0] {
            @let y = y_at(max * frac, max);
            line.grid x1=(LEFT) x2=(W - RIGHT) y1=(y) y2=(y) {}
            text.axis x=(LEFT - 6.0) y=(y + 4.0) text-anchor="end" { (fmt(max * frac)) }
        }
        @for i in picks {
            @let anchor = if n > 1 && i == 0 { "start" } else if n > 1 && i == n - 1 { "end" } else { "middle" };
            text.axis x=(x_at(i, n)) y=(H - 6.0) text-anchor=(anchor) { (labels[i]) }
        }
    }
}

fn legend(series: &[Series]) -> Markup {
    html! {
        ul.legend {
            @for s in series { li { span class={ "swatch " (s.class) } aria-hidden="true" {} (s.label) } }
        }
    }
}

fn data_table(
    title: &str,
    labels: &[String],
    series: &[Series],
    fmt: &dyn Fn(f64) -> String,
) -> Markup {
    html! {
        details.data {
            summary { "Figures: " (title) }
            div.scroll { table {
                thead { tr { th scope="col" { "Day" } @for s in series { th scope="col" { (s.label) } } } }
                tbody {
                    @for (i, l) in labels.iter().enumerate() {
                        tr { th scope="row" { (l) } @for s in series { td { (fmt(s.values.get(i).copied().unwrap_or(0.0))) } } }
                    }
                }
            } }
        }
    }
}

/// A line chart of `series` over `labels`.
pub fn line(
    id: &str,
    title: &str,
    labels: &[String],
    series: &[Series],
    fmt: &dyn Fn(f64) -> String,
) -> Markup {
    let max = nice_max(
        series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0, f64::max),
    );
    let n = labels.len();
    html! {
        figure.chart {
            figcaption id={ (id) "-title" } { (title) }
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-labelledby={ (id) "-title " (id) "-desc" } preserveAspectRatio="xMidYMid meet" {
                desc id={ (id) "-desc" } { (title) ", one point per day; exact figures in the table below." }
                (frame(labels, max, fmt))
                @for s in series {
                    @let d = s.values.iter().enumerate().map(|(i, v)| format!("{}{:.1},{:.1}", if i == 0 { "M" } else { " L" }, x_at(i, n), y_at(*v, max))).collect::<String>();
                    path class={ "series " (s.class) } d=(d) fill="none" {}
                    @for (i, v) in s.values.iter().enumerate() {
                        circle class={ "dot " (s.class) } cx=(format!("{:.1}", x_at(i, n))) cy=(format!("{:.1}", y_at(*v, max))) r="3" {
                            title { (labels.get(i).map(String::as_str).unwrap_or("")) " · " (s.label) ": " (fmt(*v)) }
                        }
                    }
                }
            }
            (legend(series))
            (data_table(title, labels, series, fmt))
        }
    }
}

/// A bar chart of one series over `labels`.
pub fn bars(
    id: &str,
    title: &str,
    labels: &[String],
    series: Series,
    fmt: &dyn Fn(f64) -> String,
) -> Markup {
    let max = nice_max(series.values.iter().copied().fold(0.0, f64::max));
    let n = labels.len().max(1);
    let slot = (W - LEFT - RIGHT) / n as f64;
    let width = (slot * 0.7).max(1.0);
    let base = y_at(0.0, max);
    let series = [series];
    html! {
        figure.chart {
            figcaption id={ (id) "-title" } { (title) }
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-labelledby={ (id) "-title " (id) "-desc" } preserveAspectRatio="xMidYMid meet" {
                desc id={ (id) "-desc" } { (title) ", one bar per day; exact figures in the table below." }
                @for frac in [0.0, 0.5, 1.0] {
                    @let y = y_at(max * frac, max);
                    line.grid x1=(LEFT) x2=(W - RIGHT) y1=(y) y2=(y) {}
                    text.axis x=(LEFT - 6.0) y=(y + 4.0) text-anchor="end" { (fmt(max * frac)) }
                }
                @for (i, v) in series[0].values.iter().enumerate() {
                    @let top = y_at(*v, max);
                    @let x = LEFT + slot * i as f64 + (slot - width) / 2.0;
                    rect class={ "bar " (series[0].class) } x=(format!("{x:.1}")) y=(format!("{top:.1}")) width=(format!("{width:.1}")) height=(format!("{:.1}", base - top)) {
                        title { (labels.get(i).map(String::as_str).unwrap_or("")) ": " (fmt(*v)) }
                    }
                }
                @let picks: Vec<usize> = match labels.len() { 0 => vec![], 1 => vec![0], l => vec![0, l / 2, l - 1] };
                @for i in picks {
                    text.axis x=(format!("{:.1}", LEFT + slot * (i as f64 + 0.5))) y=(H - 6.0) text-anchor="middle" { (labels[i]) }
                }
            }
            (legend(&series))
            (data_table(title, labels, &series, fmt))
        }
    }
}

/// Bars stacked per x label, one segment per series (e.g. spend per day by team).
pub fn stacked(
    id: &str,
    title: &str,
    labels: &[String],
    series: &[Series],
    fmt: &dyn Fn(f64) -> String,
) -> Markup {
    let n = labels.len().max(1);
    let totals: Vec<f64> = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let max = nice_max(totals.iter().copied().fold(0.0, f64::max));
    let slot = (W - LEFT - RIGHT) / n as f64;
    let width = (slot * 0.7).max(1.0);
    let picks: Vec<usize> = match labels.len() {
        0 => vec![],
        1 => vec![0],
        l => vec![0, l / 2, l - 1],
    };
    // Per x label: each non-zero series' segment as (series, value, top y, bottom y).
    let segments: Vec<Vec<(&Series, f64, f64, f64)>> = (0..labels.len())
        .map(|i| {
            let mut below = 0.0;
            series
                .iter()
                .filter_map(|s| {
                    let v = s.values.get(i).copied().unwrap_or(0.0);
                    (v > 0.0).then(|| {
                        let seg = (s, v, y_at(below + v, max), y_at(below, max));
                        below += v;
                        seg
                    })
                })
                .collect()
        })
        .collect();
    html! {
        figure.chart {
            figcaption id={ (id) "-title" } { (title) }
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-labelledby={ (id) "-title " (id) "-desc" } preserveAspectRatio="xMidYMid meet" {
                desc id={ (id) "-desc" } { (title) ", one stacked bar per day; exact figures in the table below." }
                @for frac in [0.0, 0.5, 1.0] {
                    @let y = y_at(max * frac, max);
                    line.grid x1=(LEFT) x2=(W - RIGHT) y1=(y) y2=(y) {}
                    text.axis x=(LEFT - 6.0) y=(y + 4.0) text-anchor="end" { (fmt(max * frac)) }
                }
                @for (i, column) in segments.iter().enumerate() {
                    @let x = LEFT + slot * i as f64 + (slot - width) / 2.0;
                    @for (s, v, top, bottom) in column {
                        rect class={ "bar " (s.class) } x=(format!("{x:.1}")) y=(format!("{top:.1}")) width=(format!("{width:.1}")) height=(format!("{:.1}", bottom - top)) {
                            title { (labels[i]) " · " (s.label) ": " (fmt(*v)) }
                        }
                    }
                }
                @for i in picks {
                    text.axis x=(format!("{:.1}", LEFT + slot * (i as f64 + 0.5))) y=(H - 6.0) text-anchor="middle" { (labels[i]) }
                }
            }
            (legend(series))
            (data_table(title, labels, series, fmt))
        }
    }
}

/// A small horizontal bar: `value` of `max`, for breakdown tables.
pub fn meter_bar(value: f64, max: f64, label: &str) -> Markup {
    let frac = if max > 0.0 {
        (value / max).clamp(0.0, 1.0)
    } else {
        0.0
    };
    html! {
        svg.hbar viewBox="0 0 100 8" preserveAspectRatio="none" role="img" aria-label=(label) {
            rect.track x="0" y="0" width="100" height="8" {}
            rect.fill x="0" y="0" width=(format!("{:.1}", frac * 100.0)) height="8" {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_top_is_a_round_number_at_or_above_the_maximum() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(10.0), 10.0);
        assert_eq!(nice_max(11.0), 20.0);
        assert_eq!(nice_max(740.0), 1000.0);
    }

    #[test]
    fn a_line_chart_escapes_its_labels_and_plots_each_point() {
        let labels = vec!["<a>".to_owned(), "b".to_owned()];
        let svg = line(
            "t",
            "T",
            &labels,
            &[Series {
                label: "x",
                class: "s1",
                values: vec![1.0, 2.0],
            }],
            &|v| format!("{v}"),
        )
        .into_string();
        assert!(!svg.contains("<a>"), "{svg}");
        assert!(svg.contains("&lt;a&gt;"));
        assert_eq!(svg.matches("<circle").count(), 2);
    }
}
