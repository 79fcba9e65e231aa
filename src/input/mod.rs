//! Where the items of a run come from, and what each is called on disk.
//!
//! Three inputs, one output (a `Vec<Item>` with a URL and a file name each):
//! - a list of names, turned into URLs by a template (`{base}/{name}.jpg` by
//!   default, Fluent Python's `{base}/{lower}/{lower}.gif` and the like);
//! - a file of full URLs (`--urls`), each saved under its last path segment;
//! - a JSON listing of an image API (`--listing`): Picsum's array of objects
//!   with `download_url`, Imgur's `{"data": [...]}` with `link` and `type`.
//!
//! File names come from the URL (or the listing's `id`), never from a server's
//! headers beyond the Content-Type, and pass the worker's safe-name rules
//! before anything is written. When the URL has no extension (Picsum's
//! `/id/0/5000/3333`), the worker adds one from the response's Content-Type.

use std::collections::HashSet;

use flagmaster_worker::protocol::{FetchSettings, Item};
use flagmaster_worker::save::extension_for_type;
use percent_encoding::{percent_decode_str, utf8_percent_encode};
use serde_json::Value;

pub mod checksums;
pub mod list;
pub mod rerun;
pub mod shard;
pub mod url;

use crate::cli::RunArgs;
use crate::error::Error;
use list::SEGMENT;

/// What to download, the entries dropped as repeats, and a label for it.
pub fn from_args(args: &RunArgs) -> Result<(Input, Vec<String>, String), Error> {
    if let Some(path) = &args.urls {
        let label = path.display().to_string();
        let (urls, repeats) = parse_urls(&list::read_list(path)?, &label)?;
        if urls.is_empty() || args.limit == Some(0) {
            return Err(Error::EmptyList(format!("URL file {label}")));
        }
        return Ok((Input::Urls(urls), repeats, label));
    }
    if let Some(url) = &args.listing {
        let listing = Listing::new(url, args.pick.as_deref(), &args.types)?;
        if args.limit == Some(0) {
            return Err(Error::EmptyList(format!("listing {url}")));
        }
        return Ok((
            Input::Listing(listing),
            Vec::new(),
            format!("listing {url}"),
        ));
    }
    let (text, label) = match &args.list {
        Some(path) => (list::read_list(path)?, path.display().to_string()),
        None => (list::BUILTIN.to_string(), "built-in flags.txt".to_string()),
    };
    let mut parsed = list::parse(&text);
    if let Some(limit) = args.limit {
        parsed.names.truncate(limit);
    }
    if parsed.names.is_empty() {
        return Err(Error::EmptyList(format!("list {label}")));
    }
    let template = match &args.template {
        Some(t) => Template::parse(t)?,
        None => Template::default(),
    };
    let input = Input::Names {
        names: parsed.names,
        template,
    };
    Ok((input, parsed.duplicates, label))
}

/// The placeholders a `--template` may use.
const PLACEHOLDERS: [&str; 5] = ["base", "origin", "name", "lower", "upper"];

/// What to download, before the site's address is known.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Names (from `--list` or the built-in list) and the template of their URLs.
    Names {
        names: Vec<String>,
        template: Template,
    },
    /// Full URLs, checked, in file order.
    Urls(Vec<String>),
    /// A JSON listing to fetch once the site is up.
    Listing(Listing),
}

impl Input {
    /// Whether the items come from the site (`--server`/`--base-url`): names
    /// do, and so does a listing given as a path on that site.
    pub fn uses_site(&self) -> bool {
        match self {
            Input::Names { template, .. } => template.uses_site(),
            Input::Urls(_) => false,
            Input::Listing(listing) => listing.url.starts_with('/'),
        }
    }

    /// The items, indexed in order. `base` is the site's base URL.
    pub fn items(&self, base: &str, fetch: &FetchSettings) -> Result<Vec<Item>, Error> {
        let entries = match self {
            Input::Names { names, template } => {
                let origin = origin(base);
                names
                    .iter()
                    .map(|name| template.entry((base, origin), name))
                    .collect()
            }
            Input::Urls(urls) => urls
                .iter()
                .map(|u| Entry::from_url(u, None, None))
                .collect(),
            Input::Listing(listing) => listing.entries(base, fetch)?,
        };
        Ok(number(unique_files(entries)))
    }
}

/// One item before numbering.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    name: String,
    url: String,
    file: String,
    /// The file name has no extension yet; the worker adds the Content-Type's.
    ext_from_type: bool,
}

