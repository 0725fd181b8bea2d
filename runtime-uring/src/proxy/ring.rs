//! The consistent-hashing ring and the weighted round-robin schedule.
//!
//! The ring is keyed by node name (`host:port`), never by a node's position in a list, so
//! the same set of nodes gives the same ring whatever order an administrator lists them
//! in. Each node owns `POINTS_PER_WEIGHT * weight` points (weights reduced by their
//! greatest common divisor first, so `{1,1,1}` and `{100,100,100}` are the same ring). A
//! key belongs to the first point at or after its hash, clockwise. Consequences that the
//! tests check: removing a node hands only that node's keys to the others; adding one
//! takes about `weight / total` of the keys, all of them to the new node.
//!
//! The hash is defined here (FNV-1a 64 with MurmurHash3's 64-bit finalizer) rather than
//! taken from `std`, whose hasher may change between releases: the ring must place a
//! client on the same node after a proxy upgrade or restart.

/// Points on the ring per unit of (reduced) weight: enough that three equal nodes get
/// their third of the keys within a few percent.
pub const POINTS_PER_WEIGHT: u32 = 160;
/// Upper bound on the points of one ring (bounded memory and build time whatever the
/// weights; weights are scaled down proportionally past it).
pub const MAX_POINTS: u64 = 1 << 20;

/// A stable 64-bit hash of `data`.
pub fn hash64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fmix64(h)
}

/// MurmurHash3's finalizer: spreads FNV's weak low bits over the whole word.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Weights divided by their greatest common divisor (zero weights stay zero).
fn reduce(weights: &[u32]) -> Vec<u64> {
    let g = weights
        .iter()
        .filter(|&&w| w > 0)
        .fold(0u64, |g, &w| gcd(u64::from(w), g))
        .max(1);
    weights.iter().map(|&w| u64::from(w) / g).collect()
}

/// A consistent-hashing ring over nodes `0..n` (indices into the caller's node list).
#[derive(Debug, Clone, Default)]
pub struct Ring {
    /// (point, node index), sorted by point then node name.
    points: Vec<(u64, u32)>,
    nodes: usize,
}

impl Ring {
    /// Builds the ring of `nodes` given as (name, weight); weight 0 takes no keys.
    pub fn new(nodes: &[(&str, u32)]) -> Ring {
        let weights: Vec<u32> = nodes.iter().map(|n| n.1).collect();
        let reduced = reduce(&weights);
        let total: u64 = reduced.iter().sum::<u64>() * u64::from(POINTS_PER_WEIGHT);
        // Past MAX_POINTS, scale every node down by the same factor (at least one point
        // each, so no positive weight disappears).
        let scale = |w: u64| -> u64 {
            let p = w * u64::from(POINTS_PER_WEIGHT);
            if total <= MAX_POINTS || p == 0 {
                p
            } else {
                (p * MAX_POINTS / total).max(1)
            }
        };
        let mut points = Vec::new();
        let mut key = Vec::with_capacity(64);
        for (i, ((name, _), &w)) in nodes.iter().zip(&reduced).enumerate() {
            for p in 0..scale(w) {
                key.clear();
                key.extend_from_slice(name.as_bytes());
                key.push(b'#');
                key.extend_from_slice(p.to_string().as_bytes());
                points.push((hash64(&key), i as u32));
            }
        }
        // Ties (two names hashing to one point) are broken by name, not by list order.
        points.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                let na = nodes.get(a.1 as usize).map(|n| n.0);
                let nb = nodes.get(b.1 as usize).map(|n| n.0);
                na.cmp(&nb)
            })
        });
        Ring {
            points,
            nodes: nodes.len(),
        }
    }

    /// True when no node has a positive weight.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The nodes in the order a key tries them: its owner first, then each next distinct
    /// node clockwise (the owner's successors when it is down).
    pub fn walk(&self, key: &[u8]) -> RingWalk<'_> {
        let h = hash64(key);
        let start = self.points.partition_point(|p| p.0 < h);
        RingWalk {
            ring: self,
            start,
            step: 0,
            seen: vec![false; self.nodes],
        }
    }
}

/// Iterator of [`Ring::walk`].
#[derive(Debug)]
pub struct RingWalk<'a> {
    ring: &'a Ring,
    start: usize,
    step: usize,
    seen: Vec<bool>,
}

impl Iterator for RingWalk<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        let n = self.ring.points.len();
        while self.step < n {
            let i = (self.start + self.step) % n;
            self.step += 1;
            let node = self.ring.points.get(i)?.1 as usize;
            if let Some(seen) = self.seen.get_mut(node) {
                if !*seen {
                    *seen = true;
                    return Some(node);
                }
            }
        }
        None
    }
}

