//! `flagmaster merge-reports`: one report from the `--json` reports of the
//! shards of a list (or of any runs over different names).
//!
//! Reports that cannot belong together are refused (status 2) rather than
//! summed into a figure nobody ran: different shard counts or lists, a shard
//! given twice, a name downloaded by two runs. Missing shards are named and make
//! the result incomplete (status 1). Counts, bytes and items add up; the
//! elapsed time is the longest part's, since the shards ran side by side.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use flagmaster_worker::protocol::ItemReport;
use serde::Serialize;

use crate::cli::MergeArgs;
use crate::error::Error;
use crate::report::exit;
use crate::report::{self, Counts, RunReport, ShardInfo};

/// One merged report, as read from its file.
#[derive(Clone, Debug)]
pub struct Part {
    pub file: String,
    pub report: RunReport,
}

/// What one part contributed, as the merged report lists it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PartSummary {
    pub file: String,
    pub shard: Option<ShardInfo>,
    pub mode: String,
    pub procs: u32,
    pub threads: u32,
    pub items: usize,
    pub counts: Counts,
    pub bytes: u64,
    pub elapsed_secs: f64,
    pub interrupted: bool,
}

/// An item of the merged report: the part's report of it, and which shard
/// downloaded it (`index` is the item's position within that shard).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MergedItem {
    pub shard: Option<u32>,
    #[serde(flatten)]
    pub item: ItemReport,
}

/// The sum of several reports.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MergedReport {
    /// Number of reports merged.
    pub reports: usize,
    /// Shards the list was cut into, when the reports are shards.
    pub shard_count: Option<u32>,
    /// Items of the whole list, when the reports are shards.
    pub list_items: Option<usize>,
    /// Shards (1-based) of `shard_count` with no report.
    pub missing_shards: Vec<u32>,
    /// Every shard is present (always true for unsharded reports).
    pub complete: bool,
    pub items: usize,
    pub counts: Counts,
    pub bytes: u64,
    /// The longest part's elapsed time: the parts ran in parallel.
    pub elapsed_secs: f64,
    /// Some part was interrupted.
    pub interrupted: bool,
    /// The parts, shards in order.
    pub shards: Vec<PartSummary>,
    pub results: Vec<MergedItem>,
}

/// Reads, checks and merges the reports, prints the result, and returns the
/// exit status.
pub fn run(args: MergeArgs) -> Result<u8, Error> {
    let parts = args
        .reports
        .iter()
        .map(|path| read_part(path))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = merge(parts)?;
    let text = if args.json {
        serde_json::to_string_pretty(&merged)
            .map_err(|e| Error::Usage(format!("cannot write the merged report: {e}")))?
            + "\n"
    } else {
        merged.to_text()
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    Ok(merged.exit_status())
}

/// Reads one `--json` report.
pub fn read_part(path: &Path) -> Result<Part, Error> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("cannot read report {file}: {e}")))?;
    let report: RunReport = serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("{file} is not a flagmaster --json report: {e}")))?;
    Ok(Part { file, report })
}

/// Checks that `parts` belong together and sums them.
pub fn merge(mut parts: Vec<Part>) -> Result<MergedReport, Error> {
    let refuse = |message: String| Err(Error::Usage(message));
    let Some(first) = parts.first() else {
        return refuse("no report to merge".into());
    };
    let first_shard = first.report.info.shard;
    let first_file = first.file.clone();

    // Sharded or not, all alike; sharded ones of one list cut the same way.
    let mut by_index: HashMap<u32, &str> = HashMap::new();
    for part in &parts {
        match (first_shard, part.report.info.shard) {
            (Some(_), None) | (None, Some(_)) => {
                let (sharded, plain) = if first_shard.is_some() {
                    (&first_file, &part.file)
                } else {
                    (&part.file, &first_file)
                };
                return refuse(format!(
                    "{sharded} is a shard but {plain} is not: merge the shards of one run"
                ));
            }
            (Some(a), Some(b)) => {
                if a.shard.count != b.shard.count {
                    return refuse(format!(
                        "{first_file} is shard {} but {} is shard {}: different shard counts",
                        a.shard, part.file, b.shard
                    ));
                }
                if a.list_items != b.list_items {
                    return refuse(format!(
                        "{first_file} is a shard of {} items but {} of {}: different lists",
                        a.list_items, part.file, b.list_items
                    ));
                }
                if let Some(other) = by_index.insert(b.shard.index, &part.file) {
                    return refuse(format!(
                        "shard {} is in both {other} and {}",
                        b.shard, part.file
                    ));
                }
            }
            (None, None) => {}
        }
    }

    // A name downloaded by two parts would count twice.
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for part in &parts {
        for r in &part.report.results {
            if let Some(other) = owner.insert(&r.name, &part.file) {
                if other == part.file {
                    return refuse(format!("{} reports {:?} twice", part.file, r.name));
                }
                return refuse(format!(
                    "item {:?} is in both {other} and {}",
                    r.name, part.file
                ));
            }
        }
    }

    parts.sort_by_key(|p| p.report.info.shard.map(|s| s.shard.index));
    let shard_count = first_shard.map(|s| s.shard.count);
    let missing_shards: Vec<u32> = match shard_count {
        Some(count) => (1..=count)
            .filter(|i| !parts.iter().any(|p| shard_index(p) == Some(*i)))
            .collect(),
        None => Vec::new(),
    };

    let mut counts = Counts::default();
    let mut bytes = 0;
    let mut items = 0;
    let mut elapsed_secs: f64 = 0.0;
    let mut interrupted = false;
    let mut shards = Vec::new();
    let mut results = Vec::new();
    for part in parts {
        let r = part.report;
        counts += r.counts;
        bytes += r.bytes;
        items += r.items;
        elapsed_secs = elapsed_secs.max(r.elapsed_secs);
        interrupted |= r.interrupted;
        let shard = r.info.shard.map(|s| s.shard.index);
        shards.push(PartSummary {
            file: part.file,
            shard: r.info.shard,
            mode: r.info.mode,
            procs: r.info.procs,
            threads: r.info.threads,
            items: r.items,
            counts: r.counts,
            bytes: r.bytes,
            elapsed_secs: r.elapsed_secs,
            interrupted: r.interrupted,
        });
        results.extend(r.results.into_iter().map(|item| MergedItem { shard, item }));
    }
    Ok(MergedReport {
        reports: shards.len(),
        shard_count,
        list_items: first_shard.map(|s| s.list_items),
        complete: missing_shards.is_empty(),
        missing_shards,
        items,
        counts,
        bytes,
        elapsed_secs,
        interrupted,
        shards,
        results,
    })
}

