//! Cheap PRNG-driven text: words, sentences, Jira wiki markup, stack traces and people.
//!
//! Words come from a fixed 256-word vocabulary with a skew toward the first entries, so the
//! text compresses about as well as real tickets do. Every function appends to a `Vec<u8>`
//! and emits only ASCII that is safe inside XML attributes and CDATA (no `<`, `&`, `"` or
//! backslash); stack traces contain tabs and newlines, which SQL COPY output must escape.

use crate::rng::Rng;

pub const WORDS: [&str; 256] = [
    "the",
    "a",
    "to",
    "of",
    "and",
    "in",
    "for",
    "is",
    "on",
    "that",
    "with",
    "as",
    "it",
    "be",
    "this",
    "are",
    "by",
    "from",
    "at",
    "not",
    "or",
    "we",
    "can",
    "will",
    "should",
    "when",
    "after",
    "before",
    "user",
    "users",
    "issue",
    "issues",
    "page",
    "pages",
    "server",
    "service",
    "request",
    "response",
    "error",
    "errors",
    "value",
    "values",
    "field",
    "fields",
    "update",
    "updated",
    "create",
    "created",
    "delete",
    "deleted",
    "change",
    "changes",
    "project",
    "projects",
    "report",
    "reports",
    "data",
    "database",
    "table",
    "tables",
    "index",
    "query",
    "queries",
    "file",
    "files",
    "upload",
    "uploads",
    "download",
    "link",
    "links",
    "release",
    "version",
    "versions",
    "build",
    "builds",
    "test",
    "tests",
    "testing",
    "deploy",
    "deployment",
    "config",
    "configuration",
    "setting",
    "settings",
    "default",
    "new",
    "old",
    "first",
    "last",
    "next",
    "previous",
    "current",
    "open",
    "closed",
    "resolved",
    "fixed",
    "fix",
    "bug",
    "bugs",
    "feature",
    "features",
    "task",
    "tasks",
    "story",
    "stories",
    "epic",
    "sprint",
    "board",
    "team",
    "customer",
    "customers",
    "support",
    "ticket",
    "tickets",
    "comment",
    "comments",
    "description",
    "summary",
    "status",
    "priority",
    "major",
    "minor",
    "critical",
    "blocker",
    "high",
    "low",
    "medium",
    "time",
    "times",
    "date",
    "dates",
    "day",
    "days",
    "week",
    "weeks",
    "month",
    "monthly",
    "daily",
    "backup",
    "backups",
    "restore",
    "export",
    "import",
    "attachment",
    "attachments",
    "space",
    "spaces",
    "content",
    "document",
    "documents",
    "image",
    "images",
    "view",
    "views",
    "list",
    "lists",
    "search",
    "filter",
    "filters",
    "sort",
    "order",
    "orders",
    "account",
    "accounts",
    "login",
    "logout",
    "session",
    "sessions",
    "token",
    "tokens",
    "password",
    "permission",
    "permissions",
    "group",
    "groups",
    "role",
    "roles",
    "admin",
    "administrator",
    "email",
    "emails",
    "notification",
    "notifications",
    "message",
    "messages",
    "queue",
    "queues",
    "job",
    "jobs",
    "worker",
    "workers",
    "cache",
    "caches",
    "memory",
    "disk",
    "network",
    "timeout",
    "timeouts",
    "retry",
    "retries",
    "connection",
    "connections",
    "client",
    "clients",
    "browser",
    "api",
    "endpoint",
    "endpoints",
    "header",
    "headers",
    "body",
    "payload",
    "json",
    "xml",
    "csv",
    "html",
    "script",
    "scripts",
    "plugin",
    "plugins",
    "module",
    "modules",
    "component",
    "components",
    "screen",
    "screens",
    "workflow",
    "workflows",
    "transition",
    "transitions",
    "performance",
    "slow",
    "fast",
    "large",
    "small",
    "empty",
    "missing",
    "wrong",
    "correct",
    "expected",
    "actual",
    "behaviour",
    "result",
    "results",
    "step",
    "steps",
    "reproduce",
    "environment",
    "production",
    "staging",
    "development",
    "local",
    "remote",
    "cluster",
    "node",
    "nodes",
];

pub const FIRST_NAMES: [&str; 32] = [
    "Anna", "Ben", "Clara", "David", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Kira",
    "Lukas", "Maria", "Nils", "Olga", "Paul", "Quinn", "Rosa", "Simon", "Tara", "Uwe", "Vera",
    "Wim", "Xenia", "Yusuf", "Zoe", "Omar", "Lena", "Marco", "Sofia", "Tom", "Julia",
];

