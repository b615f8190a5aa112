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
            "## CLB" | "## fnlb extensions" => section = Some(Service::Clb),
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

/// Every SCF and CLB action of Tencent's API that fnlb accounts for has its row in the coverage document.
#[test]
fn api_coverage_lists_every_tencent_action() {
    let doc = include_str!("../../../docs/api-coverage.md");
    let listed = include_str!("../../../tests/fixtures/tencent-actions.txt");
    let mut section = "";
    let mut rows = Vec::new();
    for line in doc.lines() {
        match line {
            "## SCF" => section = "scf",
            "## CLB" => section = "clb",
            _ => {}
        }
        if let Some(name) = line.strip_prefix("| ").and_then(|rest| rest.split(" |").next()) {
            rows.push((section, name));
        }
    }
    for entry in listed.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (service, action) = entry.split_once(' ').expect("SERVICE ACTION");
        assert!(rows.contains(&(service, action)), "{service} {action} has no row in docs/api-coverage.md");
    }
}

/// An action that reads is named as one (Get, List, Describe), the invocations are Invoke and InvokeFunction, and
/// every other action changes the state: a repeat of its signed request is never carried out again.
#[test]
fn every_action_that_is_not_a_read_or_an_invocation_is_a_change() {
    for action in ACTIONS {
        let expected = match action.name {
            "Invoke" | "InvokeFunction" => Effect::Invoke,
            name if ["Get", "List", "Describe"].iter().any(|p| name.starts_with(p)) => Effect::Read,
            _ => Effect::Change,
        };
        assert_eq!(action.effect, expected, "{} {}", action.service.name(), action.name);
    }
}

/// The action alone names the service that handles a call (whatever a TC3 credential scope says), so no action is
/// served by two services.
#[test]
fn each_action_is_served_by_one_service() {
    for action in ACTIONS {
        let services: Vec<Service> = ACTIONS.iter().filter(|a| a.name == action.name).map(|a| a.service).collect();
        assert_eq!(services, vec![action.service], "{}", action.name);
    }
}

/// Flattened requests carry the common parameters among the action's: no action has a parameter of their names.
#[test]
fn no_action_parameter_is_a_common_parameter() {
    for action in ACTIONS {
        for param in action.params {
            assert!(!crate::api::v1::COMMON_PARAMS.contains(param), "{}.{param}", action.name);
        }
    }
}
