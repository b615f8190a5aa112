//! The pool's decisions, without processes or clocks: the shelf (which idle instance a caller takes, who gets a
//! released one, which idle ones are stopped) driven by events at instants the tests choose, the patience before
//! a start, and the refusals before a wait. Instances are numbers.

use super::*;

/// xorshift64*: a small generator whose whole sequence is fixed by its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn at(base: Instant, seconds: u64) -> Instant {
    base + Duration::from_secs(seconds)
}

#[test]
fn a_caller_takes_the_most_recently_used_live_instance() {
    let base = Instant::now();
    let mut shelf = Shelf::default();
    for (instance, second) in [(1, 0), (2, 1), (3, 2)] {
        shelf.release(instance, at(base, second));
    }
    // 3 died while idle: it is dropped, and 2 (used after 1) is taken.
    assert_eq!(shelf.take_or_queue(|i| *i != 3).ok(), Some(2));
    assert_eq!(shelf.take_or_queue(|_| true).ok(), Some(1));
    assert!(shelf.take_or_queue(|_| true).is_err(), "none idle: a place in line");
}

#[test]
fn a_released_instance_goes_to_the_caller_waiting_longest_and_skips_those_gone() {
    let base = Instant::now();
    let mut shelf: Shelf<u32> = Shelf::default();
    let mut first = shelf.take_or_queue(|_| true).unwrap_err();
    let second = shelf.take_or_queue(|_| true).unwrap_err();
    let mut third = shelf.take_or_queue(|_| true).unwrap_err();
    drop(second);
    shelf.release(7, base);
    shelf.release(8, base);
    assert_eq!(first.try_recv(), Ok(7));
    assert_eq!(third.try_recv(), Ok(8), "the caller that went away is passed over");
    shelf.release(9, base);
    assert_eq!(shelf.ready.len(), 1, "with no one waiting, it is kept idle");
}

