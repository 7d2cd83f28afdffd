//! The archive's `config` file: format version and the parameters fixed at init
//! (chunking, compression level, append-only, and for version 2 the AEAD that seals every
//! blob). Plain `key = value` text, written once. Version 1 is an unencrypted archive,
//! version 2 an encrypted one (`encryption = aes-256-gcm`, key slots in `keys/`).

use std::fmt::Write as _;

/// The newest archive format this strata reads and writes.
pub const ARCHIVE_VERSION: u32 = 2;
/// The format of an unencrypted archive (still written by `init` without a password).
pub const PLAIN_VERSION: u32 = 1;
/// The format of an encrypted archive.
pub const ENCRYPTED_VERSION: u32 = 2;
pub const CONFIG_MAGIC: &str = "strata archive";
const KEYS: &[&str] = &[
    "format",
    "chunk_min",
    "chunk_avg",
    "chunk_max",
    "compression_level",
    "append_only",
    "pack_size",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub version: u32,
    pub chunk_min: u32,
    pub chunk_avg: u32,
    pub chunk_max: u32,
    pub compression_level: i32,
    pub append_only: bool,
    pub pack_size: u64,
    /// The AEAD sealing every blob (`aes-256-gcm`); `Some` exactly when version is 2.
    pub encryption: Option<String>,
}

impl Config {
    /// Chunking parameters from an average size: min = avg/4, max = avg*4, within what
    /// FastCDC accepts.
    pub fn new(chunk_avg: u32, compression_level: i32, append_only: bool) -> Config {
        Config {
            version: PLAIN_VERSION,
            chunk_min: (chunk_avg / 4).max(64),
            chunk_avg,
            chunk_max: chunk_avg.saturating_mul(4).min(16 << 20),
            compression_level,
            append_only,
            pack_size: 64 << 20,
            encryption: None,
        }
    }

    /// This config as an encrypted archive's (format version 2).
    pub fn encrypted(mut self) -> Config {
        self.version = ENCRYPTED_VERSION;
        self.encryption = Some(crate::packs::AEAD_NAME.to_string());
        self
    }

    /// True when the archive's blobs are sealed (a password is needed to open it).
    pub fn is_encrypted(&self) -> bool {
        self.encryption.is_some()
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# {CONFIG_MAGIC}: do not edit; see docs/FORMAT.md");
        let _ = writeln!(s, "format = {}", self.version);
        let _ = writeln!(s, "chunk_min = {}", self.chunk_min);
        let _ = writeln!(s, "chunk_avg = {}", self.chunk_avg);
        let _ = writeln!(s, "chunk_max = {}", self.chunk_max);
        let _ = writeln!(s, "compression_level = {}", self.compression_level);
        let _ = writeln!(s, "append_only = {}", self.append_only);
        let _ = writeln!(s, "pack_size = {}", self.pack_size);
        if let Some(e) = &self.encryption {
            let _ = writeln!(s, "encryption = {e}");
        }
        s
    }

