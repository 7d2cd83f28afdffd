//! What it takes to reach a bucket, from the environment: credentials, region, timeout,
//! retries (the variables are listed in the header of `store::s3`).

use crate::store::StoreError;
use crate::store::url::BucketUrl;
use std::fmt;
use std::time::Duration;
use zeroize::Zeroizing;

const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_RETRIES: usize = 10;

/// How to reach a bucket: credentials, region, timeout and retries.
#[derive(Clone)]
pub struct S3Config {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub session_token: Option<Zeroizing<String>>,
    pub region: String,
    /// The limit for one request, body included.
    pub timeout: Duration,
    /// Retries of a request that failed in a way worth retrying.
    pub retries: usize,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"…")
            .field("session_token", &self.session_token.as_ref().map(|_| "…"))
            .field("region", &self.region)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

impl S3Config {
    /// Credentials and settings from the environment (see the module header).
    pub fn from_env(url: &BucketUrl) -> Result<S3Config, StoreError> {
        S3Config::from_lookup(url, |k| std::env::var(k).ok())
    }

    /// As [`from_env`](S3Config::from_env), reading variables through `var` (tests).
    pub fn from_lookup(
        url: &BucketUrl,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<S3Config, StoreError> {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        let config = |what: String| StoreError::Config {
            location: url.to_string(),
            what,
        };
        let id = var("AWS_ACCESS_KEY_ID");
        let secret = var("AWS_SECRET_ACCESS_KEY").map(Zeroizing::new);
        let (access_key_id, secret_access_key) = match (id, secret) {
            (Some(id), Some(secret)) => (id, secret),
            (id, _) => {
                let missing = match id {
                    None => "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are",
                    Some(_) => "AWS_SECRET_ACCESS_KEY is",
                };
                return Err(config(format!(
                    "no credentials: {missing} not set (the bucket's access key id and secret)"
                )));
            }
        };
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let timeout = match var("STRATA_S3_TIMEOUT") {
            None => DEFAULT_TIMEOUT,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Duration::from_secs_f64(s),
                _ => {
                    return Err(config(format!(
                        "STRATA_S3_TIMEOUT={v:?} is not a number of seconds between 0 and 86400"
                    )));
                }
            },
        };
        let retries = match var("STRATA_S3_RETRIES") {
            None => DEFAULT_RETRIES,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n <= 100 => n,
                _ => {
                    return Err(config(format!(
                        "STRATA_S3_RETRIES={v:?} is not a whole number from 0 to 100"
                    )));
                }
            },
        };
        Ok(S3Config {
            access_key_id,
            secret_access_key,
            session_token: var("AWS_SESSION_TOKEN").map(Zeroizing::new),
            region,
            timeout,
            retries,
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(in crate::store::s3) fn url() -> BucketUrl {
        BucketUrl::parse("s3:http://127.0.0.1:1/bkt/pre/fix").unwrap()
    }

    pub(in crate::store::s3) fn config(vars: &[(&str, &str)]) -> Result<S3Config, StoreError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        S3Config::from_lookup(&url(), |k| map.get(k).cloned())
    }

    pub(in crate::store::s3) const KEYS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "GK0123"),
        ("AWS_SECRET_ACCESS_KEY", "sekrit-value"),
    ];

    #[test]
    fn missing_credentials_name_the_variables() {
        let e = config(&[]).unwrap_err().to_string();
        assert!(
            e.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            "{e}"
        );
        assert!(e.starts_with("s3:http://127.0.0.1:1/bkt/pre/fix: "), "{e}");
        let e = config(&[("AWS_ACCESS_KEY_ID", "x")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("AWS_SECRET_ACCESS_KEY is not set") && !e.contains("AWS_ACCESS_KEY_ID"),
            "{e}"
        );
        let e = config(&[("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("AWS_SECRET_ACCESS_KEY is not set"), "{e}");
    }

    #[test]
    fn region_timeout_and_retries_come_from_the_environment_with_defaults() {
        let c = config(&KEYS).unwrap();
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(c.retries, 10);
        let mut v = KEYS.to_vec();
        v.push(("AWS_DEFAULT_REGION", "garage"));
        assert_eq!(config(&v).unwrap().region, "garage");
        v.push(("AWS_REGION", "eu-west-1"));
        v.push(("STRATA_S3_TIMEOUT", "2.5"));
        v.push(("STRATA_S3_RETRIES", "0"));
        let c = config(&v).unwrap();
        assert_eq!(
            c.region, "eu-west-1",
            "AWS_REGION wins over AWS_DEFAULT_REGION"
        );
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.retries, 0);
        for (k, bad) in [
            ("STRATA_S3_TIMEOUT", "0"),
            ("STRATA_S3_TIMEOUT", "soon"),
            ("STRATA_S3_RETRIES", "-1"),
        ] {
            let mut v = KEYS.to_vec();
            v.push((k, bad));
            let e = config(&v).unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
        }
    }

    #[test]
    fn the_secret_is_not_in_debug_output() {
        let c = config(&KEYS).unwrap();
        let d = format!("{c:?}");
        assert!(d.contains("GK0123") && !d.contains("sekrit"), "{d}");
    }
}