pub const LAST_NAMES: [&str; 32] = [
    "Schmidt", "Meyer", "Weber", "Wagner", "Becker", "Hoffmann", "Koch", "Richter", "Klein",
    "Wolf", "Neumann", "Braun", "Zimmer", "Kruger", "Hartmann", "Lange", "Werner", "Krause",
    "Lehmann", "Kaiser", "Fuchs", "Peters", "Jung", "Hahn", "Vogel", "Roth", "Frank", "Berg",
    "Sommer", "Winter", "Brandt", "Haas",
];

const PACKAGES: [&str; 8] = [
    "platform",
    "billing",
    "core",
    "search",
    "auth",
    "storage",
    "reporting",
    "sync",
];
const LAYERS: [&str; 6] = ["service", "web", "dao", "rest", "jobs", "util"];
const CLASSES: [&str; 16] = [
    "IssueService",
    "UserManager",
    "IndexWorker",
    "ExportTask",
    "SessionFilter",
    "QueryBuilder",
    "AttachmentStore",
    "CacheLoader",
    "PermissionCheck",
    "ReportRenderer",
    "MailQueue",
    "WorkflowEngine",
    "SchemaMigrator",
    "TokenValidator",
    "UploadHandler",
    "SyncClient",
];
const METHODS: [&str; 12] = [
    "execute", "run", "load", "update", "process", "doFilter", "render", "validate", "commit",
    "handle", "fetch", "apply",
];
const EXCEPTIONS: [&str; 8] = [
    "java.lang.NullPointerException",
    "java.lang.IllegalStateException: entity already detached",
    "java.sql.SQLTransientConnectionException: pool exhausted",
    "java.io.IOException: Broken pipe",
    "java.util.concurrent.TimeoutException",
    "org.postgresql.util.PSQLException: deadlock detected",
    "java.lang.OutOfMemoryError: Java heap space",
    "com.atlassian.jira.exception.DataAccessException: lock timeout",
];

/// A vocabulary word, skewed so that the first words are the most frequent.
#[inline]
fn word_of(byte: u8) -> &'static str {
    WORDS[((byte as u32 * byte as u32) >> 8) as usize]
}

/// Appends `n` space-separated lower-case words.
pub fn words(rng: &mut Rng, buf: &mut Vec<u8>, n: usize) {
    let mut bits = 0u64;
    for i in 0..n {
        if i % 8 == 0 {
            bits = rng.next_u64();
        }
        if i > 0 {
            buf.push(b' ');
        }
        buf.extend_from_slice(word_of(bits as u8).as_bytes());
        bits >>= 8;
    }
}

/// Upper-cases the byte at `at`.
fn capitalize(buf: &mut [u8], at: usize) {
    if let Some(b) = buf.get_mut(at) {
        b.make_ascii_uppercase();
    }
}

/// Appends a capitalised sentence of 5–18 words ending in a full stop.
pub fn sentence(rng: &mut Rng, buf: &mut Vec<u8>) {
    let start = buf.len();
    let n = rng.range(5, 18) as usize;
    let comma = if n > 9 {
        rng.range(3, n as u64 - 3) as usize
    } else {
        0
    };
    if comma > 0 {
        words(rng, buf, comma);
        buf.extend_from_slice(b", ");
        words(rng, buf, n - comma);
    } else {
        words(rng, buf, n);
    }
    buf.push(b'.');
    capitalize(buf, start);
}

/// Appends a title: 3–9 words, the first capitalised, no full stop.
pub fn title(rng: &mut Rng, buf: &mut Vec<u8>) {
    let start = buf.len();
    let n = rng.range(3, 9) as usize;
    words(rng, buf, n);
    capitalize(buf, start);
}

/// A title as a string.
pub fn title_string(rng: &mut Rng) -> String {
    let mut b = Vec::with_capacity(64);
    title(rng, &mut b);
    String::from_utf8(b).expect("ascii")
}

/// Appends a paragraph of 1–6 sentences.
pub fn paragraph(rng: &mut Rng, buf: &mut Vec<u8>) {
    let n = rng.range(1, 6);
    for i in 0..n {
        if i > 0 {
            buf.push(b' ');
        }
        sentence(rng, buf);
    }
}

/// Appends paragraphs separated by blank lines until at least `len` bytes were added.
pub fn prose(rng: &mut Rng, buf: &mut Vec<u8>, len: usize) {
    let end = buf.len() + len;
    while buf.len() < end {
        paragraph(rng, buf);
        buf.extend_from_slice(b"\n\n");
    }
}

/// Appends a Java stack trace of about `frames` frames.
pub fn stack_trace(rng: &mut Rng, buf: &mut Vec<u8>, frames: usize) {
    buf.extend_from_slice(rng.pick(&EXCEPTIONS).as_bytes());
    buf.push(b'\n');
    for _ in 0..frames {
        let class = rng.pick(&CLASSES);
        buf.extend_from_slice(b"\tat com.acme.");
        buf.extend_from_slice(rng.pick(&PACKAGES).as_bytes());
        buf.push(b'.');
        buf.extend_from_slice(rng.pick(&LAYERS).as_bytes());
        buf.push(b'.');
        buf.extend_from_slice(class.as_bytes());
        buf.push(b'.');
        buf.extend_from_slice(rng.pick(&METHODS).as_bytes());
        buf.push(b'(');
        buf.extend_from_slice(class.as_bytes());
        buf.extend_from_slice(b".java:");
        crate::clock::push_num(buf, rng.range(20, 900), 0);
        buf.extend_from_slice(b")\n");
    }
}

