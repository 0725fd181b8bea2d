//! Mosquitto ACL files (`acl_file`): `user`, `topic` and `pattern` lines, checked the way
//! Mosquitto's default security (`security_default.c`) checks them.
//!
//! ```text
//! # topic lines before any `user` line apply to anonymous clients
//! topic read public/#
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret
//! # patterns apply to every client; %c is the client id, %u the user name
//! pattern readwrite devices/%c/#
//! ```
//!
//! The rules, as Mosquitto applies them:
//! - A client gets the `topic` rules of its user name's `user` block (anonymous clients:
//!   the lines before the first `user`), then the `pattern` rules. Nothing matching: denied.
//! - No access word means `readwrite`; `deny` refuses what a broader rule grants.
//! - A topic starting with `$` is only matched by a rule that starts with `$` too.
//! - `%c` / `%u` are substituted inside one topic level; a value holding `/` therefore
//!   never matches (it cannot pass for several levels). A client id or user name holding
//!   `+` or `#` gets no pattern grants at all (Mosquitto: "dangerous client id").
//!   A `%u` rule never matches a client without a user name.
//! - PUBLISH needs write access to the topic, delivery needs read access to the topic,
//!   SUBSCRIBE needs a read rule that covers the whole filter: rule `a/#` covers `a/b/+`,
//!   rule `a/+` does not cover `a/#`, rule `a/b` does not cover `a/+` (Mosquitto 2.1's
//!   `mosquitto_sub_matches_acl`).
//!
//! Where Petrel differs from Mosquitto 2.0, deliberately:
//! - Any matching `deny` (user or pattern) refuses. Mosquitto checks pattern denies only
//!   when no `topic` rule of the user granted access.
//! - SUBSCRIBE is checked (see above). Mosquitto 2.0 grants every subscription and only
//!   filters at delivery; a filter that no single read rule covers (say `a/#` with read
//!   rules `a/b` and `a/c`) is refused here.
//! - A client id with `/` cannot use a `%c` pattern; Mosquitto 2.0 substitutes it, so
//!   client `x/y` with `pattern readwrite p/%c/#` may write `p/x/y/...`, inside client
//!   `x`'s tree.
//! - Errors (unknown keyword, bad access word, invalid topic filter, missing topic) stop
//!   the load with the line number; Mosquitto 2.0 ignores unknown keywords.
//!
//! Checks allocate nothing: rules are split into levels at load time and matched against
//! the topic's levels as they are iterated.

use std::collections::HashMap;
use std::path::Path;

use mqtt_proto::topic::{self, Filter, FilterLevel, TopicError};

use super::AuthFileError;

const READ: u8 = 1;
const WRITE: u8 = 2;
/// `deny`: no access bit; matching rules refuse.
const DENY: u8 = 0;

/// One piece of a `pattern` level.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Box<str>),
    ClientId,
    Username,
}

/// A level of a rule that must equal the topic's: text, or a pattern level with `%c` /
/// `%u` in it. (`+` and `#` are the codec's `FilterLevel`s.)
#[derive(Debug, Clone, PartialEq, Eq)]
enum Exact {
    Literal(Box<str>),
    Template(Box<[Piece]>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: u8,
    /// The rule's text starts with `$` (see `applies`).
    dollar: bool,
    levels: Box<[FilterLevel<Exact>]>,
}

/// The rules of one user (or of anonymous clients, or the patterns): denies and grants
/// kept apart so that denies are checked first without scanning twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RuleSet {
    deny: Vec<Rule>,
    grant: Vec<Rule>,
}

impl RuleSet {
    fn push(&mut self, rule: Rule) {
        if rule.access == DENY {
            self.deny.push(rule);
        } else {
            self.grant.push(rule);
        }
    }

    fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.grant.is_empty()
    }
}

/// The client a check is about.
#[derive(Debug, Clone, Copy)]
struct Who<'a> {
    client_id: &'a str,
    username: Option<&'a str>,
}

/// What is being asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// PUBLISH to a topic name: write access, rule matches the topic.
    Publish,
    /// Delivery of a message on a topic name: read access, rule matches the topic.
    Receive,
    /// SUBSCRIBE to a filter: read access, rule covers the filter.
    Subscribe,
}