/// Smooth weighted round robin (nginx's): a fixed schedule of node indices in which each
/// node appears in proportion to its weight, spread out rather than in runs.
pub fn weighted_schedule(weights: &[u32]) -> Vec<u32> {
    let mut reduced = reduce(weights);
    let total: u64 = reduced.iter().sum();
    // Keep the schedule short: scale big weight sums down to about 1000 slots.
    if total > 1000 {
        for w in &mut reduced {
            if *w > 0 {
                *w = (*w * 1000 / total).max(1);
            }
        }
    }
    let total: i64 = reduced.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; reduced.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best: Option<usize> = None;
        for (i, &w) in reduced.iter().enumerate() {
            if w == 0 {
                continue;
            }
            current[i] += w as i64;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let Some(b) = best else { break };
        current[b] -= total;
        out.push(b as u32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(ring: &Ring, names: &[&str], keys: usize) -> Vec<String> {
        (0..keys)
            .map(|k| {
                let i = ring.walk(format!("client-{k}").as_bytes()).next().unwrap();
                names[i].to_owned()
            })
            .collect()
    }

    #[test]
    fn hash_is_stable() {
        // Part of the contract: a restart or upgrade must not move clients.
        assert_eq!(hash64(b""), fmix64(0xcbf2_9ce4_8422_2325));
        assert_eq!(hash64(b"client-1"), hash64(b"client-1"));
        assert_ne!(hash64(b"client-1"), hash64(b"client-2"));
    }

    #[test]
    fn order_of_nodes_does_not_matter() {
        let a = Ring::new(&[("a:1", 1), ("b:1", 1), ("c:1", 1)]);
        let b = Ring::new(&[("c:1", 1), ("a:1", 1), ("b:1", 1)]);
        let na = ["a:1", "b:1", "c:1"];
        let nb = ["c:1", "a:1", "b:1"];
        assert_eq!(owners(&a, &na, 2000), owners(&b, &nb, 2000));
    }

    #[test]
    fn equal_weights_share_evenly_and_scale_free() {
        let names = ["10.0.0.1:1883", "10.0.0.2:1883", "10.0.0.3:1883"];
        let ring = Ring::new(&[(names[0], 1), (names[1], 1), (names[2], 1)]);
        let o = owners(&ring, &names, 30_000);
        for n in names {
            let share = o.iter().filter(|x| *x == n).count() as f64 / 30_000.0;
            assert!((0.25..0.42).contains(&share), "{n}: {share}");
        }
        let ring100 = Ring::new(&[(names[0], 100), (names[1], 100), (names[2], 100)]);
        assert_eq!(o, owners(&ring100, &names, 30_000));
    }

    #[test]
    fn weights_are_honoured() {
        let names = ["a:1", "b:1"];
        let ring = Ring::new(&[(names[0], 3), (names[1], 1)]);
        let o = owners(&ring, &names, 40_000);
        let share = o.iter().filter(|x| *x == "a:1").count() as f64 / 40_000.0;
        assert!((0.68..0.82).contains(&share), "{share}");
        let zero = Ring::new(&[(names[0], 1), (names[1], 0)]);
        assert!(owners(&zero, &names, 1000).iter().all(|x| x == "a:1"));
        assert!(Ring::new(&[("a:1", 0)]).is_empty());
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let all = ["a:1", "b:1", "c:1", "d:1"];
        let four = Ring::new(&all.map(|n| (n, 1)));
        let three = Ring::new(&[("a:1", 1), ("b:1", 1), ("c:1", 1)]);
        let before = owners(&four, &all, 20_000);
        let after = owners(&three, &all[..3], 20_000);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                assert_eq!(b, "d:1", "a key of {b} moved to {a}");
                moved += 1;
            }
        }
        // Adding d back takes about a quarter.
        let frac = moved as f64 / 20_000.0;
        assert!((0.18..0.32).contains(&frac), "{frac}");
    }

    #[test]
    fn walk_visits_every_node_once() {
        let ring = Ring::new(&[("a:1", 1), ("b:1", 2), ("c:1", 1)]);
        let mut v: Vec<usize> = ring.walk(b"x").collect();
        v.sort_unstable();
        assert_eq!(v, [0, 1, 2]);
        assert_eq!(Ring::default().walk(b"x").next(), None);
    }

    #[test]
    fn smooth_weighted_schedule() {
        assert_eq!(weighted_schedule(&[1, 1, 1]), [0, 1, 2]);
        let s = weighted_schedule(&[5, 1, 1]);
        assert_eq!(s.len(), 7);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 5);
        // Spread out: never more than 3 of node 0 in a row for 5:1:1 (nginx gives a a b a c a a).
        assert_eq!(s, [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(weighted_schedule(&[200, 200]), [0, 1]);
        assert_eq!(weighted_schedule(&[0, 2]), [1]);
        assert!(weighted_schedule(&[0]).is_empty());
        assert!(weighted_schedule(&[100_000, 1]).len() <= 1001);
    }
}