impl Entry {
    /// The entry of a full URL: named after `id` when given, else after the
    /// last path segment; the extension from the URL, else from `mime`, else
    /// from the response.
    fn from_url(url: &str, id: Option<&str>, mime: Option<&str>) -> Entry {
        let path = url.split(['?', '#']).next().unwrap_or("");
        let after_host = path.split_once("://").map_or(path, |(_, rest)| rest);
        let segment = after_host
            .split_once('/')
            .map_or("", |(_, p)| p.rsplit('/').next().unwrap_or(""));
        let segment = percent_decode_str(segment).decode_utf8_lossy().into_owned();
        let url_ext = extension(&segment);
        let stem = match id {
            Some(id) => id.to_string(),
            None => segment.clone(),
        };
        let ext = url_ext.or_else(|| mime.and_then(extension_for_type).map(str::to_string));
        let (file, ext_from_type) = match ext {
            Some(ext) if id.is_some() => (format!("{stem}.{ext}"), false),
            Some(_) => (stem.clone(), false),
            None => (stem.clone(), true),
        };
        Entry {
            name: stem,
            url: url.to_string(),
            file,
            ext_from_type,
        }
    }
}

/// The extension of a file name (`jpg` of `Chad.jpg`), if it has a plausible one.
fn extension(file: &str) -> Option<String> {
    let (stem, ext) = file.rsplit_once('.')?;
    let plausible = !stem.is_empty()
        && (1..=5).contains(&ext.len())
        && ext.chars().all(|c| c.is_ascii_alphanumeric());
    plausible.then(|| ext.to_string())
}

/// Gives every entry a distinct file name: a later entry that would overwrite
/// an earlier one's file gets `-2`, `-3`, ... before its extension (Picsum's
/// URLs, for one, often end in the same size segment). Case-insensitive, for
/// file systems that are.
fn unique_files(mut entries: Vec<Entry>) -> Vec<Entry> {
    let mut used = HashSet::new();
    for entry in &mut entries {
        let key = |f: &str| f.to_lowercase();
        if used.insert(key(&entry.file)) {
            continue;
        }
        let (stem, ext) = match (entry.ext_from_type, entry.file.rsplit_once('.')) {
            (false, Some((stem, ext))) => (stem.to_string(), format!(".{ext}")),
            _ => (entry.file.clone(), String::new()),
        };
        let mut n = 2;
        while !used.insert(key(&format!("{stem}-{n}{ext}"))) {
            n += 1;
        }
        entry.file = format!("{stem}-{n}{ext}");
    }
    entries
}

fn number(entries: Vec<Entry>) -> Vec<Item> {
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| Item {
            index: i as u32,
            name: e.name,
            url: e.url,
            file: e.file,
            ext_from_type: e.ext_from_type,
            validators: None,
            sha256: None,
        })
        .collect()
}

/// A `--template`, split at its last `/`: the URL is the whole of it with
/// the values percent-encoded, the file name is its last segment with the
/// values as they are (so that a name like `../x` is refused by the safe-name
/// rules rather than silently changing the path).
#[derive(Clone, Debug, PartialEq)]
pub struct Template(String);

impl Default for Template {
    fn default() -> Template {
        Template("{base}/{name}.jpg".into())
    }
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, Error> {
        let bad = |why: String| Error::Usage(format!("bad --template {text:?}: {why}"));
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| bad("unclosed '{'".into()))?;
            let key = &rest[open + 1..open + close];
            if !PLACEHOLDERS.contains(&key) {
                return Err(bad(format!(
                    "unknown placeholder {{{key}}}; use {}",
                    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                )));
            }
            rest = &rest[open + close + 1..];
        }
        let starts_ok = ["{base}", "{origin}", "http://", "https://"]
            .iter()
            .any(|p| text.starts_with(p));
        if !starts_ok {
            return Err(bad("must start with {base}, {origin} or http(s)://".into()));
        }
        let last = text.rsplit('/').next().unwrap_or("");
        if !["{name}", "{lower}", "{upper}"]
            .iter()
            .any(|p| last.contains(p))
        {
            return Err(bad(
                "its last segment names the file, so it needs {name}, {lower} or {upper}".into(),
            ));
        }
        Ok(Template(text.to_string()))
    }

    /// Whether the URLs are on the run's site (`{base}`, `{origin}`).
    pub fn uses_site(&self) -> bool {
        self.0.contains("{base}") || self.0.contains("{origin}")
    }

    /// One pass over `text`: each placeholder is replaced by its value, and
    /// a value is never scanned again (a name holding `{base}` stays as is).
    /// This runs once per item, so it builds each string in one allocation;
    /// a chain of `str::replace` cost several milliseconds per 10,000 items
    /// before the first request could start.
    fn fill(text: &str, site: (&str, &str), name: &str, encode: bool) -> String {
        let (base, origin) = site;
        let mut out = String::with_capacity(text.len() + base.len() + 3 * name.len());
        let push_value = |out: &mut String, value: &str| {
            if encode {
                out.extend(utf8_percent_encode(value, SEGMENT));
            } else {
                out.push_str(value);
            }
        };
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            rest = &rest[open..];
            let Some(close) = rest.find('}') else { break };
            match &rest[1..close] {
                "base" => out.push_str(base.trim_end_matches('/')),
                "origin" => out.push_str(origin),
                "name" => push_value(&mut out, name),
                "lower" => push_value(&mut out, &name.to_lowercase()),
                "upper" => push_value(&mut out, &name.to_uppercase()),
                // `parse` accepts no other placeholder.
                other => {
                    out.push('{');
                    out.push_str(other);
                    out.push('}');
                }
            }
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }

    fn entry(&self, site: (&str, &str), name: &str) -> Entry {
        let last = self.0.rsplit('/').next().unwrap_or("");
        Entry {
            name: name.to_string(),
            url: Template::fill(&self.0, site, name, true),
            file: Template::fill(last, site, name, false),
            ext_from_type: false,
        }
    }
}

