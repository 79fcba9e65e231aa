//! flagmaster's integration tests, in one binary so that a build links them
//! once: the real binary against the real built-in site on 127.0.0.1, in
//! every mode, checking files on disk, reported figures and logs.

mod bench;
mod blur;
mod checksums;
mod cli;
mod common;
mod disk_full;
mod faults;
mod inputs;
mod logs_lines;
mod modes;
mod polite;
mod processes;
mod progress;
mod proxies;
mod race;
mod read_logs;
mod reruns;
mod shards;
mod site_faults;
mod socks;
mod sources;
mod tls;
