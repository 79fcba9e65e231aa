//! The image APIs and other layouts of the lessons, served from the same
//! flags, so that `--listing` and `--template` run and are tested offline:
//!
//! - a Picsum-like listing, `GET /v2/list?page=P&limit=N`: a JSON array of
//!   objects whose `download_url` (`/id/{id}/{w}/{h}`, no file extension, as on
//!   Picsum) points back to this site;
//! - an Imgur-like album, `GET /3/album/{hash}/images`, which wants an
//!   `Authorization: Client-ID ...` header and answers `{"data": [...]}` with
//!   `id`, `type` and `link` per image; every fourth image is a PNG, so that
//!   `--type` has something to filter;
//! - Fluent Python's flags layout, `GET /data/flags/{cc}/{cc}.gif`, for its 20
//!   most populous countries, lower-case codes, as GIFs.
//!
//! Image requests get the site's latency and errors like the flags do, and are
//! counted in `/stats` under their path (`id/3`, `i/Chad.png`, `data/flags/cn/cn.gif`).

use std::io::Cursor;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use image::ImageFormat;
use percent_encoding::utf8_percent_encode;
use serde_json::{json, Value};

use super::Shared;
use crate::input::list::SEGMENT;

/// Fluent Python's `POP20_CC`, with the names of the same countries in our list.
pub const POP20: [(&str, &str); 20] = [
    ("cn", "China"),
    ("in", "India"),
    ("us", "United_States"),
    ("id", "Indonesia"),
    ("br", "Brazil"),
    ("pk", "Pakistan"),
    ("ng", "Nigeria"),
    ("bd", "Bangladesh"),
    ("ru", "Russia"),
    ("jp", "Japan"),
    ("mx", "Mexico"),
    ("ph", "Philippines"),
    ("vn", "Vietnam"),
    ("et", "Ethiopia"),
    ("eg", "Egypt"),
    ("de", "Germany"),
    ("ir", "Iran"),
    ("tr", "Turkey"),
    ("cd", "Democratic_Republic_of_the_Congo"),
    ("fr", "France"),
];

/// Picsum's default page size; we allow larger pages than its 100, since the
/// client does not follow pages.
const DEFAULT_LIMIT: usize = 30;
const MAX_LIMIT: usize = 1000;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v2/list", get(picsum_list))
        .route("/id/{id}/{width}/{height}", get(picsum_image))
        .route("/3/album/{album}/images", get(imgur_album))
        .route("/i/{file}", get(imgur_image))
        .route("/data/flags/{cc}/{file}", get(fluent_flag))
}

/// `http://host:port` as the client addressed us, for links back to this site.
fn origin(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    Some(format!("http://{host}"))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such image\n").into_response()
}

/// `page` (1-based) and `limit` from a query string; `None` if malformed.
fn page_and_limit(query: Option<&str>) -> Option<(usize, usize)> {
    let (mut page, mut limit) = (1, DEFAULT_LIMIT);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=')?;
        match key {
            "page" => page = value.parse().ok().filter(|&p| p >= 1)?,
            "limit" => limit = value.parse::<usize>().ok()?.clamp(1, MAX_LIMIT),
            _ => {}
        }
    }
    Some((page, limit))
}

async fn picsum_list(
    State(site): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (Some((page, limit)), Some(origin)) = (page_and_limit(query.as_deref()), origin(&headers))
    else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "bad page or limit"}),
        );
    };
    let names = &site.config.names;
    let (width, height) = site.config.image_size;
    let entries: Vec<Value> = names
        .iter()
        .enumerate()
        .skip((page - 1).saturating_mul(limit))
        .take(limit)
        .map(|(id, name)| {
            json!({
                "id": id.to_string(),
                "author": name,
                "width": width,
                "height": height,
                "url": format!("{origin}/photos/{id}"),
                "download_url": format!("{origin}/id/{id}/{width}/{height}"),
            })
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(entries))
}

async fn picsum_image(
    State(site): State<Arc<Shared>>,
    Path((id, width, height)): Path<(String, String, String)>,
) -> Response {
    let counted = format!("id/{id}");
    let name = id
        .parse::<usize>()
        .ok()
        .filter(|_| width.parse::<u32>().is_ok() && height.parse::<u32>().is_ok())
        .and_then(|i| site.config.names.get(i).cloned());
    serve_image(&site, &counted, name.as_deref(), ImageFormat::Jpeg).await
}

/// Every fourth image of the album is a PNG.
fn album_format(index: usize) -> ImageFormat {
    if index % 4 == 3 {
        ImageFormat::Png
    } else {
        ImageFormat::Jpeg
    }
}