fn shard_index(part: &Part) -> Option<u32> {
    part.report.info.shard.map(|s| s.shard.index)
}

impl MergedReport {
    /// As a run's (see `exit::for_counts`), and 1 when shards are missing: an
    /// incomplete result is not a success, whatever its counts.
    pub fn exit_status(&self) -> u8 {
        if self.complete {
            exit::for_counts(&self.counts)
        } else {
            exit::SOME_FAILED
        }
    }

    /// The text report: one row per part, failed items, missing shards, and
    /// the classic closing lines.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = match (self.shard_count, self.list_items) {
            (Some(count), Some(list)) => writeln!(
                out,
                "Merged {} of {count} shards ({} of {list} items); elapsed time is the longest shard's",
                self.reports, self.items
            ),
            _ => writeln!(
                out,
                "Merged {} reports ({} items); elapsed time is the longest report's",
                self.reports, self.items
            ),
        };
        let _ = writeln!(
            out,
            "{:>7}  {:<7} {:>6} {:>6} {:>9} {:>6} {:>10} {:>8}  report",
            "shard", "mode", "items", "ok", "not_found", "error", "bytes", "seconds"
        );
        for p in &self.shards {
            let shard = p
                .shard
                .map_or_else(|| "-".to_string(), |s| s.shard.to_string());
            let _ = writeln!(
                out,
                "{shard:>7}  {:<7} {:>6} {:>6} {:>9} {:>6} {:>10} {:>8.3}  {}{}",
                p.mode,
                p.items,
                p.counts.ok,
                p.counts.not_found,
                p.counts.error,
                p.bytes,
                p.elapsed_secs,
                p.file,
                if p.interrupted { " (interrupted)" } else { "" }
            );
        }
        report::write_failures(
            &mut out,
            self.results.iter().map(|r| &r.item),
            "see the reports",
        );
        if let Some(count) = self.shard_count {
            if !self.missing_shards.is_empty() {
                let missing: Vec<String> = self
                    .missing_shards
                    .iter()
                    .map(|i| format!("{i}/{count}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "Missing shards: {} (incomplete: run them and merge again)",
                    missing.join(", ")
                );
            }
        }
        report::write_totals(&mut out, &self.counts, self.elapsed_secs, self.bytes);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::shard::{Shard, ShardSource};
    use crate::report::RunInfo;
    use flagmaster_worker::protocol::Status;

    fn part(
        file: &str,
        shard: Option<(u32, u32)>,
        names: &[(&str, Status, u64)],
        secs: f64,
    ) -> Part {
        let results: Vec<ItemReport> = names
            .iter()
            .enumerate()
            .map(|(i, (name, status, bytes))| ItemReport {
                name: name.to_string(),
                reason: (*status != Status::Ok).then(|| "HTTP 404".into()),
                ..ItemReport::for_test(i as u32, *status, *bytes)
            })
            .collect();
        let mut counts = Counts::default();
        for r in &results {
            match r.status {
                Status::Ok => counts.ok += 1,
                Status::NotFound => counts.not_found += 1,
                Status::Error => counts.error += 1,
                Status::Skipped => counts.skipped += 1,
            }
        }
        Part {
            file: file.into(),
            report: RunReport {
                info: RunInfo {
                    mode: "serial".into(),
                    procs: 1,
                    threads: 1,
                    pin: false,
                    site: "LOCAL".into(),
                    base_url: "http://127.0.0.1:1/x".into(),
                    list: "l".into(),
                    dest: "flags".into(),
                    log_dir: "logs".into(),
                    chunk_size: 1,
                    max_rps: None,
                    per_host: None,
                    shard: shard.map(|(index, count)| ShardInfo {
                        shard: Shard {
                            index,
                            count,
                            source: ShardSource::Flag,
                        },
                        list_items: 3,
                    }),
                    insecure: false,
                },
                items: results.len(),
                counts,
                bytes: results.iter().map(|r| r.bytes).sum(),
                bytes_fetched: None,
                elapsed_secs: secs,
                interrupted: false,
                blur_secs: None,
                master_peak_rss_kb: None,
                workers: Vec::new(),
                results,
            },
        }
    }

    #[test]
    fn shards_add_up_and_elapsed_is_the_longest() {
        let merged = merge(vec![
            part("b.json", Some((2, 2)), &[("Peru", Status::Ok, 5)], 2.5),
            part(
                "a.json",
                Some((1, 2)),
                &[("Chad", Status::Ok, 7), ("Atlantis", Status::NotFound, 0)],
                1.0,
            ),
        ])
        .unwrap();
        assert_eq!(merged.items, 3);
        assert_eq!(merged.bytes, 12);
        assert_eq!(
            merged.counts,
            Counts {
                ok: 2,
                not_found: 1,
                error: 0,
                skipped: 0,
                interrupted: 0,
            }
        );
        assert_eq!(merged.elapsed_secs, 2.5);
        assert!(merged.complete);
        assert_eq!(merged.shards[0].file, "a.json", "shards in order");
        assert_eq!(merged.exit_status(), exit::SOME_FAILED);
        let text = merged.to_text();
        assert!(text.contains("NOT_FOUND  Atlantis  HTTP 404"), "{text}");
        assert!(
            text.ends_with("Elapsed time: 2.50000000\n12 bytes downloaded\n"),
            "{text}"
        );
    }

    #[test]
    fn missing_shards_are_named_and_incomplete() {
        let merged = merge(vec![part(
            "a.json",
            Some((1, 3)),
            &[("Chad", Status::Ok, 7)],
            1.0,
        )])
        .unwrap();
        assert_eq!(merged.missing_shards, [2, 3]);
        assert!(!merged.complete);
        assert_eq!(merged.exit_status(), exit::SOME_FAILED);
        assert!(merged.to_text().contains("Missing shards: 2/3, 3/3"));
    }

    #[test]
    fn reports_that_do_not_belong_together_are_refused() {
        let chad = &[("Chad", Status::Ok, 7)][..];
        let peru = &[("Peru", Status::Ok, 5)][..];
        let refused = |parts: Vec<Part>| merge(parts).unwrap_err().to_string();
        let e = refused(vec![
            part("a", Some((1, 2)), chad, 1.0),
            part("b", Some((1, 2)), peru, 1.0),
        ]);
        assert!(e.contains("shard 1/2 is in both a and b"), "{e}");
        let e = refused(vec![
            part("a", Some((1, 2)), chad, 1.0),
            part("b", Some((2, 3)), peru, 1.0),
        ]);
        assert!(e.contains("different shard counts"), "{e}");
        let e = refused(vec![
            part("a", Some((1, 2)), chad, 1.0),
            part("b", None, peru, 1.0),
        ]);
        assert!(e.contains("a is a shard but b is not"), "{e}");
        let e = refused(vec![part("a", None, chad, 1.0), part("b", None, chad, 1.0)]);
        assert!(e.contains("\"Chad\" is in both a and b"), "{e}");
        // Unsharded runs over different names simply add up.
        let merged = merge(vec![part("a", None, chad, 1.0), part("b", None, peru, 3.0)]).unwrap();
        assert_eq!((merged.items, merged.bytes, merged.complete), (2, 12, true));
        assert_eq!(merged.exit_status(), exit::OK);
    }

    #[test]
    fn skipped_items_are_counted_like_a_run_does_not_listed_as_failed() {
        let merged = merge(vec![
            part("a", None, &[("Chad", Status::Skipped, 0)], 1.0),
            part("b", None, &[("Peru", Status::NotFound, 0)], 1.0),
        ])
        .unwrap();
        let text = merged.to_text();
        assert!(
            text.contains("0 downloaded, 1 skipped, 1 not found, 0 errors"),
            "{text}"
        );
        assert!(text.contains("NOT_FOUND  Peru"), "{text}");
        assert!(!text.contains("SKIPPED"), "{text}");
    }

    #[test]
    fn a_report_round_trips_through_json() {
        let original = part("a", Some((1, 2)), &[("Chad", Status::Ok, 7)], 1.0).report;
        let back: RunReport = serde_json::from_str(&original.to_json()).unwrap();
        assert_eq!(back, original);
        // Fields added to the counts later must not break older readers, nor
        // missing ones newer readers.
        let mut json: serde_json::Value = serde_json::from_str(&original.to_json()).unwrap();
        json["counts"] = serde_json::json!({ "ok": 1, "skipped": 4 });
        let back: RunReport = serde_json::from_value(json).unwrap();
        assert_eq!(back.counts.ok, 1);
        assert_eq!(back.counts.error, 0);
    }
}
