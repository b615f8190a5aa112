use std::net::Ipv6Addr;
use std::ops::RangeInclusive;

use super::*;
use crate::proxy::health::Status;

/// Generated cases per property; each case's number is its generator's seed, so a failure names how to replay it.
const CASES: u64 = 500;

const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

/// xorshift64*: a small generator whose whole sequence is fixed by its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // Spread consecutive seeds apart; the state must not be zero.
        Rng(seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn within(&mut self, range: RangeInclusive<u64>) -> u64 {
        range.start() + self.next() % (range.end() - range.start() + 1)
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }

    /// 1 to 10 targets' weights from 0 to 100, often small, sometimes 0.
    fn weights(&mut self) -> Vec<i64> {
        let count = self.within(1..=10);
        let max = if self.one_in(2) { 10 } else { 100 };
        (0..count).map(|_| if self.one_in(8) { 0 } else { self.within(1..=max) as i64 }).collect()
    }

    fn client(&mut self) -> IpAddr {
        let bits = self.next();
        if self.one_in(4) {
            IpAddr::V6(Ipv6Addr::from(u128::from(bits) << 64 | u128::from(self.next())))
        } else {
            IpAddr::V4((bits as u32).into())
        }
    }
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8], 8080))
}

/// A rule's balancer over targets `addr(0)`, `addr(1)`… with these weights, all taking traffic and idle.
fn balancer(scheduler: Scheduler, weights: &[i64]) -> Balancer {
    let targets = weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| Backend { addr: addr(i), weight, state: Arc::default(), token: token("loc-1", addr(i)) })
        .collect();
    Balancer { scheduler, persistence: None, targets, current: Mutex::new(vec![0; weights.len()]) }
}

impl Balancer {
    /// The index of the target the scheduler picks for `client`, leaving out `tried`.
    fn pick_index(&self, client: IpAddr, cookie: Option<&str>, tried: &[SocketAddr]) -> Option<usize> {
        let backend = self.pick(client, cookie, tried)?;
        Some(self.targets.iter().position(|t| t.addr == backend.addr).expect("a picked target is one of the rule's"))
    }

    /// The indices of the targets `count` requests from one client go to.
    fn picks(&self, count: i64, tried: &[SocketAddr]) -> Vec<usize> {
        (0..count).map(|_| self.pick_index(CLIENT, None, tried).expect("a target takes traffic")).collect()
    }

    fn active(&self) -> Vec<usize> {
        self.targets.iter().map(|t| t.state.active.load(Ordering::Relaxed)).collect()
    }

    fn set_active(&self, active: &[usize]) {
        for (target, &n) in self.targets.iter().zip(active) {
            target.state.active.store(n, Ordering::Relaxed);
        }
    }
}

fn times_picked(picks: &[usize], target: usize) -> i64 {
    picks.iter().filter(|&&p| p == target).count() as i64
}

// === Smooth weighted round robin ===

#[test]
fn smooth_wrr_spreads_weights_5_1_1_as_nginx_does() {
    let balancer = balancer(Scheduler::WeightedRoundRobin, &[5, 1, 1]);
    let names: String = balancer.picks(14, &[]).into_iter().map(|i| char::from(b'a' + i as u8)).collect();
    assert_eq!(names, "aabacaa".repeat(2));
}

#[test]
fn smooth_wrr_gives_each_target_exactly_its_weight_in_every_cycle_and_weight_0_nothing() {
    for case in 0..CASES {
        let mut rng = Rng::new(case);
        let weights = rng.weights();
        let balancer = balancer(Scheduler::WeightedRoundRobin, &weights);
        let cycle: i64 = weights.iter().sum();
        if cycle == 0 {
            assert_eq!(balancer.pick_index(CLIENT, None, &[]), None, "case {case}: weights {weights:?}");
            continue;
        }
        let first = balancer.picks(cycle, &[]);
        for (target, &weight) in weights.iter().enumerate() {
            assert_eq!(times_picked(&first, target), weight, "case {case}: weights {weights:?}, target {target}");
        }
        // The rotation starts over after a cycle, so any run of `cycle` picks in a row is exact too.
        assert_eq!(balancer.picks(cycle, &[]), first, "case {case}: weights {weights:?}");
    }
}

