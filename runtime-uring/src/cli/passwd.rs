//! `petrel passwd`: manages Mosquitto password files the way `mosquitto_passwd` does, so
//! that the files work with both brokers.
//!
//! ```text
//! petrel passwd [-H sha512-pbkdf2|sha512] [-I iterations] [-c | -D] passwordfile username
//! petrel passwd [-H sha512-pbkdf2|sha512] [-I iterations] [-c] -b passwordfile username password
//! petrel passwd [-H sha512-pbkdf2|sha512] [-I iterations] -U passwordfile
//! ```
//!
//! Like `mosquitto_passwd` 2.0: `$7$` (PBKDF2-SHA512, 101 iterations, random 12-byte salt)
//! by default; without `-b` the password is asked twice (without echo on a terminal; one
//! line each from a pipe). Unlike it: the file is replaced atomically (temporary file and
//! rename) with mode 0600, keeping its owner; comment and blank lines are kept (the broker
//! skips them; `mosquitto_passwd` calls them corrupt); `-U` leaves already hashed lines
//! alone (`mosquitto_passwd` would hash the hash); an empty user name is refused.
//!
//! What it deliberately does not do: `$argon2id$` (Mosquitto 2.1) or plain-text files.

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::auth::passwd::{split_line, HashKind, Line, PasswordHash, DEFAULT_ITERATIONS};

/// Help text, as printed by `petrel passwd -h`.
pub const USAGE: &str = "\
petrel passwd manages password files for petrel and mosquitto.

Usage: petrel passwd [-H sha512-pbkdf2 | -H sha512] [-I iterations] [-c | -D] passwordfile username
       petrel passwd [-H sha512-pbkdf2 | -H sha512] [-I iterations] [-c] -b passwordfile username password
       petrel passwd [-H sha512-pbkdf2 | -H sha512] [-I iterations] -U passwordfile
 -b : batch mode: the password is the last argument (visible to other users in ps).
 -c : create a new password file, replacing any existing one.
 -D : delete the user rather than adding or changing its password.
 -H : hash: sha512-pbkdf2 ($7$, the default and recommended) or sha512 ($6$, Mosquitto 1.6).
 -I : PBKDF2 iterations (default 101, as mosquitto_passwd).
 -U : hash every plain-text password of a file.
Without -b the password is asked twice.";

/// Longest user name or password MQTT can carry.
const MAX_LEN: usize = 65_535;

/// Runs `petrel passwd` with `args`: the arguments after `passwd` (not the program name).
/// Prompts on the terminal (or reads standard input) when a password is needed. `Err`
/// holds the message to print (without an "Error:" prefix); exit with status 1 then.
///
/// To embed it in a clap CLI: `Passwd { #[arg(trailing_var_arg = true,
/// allow_hyphen_values = true)] args: Vec<OsString> }` and call `run(&args)`.
pub fn run(args: &[OsString]) -> Result<(), String> {
    run_with_prompt(args, &mut read_password)
}

