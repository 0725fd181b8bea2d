//! Topic names and topic filters (4.7): validation, shared subscriptions (4.8.2) and
//! matching. The broker's topic index walks the same levels with the same rules.

use core::fmt;

/// Longest topic in bytes: a UTF-8 string field holds at most 65,535 bytes ([MQTT-4.7.3-3]).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// The prefix of a shared subscription filter.
pub const SHARE_PREFIX: &str = "$share/";

/// Why a topic name or filter is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TopicError {
    /// Zero length ([MQTT-4.7.3-1]).
    Empty,
    /// Longer than 65,535 bytes ([MQTT-4.7.3-3]).
    TooLong,
    /// Contains U+0000 ([MQTT-4.7.3-2]).
    NullCharacter,
    /// A topic name containing `+` or `#` ([MQTT-4.7.0-1]).
    WildcardInName,
    /// `#` not alone in the last level ([MQTT-4.7.1-1]) or `+` not alone in its level
    /// ([MQTT-4.7.1-2]).
    MisplacedWildcard,
    /// `$share/` with an empty share name or one containing `/`, `+` or `#` ([MQTT-4.8.2-2]).
    InvalidShareName,
    /// `$share/{name}` without a filter after it ([MQTT-4.8.2-1]).
    MissingSharedFilter,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "topic is empty",
            Self::TooLong => "topic is longer than 65535 bytes",
            Self::NullCharacter => "topic contains U+0000",
            Self::WildcardInName => "topic name contains a wildcard",
            Self::MisplacedWildcard => "wildcard must occupy a whole level ('#' only the last)",
            Self::InvalidShareName => "invalid share name in $share/ filter",
            Self::MissingSharedFilter => "$share/ filter has no topic filter after the share name",
        })
    }
}

impl core::error::Error for TopicError {}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if s.as_bytes().contains(&0) {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// Validates a topic name as used in PUBLISH: non-empty, no wildcards.
pub fn validate_name(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    // One pass for U+0000 and wildcards (this runs on every PUBLISH encoded).
    let f = crate::wire::scan(s.as_bytes());
    if f & crate::wire::HAS_NUL != 0 {
        return Err(TopicError::NullCharacter);
    }
    if f & crate::wire::HAS_WILDCARD != 0 {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Validates a plain (non-shared) topic filter's wildcard placement.
fn validate_plain_filter(s: &str) -> Result<(), TopicError> {
    check_common(s)?;
    let mut levels = s.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        match level {
            "#" if last => {}
            "+" => {}
            // [MQTT-4.7.1-1] '#' alone and last; [MQTT-4.7.1-2] '+' alone in its level.
            l if l.bytes().any(|b| b == b'+' || b == b'#') => {
                return Err(TopicError::MisplacedWildcard)
            }
            _ => {}
        }
    }
    Ok(())
}

/// A validated topic filter, split into its share name (for `$share/{name}/{filter}`) and
/// the filter that is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Filter<'a> {
    /// The share name of a shared subscription.
    pub share_name: Option<&'a str>,
    /// The filter matched against topic names.
    pub filter: &'a str,
}

impl<'a> Filter<'a> {
    /// Validates `s` as a topic filter, parsing the `$share/` form (4.8.2).
    pub fn parse(s: &'a str) -> Result<Self, TopicError> {
        check_common(s)?;
        if let Some(rest) = s.strip_prefix(SHARE_PREFIX) {
            let (name, filter) = rest
                .split_once('/')
                .ok_or(TopicError::MissingSharedFilter)?;
            if name.is_empty() || name.bytes().any(|b| b == b'+' || b == b'#') {
                return Err(TopicError::InvalidShareName);
            }
            if filter.is_empty() {
                return Err(TopicError::MissingSharedFilter);
            }
            validate_plain_filter(filter)?;
            return Ok(Self {
                share_name: Some(name),
                filter,
            });
        }
        // "$share" alone (or "$share/" with nothing) names no group.
        if s == "$share" {
            return Err(TopicError::MissingSharedFilter);
        }
        validate_plain_filter(s)?;
        Ok(Self {
            share_name: None,
            filter: s,
        })
    }

