//! `flagmaster race`: the racy counter loses updates, `fetch_add` and
//! per-worker counts do not; bad values are one line and status 2.

use crate::common;

use common::{stderr, stdout, Work};

#[test]
fn race_json_shows_lost_updates_and_both_fixes() {
    let work = Work::new();
    let args = [
        "race",
        "--tasks",
        "200",
        "--workers",
        "8",
        "--pause-ms",
        "2",
        "--json",
    ];
    let out = work.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    assert_eq!(
        (&json["tasks"], &json["workers"], &json["pause_ms"]),
        (&200.into(), &8.into(), &2.into())
    );
    let trial = |name: &str| {
        let trials = json["trials"].as_array().expect("trials");
        let t = trials
            .iter()
            .find(|t| t["counter"] == name)
            .unwrap_or_else(|| panic!("trial {name} in {json}"));
        let n = |key: &str| t[key].as_u64().unwrap_or_else(|| panic!("{name}.{key}"));
        assert_eq!(n("expected"), 200, "{name}");
        assert_eq!(n("total") + n("lost"), 200, "{name}");
        assert!(t["seconds"].as_f64().is_some_and(|s| s > 0.0), "{name}");
        n("total")
    };
    assert!(trial("racy") < 200, "{json}");
    assert_eq!(trial("fetch_add"), 200);
    assert_eq!(trial("per_worker"), 200);
}

#[test]
fn race_refuses_out_of_range_values_in_one_line() {
    let work = Work::new();
    for (flag, value) in [
        ("--tasks", "0"),
        ("--tasks", "1000001"),
        ("--workers", "0"),
        ("--workers", "1025"),
        ("--pause-ms", "1001"),
    ] {
        let out = work.run(&["race", flag, value]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert_eq!(err.lines().count(), 1, "{flag} {value}: {err:?}");
        assert!(
            err.starts_with("flagmaster: ") && err.contains(flag),
            "{err}"
        );
        assert!(out.stdout.is_empty(), "{flag} {value}");
    }
}