/// `scheme://host:port` of a URL.
fn origin(url: &str) -> &str {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            &url[..scheme.len() + 3 + host.len()]
        }
        None => "",
    }
}

/// Parses a `--urls` file: one URL per line; blank lines and `#` comments
/// are skipped, a repeated URL is kept once. Returns the URLs and the repeats.
pub fn parse_urls(text: &str, label: &str) -> Result<(Vec<String>, Vec<String>), Error> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (mut urls, mut repeats, mut seen) = (Vec::new(), Vec::new(), HashSet::new());
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        check_url(line).map_err(|why| Error::Usage(format!("{label}:{}: {why}", n + 1)))?;
        if seen.insert(line) {
            urls.push(line.to_string());
        } else {
            repeats.push(line.to_string());
        }
    }
    Ok((urls, repeats))
}

/// An absolute http(s) URL with a host.
fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|_| format!("not a URL: {url:?}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("not an http(s) URL: {url:?}"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("no host in {url:?}"));
    }
    Ok(())
}

/// A `--listing` and how to read it.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing {
    /// An absolute URL, or a path (`/v2/list?limit=50`) on the run's site.
    pub url: String,
    /// JSON pointer of each entry's URL; `None` for the default fields.
    pub pick: Option<String>,
    /// Accepted `type`s (`image/jpeg`, `image/*`); empty accepts all.
    pub types: Vec<String>,
}

/// Fields tried for an entry's URL when no `--pick` is given: Picsum's, Imgur's,
/// and the generic one.
const DEFAULT_PICKS: [&str; 3] = ["/download_url", "/link", "/url"];

/// Largest listing accepted; a real one is a few hundred KB.
const MAX_LISTING: u64 = 32 * 1024 * 1024;

impl Listing {
    pub fn new(url: &str, pick: Option<&str>, types: &[String]) -> Result<Listing, Error> {
        if !url.starts_with('/') {
            check_url(url).map_err(|why| Error::Usage(format!("bad --listing: {why}")))?;
        }
        let pick = pick.map(|p| {
            if p.starts_with('/') {
                p.to_string()
            } else {
                // A dotted path, `images.0.link`, is the pointer `/images/0/link`.
                format!(
                    "/{}",
                    p.replace('~', "~0").replace('/', "~1").replace('.', "/")
                )
            }
        });
        let types = types
            .iter()
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        Ok(Listing {
            url: url.to_string(),
            pick,
            types,
        })
    }

    /// The listing's absolute URL, a path being taken on `base`'s origin.
    pub fn absolute_url(&self, base: &str) -> String {
        if self.url.starts_with('/') {
            format!("{}{}", origin(base), self.url)
        } else {
            self.url.clone()
        }
    }

    fn entries(&self, base: &str, fetch: &FetchSettings) -> Result<Vec<Entry>, Error> {
        let url = self.absolute_url(base);
        let json = fetch_listing(&url, fetch).map_err(|why| Error::Listing {
            url: url.clone(),
            why,
        })?;
        self.read(&json).map_err(|why| Error::Listing { url, why })
    }