async fn imgur_album(
    State(site): State<Arc<Shared>>,
    Path(_album): Path<String>,
    headers: HeaderMap,
) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Client-ID "))
        .is_some_and(|id| !id.trim().is_empty());
    if !authorized {
        let body = json!({
            "data": {"error": "Authentication required", "method": "GET"},
            "success": false,
            "status": 401,
        });
        return json_response(StatusCode::UNAUTHORIZED, &body);
    }
    let Some(origin) = origin(&headers) else {
        return json_response(StatusCode::BAD_REQUEST, &json!({"error": "no Host"}));
    };
    let (width, height) = site.config.image_size;
    let data: Vec<Value> = site
        .config
        .names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let format = album_format(i);
            let ext = format.extensions_str()[0];
            json!({
                "id": name,
                "title": name.replace('_', " "),
                "type": format.to_mime_type(),
                "width": width,
                "height": height,
                "link": format!("{origin}/i/{}.{ext}", utf8_percent_encode(name, SEGMENT)),
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"data": data, "success": true, "status": 200}),
    )
}

async fn imgur_image(State(site): State<Arc<Shared>>, Path(file): Path<String>) -> Response {
    let counted = format!("i/{file}");
    let (name, format) = match file.rsplit_once('.') {
        Some((name, "jpg")) => (name, ImageFormat::Jpeg),
        Some((name, "png")) => (name, ImageFormat::Png),
        _ => return not_found(),
    };
    serve_image(&site, &counted, Some(name), format).await
}

async fn fluent_flag(
    State(site): State<Arc<Shared>>,
    Path((cc, file)): Path<(String, String)>,
) -> Response {
    let counted = format!("data/flags/{cc}/{file}");
    let name = POP20
        .iter()
        .find(|(code, _)| *code == cc && file == format!("{cc}.gif"))
        .map(|(_, name)| *name);
    serve_image(&site, &counted, name, ImageFormat::Gif).await
}

/// Counts the request, waits the site's latency, maybe fails like the flags
/// do, then answers `name`'s picture in `format` (404 for an unknown name).
async fn serve_image(
    site: &Shared,
    counted: &str,
    name: Option<&str>,
    format: ImageFormat,
) -> Response {
    let jpeg = name.and_then(|n| site.flags.get(n)).map(|flag| &flag.jpeg);
    site.count(counted, jpeg.is_some());
    if let Some(failure) = site.latency_and_errors().await {
        return failure;
    }
    let Some(jpeg) = jpeg else {
        return not_found();
    };
    let body = match format {
        ImageFormat::Jpeg => Ok(jpeg.clone()),
        other => convert(jpeg, other).map(Bytes::from),
    };
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, format.to_mime_type())], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// The flag's JPEG re-encoded; a few hundred microseconds for a 96x64 flag.
fn convert(jpeg: &[u8], format: ImageFormat) -> image::ImageResult<Vec<u8>> {
    let img = image::load_from_memory_with_format(jpeg, ImageFormat::Jpeg)?;
    let mut out = Cursor::new(Vec::new());
    // GIF and PNG take RGBA / RGB; a decoded JPEG is RGB.
    img.to_rgba8().write_to(&mut out, format)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::flag;

    #[test]
    fn page_and_limit_follow_picsum() {
        assert_eq!(page_and_limit(None), Some((1, 30)));
        assert_eq!(page_and_limit(Some("limit=5&page=2")), Some((2, 5)));
        assert_eq!(page_and_limit(Some("limit=100000")), Some((1, MAX_LIMIT)));
        assert_eq!(page_and_limit(Some("page=0")), None);
        assert_eq!(page_and_limit(Some("limit=x")), None);
    }

    #[test]
    fn pop20_names_are_in_the_builtin_list() {
        let names = crate::input::list::parse(crate::input::list::BUILTIN).names;
        for (_, name) in POP20 {
            assert!(names.iter().any(|n| n == name), "{name}");
        }
    }

    #[test]
    fn conversions_decode_as_their_format() {
        let jpeg = flag::flag_jpeg("Chad");
        for format in [ImageFormat::Png, ImageFormat::Gif] {
            let out = convert(&jpeg, format).unwrap();
            assert_eq!(image::guess_format(&out).unwrap(), format);
            let img = image::load_from_memory(&out).unwrap();
            assert_eq!((img.width(), img.height()), (flag::WIDTH, flag::HEIGHT));
        }
    }
}