/// A loaded ACL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFile {
    anonymous: RuleSet,
    users: HashMap<Box<str>, RuleSet>,
    patterns: RuleSet,
}

impl AclFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, AuthFileError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuthFileError::new(&origin, None, format!("cannot read: {e}")))?;
        Self::parse(&text, &origin)
    }

    /// Parses the text of an ACL file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, AuthFileError> {
        let mut acl = Self::default();
        let mut user: Option<Box<str>> = None;
        for (idx, raw) in text.lines().enumerate() {
            let lineno = idx + 1;
            let err = |msg: String| AuthFileError::new(origin, Some(lineno), msg);
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(line);
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err("`user` needs a user name".into()));
                    }
                    // The rest of the line, as Mosquitto takes it: names may hold spaces.
                    user = Some(rest.into());
                    // A user block that stays empty still exists (its user gets no topic
                    // rules, only patterns), as in Mosquitto.
                }
                "topic" | "pattern" => {
                    let pattern = keyword == "pattern";
                    let (access, topic) = parse_access(rest).map_err(|m| err(m.to_string()))?;
                    let rule = parse_rule(access, topic, pattern).map_err(&err)?;
                    if pattern {
                        acl.patterns.push(rule);
                    } else {
                        match &user {
                            None => acl.anonymous.push(rule),
                            Some(u) => acl.users.entry(u.clone()).or_default().push(rule),
                        }
                    }
                }
                other => {
                    return Err(err(format!(
                        "unknown keyword \"{other}\" (expected `topic`, `pattern` or `user`)"
                    )))
                }
            }
        }
        Ok(acl)
    }

    /// May this client PUBLISH to `topic` (write access)?
    pub fn check_publish(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.check(
            Who {
                client_id,
                username,
            },
            topic,
            Op::Publish,
        )
    }

    /// May this client receive a message published on `topic` (read access)?
    pub fn check_receive(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.check(
            Who {
                client_id,
                username,
            },
            topic,
            Op::Receive,
        )
    }

    /// May this client SUBSCRIBE to `filter` (without any `$share/{group}/`)? Allowed when
    /// a read rule covers every topic the filter can match and no deny rule covers it.
    pub fn check_subscribe(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        self.check(
            Who {
                client_id,
                username,
            },
            filter,
            Op::Subscribe,
        )
    }

    /// Number of rules in the file (topic and pattern lines).
    pub fn rule_count(&self) -> usize {
        let count = |r: &RuleSet| r.deny.len() + r.grant.len();
        count(&self.anonymous)
            + count(&self.patterns)
            + self.users.values().map(count).sum::<usize>()
    }

    fn check(&self, who: Who<'_>, topic: &str, op: Op) -> bool {
        let own = match who.username {
            None => Some(&self.anonymous),
            Some(u) => self.users.get(u),
        };
        // Denies first, wherever they are.
        if let Some(rules) = own {
            if rules.deny.iter().any(|r| applies(r, who, topic, op)) {
                return false;
            }
        }
        if self
            .patterns
            .deny
            .iter()
            .any(|r| applies(r, who, topic, op))
        {
            return false;
        }
        let need = match op {
            Op::Publish => WRITE,
            Op::Receive | Op::Subscribe => READ,
        };
        if let Some(rules) = own {
            if rules
                .grant
                .iter()
                .any(|r| r.access & need != 0 && applies(r, who, topic, op))
            {
                return true;
            }
        }
        if self.patterns.is_empty() {
            return false;
        }
        // Mosquitto: "ACL denying access to client with dangerous client id / username".
        // Substituted into a level, such a value would pass for a wildcard.
        let dangerous = |s: &str| topic::has_wildcards(s);
        if dangerous(who.client_id) || who.username.is_some_and(dangerous) {
            return false;
        }
        self.patterns
            .grant
            .iter()
            .any(|r| r.access & need != 0 && applies(r, who, topic, op))
    }
}

