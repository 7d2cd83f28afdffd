//! Where an archive lives, as the user writes it: a directory path, or a bucket
//! `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]` (path-style addressing, as Garage and
//! MinIO need). A local directory whose name starts with `s3:` is written `./s3:…`.

use std::fmt;
use std::path::{Path, PathBuf};

/// A bucket archive's address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BucketUrl {
    /// `http://host:port` or `https://host[:port]`, without a trailing slash.
    pub endpoint: String,
    pub bucket: String,
    /// Object names start with `PREFIX/` (empty: at the bucket's top).
    pub prefix: String,
}

impl BucketUrl {
    /// Parses `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]`; the error says what is wrong.
    pub fn parse(s: &str) -> Result<BucketUrl, String> {
        let rest = s
            .strip_prefix("s3:")
            .ok_or_else(|| format!("{s}: a bucket archive is written s3:https://HOST/BUCKET"))?;
        let (scheme, after) = if let Some(a) = rest.strip_prefix("https://") {
            ("https", a)
        } else if let Some(a) = rest.strip_prefix("http://") {
            ("http", a)
        } else {
            return Err(format!(
                "{s}: the endpoint must start with http:// or https:// \
                 (s3:https://HOST[:PORT]/BUCKET[/PREFIX])"
            ));
        };
        let (host, path) = after.split_once('/').unwrap_or((after, ""));
        if host.is_empty() {
            return Err(format!("{s}: no host after {scheme}://"));
        }
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(format!(
                "{s}: no bucket name (s3:{scheme}://{host}/BUCKET[/PREFIX])"
            ));
        }
        if !bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            || bucket.len() < 3
            || bucket.len() > 63
        {
            return Err(format!(
                "{s}: {bucket:?} is not a valid bucket name (3 to 63 lowercase letters, digits, '-' and '.')"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|c| c == "." || c == "..") {
            return Err(format!(
                "{s}: the prefix may not contain . or .. components"
            ));
        }
        Ok(BucketUrl {
            endpoint: format!("{scheme}://{host}"),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The full object name of `name` (a name relative to the archive, such as
    /// `packs/0000000000000001.pack` or `config`).
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// True when the endpoint is plain http (only for a local or trusted network).
    pub fn is_http(&self) -> bool {
        self.endpoint.starts_with("http://")
    }
}

impl fmt::Display for BucketUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3:{}/{}", self.endpoint, self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// Where an archive lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveUrl {
    Dir(PathBuf),
    Bucket(BucketUrl),
}

impl ArchiveUrl {
    /// An ARCHIVE argument: `s3:…` is a bucket, anything else a directory.
    pub fn parse(arg: &Path) -> Result<ArchiveUrl, String> {
        match arg.to_str() {
            Some(s) if s.starts_with("s3:") => BucketUrl::parse(s).map(ArchiveUrl::Bucket),
            _ => Ok(ArchiveUrl::Dir(arg.to_path_buf())),
        }
    }
}

impl fmt::Display for ArchiveUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveUrl::Dir(p) => write!(f, "{}", p.display()),
            ArchiveUrl::Bucket(b) => b.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls_parse_with_and_without_prefix() {
        let u = BucketUrl::parse("s3:http://127.0.0.1:3900/backups").unwrap();
        assert_eq!(u.endpoint, "http://127.0.0.1:3900");
        assert_eq!(u.bucket, "backups");
        assert_eq!(u.prefix, "");
        assert_eq!(u.key("config"), "config");
        assert_eq!(u.to_string(), "s3:http://127.0.0.1:3900/backups");
        let u = BucketUrl::parse("s3:https://s3.example.org/backups/jira/prod/").unwrap();
        assert_eq!(u.prefix, "jira/prod");
        assert_eq!(u.key("packs/x.pack"), "jira/prod/packs/x.pack");
        assert!(!u.is_http());
        assert_eq!(u.to_string(), "s3:https://s3.example.org/backups/jira/prod");
    }

    #[test]
    fn bad_bucket_urls_say_what_is_wrong() {
        for (bad, why) in [
            ("s3:ftp://h/b", "http:// or https://"),
            ("s3:http:///bkt", "no host"),
            ("s3:http://h", "no bucket"),
            ("s3:http://h/", "no bucket"),
            ("s3:http://h/Bad_Bucket", "not a valid bucket"),
            ("s3:http://h/bkt/a/../b", ". or .."),
        ] {
            let e = BucketUrl::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn an_archive_argument_is_a_bucket_only_with_the_s3_scheme() {
        assert!(matches!(
            ArchiveUrl::parse(Path::new("s3:http://h:1/bkt")),
            Ok(ArchiveUrl::Bucket(_))
        ));
        assert_eq!(
            ArchiveUrl::parse(Path::new("./s3:x")).unwrap(),
            ArchiveUrl::Dir(PathBuf::from("./s3:x"))
        );
        assert!(ArchiveUrl::parse(Path::new("s3:x")).is_err());
    }
}