/// nginx's "no burst": the heaviest target's picks are spread among the others' rather than sent in one run. Precisely:
/// a target is picked twice in a row only when its weight is above every other target's.
#[test]
fn smooth_wrr_picks_a_target_twice_in_a_row_only_when_it_outweighs_every_other() {
    for (case, _, weights, cycle) in weighted_cases() {
        let balancer = balancer(Scheduler::WeightedRoundRobin, &weights);
        // Two cycles, so that the seam between them is looked at too.
        let picks = balancer.picks(2 * cycle, &[]);
        for (at, pair) in picks.windows(2).enumerate() {
            let target = pair[0];
            if pair[1] != target {
                continue;
            }
            let outweighs = weights.iter().enumerate().all(|(other, &w)| other == target || w < weights[target]);
            assert!(outweighs, "case {case}: weights {weights:?}, target {target} picked at {at} and {}", at + 1);
        }
    }
}

#[test]
fn smooth_wrr_skips_unhealthy_and_tried_targets_as_if_they_were_not_registered() {
    for case in 0..CASES {
        let mut rng = Rng::new(case);
        let weights = rng.weights();
        let balancer = balancer(Scheduler::WeightedRoundRobin, &weights);
        let (mut tried, mut left) = (Vec::new(), Vec::new());
        for (i, target) in balancer.targets.iter().enumerate() {
            match rng.within(0..=3) {
                0 => target.state.set(Status::Unhealthy),
                1 => tried.push(target.addr),
                _ => left.push(i),
            }
        }
        let left_weights: Vec<i64> = left.iter().map(|&i| weights[i]).collect();
        let cycle: i64 = left_weights.iter().sum();
        if cycle == 0 {
            assert_eq!(balancer.pick_index(CLIENT, None, &tried), None, "case {case}: weights {weights:?}");
            continue;
        }
        let without = self::balancer(Scheduler::WeightedRoundRobin, &left_weights);
        let expected: Vec<usize> = without.picks(2 * cycle, &[]).into_iter().map(|j| left[j]).collect();
        assert_eq!(balancer.picks(2 * cycle, &tried), expected, "case {case}: weights {weights:?}, left {left:?}");
    }
}

/// A target that turns unhealthy keeps the share of the rotation it had built up; the others' picks make up for it
/// and then follow their own weights exactly. (Within one cycle of the old weights: checked exhaustively for up to 4
/// targets of weights up to 8, where it takes at most 0.62 of a cycle.)
#[test]
fn smooth_wrr_settles_to_the_others_exact_weights_after_a_target_drops_out() {
    for (case, mut rng, weights, cycle) in weighted_cases() {
        let balancer = balancer(Scheduler::WeightedRoundRobin, &weights);
        balancer.picks(rng.within(0..=cycle as u64 - 1) as i64, &[]);
        let heavy: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0).collect();
        let out = heavy[rng.within(0..=heavy.len() as u64 - 1) as usize];
        balancer.targets[out].state.set(Status::Unhealthy);
        let left_cycle = cycle - weights[out];
        if left_cycle == 0 {
            assert_eq!(balancer.pick_index(CLIENT, None, &[]), None, "case {case}: weights {weights:?}");
            continue;
        }
        balancer.picks(cycle, &[]);
        let settled = balancer.picks(2 * left_cycle, &[]);
        let (first, second) = settled.split_at(left_cycle as usize);
        for (target, &weight) in weights.iter().enumerate() {
            let weight = if target == out { 0 } else { weight };
            assert_eq!(times_picked(first, target), weight, "case {case}: weights {weights:?}, {out} out, {target}");
        }
        assert_eq!(first, second, "case {case}: weights {weights:?}, {out} out");
    }
}

// === Least connections ===

#[test]
fn least_conn_picks_the_fewest_requests_in_flight_relative_to_weight() {
    let balancer = balancer(Scheduler::LeastConnections, &[1, 2, 4]);
    balancer.set_active(&[1, 1, 3]);
    assert_eq!(balancer.pick_index(CLIENT, None, &[]), Some(1), "1/2 is below 1/1 and 3/4");
    balancer.set_active(&[1, 3, 3]);
    assert_eq!(balancer.pick_index(CLIENT, None, &[]), Some(2), "3/4 is below 1/1 and 3/2");
    balancer.set_active(&[0, 5, 9]);
    assert_eq!(balancer.pick_index(CLIENT, None, &[]), Some(0));
}

