//! Mosquitto password files: `username:$7$iterations$salt$hash` (PBKDF2-HMAC-SHA512, what
//! `mosquitto_passwd` 2.0 writes) and `username:$6$salt$hash` (Mosquitto's salted SHA-512,
//! the 1.6 default), reading them for the broker and writing lines for `petrel passwd`.
//!
//! The formats, checked against Mosquitto 2.0's `password_mosq.c` / `mosquitto_passwd.c`
//! and the installed `mosquitto_passwd`:
//! - `$7$`: `PBKDF2-HMAC-SHA512(password, salt, iterations)` with a 64-byte output; the salt
//!   is 12 random bytes (64 in Mosquitto 2.1, also accepted); default 101 iterations.
//! - `$6$`: `SHA-512(password || salt)`; not glibc's `sha512-crypt`, which shares the
//!   prefix but is a different algorithm.
//! - Salt and hash are standard base64 with padding.
//!
//! What it deliberately does not do: plain-text passwords (Mosquitto built with TLS drops
//! them too; `petrel passwd -U` hashes such a file) and `$argon2id$` (Mosquitto 2.1 only).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use super::AuthFileError;

/// Iterations `mosquitto_passwd` 2.0 uses for `$7$` unless told otherwise (`-I`).
pub const DEFAULT_ITERATIONS: u32 = 101;
/// Salt length `mosquitto_passwd` 2.0 writes.
pub const SALT_LEN: usize = 12;
/// Length of a SHA-512 digest, the stored hash in both formats.
pub const HASH_LEN: usize = 64;

/// Base64 as Mosquitto writes it (standard alphabet, padded); reading also accepts a
/// missing padding, as OpenSSL's decoder does.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The hash algorithms of a Mosquitto password file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    /// `$7$`: PBKDF2-HMAC-SHA512 (`-H sha512-pbkdf2`, the default since Mosquitto 2.0).
    Sha512Pbkdf2,
    /// `$6$`: one round of salted SHA-512 (`-H sha512`, Mosquitto 1.6 and earlier).
    Sha512,
}

impl HashKind {
    /// The name `mosquitto_passwd -H` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha512Pbkdf2 => "sha512-pbkdf2",
            Self::Sha512 => "sha512",
        }
    }

    /// Parses a `-H` argument.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha512-pbkdf2" => Some(Self::Sha512Pbkdf2),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }
}

/// Why an encoded password hash was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashError {
    /// Does not start with `$`: a plain-text password.
    PlainText,
    /// `$argon2id$`: written by Mosquitto 2.1 built with argon2.
    Argon2Unsupported,
    /// Some other `$id$`.
    UnknownKind,
    /// The right prefix but the fields are wrong; says which.
    Malformed(&'static str),
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PlainText => f.write_str(
                "the password is not hashed (plain text); hash the file with `petrel passwd -U FILE`",
            ),
            Self::Argon2Unsupported => f.write_str(
                "$argon2id$ hashes (Mosquitto 2.1) are not supported; \
                 re-create the password with -H sha512-pbkdf2",
            ),
            Self::UnknownKind => f.write_str(
                "unknown hash type (expected $7$ for sha512-pbkdf2 or $6$ for sha512)",
            ),
            Self::Malformed(what) => write!(f, "malformed password hash: {what}"),
        }
    }
}

impl std::error::Error for HashError {}

