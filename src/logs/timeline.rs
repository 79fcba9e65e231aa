//! The timeline picture of `flagmaster logs --timeline FILE.svg`: one lane per
//! worker thread (a worker process's threads side by side, shaded alike),
//! each attempt a bar from its start to its end coloured by outcome, so a
//! retried item is several bars with its back-off between them. Several runs
//! are stacked on one time axis, each from its own start: a serial, a
//! threads and a proc run of the same list make the classic comparison one
//! picture. Drawn with plotters' SVG backend (no font files needed).
//!
//! plotters cannot set an attribute on what it draws, so bars and lanes are
//! drawn in colours nothing else in the picture uses and given their
//! `class` (`attempt ok`, `attempt error`, ..., `lane`) and a `<title>`
//! (shown on hover) afterwards, in the order they were drawn.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use flagmaster_worker::protocol::Status;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::model::{Filter, Run};

const WIDTH: u32 = 1200;
/// Room above the chart for the title and the legend.
const TOP: u32 = 64;
/// Room left of the chart for the lane labels.
const LABELS: u32 = 96;
/// Height of a lane, unless there are so many that the picture would pass
/// [`MAX_LANES_HEIGHT`].
const LANE: u32 = 18;
const MAX_LANES_HEIGHT: u32 = 1400;

/// The outcome colours; nothing else is drawn in them at full opacity.
const OK: RGBColor = RGBColor(0x2C, 0xA0, 0x2C);
const NOT_FOUND: RGBColor = RGBColor(0xFF, 0x7F, 0x0E);
const ERROR: RGBColor = RGBColor(0xD6, 0x27, 0x28);
const SKIPPED: RGBColor = RGBColor(0x8C, 0x8C, 0x8C);
/// Lane backgrounds, alternating from one worker process to the next.
const SHADES: [RGBColor; 2] = [RGBColor(0xF1, 0xF1, 0xF1), RGBColor(0xE3, 0xEA, 0xF5)];

fn colour(status: Status) -> RGBColor {
    match status {
        Status::Ok => OK,
        Status::NotFound => NOT_FOUND,
        Status::Error => ERROR,
        Status::Skipped => SKIPPED,
    }
}

fn class(status: Status) -> &'static str {
    match status {
        Status::Ok => "attempt ok",
        Status::NotFound => "attempt not-found",
        Status::Error => "attempt error",
        Status::Skipped => "attempt skipped",
    }
}

/// A row of the picture, top to bottom.
enum Row {
    /// A run's heading: its directory, mode, layout, items and time.
    Heading(String),
    /// One worker thread.
    Lane {
        label: String,
        shade: RGBColor,
        title: String,
    },
}

struct Bar {
    row: usize,
    from: f64,
    to: f64,
    status: Status,
    title: String,
}

/// What to draw, worked out from the runs before any drawing.
struct Plan {
    title: String,
    rows: Vec<Row>,
    bars: Vec<Bar>,
    /// Where a lane's worker died: row, seconds, what to write there.
    deaths: Vec<(usize, f64, String)>,
    /// The time axis, in seconds.
    x_max: f64,
}

impl Plan {
    fn new(runs: &[Run], filter: Filter) -> Plan {
        let mut rows = Vec::new();
        let mut bars = Vec::new();
        let mut deaths = Vec::new();
        let mut x_max: f64 = 0.0;
        for run in runs {
            let elapsed = run.elapsed_secs();
            rows.push(Row::Heading(heading(run, elapsed)));
            // Workers with several threads are labelled by thread.
            let mut lanes: BTreeMap<(u32, u32), Vec<usize>> = BTreeMap::new();
            for (i, a) in run.attempts.iter().enumerate() {
                if filter.worker(a.worker) {
                    lanes.entry((a.worker, a.thread)).or_default().push(i);
                }
            }
            let mut threads: BTreeMap<u32, u32> = BTreeMap::new();
            for &(worker, _) in lanes.keys() {
                *threads.entry(worker).or_default() += 1;
            }
            let threaded = run
                .start
                .as_ref()
                .map_or(threads.values().any(|&n| n > 1), |s| {
                    s.mode == "proc" && s.threads > 1
                });
            let mut shade = 0;
            let mut previous = None;
            for ((worker, thread), attempts) in lanes {
                if previous.is_some_and(|p| p != worker) {
                    shade += 1;
                }
                previous = Some(worker);
                let label = if threaded {
                    format!("w{worker:02} t{thread}")
                } else {
                    format!("w{worker:02}")
                };
                let row = rows.len();
                if let Some(d) = run.died.iter().find(|d| d.worker == worker) {
                    let exit = run.ends.get(&worker).and_then(|e| e.exit.as_deref());
                    let text = exit.map_or_else(|| "died".to_string(), |e| format!("died ({e})"));
                    deaths.push((row, run.secs(d.ts), text));
                    x_max = x_max.max(run.secs(d.ts));
                }
                rows.push(Row::Lane {
                    title: format!("{}: worker {worker}, thread {thread}", run.dir.display()),
                    label,
                    shade: SHADES[shade % 2],
                });
                for i in attempts {
                    let a = &run.attempts[i];
                    x_max = x_max.max(run.secs(a.end()));
                    if !filter.keeps(a.worker, a.status) {
                        continue;
                    }
                    let reason = a
                        .reason
                        .as_deref()
                        .map_or_else(String::new, |r| format!(", {r}"));
                    bars.push(Bar {
                        row,
                        from: run.secs(a.start),
                        to: run.secs(a.end()),
                        status: a.status,
                        title: format!(
                            "{} attempt {}: {} in {} ms{reason}",
                            a.item,
                            a.attempt,
                            a.status.label(),
                            a.ms
                        ),
                    });
                }
            }
            x_max = x_max.max(elapsed.unwrap_or(0.0));
        }
        Plan {
            title: title(runs),
            rows,
            bars,
            deaths,
            x_max: if x_max > 0.0 { x_max * 1.02 } else { 1.0 },
        }
    }
}

