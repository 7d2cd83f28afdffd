//! From `object_store`'s errors to the store's: by what the user must do about them. Some
//! requests (listings) report every failure as a generic error, so the S3 error code in
//! the response body decides when there is one.

use super::Bucket;
use crate::store::StoreError;
use object_store::client::{HttpError, HttpErrorKind};
use std::error::Error as StdError;
use std::io;

impl Bucket {
    /// Maps an `object_store` error to the store's, by what the user must do about it.
    pub(super) fn error(&self, location: String, e: object_store::Error) -> StoreError {
        use object_store::Error as E;
        match e {
            E::NotFound { .. } => StoreError::NotFound { location },
            E::PermissionDenied { source, .. } | E::Unauthenticated { source, .. } => {
                StoreError::AccessDenied {
                    location,
                    detail: s3_message(&unescape_xml(&source.to_string()))
                        .unwrap_or_else(|| "refused".to_string()),
                }
            }
            E::AlreadyExists { .. } => StoreError::Io {
                location,
                source: io::Error::new(io::ErrorKind::AlreadyExists, "object exists"),
            },
            e => {
                match http_kind(&e) {
                    Some(HttpErrorKind::Connect) => {
                        return StoreError::Unreachable {
                            location,
                            detail: innermost(&e),
                        };
                    }
                    Some(HttpErrorKind::Timeout) => {
                        return StoreError::TimedOut {
                            location,
                            secs: self.timeout.as_secs_f64(),
                        };
                    }
                    _ => {}
                }
                // Some requests (listings) come back as a generic error whatever the
                // status: read the S3 error code in the body.
                let text = unescape_xml(&e.to_string());
                match s3_tag(&text, "Code").as_deref() {
                    Some("NoSuchBucket") => return StoreError::NoSuchBucket { location },
                    Some("NoSuchKey") => return StoreError::NotFound { location },
                    Some(
                        "AccessDenied"
                        | "InvalidAccessKeyId"
                        | "SignatureDoesNotMatch"
                        | "InvalidToken"
                        | "ExpiredToken"
                        | "Unauthorized"
                        | "Forbidden",
                    ) => {
                        return StoreError::AccessDenied {
                            location,
                            detail: s3_message(&text).unwrap_or_default(),
                        };
                    }
                    Some("AuthorizationHeaderMalformed") => {
                        return StoreError::WrongRegion {
                            location,
                            region: self.region.clone(),
                            expected: expected_region(&text).unwrap_or_default(),
                        };
                    }
                    _ => {}
                }
                let detail = s3_message(&text).unwrap_or(text);
                StoreError::Remote { location, detail }
            }
        }
    }
}

/// The transport failure behind an error, if it is one.
fn http_kind(e: &object_store::Error) -> Option<HttpErrorKind> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<HttpError>() {
            return Some(h.kind());
        }
        cur = err.source();
    }
    None
}

/// The last message in an error's chain (`Connection refused (os error 111)`).
fn innermost(e: &(dyn StdError + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

pub(super) fn is_range_not_satisfiable(e: &object_store::Error) -> bool {
    let text = e.to_string();
    s3_tag(&text, "Code").as_deref() == Some("InvalidRange")
        || text.contains("416 Range Not Satisfiable")
}

/// The text of `<tag>…</tag>` in an S3 XML error body inside an error's text.
fn s3_tag(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(text[start..end].trim().to_string())
}

/// `Code: Message` from an S3 XML error body inside an error's text.
fn s3_message(text: &str) -> Option<String> {
    match (s3_tag(text, "Code"), s3_tag(text, "Message")) {
        (Some(c), Some(m)) if !m.is_empty() => Some(format!("{c}: {m}")),
        (Some(c), _) => Some(c),
        (None, Some(m)) => Some(m),
        (None, None) => None,
    }
}

/// The five XML escapes, undone (error messages quote with `&apos;`).
fn unescape_xml(text: &str) -> String {
    text.replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The region a store asks for in its AuthorizationHeaderMalformed error: Garage says
/// `expected: 'DATE/REGION/s3/aws4_request'`, AWS `expecting 'REGION'`.
fn expected_region(text: &str) -> Option<String> {
    if let Some(i) = text.find("expected: '") {
        let scope = &text[i + "expected: '".len()..];
        let scope = &scope[..scope.find('\'')?];
        return scope.split('/').nth(1).map(str::to_string);
    }
    let i = text.find("expecting '")?;
    let rest = &text[i + "expecting '".len()..];
    Some(rest[..rest.find('\'')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_bodies_and_region_hints_are_read() {
        let body = "Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?>\
                    <Error><Code>AccessDenied</Code><Message>Forbidden: Invalid signature</Message></Error>";
        assert_eq!(
            s3_message(body).unwrap(),
            "AccessDenied: Forbidden: Invalid signature"
        );
        assert_eq!(s3_message("no xml here"), None);
        assert_eq!(
            unescape_xml("a &apos;b&apos; &lt;c&gt; &amp;amp;"),
            "a 'b' <c> &amp;"
        );
        let garage = "<Code>AuthorizationHeaderMalformed</Code><Message>Authorization header malformed, \
                      unexpected scope: '20260101/us-east-1/s3/aws4_request', expected: '20260101/garage/s3/aws4_request'</Message>";
        assert_eq!(expected_region(garage).as_deref(), Some("garage"));
        let aws = "the region 'us-east-1' is wrong; expecting 'eu-west-1'";
        assert_eq!(expected_region(aws).as_deref(), Some("eu-west-1"));
    }
}