/// One stored password: algorithm, parameters, salt and digest.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    kind: HashKind,
    /// PBKDF2 iterations (unused for `$6$`).
    iterations: u32,
    salt: Box<[u8]>,
    hash: [u8; HASH_LEN],
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The digest is a secret of sorts (offline guessing): keep it out of logs.
        f.debug_struct("PasswordHash")
            .field("kind", &self.kind)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl PasswordHash {
    /// Parses `$7$iterations$salt$hash` or `$6$salt$hash`.
    pub fn parse(encoded: &str) -> Result<Self, HashError> {
        if !encoded.starts_with('$') {
            return Err(HashError::PlainText);
        }
        if let Some(rest) = encoded.strip_prefix("$7$") {
            let mut parts = rest.split('$');
            let (Some(iter_s), Some(salt_s), Some(hash_s), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(HashError::Malformed(
                    "expected $7$iterations$salt$hash (four '$'-separated fields)",
                ));
            };
            let iterations =
                iter_s
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or(HashError::Malformed(
                        "iterations must be a number of at least 1",
                    ))?;
            let salt = decode_salt(salt_s)?;
            let hash = decode_hash(hash_s)?;
            Ok(Self {
                kind: HashKind::Sha512Pbkdf2,
                iterations,
                salt,
                hash,
            })
        } else if let Some(rest) = encoded.strip_prefix("$6$") {
            let mut parts = rest.split('$');
            let (Some(salt_s), Some(hash_s), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(HashError::Malformed(
                    "expected $6$salt$hash (three '$'-separated fields)",
                ));
            };
            let salt = decode_salt(salt_s)?;
            let hash = decode_hash(hash_s)?;
            Ok(Self {
                kind: HashKind::Sha512,
                iterations: 0,
                salt,
                hash,
            })
        } else if encoded.starts_with("$argon2id$") {
            Err(HashError::Argon2Unsupported)
        } else {
            Err(HashError::UnknownKind)
        }
    }

    /// Hashes `password` with the given salt (deterministic; for tests and fixtures).
    /// `iterations` is clamped to at least 1 and ignored for `$6$`.
    pub fn with_salt(kind: HashKind, password: &[u8], iterations: u32, salt: &[u8]) -> Self {
        let iterations = match kind {
            HashKind::Sha512Pbkdf2 => iterations.max(1),
            HashKind::Sha512 => 0,
        };
        let hash = digest(kind, password, iterations, salt);
        Self {
            kind,
            iterations,
            salt: salt.into(),
            hash,
        }
    }

    /// Hashes `password` with a fresh random 12-byte salt, as `mosquitto_passwd` 2.0 does.
    pub fn generate(kind: HashKind, password: &[u8], iterations: u32) -> Result<Self, String> {
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|e| format!("no randomness for the salt: {e}"))?;
        Ok(Self::with_salt(kind, password, iterations, &salt))
    }

    /// Whether `password` is the one hashed here. The digests are compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        let computed = digest(self.kind, password, self.iterations, &self.salt);
        computed.ct_eq(&self.hash).into()
    }

    /// The algorithm.
    pub fn kind(&self) -> HashKind {
        self.kind
    }

    /// PBKDF2 iterations (0 for `$6$`).
    pub fn iterations(&self) -> u32 {
        self.iterations
    }
}

/// The encoded form, exactly as `mosquitto_passwd` writes it after `username:`.
impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let salt = B64.encode(&self.salt);
        let hash = B64.encode(self.hash);
        match self.kind {
            HashKind::Sha512Pbkdf2 => write!(f, "$7${}${salt}${hash}", self.iterations),
            HashKind::Sha512 => write!(f, "$6${salt}${hash}"),
        }
    }
}

fn decode_salt(s: &str) -> Result<Box<[u8]>, HashError> {
    let salt = B64
        .decode(s)
        .map_err(|_| HashError::Malformed("the salt is not valid base64"))?;
    // Mosquitto 2.0 writes 12 bytes, 2.1 writes 64; it refuses anything else.
    if salt.len() != SALT_LEN && salt.len() != HASH_LEN {
        return Err(HashError::Malformed("the salt must be 12 or 64 bytes"));
    }
    Ok(salt.into_boxed_slice())
}

fn decode_hash(s: &str) -> Result<[u8; HASH_LEN], HashError> {
    let bytes = B64
        .decode(s)
        .map_err(|_| HashError::Malformed("the hash is not valid base64"))?;
    bytes
        .try_into()
        .map_err(|_| HashError::Malformed("the hash must be 64 bytes (SHA-512)"))
}

