//! The topic index against the naive matcher (`mqtt_proto::topic::matches`): random filters
//! are inserted and removed, and every topic must find exactly the filters that match it,
//! each once, including `$` topics and empty levels.
#![allow(clippy::unwrap_used)]

use broker_core::index::TopicIndex;
use mqtt_proto::topic::matches;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("".to_string()),
        Just("$s".to_string()),
        Just("cc".to_string()),
    ]
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..5).prop_map(|v| v.join("/"))
}

fn filter() -> impl Strategy<Value = String> {
    let lvl = prop_oneof![3 => level(), 1 => Just("+".to_string())];
    (prop::collection::vec(lvl, 1..5), any::<bool>()).prop_map(|(mut v, hash)| {
        if hash {
            v.push("#".into());
        }
        v.join("/")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn index_matches_like_the_naive_matcher(
        ops in prop::collection::vec((filter(), any::<bool>()), 1..40),
        topics in prop::collection::vec(topic(), 1..20),
    ) {
        let mut idx: TopicIndex<usize> = TopicIndex::new(7);
        // filter -> entry ids present
        let mut model: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, (f, add)) in ops.iter().enumerate() {
            if *add || !model.contains_key(f) {
                idx.insert(f, i);
                model.entry(f.clone()).or_default().push(i);
            } else {
                let n = idx.remove_where(f, |_| true);
                prop_assert_eq!(n, model.remove(f).map_or(0, |v| v.len()));
            }
        }
        prop_assert_eq!(idx.filter_count(), model.len());
        // Exact and wildcard filters alike: entries by filter, and the filter listing.
        for (f, v) in &model {
            let mut got = idx.get(f).to_vec();
            got.sort_unstable();
            prop_assert_eq!(&got, v, "filter {:?}", f);
        }
        let mut listed = BTreeMap::new();
        idx.for_each_filter(|f, e| {
            let mut e = e.to_vec();
            e.sort_unstable();
            listed.insert(f.to_string(), e);
        });
        prop_assert_eq!(&listed, &model);
        for t in &topics {
            let mut got = Vec::new();
            idx.for_each_match(t, |&e| got.push(e));
            got.sort_unstable();
            let mut want: Vec<usize> = model
                .iter()
                .filter(|(f, _)| matches(f, t))
                .flat_map(|(_, v)| v.iter().copied())
                .collect();
            want.sort_unstable();
            prop_assert_eq!(got, want, "topic {:?}", t);
        }
    }
}
