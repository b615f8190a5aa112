use super::*;

#[test]
fn a_function_keeps_its_user_and_two_functions_have_two() {
    let mut uids = Uids::new(1000);
    let a = uids.of("a");
    let b = uids.of("b");
    assert_eq!((a, b), (1000, 1001));
    assert_eq!(uids.of("a"), a);
}

#[test]
fn past_the_range_the_user_of_the_function_asked_for_least_recently_is_given_again() {
    let mut uids = Uids::new(0);
    for i in 0..FUNCTION_UIDS {
        uids.of(&format!("f{i}"));
    }
    // f0 was asked for again just now; f1 is the one left alone longest.
    uids.of("f0");
    let given = uids.of("new");
    assert_eq!(given, 1);
    assert_eq!(uids.of("f0"), 0, "a function in use keeps its user");
    assert_ne!(uids.of("f1"), 1, "the function whose user was given away gets another");
}

#[test]
fn a_sandbox_command_drops_to_the_user_and_loads_the_filter() {
    let sandbox = Sandbox::Bubblewrap { bwrap: "/usr/bin/bwrap".into(), setpriv: Some("/usr/bin/setpriv".into()) };
    let confinement = Confinement { uid: Some(2_000_000_007), seccomp: true, zygote: false };
    let (_, args) =
        sandbox.wrap(Path::new("/usr/bin/python3"), &[], Path::new("/c"), Path::new("/r"), None, confinement);
    let joined = args.join(" ");
    assert!(joined.contains(&format!("--seccomp {SECCOMP_FD} --")), "{joined}");
    assert!(joined.contains("--reuid=2000000007 --regid=2000000007"), "{joined}");

    let zygote = Confinement { zygote: true, seccomp: false, ..confinement };
    let (_, args) = sandbox.wrap(Path::new("/usr/bin/python3"), &[], Path::new("/c"), Path::new("/r"), None, zygote);
    let joined = args.join(" ");
    assert!(!joined.contains("--seccomp") && !joined.contains("--reuid"), "{joined}");
    assert!(joined.contains(&format!("--bounding-set={ZYGOTE_CAPABILITIES}")), "{joined}");
}