    /// The entries of a listing document, filtered by type.
    fn read(&self, json: &Value) -> Result<Vec<Entry>, String> {
        let list = match json {
            Value::Array(list) => list,
            Value::Object(map) => match map.get("data") {
                Some(Value::Array(list)) => list,
                _ => return Err("expected a JSON array or an object with a \"data\" array".into()),
            },
            _ => return Err("expected a JSON array or an object with a \"data\" array".into()),
        };
        let mut entries = Vec::new();
        for entry in list {
            let mime = entry.get("type").and_then(Value::as_str);
            if !self.types.is_empty() && !mime.is_some_and(|m| self.accepts(m)) {
                continue;
            }
            let url = match &self.pick {
                Some(pointer) => entry.pointer(pointer).and_then(Value::as_str),
                None => DEFAULT_PICKS
                    .iter()
                    .find_map(|p| entry.pointer(p).and_then(Value::as_str)),
            };
            let Some(url) = url.filter(|u| check_url(u).is_ok()) else {
                let what = self.pick.as_deref().unwrap_or("download_url, link or url");
                return Err(format!("an entry has no http(s) URL at {what}: {entry}"));
            };
            let id = match entry.get("id") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            entries.push(Entry::from_url(url, id.as_deref(), mime));
        }
        Ok(entries)
    }

    fn accepts(&self, mime: &str) -> bool {
        let mime = mime.to_ascii_lowercase();
        self.types.iter().any(|t| match t.strip_suffix("/*") {
            Some(major) => mime.split('/').next() == Some(major),
            None => *t == mime,
        })
    }
}

/// GETs a listing with the run's headers and time limits.
fn fetch_listing(url: &str, fetch: &FetchSettings) -> Result<Value, String> {
    let agents = flagmaster_worker::http::Agents::new(fetch);
    let chosen = agents.for_url(url)?;
    let mut request = chosen.agent.get(url);
    for (name, value) in &fetch.headers {
        request = request.header(name, value);
    }
    let mut response = request
        .call()
        .map_err(|e| flagmaster_worker::fetch::describe_failure(&e, chosen.proxy, url).0)?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_LISTING)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
}