fn digest(kind: HashKind, password: &[u8], iterations: u32, salt: &[u8]) -> [u8; HASH_LEN] {
    let mut out = [0u8; HASH_LEN];
    match kind {
        HashKind::Sha512Pbkdf2 => {
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations.max(1), &mut out);
        }
        HashKind::Sha512 => {
            let mut h = Sha512::new();
            h.update(password);
            h.update(salt);
            out.copy_from_slice(&h.finalize());
        }
    }
    out
}

/// Stands in for an unknown user so that "no such user" costs as much time as "wrong
/// password" and does not reveal which user names exist.
fn decoy() -> &'static PasswordHash {
    static DECOY: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        PasswordHash::with_salt(
            HashKind::Sha512Pbkdf2,
            b"petrel-decoy",
            DEFAULT_ITERATIONS,
            &[0x5a; SALT_LEN],
        )
    })
}

/// What one line of a password file holds, for readers that keep the lines (the
/// `petrel passwd` editor) as well as for the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// Blank, or a comment (`#` as the first non-blank character).
    Blank,
    /// `username:password`, both trimmed; the password is not decoded.
    Entry {
        /// User name.
        username: &'a str,
        /// Encoded password (or plain text in a file not yet hashed).
        password: &'a str,
    },
}

/// Splits one line (without its line ending) of a password file.
///
/// Mosquitto's reader (`pwfile__parse`) splits at ':' with `strtok`, trims blanks and
/// skips lines starting with '#'; this is the same, except that what Mosquitto silently
/// skips (a line without ':', an empty user or password, extra ':' fields) is an error.
pub fn split_line(line: &str) -> Result<Line<'_>, &'static str> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(Line::Blank);
    }
    let Some((user, rest)) = line.split_once(':') else {
        return Err("expected username:password_hash (no ':' on the line)");
    };
    let username = user.trim();
    let password = rest.trim();
    if username.is_empty() {
        return Err("the user name is empty");
    }
    if password.is_empty() {
        return Err("the password hash is empty");
    }
    if password.contains(':') {
        return Err("unexpected ':' after the password hash");
    }
    Ok(Line::Entry { username, password })
}

/// A loaded password file: user name to password hash.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    users: HashMap<Box<str>, PasswordHash>,
}