/// Splits off the first blank-separated word.
fn split_word(s: &str) -> (&str, &str) {
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// `[read|write|readwrite|deny] <topic>` → (access, topic).
fn parse_access(rest: &str) -> Result<(u8, &str), &'static str> {
    if rest.is_empty() {
        return Err("missing topic");
    }
    let (word, after) = split_word(rest);
    let access = match word {
        "read" => Some(READ),
        "write" => Some(WRITE),
        "readwrite" => Some(READ | WRITE),
        "deny" => Some(DENY),
        _ => None,
    };
    match (access, after.is_empty()) {
        (Some(a), false) => Ok((a, after)),
        // Mosquitto would take `topic read` as readwrite on a topic named "read": almost
        // certainly a mistake.
        (Some(_), true) => Err("missing topic after the access type"),
        // One word and nothing else: the topic, read and write.
        (None, true) => Ok((READ | WRITE, word)),
        (None, false) => Err(
            "invalid access type (expected read, write, readwrite or deny; \
             a topic with spaces needs the access type before it)",
        ),
    }
}

fn parse_rule(access: u8, topic: &str, pattern: bool) -> Result<Rule, String> {
    let invalid = |e: TopicError| format!("invalid topic filter \"{topic}\": {e}");
    let f = Filter::parse(topic).map_err(invalid)?;
    if f.is_shared() {
        return Err(format!(
            "invalid topic \"{topic}\": ACL rules match the filter without $share/{{group}}/"
        ));
    }
    let levels = topic::filter_levels(topic)
        .map(|level| match level {
            FilterLevel::MultiLevel => FilterLevel::MultiLevel,
            FilterLevel::SingleLevel => FilterLevel::SingleLevel,
            FilterLevel::Exact(l) if pattern && (l.contains("%c") || l.contains("%u")) => {
                FilterLevel::Exact(Exact::Template(template(l)))
            }
            FilterLevel::Exact(l) => FilterLevel::Exact(Exact::Literal(l.into())),
        })
        .collect();
    Ok(Rule {
        access,
        dollar: topic.starts_with('$'),
        levels,
    })
}

/// Splits a pattern level into text, `%c` and `%u`.
fn template(level: &str) -> Box<[Piece]> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = level;
    while let Some(i) = rest.find('%') {
        let (before, at) = rest.split_at(i);
        text.push_str(before);
        let piece = if at.starts_with("%c") {
            Some(Piece::ClientId)
        } else if at.starts_with("%u") {
            Some(Piece::Username)
        } else {
            None
        };
        match piece {
            Some(p) => {
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text).into()));
                }
                pieces.push(p);
                rest = &at[2..];
            }
            None => {
                text.push('%');
                rest = &at[1..];
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text.into()));
    }
    pieces.into_boxed_slice()
}