/// [`run`], asking for passwords through `prompt` (given the prompt text, returns the
/// line typed, without its line ending).
pub fn run_with_prompt(
    args: &[OsString],
    prompt: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<(), String> {
    let Some(cmd) = parse_args(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    match cmd.mode {
        Mode::Update => {
            let text = read_existing(&cmd.file)?;
            let out = hash_plain_text(&text, cmd.kind, cmd.iterations)?;
            write_file(&cmd.file, &out)
        }
        Mode::Delete => {
            let user = cmd.username.as_deref().unwrap_or_default();
            let text = read_existing(&cmd.file)?;
            let out = delete_user(&text, user)?;
            write_file(&cmd.file, &out)
        }
        Mode::Set { create } => {
            let user = cmd.username.as_deref().unwrap_or_default();
            let password: Vec<u8> = match cmd.password {
                Some(p) => p,
                None => ask_twice(prompt)?.into_bytes(),
            };
            check_password(&password)?;
            let hash = PasswordHash::generate(cmd.kind, &password, cmd.iterations)?;
            let line = format!("{user}:{hash}\n");
            if create {
                write_file(&cmd.file, &line)
            } else {
                let text = read_existing(&cmd.file)?;
                write_file(&cmd.file, &set_user(&text, user, &line)?)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Add or change a user (`create`: start a new file).
    Set { create: bool },
    /// `-D`
    Delete,
    /// `-U`
    Update,
}

#[derive(Debug)]
struct Command {
    mode: Mode,
    kind: HashKind,
    iterations: u32,
    file: PathBuf,
    username: Option<String>,
    password: Option<Vec<u8>>,
}

/// `Ok(None)`: help was asked for.
fn parse_args(args: &[OsString]) -> Result<Option<Command>, String> {
    let usage = |msg: &str| format!("{msg}\n\n{USAGE}");
    if args.is_empty() {
        return Err(usage("missing arguments"));
    }
    let (mut batch, mut create, mut delete, mut update) = (false, false, false, false);
    let mut kind = HashKind::Sha512Pbkdf2;
    let mut iterations = DEFAULT_ITERATIONS;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        let a = arg.to_str().unwrap_or("");
        match a {
            "-h" | "--help" => return Ok(None),
            "-b" => batch = true,
            "-c" => create = true,
            "-D" => delete = true,
            "-U" => update = true,
            "-H" => {
                i += 1;
                let v = args
                    .get(i)
                    .ok_or("-H needs a hash type (sha512-pbkdf2 or sha512)")?;
                let v = v.to_string_lossy();
                kind = HashKind::from_name(&v).ok_or_else(|| {
                    format!("unknown hash type '{v}' (expected sha512-pbkdf2 or sha512)")
                })?;
            }
            "-I" => {
                i += 1;
                let v = args.get(i).ok_or("-I needs a number of iterations")?;
                iterations = v
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                    .filter(|n| *n > 0)
                    .ok_or("the number of iterations must be a whole number greater than 0")?;
            }
            "--" => {
                i += 1;
                break;
            }
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(usage(&format!("unknown option {s}")));
            }
            _ => break,
        }
        i += 1;
    }
    let rest = &args[i..];
    for (a, b, both) in [
        (create, delete, "-c and -D"),
        (create, update, "-c and -U"),
        (delete, update, "-D and -U"),
        (delete, batch, "-b and -D"),
        (update, batch, "-b and -U"),
    ] {
        if a && b {
            return Err(format!("{both} cannot be used together"));
        }
    }
    let (mode, want) = if update {
        (Mode::Update, 1)
    } else if delete {
        (Mode::Delete, 2)
    } else {
        (Mode::Set { create }, if batch { 3 } else { 2 })
    };
    if rest.len() != want {
        let what = match want {
            1 => "expected: passwordfile",
            2 => "expected: passwordfile username",
            _ => "expected: passwordfile username password",
        };
        return Err(usage(&format!("{} argument(s) given, {what}", rest.len())));
    }
    let file = PathBuf::from(&rest[0]);
    let username = match rest.get(1) {
        Some(u) => {
            let u = u
                .to_str()
                .ok_or("the user name must be valid UTF-8 (MQTT user names are)")?;
            check_username(u)?;
            Some(u.to_owned())
        }
        None => None,
    };
    let password = rest.get(2).map(|p| p.as_bytes().to_vec());
    Ok(Some(Command {
        mode,
        kind,
        iterations,
        file,
        username,
        password,
    }))
}

pub(crate) fn check_username(u: &str) -> Result<(), String> {
    if u.is_empty() {
        return Err("the user name must not be empty".into());
    }
    if u.len() > MAX_LEN {
        return Err("the user name must be less than 65536 bytes long".into());
    }
    if u.chars().any(char::is_control) {
        return Err("the user name must not contain control characters".into());
    }
    if u.contains(':') {
        return Err("the user name must not contain the ':' character".into());
    }
    if u.trim() != u {
        // The file format trims blanks around the name: it would not match at CONNECT.
        return Err("the user name must not start or end with blanks".into());
    }
    Ok(())
}

pub(crate) fn check_password(p: &[u8]) -> Result<(), String> {
    if p.is_empty() {
        return Err("empty password".into());
    }
    if p.len() > MAX_LEN {
        return Err("the password must be less than 65536 bytes long".into());
    }
    Ok(())
}

fn ask_twice(prompt: &mut dyn FnMut(&str) -> Result<String, String>) -> Result<String, String> {
    let first = prompt("Password: ")?;
    if first.is_empty() {
        return Err("empty password".into());
    }
    let second = prompt("Reenter password: ")?;
    if first != second {
        return Err("passwords do not match".into());
    }
    Ok(first)
}

/// Reads a password: without echo from a terminal, or one line from standard input.
fn read_password(prompt: &str) -> Result<String, String> {
    let stdin = std::io::stdin();
    let mut line = String::new();
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let n = if stdin.is_terminal() {
        let echo = EchoOff::new(libc::STDIN_FILENO)?;
        let r = stdin.lock().read_line(&mut line);
        drop(echo);
        eprintln!();
        r
    } else {
        stdin.lock().read_line(&mut line)
    }
    .map_err(|e| format!("cannot read the password: {e}"))?;
    if n == 0 {
        return Err("no password given (end of input)".into());
    }
    let trimmed = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    Ok(trimmed.to_owned())
}

/// Terminal echo switched off until dropped.
struct EchoOff {
    fd: libc::c_int,
    saved: libc::termios,
}

impl EchoOff {
    fn new(fd: libc::c_int) -> Result<Self, String> {
        let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: `t` is valid for writes of a termios; tcgetattr fills it on success and
        // we only read it then.
        if unsafe { libc::tcgetattr(fd, t.as_mut_ptr()) } != 0 {
            return Err(format!(
                "cannot read the terminal settings: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: initialized by the successful tcgetattr above.
        let saved = unsafe { t.assume_init() };
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: `fd` is a terminal (tcgetattr succeeded) and `quiet` a valid termios
        // derived from its current settings.
        if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(format!(
                "cannot switch terminal echo off: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Self { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read from the same terminal in `new`.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSAFLUSH, &self.saved);
        }
    }
}

pub(crate) fn read_existing(path: &Path) -> Result<String, String> {
    fs::read_to_string(path)
        .map_err(|e| format!("unable to open password file {}: {e}", path.display()))
}

/// The file's lines with their line endings, each with what it holds.
fn entries(text: &str) -> impl Iterator<Item = (usize, &str, Result<Line<'_>, String>)> {
    text.split_inclusive('\n').enumerate().map(|(i, raw)| {
        let content = raw.strip_suffix('\n').unwrap_or(raw);
        let parsed = split_line(content)
            .map_err(|m| format!("corrupt password file at line {}: {m}", i + 1));
        (i + 1, raw, parsed)
    })
}

fn push_line(out: &mut String, line: &str) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
}

/// Replaces `user`'s line with `new_line` (dropping any further lines for the same user),
/// or appends it; every other line stays as it was.
pub(crate) fn set_user(text: &str, user: &str, new_line: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len() + new_line.len());
    let mut done = false;
    for (_, raw, parsed) in entries(text) {
        match parsed? {
            Line::Entry { username, .. } if username == user => {
                if !done {
                    push_line(&mut out, new_line);
                    done = true;
                }
            }
            _ => out.push_str(raw),
        }
    }
    if !done {
        push_line(&mut out, new_line);
    }
    Ok(out)
}

/// Removes `user`'s line(s).
pub(crate) fn delete_user(text: &str, user: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    for (_, raw, parsed) in entries(text) {
        match parsed? {
            Line::Entry { username, .. } if username == user => found = true,
            _ => out.push_str(raw),
        }
    }
    if found {
        Ok(out)
    } else {
        Err(format!("user {user} not found in password file"))
    }
}

/// `-U`: hashes plain-text passwords, keeps hashed ones.
fn hash_plain_text(text: &str, kind: HashKind, iterations: u32) -> Result<String, String> {
    let mut out = String::with_capacity(text.len() * 4);
    for (lineno, raw, parsed) in entries(text) {
        match parsed? {
            Line::Entry { username, password } if !password.starts_with('$') => {
                check_username(username).map_err(|m| format!("line {lineno}: {m}"))?;
                let hash = PasswordHash::generate(kind, password.as_bytes(), iterations)?;
                push_line(&mut out, &format!("{username}:{hash}\n"));
            }
            _ => out.push_str(raw),
        }
    }
    Ok(out)
}

/// Replaces `path` atomically with `contents`, mode 0600, keeping the owner of an existing
/// file (and writing through a symbolic link to its target).
pub(crate) fn write_file(path: &Path, contents: &str) -> Result<(), String> {
    let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .ok_or_else(|| format!("{} is not a file name", path.display()))?;
    let owner = fs::metadata(&target).ok().map(|m| (m.uid(), m.gid()));
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).map_err(|e| format!("no randomness: {e}"))?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{suffix}"));
    let tmp = dir.join(tmp_name);
    let fail = |what: &str, e: std::io::Error| {
        let _ = fs::remove_file(&tmp);
        format!(
            "unable to write password file {}: {what}: {e}",
            path.display()
        )
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("unable to write password file {}: {e}", path.display()))?;
    if let Some((uid, gid)) = owner {
        // Only root can give a file away; anyone else already owns what they replace.
        let _ = std::os::unix::fs::fchown(&f, Some(uid), Some(gid));
    }
    f.write_all(contents.as_bytes())
        .map_err(|e| fail("write", e))?;
    f.sync_all().map_err(|e| fail("sync", e))?;
    drop(f);
    fs::rename(&tmp, &target).map_err(|e| fail("rename", e))?;
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::passwd::PasswordFile;
    use std::os::unix::fs::PermissionsExt;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn no_prompt(_: &str) -> Result<String, String> {
        Err("unexpected prompt".into())
    }

    fn run_batch(a: &[&str]) -> Result<(), String> {
        run_with_prompt(&args(a), &mut no_prompt)
    }

    #[test]
    fn create_writes_a_7_line_with_101_iterations_and_mode_0600() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("pw");
        let fs_ = f.to_str().expect("utf8");
        run_batch(&["-c", "-b", fs_, "alice", "secret"]).expect("runs");
        let text = fs::read_to_string(&f).expect("read");
        assert!(text.starts_with("alice:$7$101$"), "{text}");
        assert_eq!(text.lines().count(), 1);
        let mode = fs::metadata(&f).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(PasswordFile::load(&f)
            .expect("parses")
            .verify("alice", b"secret"));
    }

    #[test]
    fn sha512_and_iterations_options_are_honoured() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("pw");
        let fs_ = f.to_str().expect("utf8");
        run_batch(&["-c", "-H", "sha512", "-b", fs_, "bob", "pw"]).expect("runs");
        run_batch(&["-I", "1000", "-b", fs_, "carol", "pw2"]).expect("runs");
        let text = fs::read_to_string(&f).expect("read");
        assert!(text.starts_with("bob:$6$"), "{text}");
        assert!(text.contains("\ncarol:$7$1000$"), "{text}");
        let pf = PasswordFile::load(&f).expect("parses");
        assert!(pf.verify("bob", b"pw") && pf.verify("carol", b"pw2"));
    }

    #[test]
    fn update_replaces_one_user_and_keeps_every_other_line() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("pw");
        let fs_ = f.to_str().expect("utf8");
        run_batch(&["-c", "-b", fs_, "alice", "one"]).expect("runs");
        run_batch(&["-b", fs_, "bob", "two"]).expect("runs");
        let mut text = fs::read_to_string(&f).expect("read");
        text.insert_str(0, "# managed by hand\n\n");
        fs::write(&f, &text).expect("write");
        let bob_line = text
            .lines()
            .find(|l| l.starts_with("bob:"))
            .expect("bob")
            .to_owned();
        run_batch(&["-b", fs_, "alice", "three"]).expect("runs");
        let after = fs::read_to_string(&f).expect("read");
        let lines: Vec<&str> = after.lines().collect();
        assert_eq!(lines[0], "# managed by hand");
        assert_eq!(lines[1], "");
        assert!(lines[2].starts_with("alice:$7$"));
        assert_eq!(lines[3], bob_line);
        let pf = PasswordFile::load(&f).expect("parses");
        assert!(pf.verify("alice", b"three") && !pf.verify("alice", b"one"));
        assert!(pf.verify("bob", b"two"));
    }

    #[test]
    fn delete_removes_the_user_and_unknown_user_is_an_error() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("pw");
        let fs_ = f.to_str().expect("utf8");
        run_batch(&["-c", "-b", fs_, "alice", "one"]).expect("runs");
        run_batch(&["-b", fs_, "bob", "two"]).expect("runs");
        run_batch(&["-D", fs_, "alice"]).expect("runs");
        let pf = PasswordFile::load(&f).expect("parses");
        assert!(!pf.contains("alice") && pf.contains("bob"));
        let e = run_batch(&["-D", fs_, "alice"]).expect_err("gone");
        assert!(e.contains("not found"), "{e}");
    }

    #[test]
    fn interactive_mode_asks_twice_and_checks_the_answers() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("pw");
        let fs_ = f.to_str().expect("utf8");
        let mut asked = Vec::new();
        let mut answers = vec!["s3cret".to_owned(), "s3cret".to_owned()].into_iter();
        run_with_prompt(&args(&["-c", fs_, "alice"]), &mut |p| {
            asked.push(p.to_owned());
            answers.next().ok_or_else(|| "eof".to_owned())
        })
        .expect("runs");
        assert_eq!(asked, ["Password: ", "Reenter password: "]);
        assert!(PasswordFile::load(&f)
            .expect("parses")
            .verify("alice", b"s3cret"));

        let mut answers = vec!["a".to_owned(), "b".to_owned()].into_iter();
        let e = run_with_prompt(&args(&[fs_, "bob"]), &mut |_| {
            answers.next().ok_or_else(|| "eof".to_owned())
        })
        .expect_err("mismatch");
        assert!(e.contains("do not match"), "{e}");
        let e =
            run_with_prompt(&args(&[fs_, "bob"]), &mut |_| Ok(String::new())).expect_err("empty");
        assert!(e.contains("empty password"), "{e}");
        assert!(!PasswordFile::load(&f).expect("parses").contains("bob"));
    }

    #[test]
    fn update_option_hashes_plain_text_and_keeps_hashes() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("pw");
        let fs_ = f.to_str().expect("utf8");
        run_batch(&["-c", "-b", fs_, "alice", "one"]).expect("runs");
        let alice = fs::read_to_string(&f).expect("read");
        fs::write(&f, format!("{alice}# plain\nbob:two\n")).expect("write");
        run_batch(&["-U", fs_]).expect("runs");
        let after = fs::read_to_string(&f).expect("read");
        assert!(after.starts_with(&alice), "hashed line kept byte for byte");
        let pf = PasswordFile::load(&f).expect("parses");
        assert!(pf.verify("alice", b"one") && pf.verify("bob", b"two"));
    }

    #[test]
    fn corrupt_file_is_not_rewritten() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("pw");
        fs::write(&f, "alice:$7$x\nnocolon\n").expect("write");
        let e = run_batch(&["-b", f.to_str().expect("utf8"), "bob", "x"]).expect_err("corrupt");
        assert!(e.contains("line 2"), "{e}");
        assert_eq!(
            fs::read_to_string(&f).expect("read"),
            "alice:$7$x\nnocolon\n"
        );
    }

    #[test]
    fn missing_file_without_create_is_an_error() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("absent");
        let e = run_batch(&["-b", f.to_str().expect("utf8"), "a", "b"]).expect_err("missing");
        assert!(e.contains("unable to open password file"), "{e}");
    }

    #[test]
    fn bad_arguments_are_refused_like_mosquitto_passwd() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "missing arguments"),
            (&["-c", "-D", "f", "u"], "-c and -D cannot be used together"),
            (&["-D", "-b", "f", "u"], "-b and -D cannot be used together"),
            (&["-c", "-U", "f"], "-c and -U cannot be used together"),
            (&["-H", "md5", "f", "u"], "unknown hash type"),
            (&["-I", "0", "f", "u"], "greater than 0"),
            (&["-I"], "-I needs"),
            (&["-x", "f", "u"], "unknown option -x"),
            (
                &["-b", "f", "u"],
                "expected: passwordfile username password",
            ),
            (&["f"], "expected: passwordfile username"),
            (&["-b", "f", "a:b", "p"], "':'"),
            (&["-b", "f", "", "p"], "must not be empty"),
            (&["-b", "f", "a\u{7}", "p"], "control characters"),
            (&["-b", "f", " a", "p"], "blanks"),
            (&["-b", "f", "a", ""], "empty password"),
        ];
        for (a, needle) in cases {
            let e = run_batch(a).expect_err("refused");
            assert!(e.contains(needle), "{a:?}: {e}");
        }
    }

    #[test]
    fn help_is_not_an_error() {
        assert_eq!(run_batch(&["-h"]), Ok(()));
    }

    #[test]
    fn edits_preserve_missing_final_newline_and_crlf() {
        let out = set_user("a:$7$x\r\nb:$6$y", "c", "c:$7$z\n").expect("ok");
        assert_eq!(out, "a:$7$x\r\nb:$6$y\nc:$7$z\n");
        let out = set_user("a:1\na:2\nb:3\n", "a", "a:$7$n\n").expect("ok");
        assert_eq!(out, "a:$7$n\nb:3\n", "duplicates collapse into one line");
        let out = delete_user("a:1\nb:2\n", "b").expect("ok");
        assert_eq!(out, "a:1\n");
    }
}
