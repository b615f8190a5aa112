use serde_json::json;

use super::{Entry, Shown, reached, start_seconds};

/// An invocation that started `start` seconds into the minute.
fn entry(id: &str, start: u32) -> Entry {
    Entry::new(json!({"RequestId": id, "StartTime": format!("2024-02-29 23:59:{start:02}")}))
}

/// Read newest first, as GetFunctionLogs answers.
fn read(entries: &[(&str, u32)]) -> Vec<Entry> {
    entries.iter().map(|(id, start)| entry(id, *start)).collect()
}

fn ids(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.request_id.as_str()).collect()
}

#[test]
fn start_times_are_seconds_on_one_scale() {
    let a = start_seconds("2024-02-29 23:59:59").unwrap();
    let b = start_seconds("2024-03-01 00:00:04").unwrap();
    assert_eq!(b - a, 5);
    assert_eq!(start_seconds("yesterday"), None);
    assert_eq!(start_seconds("2024-02-30 00:00:00"), None);
}

#[test]
fn each_invocation_is_fresh_once_oldest_first() {
    let look_back = 10;
    let mut shown = Shown::default();
    shown.remember(&read(&[("b", 5), ("a", 4)]), look_back);
    // Read again with two new ones in front: only those, in the order they ended.
    let fresh = shown.fresh(read(&[("d", 7), ("c", 6), ("b", 5), ("a", 4)]), look_back);
    assert_eq!(ids(&fresh), ["c", "d"]);
    assert!(shown.fresh(read(&[("d", 7), ("c", 6), ("b", 5)]), look_back).is_empty());
}

#[test]
fn an_invocation_that_started_before_the_last_read_and_ended_after_it_is_fresh() {
    let look_back = 10;
    let mut shown = Shown::default();
    shown.remember(&read(&[("quick", 20)]), look_back);
    // `slow` started at 15, before `quick`, and ended after the previous read.
    let fresh = shown.fresh(read(&[("slow", 15), ("quick", 20)]), look_back);
    assert_eq!(ids(&fresh), ["slow"]);
}

#[test]
fn invocations_before_the_window_are_not_shown_and_are_forgotten() {
    let look_back = 10;
    let mut shown = Shown::default();
    // `old` was there at first, beyond what was asked for: it is not new later.
    shown.remember(&read(&[("new", 30)]), look_back);
    assert!(shown.fresh(read(&[("new", 30), ("old", 5)]), look_back).is_empty());
    // What started before the window is forgotten: the memory stays bounded.
    shown.fresh(read(&[("newer", 50)]), look_back);
    assert_eq!(shown.ids.keys().map(String::as_str).collect::<Vec<_>>(), ["newer"]);
}

#[test]
fn reading_back_stops_before_the_window() {
    let minute = start_seconds("2024-02-29 23:59:00").unwrap();
    let read = read(&[("c", 30), ("b", 20)]);
    assert!(!reached(&read, Some(minute + 20)));
    assert!(reached(&read, Some(minute + 21)));
    assert!(!reached(&read, None), "with nothing seen, everything is read");
}