#[test]
fn least_conn_gives_a_tie_to_the_target_registered_first_whatever_its_weight() {
    let balancer = balancer(Scheduler::LeastConnections, &[1, 10, 10]);
    assert_eq!(balancer.pick_index(CLIENT, None, &[]), Some(0), "idle targets all tie at 0");
    balancer.set_active(&[1, 10, 10]);
    assert_eq!(balancer.pick_index(CLIENT, None, &[]), Some(0), "1/1 ties with 10/10");
    balancer.set_active(&[2, 10, 10]);
    assert_eq!(balancer.pick_index(CLIENT, None, &[]), Some(1));
    assert_eq!(balancer.pick_index(CLIENT, None, &[addr(1)]), Some(2), "a tried target is left out");
}

#[test]
fn least_conn_always_picks_the_first_target_with_the_least_load() {
    for case in 0..CASES {
        let mut rng = Rng::new(case);
        let weights = rng.weights();
        let balancer = balancer(Scheduler::LeastConnections, &weights);
        let initial: Vec<usize> = weights.iter().map(|_| rng.within(0..=20) as usize).collect();
        balancer.set_active(&initial);
        for target in &balancer.targets {
            if rng.one_in(5) {
                target.state.set(Status::Unhealthy);
            }
        }
        let eligible = |i: usize| weights[i] > 0 && balancer.targets[i].state.takes_traffic();
        let mut in_flight = Vec::new();
        for step in 0..200 {
            if !in_flight.is_empty() && rng.one_in(3) {
                in_flight.swap_remove(rng.within(0..=in_flight.len() as u64 - 1) as usize);
                continue;
            }
            let active = balancer.active();
            let Some((backend, guard)) = balancer.next(CLIENT, None, &mut Vec::new()) else {
                assert!((0..weights.len()).all(|i| !eligible(i)), "case {case} step {step}: weights {weights:?}");
                break;
            };
            let chosen = balancer.targets.iter().position(|t| t.addr == backend.addr).expect("one of the rule's");
            assert!(eligible(chosen), "case {case} step {step}: weights {weights:?}, {chosen} takes no traffic");
            // Load a.active / a.weight compared without division, as the scheduler does.
            let load = |i: usize| (active[i] as i64 * weights[chosen], active[chosen] as i64 * weights[i]);
            for other in (0..weights.len()).filter(|&i| i != chosen && eligible(i)) {
                let (theirs, ours) = load(other);
                let lighter = if other < chosen { ours < theirs } else { ours <= theirs };
                assert!(lighter, "case {case} step {step}: weights {weights:?}, in flight {active:?}, chose {chosen}");
            }
            in_flight.push((chosen, guard));
            for (i, target) in balancer.active().into_iter().enumerate() {
                let ours = in_flight.iter().filter(|(c, _)| *c == i).count();
                assert_eq!(target, initial[i] + ours, "case {case} step {step}: the in-flight count of {i}");
            }
        }
    }
}

// === IP hash ===

#[test]
fn ip_hash_sends_a_client_to_the_same_target_while_the_targets_stay_the_same() {
    for case in 0..CASES {
        let mut rng = Rng::new(case);
        let weights = rng.weights();
        let balancer = balancer(Scheduler::IpHash, &weights);
        // As after a change elsewhere in the configuration: the balancer is built again from the same targets.
        let rebuilt = self::balancer(Scheduler::IpHash, &weights);
        for _ in 0..20 {
            let client = rng.client();
            let first = balancer.pick_index(client, None, &[]);
            assert_eq!(first.is_none(), weights.iter().all(|&w| w == 0), "case {case}: weights {weights:?}");
            assert_eq!(balancer.pick_index(client, None, &[]), first, "case {case}: weights {weights:?}, {client}");
            assert_eq!(rebuilt.pick_index(client, None, &[]), first, "case {case}: weights {weights:?}, {client}");
        }
    }
}