/// `logs/proc: proc 8x1, 197 items in 5.31 s`.
fn heading(run: &Run, elapsed: Option<f64>) -> String {
    let mut h = format!("{}: {}", run.dir.display(), run.label());
    if let Some(items) = run.start.as_ref().and_then(|s| s.items) {
        let _ = write!(h, ", {items} items");
    }
    if let Some(e) = elapsed {
        let _ = write!(h, " in {e:.2} s");
    }
    h
}

/// One run: `proc 8x1, 197 items in 5.31 s`; several of the same items:
/// `197 items: serial 1x1 39.8 s, threads 1x8 5.2 s, proc 8x1 5.3 s`.
fn title(runs: &[Run]) -> String {
    let items = |r: &Run| r.start.as_ref().and_then(|s| s.items);
    let time = |r: &Run| {
        r.elapsed_secs()
            .map_or_else(String::new, |e| format!(" {e:.2} s"))
    };
    match runs {
        [run] => {
            let items = items(run).map_or_else(String::new, |n| format!(", {n} items"));
            format!("{}{items} in{}", run.label(), time(run))
        }
        _ => {
            let same = runs.iter().all(|r| items(r) == items(&runs[0]));
            let parts: Vec<String> = runs
                .iter()
                .map(|r| {
                    let n = match items(r) {
                        Some(n) if !same => format!(" ({n} items)"),
                        _ => String::new(),
                    };
                    format!("{}{n}{}", r.label(), time(r))
                })
                .collect();
            match items(&runs[0]).filter(|_| same) {
                Some(n) => format!("{n} items: {}", parts.join(", ")),
                None => parts.join(", "),
            }
        }
    }
}

/// The timeline of `runs` as an SVG document.
pub fn svg(runs: &[Run], filter: Filter) -> Result<String, String> {
    let plan = Plan::new(runs, filter);
    let mut svg = String::new();
    draw(&mut svg, &plan).map_err(|e| format!("cannot draw the timeline: {e}"))?;
    Ok(annotate(&svg, &plan))
}