    /// Parses a config file. `Err` carries a short reason.
    pub fn decode(text: &str) -> Result<Config, String> {
        if !text.starts_with(&format!("# {CONFIG_MAGIC}")) {
            return Err("not a strata config file".into());
        }
        let mut c = Config::new(1 << 20, 3, false);
        let mut seen: Vec<&str> = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("bad line {line:?}"))?;
            let (k, v) = (k.trim(), v.trim());
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("bad value for {k}: {v:?}"))
            };
            let small = |v: &str| {
                v.parse::<u32>()
                    .map_err(|_| format!("bad value for {k}: {v:?} (at most {})", u32::MAX))
            };
            if seen.contains(&k) {
                return Err(format!("key {k:?} appears twice"));
            }
            match k {
                "format" => c.version = small(v)?,
                "chunk_min" => c.chunk_min = small(v)?,
                "chunk_avg" => c.chunk_avg = small(v)?,
                "chunk_max" => c.chunk_max = small(v)?,
                "compression_level" => {
                    c.compression_level = v
                        .parse()
                        .map_err(|_| format!("bad compression_level {v:?}"))?
                }
                "append_only" => {
                    c.append_only = match v {
                        "true" => true,
                        "false" => false,
                        _ => return Err(format!("append_only must be true or false, not {v:?}")),
                    }
                }
                "pack_size" => c.pack_size = num(v)?,
                "encryption" => {
                    if v != crate::packs::AEAD_NAME {
                        return Err(format!(
                            "encryption {v:?} is not supported (only {})",
                            crate::packs::AEAD_NAME
                        ));
                    }
                    c.encryption = Some(v.to_string())
                }
                _ => return Err(format!("unknown key {k:?}")),
            }
            seen.push(k);
        }
        for key in KEYS {
            if !seen.contains(key) {
                return Err(format!("missing key {key:?}"));
            }
        }
        if c.version == 0 {
            return Err("format version 0 does not exist".into());
        }
        match (c.version, &c.encryption) {
            (PLAIN_VERSION, Some(_)) => {
                return Err("format 1 has no encryption; format 2 is needed for it".into());
            }
            (ENCRYPTED_VERSION, None) => {
                return Err("format 2 needs an encryption line".into());
            }
            _ => {}
        }
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020 as f;
        let (min, avg, max) = (
            self.chunk_min as usize,
            self.chunk_avg as usize,
            self.chunk_max as usize,
        );
        if !(f::MINIMUM_MIN..=f::MINIMUM_MAX).contains(&min)
            || !(f::AVERAGE_MIN..=f::AVERAGE_MAX).contains(&avg)
            || !(f::MAXIMUM_MIN..=f::MAXIMUM_MAX).contains(&max)
            || min > avg
            || avg > max
            || min % 2 != 0
            || avg % 2 != 0
            || max % 2 != 0
        {
            return Err(format!(
                "chunk sizes min {min} avg {avg} max {max} are outside FastCDC's limits (avg 256 B..4 MiB)"
            ));
        }
        if !(1..=19).contains(&self.compression_level) {
            return Err(format!(
                "compression level {} is not in 1..=19",
                self.compression_level
            ));
        }
        if self.pack_size < 1 << 20 {
            return Err("pack size below 1 MiB".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_has_stable_text() {
        let c = Config::new(1 << 20, 3, true);
        assert_eq!(
            c.encode(),
            "# strata archive: do not edit; see docs/FORMAT.md\nformat = 1\nchunk_min = 262144\n\
             chunk_avg = 1048576\nchunk_max = 4194304\ncompression_level = 3\nappend_only = true\n\
             pack_size = 67108864\n"
        );
        assert_eq!(Config::decode(&c.encode()), Ok(c));
    }

    #[test]
    fn an_encrypted_config_is_version_2_and_names_its_aead() {
        let c = Config::new(1 << 20, 3, false).encrypted();
        assert_eq!(
            c.encode(),
            "# strata archive: do not edit; see docs/FORMAT.md\nformat = 2\nchunk_min = 262144\n\
             chunk_avg = 1048576\nchunk_max = 4194304\ncompression_level = 3\nappend_only = false\n\
             pack_size = 67108864\nencryption = aes-256-gcm\n"
        );
        assert_eq!(Config::decode(&c.encode()), Ok(c.clone()));
        assert!(c.is_encrypted());
        let text = c.encode();
        assert!(Config::decode(&text.replace("encryption = aes-256-gcm\n", "")).is_err());
        assert!(Config::decode(&text.replace("aes-256-gcm", "rot13")).is_err());
        assert!(Config::decode(&text.replace("format = 2", "format = 1")).is_err());
    }

    #[test]
    fn bad_configs_are_rejected() {
        assert!(Config::decode("hello").is_err());
        let c = Config::new(1 << 20, 3, false).encode();
        assert!(Config::decode(&c.replace("chunk_avg = 1048576", "chunk_avg = 3")).is_err());
        assert!(Config::decode(&c.replace("format = 1\n", "")).is_err());
        assert!(Config::decode(&c.replace("format = 1", "format = 0")).is_err());
        assert!(Config::decode(&c.replace("append_only = false", "append_only = yes")).is_err());
        assert!(Config::decode(&c.replace("pack_size = 67108864\n", "")).is_err());
        assert!(Config::decode(&format!("{c}format = 1\n")).is_err());
    }
}