/// Does a template level, with the client's values substituted, equal `level`? An empty
/// or absent value never matches.
fn template_matches(pieces: &[Piece], who: Who<'_>, level: &str) -> bool {
    let mut rest = level;
    for p in pieces {
        let s = match p {
            Piece::Text(t) => &**t,
            Piece::ClientId => who.client_id,
            Piece::Username => match who.username {
                Some(u) => u,
                None => return false,
            },
        };
        if s.is_empty() && !matches!(p, Piece::Text(_)) {
            return false;
        }
        match rest.strip_prefix(s) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// Matching is the codec's (`$` topics are not matched by a rule starting with a
/// wildcard, [MQTT-4.7.2-1] v3.1.1 and v5); a template level matches with the client's
/// values substituted.
fn applies(rule: &Rule, who: Who<'_>, topic: &str, op: Op) -> bool {
    // Mosquitto's ACL rule, stricter than [MQTT-4.7.2-1]: a `$` topic is only reached by
    // a rule written with a leading `$`, so that no `%c` or `%u` template (a client named
    // `$SYS`) opens one.
    if topic.starts_with('$') != rule.dollar {
        return false;
    }
    let levels = rule.levels.iter().map(FilterLevel::as_ref);
    let eq = |l: &Exact, text: &str| match l {
        Exact::Literal(l) => **l == *text,
        Exact::Template(p) => template_matches(p, who, text),
    };
    match op {
        Op::Publish | Op::Receive => topic::matches_levels(levels, topic, eq),
        // A subscription is allowed when the rule covers every topic the filter can match.
        Op::Subscribe => topic::covers_levels(levels, topic, eq),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(text: &str) -> AclFile {
        match AclFile::parse(text, "acl") {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        }
    }

    fn parse_err(text: &str) -> AuthFileError {
        match AclFile::parse(text, "acl") {
            Ok(a) => panic!("expected an error, got {a:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn topic_lines_before_any_user_apply_to_anonymous_clients_only() {
        let a = acl("topic read public/#\nuser alice\ntopic alice/#\n");
        assert!(a.check_receive("c", None, "public/x"));
        assert!(!a.check_publish("c", None, "public/x"), "read only");
        assert!(
            !a.check_receive("c", Some("alice"), "public/x"),
            "alice has her own rules"
        );
        assert!(a.check_publish("c", Some("alice"), "alice/x"));
        assert!(!a.check_publish("c", None, "alice/x"));
    }

    #[test]
    fn no_access_word_means_readwrite() {
        let a = acl("topic a/b\n");
        assert!(a.check_publish("c", None, "a/b"));
        assert!(a.check_receive("c", None, "a/b"));
        assert!(a.check_subscribe("c", None, "a/b"));
    }

    #[test]
    fn read_write_and_readwrite_grant_what_they_say() {
        let a = acl("user u\ntopic read r\ntopic write w\ntopic readwrite rw\n");
        let u = Some("u");
        assert!(a.check_receive("c", u, "r") && !a.check_publish("c", u, "r"));
        assert!(!a.check_receive("c", u, "w") && a.check_publish("c", u, "w"));
        assert!(a.check_receive("c", u, "rw") && a.check_publish("c", u, "rw"));
        assert!(!a.check_subscribe("c", u, "w"), "subscribing needs read");
    }

    #[test]
    fn unmatched_topics_and_unknown_users_are_denied() {
        let a = acl("user alice\ntopic alice/#\n");
        assert!(!a.check_publish("c", Some("alice"), "bob/x"));
        assert!(!a.check_publish("c", Some("bob"), "alice/x"));
        assert!(!a.check_receive("c", None, "alice/x"));
    }

    #[test]
    fn deny_takes_precedence_over_a_broader_grant_in_any_order() {
        let a = acl("user u\ntopic readwrite a/#\ntopic deny a/secret\n");
        assert!(a.check_publish("c", Some("u"), "a/open"));
        assert!(!a.check_publish("c", Some("u"), "a/secret"));
        assert!(!a.check_receive("c", Some("u"), "a/secret"));
        let b = acl("user u\ntopic deny a/secret\ntopic readwrite a/#\n");
        assert!(!b.check_publish("c", Some("u"), "a/secret"));
    }

    #[test]
    fn pattern_deny_overrides_a_user_topic_grant() {
        // Mosquitto 2.0 would let the user grant win; here any deny wins.
        let a = acl("user u\ntopic readwrite #\npattern deny private/%c/#\n");
        assert!(a.check_publish("me", Some("u"), "private/other/x"));
        assert!(!a.check_publish("me", Some("u"), "private/me/x"));
    }

    #[test]
    fn user_block_may_be_repeated_and_merges() {
        let a = acl("user u\ntopic a\nuser v\ntopic b\nuser u\ntopic c\n");
        assert!(a.check_publish("x", Some("u"), "a"));
        assert!(a.check_publish("x", Some("u"), "c"));
        assert!(!a.check_publish("x", Some("u"), "b"));
    }

    #[test]
    fn user_names_may_contain_spaces() {
        let a = acl("user  John Smith \ntopic js/#\n");
        assert!(a.check_publish("x", Some("John Smith"), "js/1"));
    }

    #[test]
    fn topics_with_spaces_need_an_access_word() {
        let a = acl("topic read my topic/#\n");
        assert!(a.check_receive("x", None, "my topic/a"));
        let e = parse_err("topic my topic\n");
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("access type"), "{e}");
    }

    #[test]
    fn patterns_substitute_client_id_and_username_and_apply_to_everyone() {
        let a = acl(
            "user alice\ntopic x\npattern readwrite devices/%c/#\npattern read users/%u/inbox\n",
        );
        assert!(a.check_publish("dev1", Some("alice"), "devices/dev1/temp"));
        assert!(a.check_publish("dev1", None, "devices/dev1"));
        assert!(!a.check_publish("dev1", Some("alice"), "devices/dev2/temp"));
        assert!(a.check_receive("c", Some("alice"), "users/alice/inbox"));
        assert!(!a.check_receive("c", Some("bob"), "users/alice/inbox"));
        assert!(
            !a.check_publish("c", Some("alice"), "users/alice/inbox"),
            "read only"
        );
    }

    #[test]
    fn username_pattern_never_matches_an_anonymous_client() {
        let a = acl("pattern read users/%u/#\n");
        assert!(!a.check_receive("c", None, "users//x"));
        assert!(!a.check_receive("c", None, "users/%u/x"));
        assert!(
            !a.check_receive("c", Some(""), "users//x"),
            "empty user name"
        );
    }

    #[test]
    fn substitution_inside_a_level_is_confined_to_that_level() {
        let a = acl("pattern readwrite q/dev-%c\npattern readwrite r/%c-%u/#\n");
        assert!(a.check_publish("x", None, "q/dev-x"));
        assert!(!a.check_publish("x", None, "q/dev-y"));
        assert!(!a.check_publish("x", None, "q/dev-%c"), "no literal %c");
        assert!(a.check_publish("x", Some("u"), "r/x-u/1"));
        assert!(!a.check_publish("x", Some("u"), "r/x-v/1"));
    }

    #[test]
    fn percent_c_in_a_topic_line_is_literal() {
        let a = acl("topic readwrite d/%c\n");
        assert!(a.check_publish("x", None, "d/%c"));
        assert!(!a.check_publish("x", None, "d/x"));
    }

    #[test]
    fn client_id_with_slash_cannot_enter_another_clients_tree() {
        // Mosquitto 2.0.11 allows client "x/y" to write p/x/y/1 here; it must not.
        let a = acl("pattern readwrite p/%c/#\n");
        assert!(a.check_publish("x", None, "p/x/y/1"));
        assert!(!a.check_publish("x/y", None, "p/x/y/1"));
        assert!(!a.check_subscribe("x/y", None, "p/x/y/#"));
        assert!(!a.check_subscribe("x/y", None, "p/x/#"));
    }

    #[test]
    fn client_id_or_username_with_wildcards_gets_no_pattern_access() {
        let a = acl(
            "pattern readwrite p/%c/#\npattern read public/#\nuser u\ntopic readwrite mine/#\n",
        );
        // "+" substituted would let the client subscribe to everyone's tree.
        assert!(!a.check_subscribe("+", None, "p/+/#"));
        assert!(!a.check_subscribe("#", None, "p/#"));
        assert!(
            !a.check_receive("a+b", None, "public/x"),
            "even patterns without %c"
        );
        assert!(!a.check_receive("ok", Some("u#"), "public/x"));
        assert!(a.check_receive("ok", None, "public/x"));
        // The user's own topic rules still apply (as in Mosquitto).
        assert!(a.check_publish("a+b", Some("u"), "mine/1"));
    }

    #[test]
    fn a_template_rule_never_opens_a_dollar_topic() {
        let a = acl("pattern readwrite %c/#\npattern readwrite %u/#\n");
        assert!(a.check_receive("dev", None, "dev/x"));
        assert!(!a.check_receive("$SYS", None, "$SYS/broker/uptime"));
        assert!(!a.check_subscribe("$SYS", None, "$SYS/#"));
        assert!(!a.check_publish("$aws", Some("$aws"), "$aws/things"));
    }

    #[test]
    fn dollar_topics_only_match_rules_starting_with_dollar() {
        let a = acl("topic read #\ntopic read +/x\ntopic read $SYS/broker/#\n");
        assert!(a.check_receive("c", None, "a/b"));
        assert!(!a.check_receive("c", None, "$SYS/x"));
        assert!(!a.check_receive("c", None, "$foo/x"));
        assert!(a.check_receive("c", None, "$SYS/broker/uptime"));
        assert!(a.check_subscribe("c", None, "$SYS/broker/#"));
        assert!(!a.check_subscribe("c", None, "$SYS/#"));
    }

    #[test]
    fn hash_rule_matches_its_parent_level() {
        let a = acl("topic a/#\n");
        assert!(a.check_publish("c", None, "a"));
        assert!(a.check_publish("c", None, "a/b/c"));
        assert!(!a.check_publish("c", None, "ab"));
        assert!(a.check_subscribe("c", None, "a"));
    }

    #[test]
    fn plus_rule_matches_exactly_one_level_including_empty() {
        let a = acl("topic a/+\n");
        assert!(a.check_publish("c", None, "a/b"));
        assert!(a.check_publish("c", None, "a/"));
        assert!(!a.check_publish("c", None, "a"));
        assert!(!a.check_publish("c", None, "a/b/c"));
    }

    #[test]
    fn subscribe_is_allowed_only_when_a_read_rule_covers_the_filter() {
        let a = acl("topic read a/#\ntopic read b/+\ntopic read c/d\ntopic read e/+/f/#\n");
        let sub = |f| a.check_subscribe("c", None, f);
        assert!(sub("a/#"));
        assert!(sub("a/b/+"));
        assert!(sub("a/+/#"));
        assert!(sub("b/+"));
        assert!(sub("b/x"));
        assert!(!sub("b/#"), "ACL a/+ does not allow subscribing a/#");
        assert!(!sub("b/+/x"));
        assert!(sub("c/d"));
        assert!(!sub("c/+"));
        assert!(!sub("#"));
        assert!(!sub("+/d"));
        assert!(sub("e/x/f"));
        assert!(sub("e/+/f/#"));
        assert!(!sub("e/#"));
    }

    #[test]
    fn subscribe_is_refused_when_a_deny_rule_covers_the_filter() {
        let a = acl("topic read a/#\ntopic deny a/secret/#\n");
        assert!(!a.check_subscribe("c", None, "a/secret/#"));
        assert!(!a.check_subscribe("c", None, "a/secret/x"));
        // Overlapping but not covered: allowed, and delivery filters.
        assert!(a.check_subscribe("c", None, "a/#"));
        assert!(!a.check_receive("c", None, "a/secret/x"));
        assert!(a.check_receive("c", None, "a/open"));
    }

    #[test]
    fn subscribe_with_pattern_rules_substitutes_values() {
        let a = acl("pattern read devices/%c/#\n");
        assert!(a.check_subscribe("d1", None, "devices/d1/#"));
        assert!(a.check_subscribe("d1", None, "devices/d1/+/state"));
        assert!(!a.check_subscribe("d1", None, "devices/+/#"));
        assert!(!a.check_subscribe("d1", None, "devices/#"));
    }

    #[test]
    fn comments_blank_lines_and_indentation_are_ignored() {
        let a = acl("# comment\n\n   \n  # indented comment\n\ttopic read a\r\n");
        assert!(a.check_receive("c", None, "a"));
        assert_eq!(a.rule_count(), 1);
    }

    #[test]
    fn empty_file_denies_everything() {
        let a = acl("");
        assert!(!a.check_publish("c", None, "a"));
        assert!(!a.check_subscribe("c", Some("u"), "a"));
    }

    #[test]
    fn parse_errors_carry_the_line_number() {
        let e = parse_err("topic a\nuser\n");
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().starts_with("acl:2: "), "{e}");
        let e = parse_err("topic a\n\ntopic reed a/b\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("invalid access type"), "{e}");
        let e = parse_err("topics a\n");
        assert!(e.message.contains("unknown keyword \"topics\""), "{e}");
        let e = parse_err("topic read\n");
        assert!(e.message.contains("missing topic"), "{e}");
        let e = parse_err("topic\n");
        assert!(e.message.contains("missing topic"), "{e}");
        let e = parse_err("pattern read a/#/b\n");
        assert!(e.message.contains("invalid topic filter"), "{e}");
        let e = parse_err("topic read a/b+\n");
        assert!(e.message.contains("invalid topic filter"), "{e}");
        let e = parse_err("topic read $share/g/a\n");
        assert!(e.message.contains("$share"), "{e}");
    }

    #[test]
    fn template_splitting_keeps_other_percent_signs_literal() {
        assert_eq!(
            &*template("a%%c%x%u"),
            &[
                Piece::Text("a%".into()),
                Piece::ClientId,
                Piece::Text("%x".into()),
                Piece::Username
            ]
        );
        let a = acl("pattern readwrite p/100%-%c\n");
        assert!(a.check_publish("z", None, "p/100%-z"));
    }
}