/// Whether every item is on a loopback host (then proxies are ignored).
pub fn all_loopback(items: &[Item]) -> bool {
    // Items come in runs that share an origin: one parse per run, not per item.
    let mut seen: Option<&str> = None;
    items.iter().all(|i| {
        let origin = origin(&i.url);
        if seen == Some(origin) {
            return true;
        }
        seen = Some(origin);
        url::is_loopback_url(origin)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(pick: Option<&str>, types: &[&str]) -> Listing {
        let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
        Listing::new("/v2/list", pick, &types).unwrap()
    }

    fn entry(t: &Template, base: &str, name: &str) -> Entry {
        t.entry((base, origin(base)), name)
    }

    #[test]
    fn default_template_is_the_flag_site_layout() {
        let e = entry(&Template::default(), "http://h:1/flags96/", "Côte d'Ivoire");
        assert_eq!(e.url, "http://h:1/flags96/C%C3%B4te%20d%27Ivoire.jpg");
        assert_eq!(e.file, "Côte d'Ivoire.jpg");
    }

    #[test]
    fn fluent_python_layout_with_lower_case_codes() {
        let t = Template::parse("{origin}/data/flags/{lower}/{lower}.gif").unwrap();
        let e = entry(&t, "http://127.0.0.1:8000/images/pictures/flags96", "CN");
        assert_eq!(e.url, "http://127.0.0.1:8000/data/flags/cn/cn.gif");
        assert_eq!(e.file, "cn.gif");
        assert_eq!(e.name, "CN");
    }

    #[test]
    fn a_name_cannot_change_the_path_of_the_url() {
        let e = entry(&Template::default(), "http://h", "../x");
        assert_eq!(e.url, "http://h/..%2Fx.jpg");
        // The file keeps the slash, which the worker's safe-name rules refuse.
        assert_eq!(e.file, "../x.jpg");
        // A value is not scanned for placeholders again.
        let e = entry(&Template::default(), "http://h/{name}", "{upper}");
        assert_eq!(e.url, "http://h/{name}/%7Bupper%7D.jpg");
        assert_eq!(e.file, "{upper}.jpg");
    }

    #[test]
    fn bad_templates_are_refused() {
        for t in [
            "{base}/{nam}.jpg",
            "{base}/{name.jpg",
            "ftp://x/{name}",
            "{base}/{name}/flag.jpg",
        ] {
            assert!(Template::parse(t).is_err(), "{t}");
        }
        assert!(Template::parse("https://x/{upper}.png").is_ok());
    }

    #[test]
    fn url_files_from_the_last_segment() {
        let e = Entry::from_url("https://i.imgur.com/a/b%20c.png?x=1#f", None, None);
        assert_eq!((e.file.as_str(), e.ext_from_type), ("b c.png", false));
        let e = Entry::from_url("https://picsum.photos/id/0/5000/3333", None, None);
        assert_eq!((e.file.as_str(), e.ext_from_type), ("3333", true));
        let e = Entry::from_url("https://picsum.photos/id/0/5000/3333", Some("0"), None);
        assert_eq!((e.file.as_str(), e.ext_from_type), ("0", true));
        let e = Entry::from_url("http://h/i/x", Some("abc"), Some("image/png"));
        assert_eq!((e.file.as_str(), e.ext_from_type), ("abc.png", false));
        let e = Entry::from_url("http://h/", None, None);
        assert_eq!(e.file, "", "no name: the worker refuses it");
    }

    #[test]
    fn clashing_files_get_numbered() {
        let entries = [
            "http://h/a/x.jpg",
            "http://h/b/x.jpg",
            "http://h/c/X.jpg",
            "http://h/1/30",
            "http://h/2/30",
        ]
        .iter()
        .map(|u| Entry::from_url(u, None, None))
        .collect();
        let files: Vec<String> = unique_files(entries).into_iter().map(|e| e.file).collect();
        assert_eq!(files, ["x.jpg", "x-2.jpg", "X-3.jpg", "30", "30-2"]);
    }

    #[test]
    fn url_files_are_checked_line_by_line() {
        let (urls, repeats) = parse_urls(
            "# mine\nhttp://h/a.jpg\n\nhttp://h/a.jpg\r\nhttps://h/b.png\n",
            "u.txt",
        )
        .unwrap();
        assert_eq!(urls, ["http://h/a.jpg", "https://h/b.png"]);
        assert_eq!(repeats, ["http://h/a.jpg"]);
        let e = parse_urls("http://h/a.jpg\nftp://h/b\n", "u.txt").unwrap_err();
        assert_eq!(e.to_string(), "u.txt:2: not an http(s) URL: \"ftp://h/b\"");
    }

    #[test]
    fn picsum_and_imgur_shapes_by_default() {
        let picsum = serde_json::json!([
            {"id": "0", "author": "A", "download_url": "https://picsum.photos/id/0/5000/3333"},
            {"id": "1", "author": "B", "download_url": "https://picsum.photos/id/1/5000/3333"},
        ]);
        let e = listing(None, &[]).read(&picsum).unwrap();
        assert_eq!(
            e.iter().map(|e| e.file.as_str()).collect::<Vec<_>>(),
            ["0", "1"]
        );
        assert!(e[0].ext_from_type);
        let imgur = serde_json::json!({"data": [
            {"id": "aB1", "type": "image/jpeg", "link": "https://i.imgur.com/aB1.jpg"},
            {"id": "cD2", "type": "image/png", "link": "https://i.imgur.com/cD2.png"},
            {"id": "eF3", "type": "video/mp4", "link": "https://i.imgur.com/eF3.mp4"},
        ], "success": true});
        let all = listing(None, &[]).read(&imgur).unwrap();
        assert_eq!(all.len(), 3);
        let jpeg = listing(None, &["image/jpeg"]).read(&imgur).unwrap();
        assert_eq!(
            jpeg.iter().map(|e| e.file.as_str()).collect::<Vec<_>>(),
            ["aB1.jpg"]
        );
        let images = listing(None, &["image/*"]).read(&imgur).unwrap();
        assert_eq!(images.len(), 2);
    }

    #[test]
    fn pick_takes_pointers_and_dotted_paths() {
        let doc = serde_json::json!([{"id": 7, "images": [{"link": "http://h/p/q.gif"}]}]);
        for pick in ["/images/0/link", "images.0.link"] {
            let e = listing(Some(pick), &[]).read(&doc).unwrap();
            assert_eq!(e[0].file, "7.gif", "{pick}");
            assert_eq!(e[0].url, "http://h/p/q.gif");
        }
        let err = listing(Some("nope"), &[]).read(&doc).unwrap_err();
        assert!(err.contains("no http(s) URL at /nope"), "{err}");
        assert!(listing(None, &[])
            .read(&serde_json::json!({"x": 1}))
            .is_err());
    }

    #[test]
    fn a_listing_path_is_asked_of_the_site() {
        let l = listing(None, &[]);
        assert_eq!(
            l.absolute_url("http://127.0.0.1:9/images/pictures/flags96"),
            "http://127.0.0.1:9/v2/list"
        );
    }
}
