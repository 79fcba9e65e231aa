//! Sharding a list across machines: which share of the items this run takes.
//!
//! A shard is `I/N` (1-based, like `--shard` of jest or pytest-shard). It comes
//! from `--shard`, or else from the environment a scheduler sets for each task
//! of an array: Slurm job arrays, Kubernetes Indexed Jobs, AWS Batch array
//! jobs. Every machine must pick the same share for the same `I/N` whatever
//! build or platform it runs, so the assignment is a fixed hash (FNV-1a, 64
//! bits) of the item's file name modulo `N`: never std's randomly seeded
//! hasher, and never the item's position, which would move every name when one
//! is added to the list.

use std::fmt;
use std::hash::Hasher;

use fnv::FnvHasher;
use serde::{Deserialize, Serialize};

use flagmaster_worker::protocol::Item;

use crate::error::Error;

/// The environment variable giving the shard count where the scheduler only
/// gives an index (Kubernetes), or as a check where it gives both.
pub const COUNT_ENV: &str = "FLAGMASTER_SHARD_COUNT";

/// Where a shard came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShardSource {
    /// `--shard I/N`.
    Flag,
    /// `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_MIN`, `SLURM_ARRAY_TASK_COUNT`.
    Slurm,
    /// `JOB_COMPLETION_INDEX` of an Indexed Job.
    Kubernetes,
    /// `AWS_BATCH_JOB_ARRAY_INDEX` of an array job.
    AwsBatch,
}

impl ShardSource {
    /// The name in JSON reports and logs.
    pub fn key(self) -> &'static str {
        match self {
            ShardSource::Flag => "flag",
            ShardSource::Slurm => "slurm",
            ShardSource::Kubernetes => "kubernetes",
            ShardSource::AwsBatch => "aws-batch",
        }
    }

    /// The name for people.
    pub fn label(self) -> &'static str {
        match self {
            ShardSource::Flag => "--shard",
            ShardSource::Slurm => "Slurm",
            ShardSource::Kubernetes => "Kubernetes",
            ShardSource::AwsBatch => "AWS Batch",
        }
    }
}

/// Share `index` of `count` (1-based: `1/4` to `4/4`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
    pub source: ShardSource,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Whether the item saved as `file` belongs to this shard.
    pub fn owns(&self, file: &str) -> bool {
        shard_of(file, self.count) == self.index
    }
}

/// FNV-1a (64 bits) of the UTF-8 bytes of `file`: fixed by its definition, so
/// the same on every machine, build and version of Rust.
pub fn hash(file: &str) -> u64 {
    let mut hasher = FnvHasher::default();
    hasher.write(file.as_bytes());
    hasher.finish()
}

/// The shard (1-based) of `count` that owns the item saved as `file`.
pub fn shard_of(file: &str, count: u32) -> u32 {
    (hash(file) % u64::from(count.max(1))) as u32 + 1
}

/// Keeps the items of `shard`, in list order, renumbered `0..n` (the collector
/// needs contiguous indexes).
pub fn select(items: Vec<Item>, shard: &Shard) -> Vec<Item> {
    items
        .into_iter()
        .filter(|item| shard.owns(&item.file))
        .enumerate()
        .map(|(i, item)| Item {
            index: i as u32,
            ..item
        })
        .collect()
}

/// Parses `--shard I/N` (the clap value parser).
pub fn parse_flag(text: &str) -> Result<Shard, String> {
    const EXPECTED: &str = "expected I/N with 1 <= I <= N, e.g. 2/4";
    let (i, n) = text.split_once('/').ok_or_else(|| EXPECTED.to_string())?;
    let index: u32 = i.trim().parse().map_err(|_| EXPECTED.to_string())?;
    let count: u32 = n.trim().parse().map_err(|_| EXPECTED.to_string())?;
    if count == 0 {
        return Err(format!("the shard count must be at least 1; {EXPECTED}"));
    }
    if index == 0 || index > count {
        return Err(format!("shards are numbered 1 to {count}; {EXPECTED}"));
    }
    Ok(Shard {
        index,
        count,
        source: ShardSource::Flag,
    })
}

