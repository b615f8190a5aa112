use super::*;

/// The coverage document lists every served action as implemented or partial, and every other as not implemented.
#[test]
fn api_coverage_matches_the_action_table() {
    let doc = include_str!("../../../docs/api-coverage.md");
    let mut section = None;
    let mut documented = Vec::new();
    for line in doc.lines() {
        match line {
            "## SCF" => section = Some(Service::Scf),
            "## CLB" => section = Some(Service::Clb),
            _ => {}
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || cells[1] == "action" || cells[1].starts_with("---") {
            continue;
        }
        documented.push((section.expect("tables sit under a section"), cells[1], cells[2]));
    }
    for action in ACTIONS {
        let row = documented.iter().find(|(s, name, _)| *s == action.service && *name == action.name);
        let status = row.map(|r| r.2);
        assert!(
            matches!(status, Some("implemented" | "partial")),
            "{} {} is served but documented as {status:?}",
            action.service.name(),
            action.name
        );
    }
    for (service, name, status) in &documented {
        let served = ACTIONS.iter().any(|a| a.service == *service && a.name == *name);
        assert_eq!(served, *status != "not implemented", "{} {name} is documented as {status}", service.name());
    }
}
