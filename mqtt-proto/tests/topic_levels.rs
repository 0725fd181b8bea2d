//! The level matchers other code builds on: `below` (a topic under a root, whole levels),
//! `matches_levels` with a caller's own exact levels, and `covers_levels` (a rule filter
//! covering a subscription filter), each against the plain `matches`.

use mqtt_proto::topic::{below, covers_levels, matches, matches_levels, FilterLevel};

fn levels(f: &str) -> Vec<FilterLevel<&str>> {
    f.split('/').map(FilterLevel::parse).collect()
}

#[test]
fn below_respects_level_boundaries() {
    assert_eq!(below("up/a/b", "up"), Some("/a/b"));
    assert_eq!(below("up", "up"), Some(""));
    assert_eq!(below("upper/a", "up"), None);
    assert_eq!(below("x/up", "up"), None);
}

#[test]
fn matches_levels_with_a_custom_equality_agrees_with_matches() {
    let filters = [
        "#", "+", "a/#", "a/+", "+/b", "a/b", "+/+/c", "$SYS/#", "+/#", "a",
    ];
    let topics = ["a", "a/b", "a/b/c", "x/b", "$SYS/x", "$SYS", "/", "a/"];
    for f in filters {
        for t in topics {
            let by_levels = matches_levels(levels(f), t, |l, tl| l == tl);
            assert_eq!(by_levels, matches(f, t), "{f} vs {t}");
        }
    }
    // The caller's equality decides exact levels (an ACL substitutes the client id).
    let who = "dev7";
    let rule = [FilterLevel::Exact("%c"), FilterLevel::MultiLevel];
    let eq = |l: &str, tl: &str| if l == "%c" { tl == who } else { l == tl };
    assert!(matches_levels(rule, "dev7/temp", eq));
    assert!(!matches_levels(rule, "dev8/temp", eq));
}

#[test]
fn a_rule_covers_a_filter_only_if_it_matches_everything_the_filter_can() {
    let cases = [
        ("#", "a/+/b", true),
        ("a/#", "a/#", true),
        ("a/#", "a", true),
        ("a/+", "a/b", true),
        ("a/+", "a/#", false),
        ("a/+", "a/+", true),
        ("a/b", "a/+", false),
        ("+/b", "a/b", true),
        ("a/b", "a/b/c", false),
        // [MQTT-4.7.2-1]: a rule starting with a wildcard covers no `$` filter.
        ("#", "$SYS/#", false),
        ("+/x", "$SYS/x", false),
        ("$SYS/#", "$SYS/broker/+", true),
        ("$SYS/broker/#", "$SYS/#", false),
    ];
    for (rule, filter, want) in cases {
        assert_eq!(
            covers_levels(levels(rule), filter, |l, fl| l == fl),
            want,
            "{rule} covers {filter}"
        );
    }
}