/// The shard of this run: `--shard` if given, else the first of Slurm,
/// Kubernetes and AWS Batch whose index variable is set, else none (the whole
/// list). `count` is `--shard-count`; `env` looks a variable up (empty counts
/// as unset), so tests need not touch the process environment.
pub fn resolve(
    flag: Option<Shard>,
    count: Option<u32>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Shard>, Error> {
    if let Some(shard) = flag {
        return Ok(Some(shard));
    }
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let explicit = match count {
        Some(n) => Some((n, "--shard-count".to_string())),
        None => match var(COUNT_ENV) {
            Some(v) => Some((
                count_number(COUNT_ENV, &v)?,
                format!("{COUNT_ENV}={}", v.trim()),
            )),
            None => None,
        },
    };
    if let Some((0, from)) = &explicit {
        return Err(usage(format!("bad {from}: expected 1 or more shards")));
    }

    if let Some(id) = var("SLURM_ARRAY_TASK_ID") {
        let id = number("SLURM_ARRAY_TASK_ID", &id)?;
        let min = match var("SLURM_ARRAY_TASK_MIN") {
            Some(v) => number("SLURM_ARRAY_TASK_MIN", &v)?,
            None => {
                return Err(usage(
                    "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_MIN is not".into(),
                ))
            }
        };
        let step = match var("SLURM_ARRAY_TASK_STEP") {
            Some(v) => number("SLURM_ARRAY_TASK_STEP", &v)?,
            None => 1,
        };
        let count = scheduler_count("Slurm", "SLURM_ARRAY_TASK_COUNT", &var, explicit)?;
        // An array given as a list (--array=0,3,7) has no step that maps its
        // IDs onto 0..count; its last ID tells, so every task refuses alike.
        if let Some(max) = var("SLURM_ARRAY_TASK_MAX") {
            let max = number("SLURM_ARRAY_TASK_MAX", &max)?;
            let last = u64::from(count - 1)
                .checked_mul(step)
                .and_then(|span| min.checked_add(span));
            if last != Some(max) {
                return Err(usage(format!(
                    "the Slurm array {min}-{max} of {count} tasks is not a range with step {step}; \
                     use --shard I/N"
                )));
            }
        }
        if step == 0 || id < min || (id - min) % step != 0 {
            return Err(usage(format!(
                "SLURM_ARRAY_TASK_ID={id} is not in an array starting at {min} with step {step}; \
                 use --shard I/N"
            )));
        }
        let position = (id - min) / step;
        return at(
            position,
            count,
            ShardSource::Slurm,
            "SLURM_ARRAY_TASK_ID",
            id,
        );
    }
    if let Some(index) = var("JOB_COMPLETION_INDEX") {
        let index = number("JOB_COMPLETION_INDEX", &index)?;
        let Some((count, _)) = explicit else {
            return Err(usage(format!(
                "JOB_COMPLETION_INDEX={index} needs the shard count: --shard-count N or {COUNT_ENV}"
            )));
        };
        return at(
            index,
            count,
            ShardSource::Kubernetes,
            "JOB_COMPLETION_INDEX",
            index,
        );
    }
    if let Some(index) = var("AWS_BATCH_JOB_ARRAY_INDEX") {
        let index = number("AWS_BATCH_JOB_ARRAY_INDEX", &index)?;
        let count = scheduler_count("AWS Batch", "AWS_BATCH_JOB_ARRAY_SIZE", &var, explicit)?;
        return at(
            index,
            count,
            ShardSource::AwsBatch,
            "AWS_BATCH_JOB_ARRAY_INDEX",
            index,
        );
    }
    if let Some((_, from)) = explicit {
        return Err(usage(format!(
            "{from} needs a shard index: JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX \
             or SLURM_ARRAY_TASK_ID (or use --shard I/N)"
        )));
    }
    Ok(None)
}

/// The count a scheduler gives in `name`, or the explicit one; both must agree.
fn scheduler_count(
    scheduler: &str,
    name: &str,
    var: &impl Fn(&str) -> Option<String>,
    explicit: Option<(u32, String)>,
) -> Result<u32, Error> {
    let given = match var(name) {
        Some(v) => Some(count_number(name, &v)?),
        None => None,
    };
    match (given, explicit) {
        (Some(n), Some((m, from))) if m != n => Err(usage(format!(
            "{name}={n} disagrees with {from} on the number of shards"
        ))),
        (Some(0), _) => Err(usage(format!("bad {name}=0: expected 1 or more shards"))),
        (Some(n), _) => Ok(n),
        (None, Some((m, _))) => Ok(m),
        (None, None) => Err(usage(format!(
            "{scheduler} array task without a count: {name}, --shard-count N or {COUNT_ENV}"
        ))),
    }
}

/// The shard at 0-based `position` of `count`, or an error naming the variable.
fn at(
    position: u64,
    count: u32,
    source: ShardSource,
    name: &str,
    value: u64,
) -> Result<Option<Shard>, Error> {
    if position >= u64::from(count) {
        return Err(usage(format!(
            "{name}={value} is beyond the {count} shards of this {} array",
            source.label()
        )));
    }
    Ok(Some(Shard {
        index: position as u32 + 1,
        count,
        source,
    }))
}

fn number(name: &str, value: &str) -> Result<u64, Error> {
    value
        .trim()
        .parse()
        .map_err(|_| usage(format!("bad {name}={value:?}: expected a whole number")))
}

/// A shard count: a whole number that fits the shard numbers.
fn count_number(name: &str, value: &str) -> Result<u32, Error> {
    let n = number(name, value)?;
    u32::try_from(n).map_err(|_| usage(format!("bad {name}={n}: too many shards")))
}

fn usage(message: String) -> Error {
    Error::Usage(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    fn shard(index: u32, count: u32, source: ShardSource) -> Option<Shard> {
        Some(Shard {
            index,
            count,
            source,
        })
    }

    fn err(flag: Option<u32>, vars: &[(&str, &str)]) -> String {
        resolve(None, flag, env(vars)).unwrap_err().to_string()
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        // Test vectors of FNV-1a 64 (offset basis for the empty input).
        assert_eq!(hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn assignment_of_some_names_is_pinned() {
        // Changing these moves files between machines of a running array:
        // a breaking change, to be made on purpose only.
        let pinned: Vec<(&str, u32)> = [
            "Chad.jpg",
            "Peru.jpg",
            "France.jpg",
            "United_States.jpg",
            "Côte_d'Ivoire.jpg",
        ]
        .iter()
        .map(|f| (*f, shard_of(f, 4)))
        .collect();
        assert_eq!(
            pinned,
            [
                ("Chad.jpg", 3),
                ("Peru.jpg", 3),
                ("France.jpg", 4),
                ("United_States.jpg", 1),
                ("Côte_d'Ivoire.jpg", 2),
            ]
        );
        assert_eq!(shard_of("Chad.jpg", 1), 1);
    }

    #[test]
    fn select_partitions_keeps_order_and_renumbers() {
        let names = crate::input::list::parse(crate::input::list::BUILTIN).names;
        let items: Vec<Item> = names
            .iter()
            .enumerate()
            .map(|(i, name)| Item {
                index: i as u32,
                name: name.clone(),
                url: format!("http://h/{name}.jpg"),
                file: format!("{name}.jpg"),
                ext_from_type: false,
                validators: None,
                sha256: None,
            })
            .collect();
        let mut seen = Vec::new();
        for index in 1..=4 {
            let share = select(
                items.clone(),
                &Shard {
                    index,
                    count: 4,
                    source: ShardSource::Flag,
                },
            );
            assert!(!share.is_empty(), "shard {index} is empty");
            for (i, item) in share.iter().enumerate() {
                assert_eq!(item.index, i as u32);
            }
            let positions: Vec<usize> = share
                .iter()
                .map(|s| names.iter().position(|n| *n == s.name).unwrap())
                .collect();
            assert!(positions.windows(2).all(|w| w[0] < w[1]), "list order");
            seen.extend(share.into_iter().map(|s| s.name));
        }
        seen.sort();
        let mut all = names.clone();
        all.sort();
        assert_eq!(seen, all, "every item in exactly one shard");
    }

    #[test]
    fn source_keys_are_the_json_names() {
        for source in [
            ShardSource::Flag,
            ShardSource::Slurm,
            ShardSource::Kubernetes,
            ShardSource::AwsBatch,
        ] {
            let json = serde_json::to_string(&source).unwrap();
            assert_eq!(json, format!("\"{}\"", source.key()));
        }
    }

    #[test]
    fn flag_is_one_based_and_checked() {
        assert_eq!(parse_flag("2/4").ok(), shard(2, 4, ShardSource::Flag));
        assert_eq!(parse_flag("1/1").ok(), shard(1, 1, ShardSource::Flag));
        for bad in [
            "0/4", "5/4", "1/0", "0/0", "", "2", "a/4", "2/b", "-1/4", "1/4/2",
        ] {
            assert!(parse_flag(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn flag_wins_over_the_environment() {
        let flag = parse_flag("3/4").ok();
        let got = resolve(flag, None, env(&[("JOB_COMPLETION_INDEX", "0")])).unwrap();
        assert_eq!(got, shard(3, 4, ShardSource::Flag));
        assert_eq!(resolve(None, None, env(&[])).unwrap(), None);
    }

    #[test]
    fn slurm_arrays() {
        let slurm = |id, min, count| {
            resolve(
                None,
                None,
                env(&[
                    ("SLURM_ARRAY_TASK_ID", id),
                    ("SLURM_ARRAY_TASK_MIN", min),
                    ("SLURM_ARRAY_TASK_COUNT", count),
                ]),
            )
        };
        assert_eq!(
            slurm("0", "0", "4").unwrap(),
            shard(1, 4, ShardSource::Slurm)
        );
        assert_eq!(
            slurm("3", "0", "4").unwrap(),
            shard(4, 4, ShardSource::Slurm)
        );
        // --array=1-4
        assert_eq!(
            slurm("2", "1", "4").unwrap(),
            shard(2, 4, ShardSource::Slurm)
        );
        // --array=10-16:2 (10, 12, 14, 16)
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "14"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            resolve(None, None, stepped).unwrap(),
            shard(3, 4, ShardSource::Slurm)
        );
        assert!(slurm("4", "0", "4").is_err(), "index beyond the count");
        // --array=0,3,7: every task refuses, the first one too.
        let list = |id| {
            err(
                None,
                &[
                    ("SLURM_ARRAY_TASK_ID", id),
                    ("SLURM_ARRAY_TASK_MIN", "0"),
                    ("SLURM_ARRAY_TASK_MAX", "7"),
                    ("SLURM_ARRAY_TASK_COUNT", "3"),
                ],
            )
        };
        for id in ["0", "3", "7"] {
            assert!(
                list(id).contains("is not a range with step 1"),
                "{}",
                list(id)
            );
        }
        let range = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            resolve(None, None, range).unwrap(),
            shard(4, 4, ShardSource::Slurm)
        );
        assert!(slurm("0", "1", "4").is_err(), "below the minimum");
        assert!(slurm("x", "0", "4").is_err());
        assert!(slurm("0", "0", "0").is_err());
        let huge = env(&[
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "1"),
            ("SLURM_ARRAY_TASK_STEP", "18446744073709551615"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert!(resolve(None, None, huge).is_err(), "no overflow");
        let e = err(None, &[("SLURM_ARRAY_TASK_ID", "1")]);
        assert!(e.contains("SLURM_ARRAY_TASK_MIN"), "{e}");
        let e = err(
            None,
            &[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_MIN", "0")],
        );
        assert!(e.contains("without a count"), "{e}");
        let e = err(
            None,
            &[
                ("SLURM_ARRAY_TASK_ID", "11"),
                ("SLURM_ARRAY_TASK_MIN", "10"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
        );
        assert!(e.contains("step 2"), "{e}");
        // The count may come from the flag when Slurm does not give it, and
        // must agree with it when it does.
        let no_count = env(&[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_MIN", "0")]);
        assert_eq!(
            resolve(None, Some(2), no_count).unwrap(),
            shard(2, 2, ShardSource::Slurm)
        );
        let e = err(
            Some(3),
            &[
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
        );
        assert!(e.contains("disagrees"), "{e}");
    }

    #[test]
    fn kubernetes_indexed_jobs() {
        let k8s = |index, count: Option<u32>, env_count: Option<&str>| {
            let mut vars = vec![("JOB_COMPLETION_INDEX", index)];
            if let Some(c) = env_count {
                vars.push((COUNT_ENV, c));
            }
            resolve(None, count, env(&vars))
        };
        assert_eq!(
            k8s("0", None, Some("4")).unwrap(),
            shard(1, 4, ShardSource::Kubernetes)
        );
        assert_eq!(
            k8s("3", Some(4), None).unwrap(),
            shard(4, 4, ShardSource::Kubernetes)
        );
        // The flag wins over the variable.
        assert_eq!(
            k8s("3", Some(5), Some("4")).unwrap(),
            shard(4, 5, ShardSource::Kubernetes)
        );
        let e = k8s("1", None, None).unwrap_err().to_string();
        assert!(e.contains("needs the shard count"), "{e}");
        let e = k8s("4", None, Some("4")).unwrap_err().to_string();
        assert!(e.contains("beyond the 4 shards"), "{e}");
        assert!(k8s("1", None, Some("0")).is_err());
        assert!(k8s("1", None, Some("four")).is_err());
        assert!(k8s("-1", None, Some("4")).is_err());
    }

    #[test]
    fn aws_batch_array_jobs() {
        let aws = |vars: &[(&str, &str)], count| resolve(None, count, env(vars));
        assert_eq!(
            aws(
                &[
                    ("AWS_BATCH_JOB_ARRAY_INDEX", "2"),
                    ("AWS_BATCH_JOB_ARRAY_SIZE", "4")
                ],
                None
            )
            .unwrap(),
            shard(3, 4, ShardSource::AwsBatch)
        );
        assert_eq!(
            aws(
                &[("AWS_BATCH_JOB_ARRAY_INDEX", "0"), (COUNT_ENV, "2")],
                None
            )
            .unwrap(),
            shard(1, 2, ShardSource::AwsBatch)
        );
        assert!(aws(&[("AWS_BATCH_JOB_ARRAY_INDEX", "0")], None).is_err());
        assert!(aws(
            &[
                ("AWS_BATCH_JOB_ARRAY_INDEX", "4"),
                ("AWS_BATCH_JOB_ARRAY_SIZE", "4")
            ],
            None
        )
        .is_err());
        assert!(aws(
            &[
                ("AWS_BATCH_JOB_ARRAY_INDEX", "0"),
                ("AWS_BATCH_JOB_ARRAY_SIZE", "4")
            ],
            Some(3)
        )
        .is_err());
    }

    #[test]
    fn precedence_and_stray_counts() {
        // Slurm before Kubernetes before AWS Batch.
        let all = env(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("JOB_COMPLETION_INDEX", "2"),
            ("AWS_BATCH_JOB_ARRAY_INDEX", "3"),
            (COUNT_ENV, "4"),
        ]);
        assert_eq!(
            resolve(None, None, all).unwrap(),
            shard(2, 4, ShardSource::Slurm)
        );
        let k8s_and_aws = env(&[
            ("JOB_COMPLETION_INDEX", "2"),
            ("AWS_BATCH_JOB_ARRAY_INDEX", "3"),
            (COUNT_ENV, "4"),
        ]);
        assert_eq!(
            resolve(None, None, k8s_and_aws).unwrap(),
            shard(3, 4, ShardSource::Kubernetes)
        );
        // Empty variables are unset.
        assert_eq!(
            resolve(None, None, env(&[("JOB_COMPLETION_INDEX", "")])).unwrap(),
            None
        );
        // A count without an index is a mistake, not the whole list.
        let e = err(Some(4), &[]);
        assert!(e.contains("needs a shard index"), "{e}");
        let e = err(None, &[(COUNT_ENV, "4")]);
        assert!(
            e.contains("FLAGMASTER_SHARD_COUNT=4 needs a shard index"),
            "{e}"
        );
    }
}