impl PasswordFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, AuthFileError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuthFileError::new(&origin, None, format!("cannot read: {e}")))?;
        Self::parse(&text, &origin)
    }

    /// Parses the text of a password file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, AuthFileError> {
        let mut users: HashMap<Box<str>, PasswordHash> = HashMap::new();
        let mut first_line: HashMap<Box<str>, usize> = HashMap::new();
        for (idx, raw) in text.lines().enumerate() {
            let lineno = idx + 1;
            let (username, password) = match split_line(raw) {
                Ok(Line::Blank) => continue,
                Ok(Line::Entry { username, password }) => (username, password),
                Err(msg) => return Err(AuthFileError::new(origin, Some(lineno), msg)),
            };
            let hash = PasswordHash::parse(password).map_err(|e| {
                AuthFileError::new(origin, Some(lineno), format!("user \"{username}\": {e}"))
            })?;
            if let Some(first) = first_line.get(username) {
                return Err(AuthFileError::new(
                    origin,
                    Some(lineno),
                    format!("user \"{username}\" is already defined at line {first}"),
                ));
            }
            first_line.insert(username.into(), lineno);
            users.insert(username.into(), hash);
        }
        Ok(Self { users })
    }

    /// Whether `username` exists and `password` is its password. An unknown user costs
    /// the same time as a wrong password.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        match self.users.get(username) {
            Some(hash) => hash.verify(password),
            None => {
                let _ = decoy().verify(password);
                false
            }
        }
    }

    /// Whether the file defines `username`.
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// The hash stored for `username`.
    pub fn get(&self, username: &str) -> Option<&PasswordHash> {
        self.users.get(username)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// No users at all.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by mosquitto_passwd 2.0.11: `-b` (alice/secret), `-H sha512` (bob/hunter2),
    // `-I 1000` (carol/"p:ss w$rd").
    const ALICE: &str = "$7$101$//UjD25wiJuUvVea$Pw4wOmqYt7/LTU1+sjMu10sSTsVn22DpqEk+mDYDq093cF9/HECwZqaOJtyrbAWZ0/ffYAhAzz78M9CatmD8Fw==";
    const BOB: &str = "$6$mgMGprQNDdc+Mr5C$hr/u5E49HlYeROPygTwfoTtikZ8YXDSSSl/WIdnLI210FbnmImhOSxKf8FSm8l+I17ektFX7sdHwcCUGQuIWGg==";
    const CAROL: &str = "$7$1000$9ttD78/YeXd+muip$bqPaOXU7fasYgqwJAddrtiNrMj0gpIKoBj99LqrP0c0fUvP5G55wbK2p/B52vNgDGULr9/iHDeYYhqhSylvV1w==";

    #[test]
    fn pbkdf2_hash_from_mosquitto_passwd_verifies() {
        let h = PasswordHash::parse(ALICE).expect("parses");
        assert_eq!(h.kind(), HashKind::Sha512Pbkdf2);
        assert_eq!(h.iterations(), 101);
        assert!(h.verify(b"secret"));
        assert!(!h.verify(b"secret "));
        assert!(!h.verify(b""));
    }

    #[test]
    fn sha512_hash_from_mosquitto_passwd_verifies() {
        let h = PasswordHash::parse(BOB).expect("parses");
        assert_eq!(h.kind(), HashKind::Sha512);
        assert!(h.verify(b"hunter2"));
        assert!(!h.verify(b"hunter3"));
    }

    #[test]
    fn pbkdf2_with_custom_iterations_and_special_characters_verifies() {
        let h = PasswordHash::parse(CAROL).expect("parses");
        assert_eq!(h.iterations(), 1000);
        assert!(h.verify(b"p:ss w$rd"));
        assert!(!h.verify(b"p:ss"));
    }

    #[test]
    fn encoding_with_the_same_salt_reproduces_mosquitto_passwd_output() {
        for (encoded, pw) in [(ALICE, "secret"), (BOB, "hunter2"), (CAROL, "p:ss w$rd")] {
            let parsed = PasswordHash::parse(encoded).expect("parses");
            let again = PasswordHash::with_salt(
                parsed.kind,
                pw.as_bytes(),
                parsed.iterations,
                &parsed.salt,
            );
            assert_eq!(again.to_string(), encoded);
        }
    }

    #[test]
    fn generated_hash_has_mosquitto_layout_and_verifies() {
        let h = PasswordHash::generate(HashKind::Sha512Pbkdf2, b"pw", DEFAULT_ITERATIONS)
            .expect("random");
        let s = h.to_string();
        let fields: Vec<&str> = s.split('$').collect();
        assert_eq!(fields[..3], ["", "7", "101"]);
        assert_eq!(fields[3].len(), 16, "12-byte salt is 16 base64 characters");
        assert_eq!(fields[4].len(), 88, "64-byte hash is 88 base64 characters");
        assert!(PasswordHash::parse(&s).expect("round trip").verify(b"pw"));
        let h6 = PasswordHash::generate(HashKind::Sha512, b"pw", 5).expect("random");
        assert!(h6.to_string().starts_with("$6$"));
        assert!(PasswordHash::parse(&h6.to_string())
            .expect("round trip")
            .verify(b"pw"));
    }

    #[test]
    fn two_generated_hashes_of_one_password_differ_by_salt() {
        let a = PasswordHash::generate(HashKind::Sha512Pbkdf2, b"pw", 101).expect("random");
        let b = PasswordHash::generate(HashKind::Sha512Pbkdf2, b"pw", 101).expect("random");
        assert_ne!(a.to_string(), b.to_string());
    }

    #[test]
    fn malformed_hashes_are_refused_with_a_reason() {
        assert_eq!(PasswordHash::parse("secret"), Err(HashError::PlainText));
        assert_eq!(
            PasswordHash::parse("$argon2id$v=19$m=47104,t=1,p=1$abc$def"),
            Err(HashError::Argon2Unsupported)
        );
        assert_eq!(
            PasswordHash::parse("$5$abc$def"),
            Err(HashError::UnknownKind)
        );
        assert!(matches!(
            PasswordHash::parse("$7$0$//UjD25wiJuUvVea$AAAA"),
            Err(HashError::Malformed(_))
        ));
        assert!(matches!(
            PasswordHash::parse("$7$101$!!!$AAAA"),
            Err(HashError::Malformed(_))
        ));
        // A hash of the wrong length.
        assert!(matches!(
            PasswordHash::parse("$6$mgMGprQNDdc+Mr5C$AAAA"),
            Err(HashError::Malformed(_))
        ));
        // A salt of the wrong length (3 bytes).
        assert!(matches!(
            PasswordHash::parse(&BOB.replace("mgMGprQNDdc+Mr5C", "AAAA")),
            Err(HashError::Malformed(_))
        ));
        // Extra field.
        assert!(matches!(
            PasswordHash::parse(&format!("{BOB}$x")),
            Err(HashError::Malformed(_))
        ));
    }

    #[test]
    fn file_with_comments_blank_lines_and_crlf_parses() {
        let text = format!("# users\n\nalice:{ALICE}\r\n  bob : {BOB}  \n");
        let f = PasswordFile::parse(&text, "pw").expect("parses");
        assert_eq!(f.len(), 2);
        assert!(f.verify("alice", b"secret"));
        assert!(f.verify("bob", b"hunter2"));
    }

    #[test]
    fn wrong_password_and_unknown_user_fail() {
        let f = PasswordFile::parse(&format!("alice:{ALICE}\n"), "pw").expect("parses");
        assert!(!f.verify("alice", b"wrong"));
        assert!(!f.verify("mallory", b"secret"));
        assert!(
            !f.verify("Alice", b"secret"),
            "user names are case sensitive"
        );
    }

    #[test]
    fn malformed_line_error_names_file_and_line() {
        let text = format!("alice:{ALICE}\n# ok\nbob\n");
        let e = PasswordFile::parse(&text, "passwd.txt").expect_err("line 3 has no ':'");
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().starts_with("passwd.txt:3: "), "{e}");
        let e = PasswordFile::parse("carol:plain\n", "p").expect_err("plain text");
        assert_eq!(e.line, Some(1));
        assert!(e.to_string().contains("carol"), "{e}");
        assert!(e.to_string().contains("plain text"), "{e}");
        let e = PasswordFile::parse(":$7$1$x$y\n", "p").expect_err("empty user");
        assert!(e.to_string().contains("user name is empty"), "{e}");
        let e = PasswordFile::parse("dave:\n", "p").expect_err("empty hash");
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[test]
    fn duplicate_user_is_an_error_naming_both_lines() {
        let text = format!("alice:{ALICE}\nbob:{BOB}\nalice:{CAROL}\n");
        let e = PasswordFile::parse(&text, "p").expect_err("duplicate");
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn hash_kind_names_match_mosquitto_passwd_h_option() {
        assert_eq!(
            HashKind::from_name("sha512-pbkdf2"),
            Some(HashKind::Sha512Pbkdf2)
        );
        assert_eq!(HashKind::from_name("sha512"), Some(HashKind::Sha512));
        assert_eq!(HashKind::from_name("argon2id"), None);
        assert_eq!(HashKind::Sha512.name(), "sha512");
    }

    #[test]
    fn debug_output_does_not_leak_the_digest() {
        let h = PasswordHash::parse(ALICE).expect("parses");
        let d = format!("{h:?}");
        assert!(!d.contains("Pw4wOm"), "{d}");
    }
}