fn draw(svg: &mut String, plan: &Plan) -> Result<(), Box<dyn std::error::Error>> {
    let rows = plan.rows.len().max(1) as u32;
    let lane = (MAX_LANES_HEIGHT / rows).clamp(2, LANE);
    let height = TOP + rows * lane + 56;
    let root = SVGBackend::with_string(svg, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(TOP);
    top.draw(&Text::new(
        plan.title.clone(),
        (WIDTH as i32 / 2, 10),
        ("sans-serif", 18)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    legend(&top)?;
    let n = plan.rows.len() as f64;
    let mut chart = ChartBuilder::on(&body)
        .margin_right(24)
        .x_label_area_size(40)
        .y_label_area_size(LABELS)
        .build_cartesian_2d(0.0..plan.x_max, 0.0..n.max(1.0))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(0xDD, 0xDD, 0xDD))
        .x_desc("seconds from the run's start")
        .axis_desc_style(("sans-serif", 14))
        .draw()?;
    // Row r (from the top) spans y from n - r - 1 to n - r.
    let y = |row: usize, at: f64| n - row as f64 - 1.0 + at;
    let lanes = plan
        .rows
        .iter()
        .enumerate()
        .filter_map(|(r, row)| match row {
            Row::Lane { shade, .. } => Some(Rectangle::new(
                [(0.0, y(r, 0.0)), (plan.x_max, y(r, 1.0))],
                shade.filled(),
            )),
            Row::Heading(_) => None,
        });
    chart.draw_series(lanes)?;
    // At least a pixel wide, so a 0 ms attempt still shows; a pixel short
    // of its end when it is wide enough, so that back-to-back attempts show
    // as separate bars.
    let (px, _) = chart.plotting_area().get_pixel_range();
    let pixel = plan.x_max / f64::from((px.end - px.start).max(1));
    chart.draw_series(plan.bars.iter().map(|b| {
        let to = if b.to - b.from >= 3.0 * pixel {
            b.to - pixel
        } else {
            b.to.max(b.from + pixel)
        };
        Rectangle::new(
            [(b.from, y(b.row, 0.18)), (to, y(b.row, 0.82))],
            colour(b.status).filled(),
        )
    }))?;
    let label_style = ("sans-serif", f64::from(lane.min(14)))
        .into_font()
        .color(&BLACK);
    let small = lane >= 8;
    for (r, row) in plan.rows.iter().enumerate() {
        let (x, yy) = chart.backend_coord(&(0.0, y(r, 0.5)));
        match row {
            Row::Heading(text) => {
                root.draw(&Text::new(
                    text.clone(),
                    (x + 4, yy),
                    ("sans-serif", 13)
                        .into_font()
                        .style(FontStyle::Bold)
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))?;
            }
            Row::Lane { label, .. } if small => {
                root.draw(&Text::new(
                    label.clone(),
                    (x - 6, yy),
                    label_style.clone().pos(Pos::new(HPos::Right, VPos::Center)),
                ))?;
            }
            Row::Lane { .. } => {}
        }
    }
    // A dead worker's lanes stop with a cross where the master saw it go.
    for (row, at, text) in &plan.deaths {
        let (x, yy) = chart.backend_coord(&(*at, y(*row, 0.5)));
        root.draw(&Text::new(
            format!("\u{2715} {text}"),
            (x + 2, yy),
            ("sans-serif", f64::from(lane.min(13)))
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    root.present()?;
    Ok(())
}

/// The outcome colours, top right. Drawn at 90% opacity, so that they are
/// not taken for bars.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let entries = [
        ("OK", OK),
        ("NOT_FOUND", NOT_FOUND),
        ("ERROR", ERROR),
        ("SKIPPED", SKIPPED),
    ];
    let mut x = WIDTH as i32 - 470;
    let y = 42;
    for (label, c) in entries {
        area.draw(&Rectangle::new(
            [(x, y - 6), (x + 18, y + 6)],
            c.mix(0.9).filled(),
        ))?;
        area.draw(&Text::new(
            label,
            (x + 24, y),
            ("sans-serif", 13)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        x += 40 + 9 * label.len() as i32;
    }
    area.draw(&Text::new(
        "one bar per attempt; a gap between bars of an item is its back-off",
        (16, y),
        ("sans-serif", 12)
            .into_font()
            .color(&RGBColor(0x55, 0x55, 0x55))
            .pos(Pos::new(HPos::Left, VPos::Center)),
    ))?;
    Ok(())
}

/// Gives the lanes and bars their class and title, in the order drawn.
fn annotate(svg: &str, plan: &Plan) -> String {
    let fill = |c: RGBColor| format!("opacity=\"1\" fill=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
    let lane_fills: Vec<String> = SHADES.iter().map(|&c| fill(c)).collect();
    let bar_fills: Vec<(String, Status)> =
        [Status::Ok, Status::NotFound, Status::Error, Status::Skipped]
            .into_iter()
            .map(|s| (fill(colour(s)), s))
            .collect();
    let mut lane_titles = plan.rows.iter().filter_map(|r| match r {
        Row::Lane { title, .. } => Some(title.as_str()),
        Row::Heading(_) => None,
    });
    let mut bar_titles = plan.bars.iter().map(|b| b.title.as_str());
    let mut out = String::with_capacity(svg.len() + plan.bars.len() * 64);
    for line in svg.lines() {
        let found = if !line.starts_with("<rect ") {
            None
        } else if lane_fills.iter().any(|f| line.contains(f.as_str())) {
            lane_titles.next().map(|t| ("lane", t))
        } else {
            bar_fills
                .iter()
                .find(|(f, _)| line.contains(f.as_str()))
                .and_then(|(_, s)| Some((class(*s), bar_titles.next()?)))
        };
        match (found, line.strip_suffix("/>")) {
            (Some((class, title)), Some(open)) => {
                let _ = write!(
                    out,
                    "<rect class=\"{class}\"{}><title>{}</title></rect>",
                    &open["<rect".len()..],
                    escape(title)
                );
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
