//! The bar chart of `flagmaster bench --plot FILE.svg`: one bar per setup at
//! its median elapsed time, with a whisker from the fastest to the slowest run,
//! drawn with plotters' SVG backend (no font files needed: SVG text is laid
//! out by whoever displays it).

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::table::Bench;
use crate::error::Error;
use crate::report::svg::SvgFile;

/// One bar: a setup's label and its times in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub label: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

const HEIGHT: u32 = 440;
/// Horizontal room per bar, so that labels like `hybrid 4x8` never overlap.
const PER_BAR: u32 = 130;

/// The chart as an SVG document.
pub fn bar_chart_svg(title: &str, bars: &[Bar]) -> Result<String, String> {
    let mut svg = String::new();
    draw(&mut svg, title, bars).map_err(|e| format!("cannot draw the chart: {e}"))?;
    Ok(svg)
}

fn draw(svg: &mut String, title: &str, bars: &[Bar]) -> Result<(), Box<dyn std::error::Error>> {
    let width = (140 + PER_BAR * bars.len() as u32).max(520);
    let root = SVGBackend::with_string(svg, (width, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = bars
        .iter()
        .map(|b| b.max.max(b.median))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    // Headroom for the value labels above the whiskers.
    let y_max = if top > 0.0 { top * 1.15 } else { 1.0 };
    // A discrete range of i32 includes its end: 0..n-1 gives n segments.
    let last = (bars.len() as i32 - 1).max(0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((0..last).into_segmented(), 0.0..y_max)?;
    let label = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => usize::try_from(*i)
            .ok()
            .and_then(|i| bars.get(i))
            .map_or_else(String::new, |b| b.label.clone()),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(bars.len().max(1))
        .x_label_formatter(&label)
        .x_desc("setup (mode, workers x threads)")
        .y_desc("elapsed seconds: median, whisker min-max")
        .axis_desc_style(("sans-serif", 14))
        .draw()?;
    let positions = || bars.iter().zip(0..);
    chart.draw_series(positions().map(|(b, i)| {
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), b.median),
            ],
            BLUE.mix(0.55).filled(),
        );
        bar.set_margin(0, 0, 18, 18);
        bar
    }))?;
    // Whiskers: a line from the fastest to the slowest run, with caps drawn
    // in pixels so that they keep their width at any scale.
    let whisker = BLACK.stroke_width(2);
    chart.draw_series(positions().map(|(b, i)| {
        let x = SegmentValue::CenterOf(i);
        PathElement::new(vec![(x.clone(), b.min), (x, b.max)], whisker)
    }))?;
    let caps = positions().flat_map(|(b, i)| [(i, b.min), (i, b.max)]);
    chart.draw_series(caps.map(|(i, y)| {
        EmptyElement::at((SegmentValue::CenterOf(i), y))
            + PathElement::new(vec![(-8, 0), (8, 0)], whisker)
    }))?;
    let value_style = ("sans-serif", 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(positions().map(|(b, i)| {
        Text::new(
            format!("{:.2} s", b.median),
            (
                SegmentValue::CenterOf(i),
                b.max.max(b.median) + y_max * 0.02,
            ),
            value_style.clone(),
        )
    }))?;
    root.present()?;
    Ok(())
}

/// The `--plot` file, created before any measurement so that a bad path is a
/// usage error at once; the chart is written into it at the end.
pub struct Plot(SvgFile);

impl Plot {
    pub fn create(path: &Path) -> Result<Plot, Error> {
        SvgFile::create("--plot", "chart", "", path).map(Plot)
    }

    /// Draws the medians of `bench` into the file, and returns its path.
    pub fn write(self, bench: &Bench) -> Result<PathBuf, Error> {
        let bars: Vec<Bar> = bench
            .rows
            .iter()
            .map(|r| Bar {
                label: format!("{} {}x{}", r.setup.mode, r.setup.procs, r.setup.threads),
                median: r.median_secs,
                min: r.min_secs,
                max: r.max_secs,
            })
            .collect();
        let mut title = format!("flagmaster bench: {} items, {}", bench.items, bench.site);
        if let Some(sigma) = bench.blur_sigma {
            title += &format!(", --blur {sigma}");
        }
        let svg = bar_chart_svg(&title, &bars).map_err(Error::Bench)?;
        self.0.write(&svg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bar_is_labelled() {
        let bars = [
            Bar {
                label: "serial 1x1".into(),
                median: 4.0,
                min: 3.9,
                max: 4.2,
            },
            Bar {
                label: "hybrid 4x8".into(),
                median: 1.1,
                min: 1.0,
                max: 1.3,
            },
        ];
        let svg = bar_chart_svg("bench", &bars).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in [
            "serial 1x1",
            "hybrid 4x8",
            "4.00 s",
            "1.10 s",
            "elapsed seconds",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        // Two bars plus the background; two whiskers with two caps each.
        assert!(svg.matches("<rect").count() >= 3);
        assert!(svg.matches("<polyline").count() >= 6, "{svg}");
    }

    #[test]
    fn empty_and_zero_charts_still_draw() {
        assert!(bar_chart_svg("none", &[]).unwrap().contains("</svg>"));
        let zero = Bar {
            label: "x".into(),
            median: 0.0,
            min: 0.0,
            max: 0.0,
        };
        assert!(bar_chart_svg("zero", &[zero]).unwrap().contains("</svg>"));
    }
}
