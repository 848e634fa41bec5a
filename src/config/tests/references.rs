//! Names, dependencies, cycles and groups.

use super::*;

// ---------------------------------------------------------------------------
// Names, dependencies, cycles, groups

#[test]
fn invalid_program_names() {
    let long = "x".repeat(65);
    let source = format!(
        "[program.\"a/b\"]\ncommand = [\"sh\"]\n\
         [program.\"web:0\"]\ncommand = [\"sh\"]\n\
         [program.\".x\"]\ncommand = [\"sh\"]\n\
         [program.\"\"]\ncommand = [\"sh\"]\n\
         [program.{long}]\ncommand = [\"sh\"]\n\
         [program.\"a.b\"]\ncommand = []\n"
    );
    let rule = "use 1 to 64 of A-Z a-z 0-9 _ . -, starting with a letter, digit or _";
    assert_eq!(
        diags(&source),
        [
            format!("supervisor.toml:1:10: program.\"a/b\": invalid program name \"a/b\": {rule}"),
            format!(
                "supervisor.toml:3:10: program.\"web:0\": invalid program name \"web:0\": {rule}"
            ),
            format!("supervisor.toml:5:10: program.\".x\": invalid program name \".x\": {rule}"),
            format!("supervisor.toml:7:10: program.\"\": invalid program name \"\": {rule}"),
            format!(
                "supervisor.toml:9:10: program.{long}: invalid program name \"{long}\": {rule}"
            ),
            // A valid name that is not a bare key is quoted in the key path.
            "supervisor.toml:12:11: program.\"a.b\".command: command is empty".to_string(),
        ]
    );
}

#[test]
fn valid_unusual_names() {
    let config = valid(
        "[program.api-v2]\ncommand = [\"sh\"]\n[program._x]\ncommand = [\"sh\"]\n\
         [program.\"a.b\"]\ncommand = [\"sh\"]\n[program.9]\ncommand = [\"sh\"]\n",
    );
    let names: Vec<&str> = config.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["api-v2", "_x", "a.b", "9"]);
}

#[test]
fn unknown_dependencies_with_hint() {
    let source = "[program.db]\ncommand = [\"sh\"]\n\
                  [program.web]\ncommand = [\"sh\"]\ndepends_on = [\"dbb\", \"cache\", \"db\", \"db\"]\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:5:15: program.web.depends_on: unknown program \"dbb\" (did you mean \"db\"?)",
            "supervisor.toml:5:22: program.web.depends_on: unknown program \"cache\"",
            "supervisor.toml:5:37: program.web.depends_on: \"db\" is listed twice",
        ]
    );
}

#[test]
fn self_dependency_is_a_cycle() {
    assert_eq!(
        one(&program_a("depends_on = [\"a\"]")),
        "supervisor.toml:3:15: program.a.depends_on: dependency cycle: a -> a"
    );
}

#[test]
fn three_cycle_prints_the_path() {
    let source = "[program.b]\ncommand = [\"sh\"]\ndepends_on = [\"c\"]\n\
                  [program.c]\ncommand = [\"sh\"]\ndepends_on = { d = \"started\" }\n\
                  [program.d]\ncommand = [\"sh\"]\ndepends_on = [\"b\"]\n";
    assert_eq!(
        one(source),
        "supervisor.toml:3:15: program.b.depends_on: dependency cycle: b -> c -> d -> b"
    );
}

#[test]
fn every_cycle_is_reported() {
    let source = "[program.a]\ncommand = [\"sh\"]\ndepends_on = [\"b\"]\n\
                  [program.b]\ncommand = [\"sh\"]\ndepends_on = [\"a\"]\n\
                  [program.x]\ncommand = [\"sh\"]\ndepends_on = [\"y\"]\n\
                  [program.y]\ncommand = [\"sh\"]\ndepends_on = [\"x\"]\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:3:15: program.a.depends_on: dependency cycle: a -> b -> a",
            "supervisor.toml:9:15: program.x.depends_on: dependency cycle: x -> y -> x",
        ]
    );
}

#[test]
fn dependency_problems_are_found_even_when_a_program_has_other_errors() {
    // Both programs have a bad value; the cycle and the unknown program are
    // still reported in the same run.
    let source = "[program.a]\ncommand = [\"sh\"]\nrestart = \"sometimes\"\ndepends_on = [\"b\", \"nope\"]\n\
                  [program.b]\ncommand = []\ndepends_on = [\"a\"]\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:3:11: program.a.restart: invalid value \"sometimes\"; expected one of: always, on-failure, never",
            "supervisor.toml:4:15: program.a.depends_on: dependency cycle: a -> b -> a",
            "supervisor.toml:4:20: program.a.depends_on: unknown program \"nope\"",
            "supervisor.toml:6:11: program.b.command: command is empty",
        ]
    );
}

#[test]
fn completed_needs_a_oneshot() {
    let source = "[program.db]\ncommand = [\"sh\"]\n\
                  [program.migrate]\ncommand = [\"sh\"]\ntype = \"oneshot\"\n\
                  [program.web]\ncommand = [\"sh\"]\ndepends_on = { db = \"completed\", migrate = \"completed\" }\n";
    assert_eq!(
        one(source),
        "supervisor.toml:8:16: program.web.depends_on: \"db\" is a service and never completes; \"completed\" needs type = \"oneshot\""
    );
}

#[test]
fn oneshot_cannot_restart_always() {
    assert_eq!(
        one(&program_a("type = \"oneshot\"\nrestart = \"always\"")),
        "supervisor.toml:4:11: program.a.restart: \"always\" would rerun a oneshot forever; use \"on-failure\" or \"never\""
    );
}

#[test]
fn program_in_two_groups() {
    let source = "[program.a]\ncommand = [\"sh\"]\n[program.b]\ncommand = [\"sh\"]\n\
                  [group.x]\nprograms = [\"a\"]\n\
                  [group.y]\nprograms = [\"b\", \"a\", \"zz\", \"b\"]\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:8:18: group.y.programs: program \"a\" is already in group \"x\"; a program belongs to at most one group",
            "supervisor.toml:8:23: group.y.programs: unknown program \"zz\"",
            "supervisor.toml:8:29: group.y.programs: \"b\" is listed twice",
        ]
    );
}

#[test]
fn group_errors() {
    let source = "[program.a]\ncommand = [\"sh\"]\n\
                  [group.empty]\n\
                  [group.none]\nprograms = []\n\
                  [group.s]\nprograms = [\"a\"]\nstrategy = \"one_for_al\"\nmax_restarts = -1\n\
                  [group.t]\nprograms = []\nrestart_window = \"0s\"\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:3:8: group.empty: missing key `programs`",
            "supervisor.toml:5:12: group.none.programs: must list at least one program",
            "supervisor.toml:8:12: group.s.strategy: invalid value \"one_for_al\" (did you mean \"one_for_all\"?); expected one of: one_for_one, one_for_all, rest_for_one",
            "supervisor.toml:9:16: group.s.max_restarts: -1 is out of range; expected 0 to 4294967295",
            "supervisor.toml:11:12: group.t.programs: must list at least one program",
            "supervisor.toml:12:18: group.t.restart_window: must be longer than 0s",
        ]
    );
}