/// Each target's share of N clients is binomial (N, weight / total) for a hash that behaves as a random one, so it is
/// checked to lie within 5 standard deviations of N × weight / total (a false alarm about once in 1.7 million tries
/// per target; the cases are fixed, so the outcome never changes from one run to the next).
fn assert_spread_by_weight(balancer: &Balancer, weights: &[i64], clients: &[IpAddr], what: &str) {
    let mut counts = vec![0_i64; weights.len()];
    for &client in clients {
        counts[balancer.pick_index(client, None, &[]).expect("a target takes traffic")] += 1;
    }
    let (n, total) = (clients.len() as f64, weights.iter().sum::<i64>() as f64);
    for (target, (&count, &weight)) in counts.iter().zip(weights).enumerate() {
        let p = weight as f64 / total;
        let tolerance = 5.0 * (n * p * (1.0 - p)).sqrt();
        let expected = n * p;
        assert!(
            (count as f64 - expected).abs() <= tolerance,
            "{what}: weights {weights:?}, target {target} got {count} of {n} clients, {expected:.0} ± {tolerance:.0} expected",
        );
    }
}

#[test]
fn ip_hash_spreads_10000_clients_in_proportion_to_the_weights() {
    let random: Vec<IpAddr> = {
        let mut rng = Rng::new(0);
        (0..10_000).map(|_| rng.client()).collect()
    };
    // One network's addresses in a row, as clients behind one provider come.
    let consecutive: Vec<IpAddr> = (0..10_000_u32).map(|i| IpAddr::V4((0x0A00_0000 + i).into())).collect();
    let mut rng = Rng::new(1);
    let generated = (0..20).map(|_| rng.weights()).filter(|w| w.iter().sum::<i64>() > 0);
    let fixed = [vec![1, 1, 1], vec![5, 1, 1], vec![10, 20, 30, 40], vec![1, 99], vec![0, 3, 0, 1]];
    for weights in fixed.into_iter().chain(generated) {
        let balancer = balancer(Scheduler::IpHash, &weights);
        assert_spread_by_weight(&balancer, &weights, &random, "random addresses");
        assert_spread_by_weight(&balancer, &weights, &consecutive, "consecutive addresses");
    }
}

/// The hash is taken modulo the weights' total over the targets that take traffic: a change to that set moves the
/// clients of the target that left, and in general others too (this is not a consistent hash). What holds is that
/// the clients that move are spread over the targets left by their weights.
#[test]
fn ip_hash_moves_the_clients_of_a_target_that_leaves_to_the_others_by_weight() {
    let mut rng = Rng::new(2);
    let clients: Vec<IpAddr> = (0..10_000).map(|_| rng.client()).collect();
    for weights in [vec![1, 1, 1, 1], vec![10, 20, 30, 40], vec![5, 1, 1]] {
        for out in 0..weights.len() {
            let balancer = balancer(Scheduler::IpHash, &weights);
            let before: Vec<usize> = clients.iter().map(|&c| balancer.pick_index(c, None, &[]).unwrap()).collect();
            balancer.targets[out].state.set(Status::Unhealthy);
            let left: Vec<i64> = weights.iter().enumerate().map(|(i, &w)| if i == out { 0 } else { w }).collect();
            assert_spread_by_weight(&balancer, &left, &clients, &format!("target {out} unhealthy"));
            let moved: Vec<IpAddr> = clients.iter().zip(&before).filter(|(_, t)| **t == out).map(|(c, _)| *c).collect();
            assert!(moved.len() > 500, "weights {weights:?}: {} clients on {out}", moved.len());
            assert_spread_by_weight(&balancer, &left, &moved, &format!("clients of unhealthy target {out}"));
        }
    }
}

// === Session persistence ===

#[test]
fn a_persistence_cookie_keeps_its_target_while_it_takes_traffic() {
    let balancer = balancer(Scheduler::WeightedRoundRobin, &[1, 1, 1]);
    let cookie = balancer.targets[2].token.clone();
    for _ in 0..5 {
        assert_eq!(balancer.pick_index(CLIENT, Some(&cookie), &[]), Some(2));
    }
    assert_eq!(balancer.pick_index(CLIENT, Some("0123456789abcdef"), &[]), Some(0), "an unknown cookie is scheduled");
    let retried = balancer.pick_index(CLIENT, Some(&cookie), &[addr(2)]);
    assert!(retried.is_some_and(|t| t != 2), "a retry is scheduled among the others: {retried:?}");
    balancer.targets[2].state.set(Status::Unhealthy);
    let left = balancer.pick_index(CLIENT, Some(&cookie), &[]);
    assert!(left.is_some_and(|t| t != 2), "an unhealthy target is left for the others: {left:?}");
}