#[test]
fn idle_instances_are_stopped_oldest_first_after_the_timeout_but_the_provisioned_stay() {
    let base = Instant::now();
    let timeout = Duration::from_secs(60);
    let mut shelf = Shelf::default();
    for (instance, second) in [(1, 0), (2, 10), (3, 20), (4, 30)] {
        shelf.release(instance, at(base, second));
    }
    assert_eq!(shelf.reap(at(base, 59), timeout, 0), (0, Some(at(base, 60))));
    assert_eq!(shelf.reap(at(base, 75), timeout, 0), (2, Some(at(base, 80))));
    // Two provisioned: 3 and 4 stay whatever their idle time, and nothing is due.
    assert_eq!(shelf.reap(at(base, 500), timeout, 2), (0, None));
    assert_eq!(shelf.ready.iter().map(|idle| idle.instance).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(shelf.reap(at(base, 500), timeout, 0), (2, None));
}

/// Any sequence of takes, releases, departures and reaps: no instance is lost or duplicated (each is idle, with a
/// caller, or stopped), the idle list stays in the order instances went idle, a caller waits only while none is
/// idle, and reaping keeps every instance that is not yet due and the provisioned ones.
#[test]
fn the_shelf_neither_loses_nor_duplicates_an_instance_under_any_sequence() {
    let timeout = Duration::from_secs(60);
    for seed in 1..200u64 {
        let mut rng = Rng(seed);
        let base = Instant::now();
        let mut shelf: Shelf<u64> = Shelf::default();
        let mut now = 0;
        let (mut next, mut held, mut stopped) = (0u64, Vec::new(), 0usize);
        let mut lines: Vec<oneshot::Receiver<u64>> = Vec::new();
        for _ in 0..300 {
            now += rng.below(20);
            match rng.below(5) {
                0 => match shelf.take_or_queue(|_| true) {
                    Ok(instance) => held.push(instance),
                    Err(line) => {
                        assert!(shelf.ready.is_empty(), "a caller waits only while none is idle");
                        lines.push(line);
                    }
                },
                1 if !held.is_empty() => {
                    let instance = held.swap_remove(rng.below(held.len() as u64) as usize);
                    shelf.release(instance, at(base, now));
                }
                2 => {
                    next += 1;
                    shelf.release(next, at(base, now));
                }
                3 if !lines.is_empty() => {
                    // A caller leaves the line, with what it was handed meanwhile (as `Ticket::leave`).
                    let mut line = lines.swap_remove(rng.below(lines.len() as u64) as usize);
                    line.close();
                    if let Ok(instance) = line.try_recv() {
                        held.push(instance);
                    }
                }
                _ => {
                    let keep = rng.below(3) as usize;
                    let before = shelf.ready.len();
                    let (gone, due) = shelf.reap(at(base, now), timeout, keep);
                    stopped += gone;
                    assert!(shelf.ready.len() >= keep.min(before));
                    let reaped_now = at(base, now);
                    let removable = shelf.ready.len().saturating_sub(keep);
                    assert!(
                        shelf.ready.iter().take(removable).all(|idle| reaped_now.duration_since(idle.since) < timeout)
                    );
                    assert_eq!(due.is_some(), shelf.ready.len() > keep);
                }
            }
            // Callers handed an instance now hold it.
            lines.retain_mut(|line| match line.try_recv() {
                Ok(instance) => {
                    held.push(instance);
                    false
                }
                Err(_) => true,
            });
            assert!(shelf.ready.windows(2).all(|pair| pair[0].since <= pair[1].since));
            let mut all: Vec<u64> = shelf.ready.iter().map(|idle| idle.instance).chain(held.iter().copied()).collect();
            all.sort_unstable();
            let count = all.len();
            all.dedup();
            assert_eq!(all.len(), count, "seed {seed}: an instance in two places");
            assert_eq!(count + stopped, next as usize, "seed {seed}: an instance lost");
        }
    }
}

#[test]
fn patience_waits_about_one_start_only_past_the_eager_instances_and_for_short_invocations() {
    let limit = Duration::from_millis(200);
    let waits = Waits { warm: limit, saturated: Duration::from_secs(1) };
    let load = |instances, starting, start_ms, invoke_ms| Load {
        instances,
        starting,
        start_time: Duration::from_millis(start_ms),
        invoke_time: Duration::from_millis(invoke_ms),
        saturated: false,
    };
    assert_eq!(patience(load(3, 0, 50, 5), 4, waits), Duration::ZERO, "below the eager instances");
    assert_eq!(patience(load(3, 1, 50, 5), 4, waits), Duration::from_millis(50), "those starting count");
    assert_eq!(patience(load(8, 0, 0, 5), 4, waits), Duration::ZERO, "starts not measured yet");
    assert_eq!(patience(load(8, 0, 50, 50), 4, waits), Duration::ZERO, "invocations as long as a start");
    assert_eq!(patience(load(8, 0, 900, 5), 4, waits), limit, "at most the limit");
    // For every load: never past the limit nor past one start, and zero whenever invocations are the longer.
    for instances in 0..10 {
        for starting in 0..4 {
            for start_ms in [0, 1, 7, 50, 300] {
                for invoke_ms in [0, 1, 7, 50, 300] {
                    let waited = patience(load(instances, starting, start_ms, invoke_ms), 4, waits);
                    assert!(waited <= limit && waited <= Duration::from_millis(start_ms));
                    if invoke_ms >= start_ms {
                        assert_eq!(waited, Duration::ZERO);
                    }
                }
            }
        }
    }
}

#[test]
fn on_saturated_processors_patience_waits_longer_for_short_invocations_past_the_eager_instances() {
    let waits = Waits { warm: Duration::from_millis(10), saturated: Duration::from_millis(100) };
    let load = |instances, start_ms, invoke_ms| Load {
        instances,
        starting: 0,
        start_time: Duration::from_millis(start_ms),
        invoke_time: Duration::from_millis(invoke_ms),
        saturated: true,
    };
    assert_eq!(patience(load(3, 5, 50), 4, waits), Duration::ZERO, "below the eager instances");
    assert_eq!(patience(load(8, 0, 50), 4, waits), Duration::ZERO, "starts not measured yet");
    for (start_ms, invoke_ms) in [(5, 50), (50, 50), (5, 1), (900, 5), (5, 99)] {
        let waited = patience(load(8, start_ms, invoke_ms), 4, waits);
        assert_eq!(waited, waits.saturated, "{start_ms} ms starts, {invoke_ms} ms calls");
    }
    // Invocations as long as the saturated wait or longer (waiting on something else than the processors, most
    // likely) start instances as on idle processors.
    assert_eq!(patience(load(8, 5, 100), 4, waits), Duration::ZERO);
    assert_eq!(patience(load(8, 500, 100), 4, waits), Duration::from_millis(10));
    // Zero waits as on idle processors: about one start.
    assert_eq!(patience(load(8, 5, 1), 4, Waits { saturated: Duration::ZERO, ..waits }), Duration::from_millis(5));
}

#[test]
fn a_function_that_can_run_no_instance_or_whose_queue_is_full_is_refused_at_once() {
    assert!(refusal(0, None, 128, 0, 10).is_some(), "a limit of 0");
    assert!(refusal(4, Some(64), 128, 0, 10).is_some(), "a reservation smaller than one instance");
    assert!(refusal(4, Some(128), 128, 0, 10).is_none());
    assert!(refusal(4, None, 128, 9, 10).is_none());
    assert!(refusal(4, None, 128, 10, 10).is_some(), "the queue is full");
}