    /// True for a shared subscription.
    pub fn is_shared(&self) -> bool {
        self.share_name.is_some()
    }
}

/// Validates a topic filter (including the `$share/` form).
pub fn validate_filter(s: &str) -> Result<(), TopicError> {
    Filter::parse(s).map(|_| ())
}

/// True if the filter contains `+` or `#`.
pub fn has_wildcards(filter: &str) -> bool {
    filter.bytes().any(|b| b == b'+' || b == b'#')
}

/// The part of `topic` below `root`: `Some("")` for the root itself, `Some("/...")` for a
/// topic under it, `None` otherwise. Whole levels only: `a/bc` is not under `a/b`.
pub fn below<'t>(topic: &'t str, root: &str) -> Option<&'t str> {
    let rest = topic.strip_prefix(root)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// One level of a topic filter as the matchers below read it. `T` is however the caller
/// holds a level that must equal the topic's: text, or (in an ACL) a pattern that depends
/// on the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FilterLevel<T> {
    /// `#`: the parent level and any number of child levels.
    MultiLevel,
    /// `+`: exactly one level.
    SingleLevel,
    /// A level the topic's must equal.
    Exact(T),
}

impl<T> FilterLevel<T> {
    /// Borrows the exact level.
    pub fn as_ref(&self) -> FilterLevel<&T> {
        match self {
            Self::MultiLevel => FilterLevel::MultiLevel,
            Self::SingleLevel => FilterLevel::SingleLevel,
            Self::Exact(t) => FilterLevel::Exact(t),
        }
    }

    fn is_wildcard(&self) -> bool {
        !matches!(self, Self::Exact(_))
    }
}

impl<'a> FilterLevel<&'a str> {
    /// Reads one level of a validated filter.
    pub fn parse(level: &'a str) -> Self {
        match level {
            "#" => Self::MultiLevel,
            "+" => Self::SingleLevel,
            l => Self::Exact(l),
        }
    }
}

/// The levels of a validated filter.
pub fn filter_levels(filter: &str) -> impl Iterator<Item = FilterLevel<&str>> {
    filter.split('/').map(FilterLevel::parse)
}

/// Does `filter` (validated, not shared) match `topic` (a validated name)?
///
/// `+` matches one level, `#` the parent level and any number of child levels
/// ([MQTT-4.7.1-2] v3.1.1 and v5); a topic starting with `$` is not matched by a filter
/// starting with a wildcard ([MQTT-4.7.2-1] v3.1.1 and v5).
pub fn matches(filter: &str, topic: &str) -> bool {
    matches_levels(filter_levels(filter), topic, |f, t| f == t)
}

/// [`matches`] over filter levels the caller holds its own way: `eq(level, topic_level)`
/// says whether an exact level equals the topic's.
pub fn matches_levels<T>(
    filter: impl IntoIterator<Item = FilterLevel<T>>,
    topic: &str,
    mut eq: impl FnMut(T, &str) -> bool,
) -> bool {
    let dollar = topic.starts_with('$');
    let mut t = topic.split('/');
    for (i, level) in filter.into_iter().enumerate() {
        match (level, t.next()) {
            (l, _) if i == 0 && dollar && l.is_wildcard() => return false,
            (FilterLevel::MultiLevel, _) => return true,
            (_, None) => return false,
            (FilterLevel::SingleLevel, Some(_)) => {}
            (FilterLevel::Exact(l), Some(tl)) => {
                if !eq(l, tl) {
                    return false;
                }
            }
        }
    }
    t.next().is_none()
}

/// Does every topic that `filter` (validated, not shared) can match also match `rule`?
/// Level by level: `#` in the rule covers the rest; `+` covers any level but `#`; an exact
/// level covers only an equal one. A rule starting with a wildcard covers no filter
/// starting with `$` ([MQTT-4.7.2-1] v3.1.1 and v5).
pub fn covers_levels<T>(
    rule: impl IntoIterator<Item = FilterLevel<T>>,
    filter: &str,
    mut eq: impl FnMut(T, &str) -> bool,
) -> bool {
    let dollar = filter.starts_with('$');
    let mut f = filter_levels(filter);
    for (i, level) in rule.into_iter().enumerate() {
        match (level, f.next()) {
            (l, _) if i == 0 && dollar && l.is_wildcard() => return false,
            (FilterLevel::MultiLevel, _) => return true,
            (_, None | Some(FilterLevel::MultiLevel)) => return false,
            (FilterLevel::SingleLevel, Some(_)) => {}
            (_, Some(FilterLevel::SingleLevel)) => return false,
            (FilterLevel::Exact(l), Some(FilterLevel::Exact(fl))) => {
                if !eq(l, fl) {
                    return false;
                }
            }
        }
    }
    f.next().is_none()
}