const LISTENER: &str = "lbl-1";

/// A new layer-4 session (a TCP connection, or UDP datagrams from a new address) from `client` at `now`, as
/// `Upstreams::choose` and `Upstreams::connect` make it: the target the client kept while it takes traffic, else the
/// scheduler's; remembered for `expiry` from `now`.
fn session(balancer: &Balancer, kept: &mut KeptTargets, client: IpAddr, expiry: Duration, now: Instant) -> usize {
    let token = kept.get(LISTENER, client, now);
    let (backend, _in_flight) = balancer.next(client, token.as_deref(), &mut Vec::new()).expect("a target");
    kept.keep(LISTENER, client, &backend.token, expiry, now);
    balancer.targets.iter().position(|t| t.addr == backend.addr).expect("one of the rule's")
}

#[test]
fn a_kept_target_lasts_until_its_expiry_from_the_clients_last_session() {
    let (mut kept, t0, expiry) = (KeptTargets::default(), Instant::now(), Duration::from_secs(30));
    kept.keep(LISTENER, CLIENT, "aaaa", expiry, t0);
    assert_eq!(kept.get(LISTENER, CLIENT, t0 + Duration::from_secs(29)).as_deref(), Some("aaaa"));
    assert_eq!(kept.get(LISTENER, CLIENT, t0 + expiry), None, "it ends at its expiry");
    assert_eq!(kept.get("lbl-2", CLIENT, t0), None, "each listener keeps its own");
    let other: IpAddr = "192.0.2.2".parse().unwrap();
    assert_eq!(kept.get(LISTENER, other, t0), None);
    kept.keep(LISTENER, CLIENT, "aaaa", expiry, t0 + Duration::from_secs(20));
    assert_eq!(
        kept.get(LISTENER, CLIENT, t0 + Duration::from_secs(49)).as_deref(),
        Some("aaaa"),
        "a session renews it"
    );
    assert_eq!(kept.get(LISTENER, CLIENT, t0 + Duration::from_secs(50)), None);
}

#[test]
fn a_layer4_client_keeps_its_target_within_the_expiry_and_is_rebalanced_after_it() {
    let balancer = balancer(Scheduler::WeightedRoundRobin, &[1, 1, 1]);
    let (mut kept, t0, expiry) = (KeptTargets::default(), Instant::now(), Duration::from_secs(30));
    assert_eq!(session(&balancer, &mut kept, CLIENT, expiry, t0), 0);
    // The rotation has moved on to target 1; the client stays on 0, its sessions renewing the expiry.
    for seconds in [10, 39, 68] {
        assert_eq!(
            session(&balancer, &mut kept, CLIENT, expiry, t0 + Duration::from_secs(seconds)),
            0,
            "at {seconds} s"
        );
    }
    assert_eq!(session(&balancer, &mut kept, CLIENT, expiry, t0 + Duration::from_secs(98)), 1, "expired: scheduled");
    assert_eq!(session(&balancer, &mut kept, CLIENT, expiry, t0 + Duration::from_secs(99)), 1, "and kept again");
    balancer.targets[1].state.set(Status::Unhealthy);
    assert_eq!(session(&balancer, &mut kept, CLIENT, expiry, t0 + Duration::from_secs(100)), 2, "unhealthy: scheduled");
}

#[test]
fn layer4_clients_keep_their_targets_exactly_while_they_come_back_within_the_expiry() {
    for case in 0..CASES {
        let mut rng = Rng::new(case);
        let weights: Vec<i64> = (0..rng.within(2..=10)).map(|_| rng.within(1..=100) as i64).collect();
        let scheduler = if rng.one_in(2) { Scheduler::WeightedRoundRobin } else { Scheduler::LeastConnections };
        let balancer = balancer(scheduler, &weights);
        let expiry = Duration::from_secs(rng.within(30..=3600));
        let clients: Vec<IpAddr> = (0..5).map(|_| rng.client()).collect();
        let (mut kept, mut now) = (KeptTargets::default(), Instant::now());
        let mut last: HashMap<IpAddr, (usize, Instant)> = HashMap::new();
        for step in 0..100 {
            now += Duration::from_secs(rng.within(0..=expiry.as_secs() / 2));
            let client = clients[rng.within(0..=4) as usize];
            let target = session(&balancer, &mut kept, client, expiry, now);
            if let Some(&(before, at)) = last.get(&client)
                && now < at + expiry
            {
                assert_eq!(target, before, "case {case} step {step}: {client} came back within {expiry:?}");
            }
            last.insert(client, (target, now));
            for (&client, &(target, at)) in &last {
                let token = (now < at + expiry).then(|| balancer.targets[target].token.clone());
                assert_eq!(kept.get(LISTENER, client, now), token, "case {case} step {step}: {client}");
            }
        }
    }
}