/// Appends a ticket body in Jira wiki markup of roughly `len` bytes.
pub fn jira_markup(rng: &mut Rng, buf: &mut Vec<u8>, len: usize) {
    let end = buf.len() + len;
    let mut section = 0;
    while buf.len() < end {
        match (section + rng.below(2)) % 4 {
            0 => {
                buf.extend_from_slice(b"h3. ");
                title(rng, buf);
                buf.push(b'\n');
                paragraph(rng, buf);
            }
            1 => {
                for _ in 0..rng.range(2, 5) {
                    buf.extend_from_slice(b"# ");
                    sentence(rng, buf);
                    buf.push(b'\n');
                }
            }
            2 => {
                buf.extend_from_slice(b"{code:java}\n");
                let frames = rng.range(3, 12) as usize;
                stack_trace(rng, buf, frames);
                buf.extend_from_slice(b"{code}");
            }
            _ => {
                buf.extend_from_slice(b"* *");
                title(rng, buf);
                buf.extend_from_slice(b"*: ");
                sentence(rng, buf);
            }
        }
        buf.extend_from_slice(b"\n\n");
        section += 1;
    }
}

/// Appends one day of an application log, about `len` bytes, starting at `day` (seconds),
/// timestamps ascending; `loggers` are the class names lines are logged from.
pub fn log_day(rng: &mut Rng, buf: &mut Vec<u8>, day: i64, len: usize, loggers: &[&str]) {
    let end = buf.len() + len;
    let lines = (len / 120).max(1) as u64;
    let step_ms = 86_400_000 / (lines + 2);
    let mut ms = 0u64;
    while buf.len() < end && ms < 86_400_000 - 2 * step_ms {
        ms += rng.range(1, 2 * step_ms);
        crate::clock::push_datetime_ms(buf, day + (ms / 1000) as i64, (ms % 1000) as u32);
        let level = rng.below(100);
        buf.extend_from_slice(match level {
            0..2 => b" ERROR ",
            2..10 => b" WARN  ",
            _ => b" INFO  ",
        });
        buf.extend_from_slice(b"[qtp1798-");
        crate::clock::push_num(buf, rng.range(10, 99), 0);
        buf.extend_from_slice(b"] ");
        buf.extend_from_slice(rng.pick(loggers).as_bytes());
        buf.extend_from_slice(b" - ");
        sentence(rng, buf);
        buf.push(b'\n');
        if level < 2 {
            let frames = rng.range(4, 14) as usize;
            stack_trace(rng, buf, frames);
        }
    }
}

const PROJECT_KEYS: [&str; 20] = [
    "PLAT", "CORE", "WEB", "OPS", "DATA", "API", "MOB", "SEC", "INFRA", "SUP", "HR", "FIN", "MKT",
    "QA", "DOC", "SRCH", "PAY", "AUTH", "SYNC", "REP",
];

/// The key of project number `p`: `PLAT`, `CORE`, …, then `PLAT1`, `CORE1`, ….
pub fn project_key(p: u64) -> String {
    let base = PROJECT_KEYS[(p % 20) as usize];
    if p < 20 {
        base.to_string()
    } else {
        format!("{base}{}", p / 20)
    }
}

/// A person: display name and login, derived from the person's number alone.
pub struct Person {
    pub first: &'static str,
    pub last: &'static str,
    pub login: String,
}

pub fn person(n: u64) -> Person {
    let first = FIRST_NAMES[(n % 32) as usize];
    let last = LAST_NAMES[(n / 32 % 32) as usize];
    let mut login = format!("{first}.{last}").to_ascii_lowercase();
    if n >= 1024 {
        login.push_str(&(n / 1024).to_string());
    }
    Person { first, last, login }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_safe_ascii_for_xml_and_copy() {
        let mut rng = Rng::new(1);
        let mut buf = Vec::new();
        jira_markup(&mut rng, &mut buf, 4000);
        prose(&mut rng, &mut buf, 4000);
        assert!(buf.len() >= 8000);
        assert!(buf.iter().all(|&b| b.is_ascii()
            && !b"<&\"\\".contains(&b)
            && (b >= b' ' || b == b'\n' || b == b'\t')));
    }

    #[test]
    fn logins_are_unique_for_distinct_people() {
        let logins: std::collections::HashSet<String> =
            (0..5000).map(|n| person(n).login).collect();
        assert_eq!(logins.len(), 5000);
    }
}
