//! Held routes of other nodes' lives (`cluster/held.rs`): a life that has ended (its
//! node is gone, or runs with a new lease) has its filters routed to `keep_slot`, whose
//! messages are kept in the cluster's stream for the sessions that hold them.

use super::Node;

impl Node {
    /// `held/<node>/<life>/<filter>` appeared (`put`) or vanished.
    pub(super) fn held_changed(&mut self, rest: &str, put: bool) {
        let Some((node, life, filter)) = crate::cluster::held::parse(rest) else {
            return;
        };
        let ended = self.lives.get(node) != Some(&life);
        let id = (node.to_owned(), life);
        let changed = if put {
            self.held.entry(id).or_default().insert(filter.into())
        } else {
            let Some(set) = self.held.get_mut(&id) else {
                return;
            };
            let removed = set.remove(filter);
            if set.is_empty() {
                self.held.remove(&id);
            }
            removed
        };
        if changed && ended {
            self.keep(filter, put);
        }
    }

    /// `node`'s live life is now `life` (None: it is gone): the held routes of lives that
    /// ended start to be kept, those of the live one stop.
    pub(super) fn life_changed(&mut self, node: &str, life: Option<i64>) {
        let before = match life {
            Some(l) => self.lives.insert(node.to_owned(), l),
            None => self.lives.remove(node),
        };
        if before == life {
            return;
        }
        let mut flips: Vec<(Box<str>, bool)> = Vec::new();
        for ((n, l), filters) in &self.held {
            if n != node {
                continue;
            }
            let (was, is) = (before != Some(*l), life != Some(*l));
            if was != is {
                flips.extend(filters.iter().map(|f| (f.clone(), is)));
            }
        }
        for (f, add) in flips {
            self.keep(&f, add);
        }
    }

    /// One more (or one less) ended life holds `filter`.
    fn keep(&mut self, filter: &str, add: bool) {
        let n = self.kept.entry(filter.into()).or_insert(0);
        let before = *n;
        if add {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
        }
        let after = *n;
        if after == 0 {
            self.kept.remove(filter);
        }
        if (before == 0) != (after == 0) {
            self.route_changed(self.keep_slot, filter, add);
        }
    }
}