#[test]
fn past_the_limit_new_clients_are_not_kept_until_expired_ones_make_room() {
    let (mut kept, t0, expiry) = (KeptTargets::default(), Instant::now(), Duration::from_secs(30));
    let client = |i: usize| IpAddr::V6(Ipv6Addr::from(i as u128));
    for i in 0..MAX_KEPT_CLIENTS {
        kept.keep(LISTENER, client(i), "aaaa", expiry, t0);
    }
    let late = client(MAX_KEPT_CLIENTS);
    kept.keep(LISTENER, late, "bbbb", expiry, t0 + Duration::from_secs(1));
    assert_eq!(kept.get(LISTENER, late, t0 + Duration::from_secs(1)), None, "none has expired yet");
    kept.keep(LISTENER, client(0), "cccc", expiry, t0 + Duration::from_secs(2));
    assert_eq!(
        kept.get(LISTENER, client(0), t0 + Duration::from_secs(2)).as_deref(),
        Some("cccc"),
        "one kept is renewed"
    );
    kept.keep(LISTENER, late, "bbbb", expiry, t0 + expiry);
    assert_eq!(kept.get(LISTENER, late, t0 + expiry).as_deref(), Some("bbbb"), "expired ones made room");
    assert_eq!(kept.clients.len(), 2, "the renewed one and the late one");
}

// === Retries ===

/// The loop of both paths for a request whose every connect fails: the scheduler's next target, until the decision
/// gives up or no target is left.
fn targets_tried_when_no_connect_succeeds(balancer: &Balancer, limit: usize) -> Vec<SocketAddr> {
    let mut tried = Vec::new();
    while let Some((_, _in_flight)) = balancer.next(CLIENT, None, &mut tried) {
        if !retry::decide(Failure::Connect, tried.len(), limit).retries(&mut tried) {
            break;
        }
    }
    tried
}

#[test]
fn failed_connects_try_distinct_targets_up_to_the_limit_or_the_targets_taking_traffic() {
    for case in 0..CASES {
        let mut rng = Rng::new(case);
        let weights = rng.weights();
        let scheduler =
            [Scheduler::WeightedRoundRobin, Scheduler::LeastConnections, Scheduler::IpHash][case as usize % 3];
        let balancer = balancer(scheduler, &weights);
        for target in &balancer.targets {
            if rng.one_in(4) {
                target.state.set(Status::Unhealthy);
            }
        }
        let taking = balancer.targets.iter().filter(|t| t.weight > 0 && t.state.takes_traffic()).count();
        let limit = rng.within(1..=5) as usize;
        let tried = targets_tried_when_no_connect_succeeds(&balancer, limit);
        assert_eq!(tried.len(), taking.min(limit), "case {case}: weights {weights:?}, limit {limit}");
        let distinct: std::collections::HashSet<_> = tried.iter().collect();
        assert_eq!(distinct.len(), tried.len(), "case {case}: weights {weights:?}: {tried:?}");
        assert_eq!(balancer.active(), vec![0; weights.len()], "case {case}: no try is left in flight");
    }
}

/// The generated cases whose weights add up to more than 0: (case, its generator after the weights, the weights,
/// their sum).
fn weighted_cases() -> impl Iterator<Item = (u64, Rng, Vec<i64>, i64)> {
    (0..CASES).filter_map(|case| {
        let mut rng = Rng::new(case);
        let weights = rng.weights();
        let cycle: i64 = weights.iter().sum();
        (cycle > 0).then_some((case, rng, weights, cycle))
    })
}
